package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/sluice-ci/sluice/internal/testing/browsertest"
	"github.com/sluice-ci/sluice/server"
)

// The log view's tests: the events at the HTTP level (lines numbered,
// resumed after a cut, a line still being written), the raw file, sign-in,
// and the page in headless Chromium (lines arriving live, anchors, a
// 100,000-line log, a reconnect across a server restart). Secrets a step
// printed stay masked in all of them.

// token makes an API token for user on the server of home.
func token(t testing.TB, home, user string) string {
	t.Helper()
	tokens, err := server.OpenTokens(server.TokensFile(home))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Create(user)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// logQuery is the query naming a step's log.
func logQuery(stage, step string) string {
	return url.Values{"stage": {stage}, "step": {step}}.Encode()
}

// sseEvent is one server-sent event as an EventSource reads it.
type sseEvent struct {
	ID, Event, Data string
}

// events follows the log view's events of a log, as a client that has
// the lines up to lastID ("" for none), until ctx ends.
func events(ctx context.Context, t *testing.T, base, tok, run, query, lastID string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/runs/"+url.PathEscape(run)+"/log/events?"+query, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		fields := 0
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				if fields > 0 {
					ch <- ev
				}
				ev, fields = sseEvent{}, 0
				continue
			}
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "id":
				ev.ID = value
			case "event":
				ev.Event = value
			case "data":
				ev.Data = value
			default:
				continue // retry, comments
			}
			fields++
		}
	}()
	return resp, ch
}

// next is the next event, which must come within 20 s.
func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event in 20 s")
	}
	return sseEvent{}
}

// expect reads the next events and checks them.
func expect(t *testing.T, ch <-chan sseEvent, want ...sseEvent) {
	t.Helper()
	for _, w := range want {
		if got := next(t, ch); got != w {
			t.Fatalf("event %+v, want %+v", got, w)
		}
	}
}

func line(n int, data string) sseEvent { return sseEvent{ID: fmt.Sprint(n), Data: data} }

// The events of a log that grows while it is read: each line once, with
// its number, a line still being written sent as it grows, and a reader
// that was cut off and comes back with Last-Event-ID (or ?after=) gets the
// lines after its last one, the line that was still being written among
// them, and nothing twice.
func TestLogEventsResume(t *testing.T) {
	e := start(t)
	tok := token(t, e.home, "alice")
	const run, stage, step = "run-1", "test[go=1.22,os=linux/amd64]", "unit"
	q := logQuery(stage, step)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The step has not started: the reader waits.
	ctx1, cut := context.WithCancel(ctx)
	resp, ch := events(ctx1, t, e.url, tok, run, q, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	expect(t, ch, sseEvent{Event: "waiting"})
	w, err := e.srv.Stack().Logs.Writer(run, stage, step)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if _, err := io.WriteString(w, s); err != nil {
			t.Fatal(err)
		}
	}
	write("one\n\x1b[31mtwo\n")
	expect(t, ch, line(1, "one"), line(2, `<span class="f1">two</span>`))
	write("thr")
	expect(t, ch, sseEvent{Event: "partial", Data: `<span class="f1">thr</span>`})
	// Cut while line 3 is being written.
	cut()
	for range ch {
	}

	write("ee\nfour\n\x1b[1mfi")
	ctx2, cut2 := context.WithCancel(ctx)
	_, ch = events(ctx2, t, e.url, tok, run, q, "2")
	expect(t, ch, line(3, `<span class="f1">three</span>`), line(4, `<span class="f1">four</span>`),
		sseEvent{Event: "partial", Data: `<span class="b f1">fi</span>`})
	write("ve")
	expect(t, ch, sseEvent{Event: "partial", Data: `<span class="b f1">five</span>`})
	write("\n<script>alert(1)</script>")
	expect(t, ch, line(5, `<span class="b f1">five</span>`), sseEvent{Event: "partial", Data: `<span class="b f1">&lt;script&gt;alert(1)&lt;/script&gt;</span>`})
	// The backlog: the complete lines only.
	backlog := func() string {
		t.Helper()
		resp, b := e.authed("GET", "/runs/"+run+"/log/lines?"+q, tok, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("the backlog: %d %v", resp.StatusCode, resp.Header)
		}
		return string(b)
	}
	const five = "one\n<span class=\"f1\">two</span>\n<span class=\"f1\">three</span>\n<span class=\"f1\">four</span>\n<span class=\"b f1\">five</span>\n"
	if got := backlog(); got != five {
		t.Errorf("the backlog of a log being written:\n%s", got)
	}
	// The log ends without a newline: its last line is complete.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, line(6, `<span class="b f1">&lt;script&gt;alert(1)&lt;/script&gt;</span>`), sseEvent{Event: "end", Data: "6"})
	if _, ok := <-ch; ok {
		t.Error("the stream goes on after its end")
	}
	cut2()
	if got, want := backlog(), five+"<span class=\"b f1\">&lt;script&gt;alert(1)&lt;/script&gt;</span>\n"; got != want {
		t.Errorf("the backlog of the complete log:\n%s\nwant\n%s", got, want)
	}

	// A complete log, read again: from the start, after ?after=4, after
	// Last-Event-ID (which wins over ?after=), and after its last line.
	for _, tc := range []struct {
		query, lastID string
		from          int
	}{{q, "", 1}, {q + "&after=4", "", 5}, {q + "&after=1", "5", 6}, {q, "6", 7}} {
		_, ch := events(ctx, t, e.url, tok, run, tc.query, tc.lastID)
		var got []string
		for ev := range ch {
			got = append(got, ev.ID+" "+ev.Event)
		}
		var want []string
		for n := tc.from; n <= 6; n++ {
			want = append(want, fmt.Sprint(n)+" ")
		}
		want = append(want, " end")
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s, Last-Event-ID %q: events %q, want %q", tc.query, tc.lastID, got, want)
		}
	}

	// Mistakes.
	for _, tc := range []struct {
		query, lastID string
		tok           string
		status        int
	}{
		{q, "", "", http.StatusUnauthorized},
		{q, "", "not-a-token", http.StatusUnauthorized},
		{"stage=" + url.QueryEscape(stage), "", tok, http.StatusBadRequest},
		{q, "seven", tok, http.StatusBadRequest},
		{q + "&after=-1", "", tok, http.StatusBadRequest},
	} {
		resp, _ := events(ctx, t, e.url, tc.tok, run, tc.query, tc.lastID)
		if resp.StatusCode != tc.status {
			t.Errorf("%s, token %q, Last-Event-ID %q: %d, want %d", tc.query, tc.tok, tc.lastID, resp.StatusCode, tc.status)
		}
	}
	// The page asks with HEAD whether it is still signed in.
	for _, tc := range []struct {
		method, tok string
		status      int
	}{{"GET", "", http.StatusUnauthorized}, {"HEAD", "", http.StatusUnauthorized}, {"HEAD", tok, http.StatusOK}} {
		req, _ := http.NewRequest(tc.method, e.url+"/runs/"+run+"/log/lines?"+q, nil)
		if tc.tok != "" {
			req.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s of the backlog, token %q: %d, want %d", tc.method, tc.tok, resp.StatusCode, tc.status)
		}
	}
}

// The raw log is the file as stored, to save; the page and the raw log
// need a signed-in user or a token, and send others to sign in.
func TestLogRawAndSignIn(t *testing.T) {
	e := start(t)
	tok := token(t, e.home, "alice")
	const run, stage, step = "run-2", "deploy/eu", "ship"
	w, err := e.srv.Stack().Logs.Writer(run, stage, step)
	if err != nil {
		t.Fatal(err)
	}
	const content = "\x1b[32mshipped\x1b[0m <ok>\nno newline"
	io.WriteString(w, content)
	w.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, tok string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.url+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	raw := "/runs/" + run + "/log/raw?" + logQuery(stage, step)
	resp, body := get(raw, tok)
	if resp.StatusCode != http.StatusOK || body != content {
		t.Fatalf("raw: %d %q", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Type":           "text/plain; charset=utf-8",
		"Content-Disposition":    `attachment; filename=run-2-deploy_eu-ship.log`,
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("raw: %s: %q, want %q", h, got, want)
		}
	}
	if resp, _ := get("/runs/"+run+"/log/raw?"+logQuery(stage, "nothing"), tok); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the raw log of no step: %d", resp.StatusCode)
	}
	page := "/runs/" + run + "/log?" + logQuery(stage, step)
	resp, body = get(page, tok)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-events="/runs/run-2/log/events?stage=deploy%2Feu&amp;step=ship"`) || !strings.Contains(body, "/static/log.js") {
		t.Errorf("the page: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("the page's Content-Security-Policy: %q", csp)
	}
	if resp, _ := get("/runs/"+run+"/log?stage=x", tok); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the page of no step: %d", resp.StatusCode)
	}
	for _, path := range []string{page, raw} {
		resp, _ := get(path, "")
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape(path) {
			t.Errorf("%s without signing in: %d to %q", path, resp.StatusCode, loc)
		}
	}
	if resp, _ := get("/static/log.js", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("log.js: %d", resp.StatusCode)
	}
}

// browse signs in to the server at base with tok in a new browser and
// opens path.
func browse(t *testing.T, base, tok, path string) context.Context {
	t.Helper()
	ctx := browsertest.New(t)
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(tctx,
		chromedp.Navigate(base+"/login?next="+url.QueryEscape(path)),
		chromedp.SendKeys(chromedp.CSS("#token"), tok),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#log-view")),
	); err != nil {
		t.Fatalf("signing in and opening %s: %v", path, err)
	}
	return ctx
}

// waitFor waits until the expression is true in the page.
func waitFor(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(10*time.Millisecond)))
		// A poll that starts as a new page replaces the old one finds no
		// page to run in: again, in the new one.
		if err == nil || !strings.Contains(err.Error(), "Cannot find context") || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({lines: sluiceLog.lines(), done: sluiceLog.done(), state: document.getElementById("log-state").textContent, hash: location.hash, top: document.getElementById("log-view").scrollTop})`))
		t.Fatalf("waiting for %s: %v; the page: %s", what, err, state)
	}
}

// eval evaluates an expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// inView is a JS expression: row n is drawn, within the box's visible
// part.
func inView(n int) string {
	return fmt.Sprintf(`(() => { const r = document.querySelector('.log-row[data-line="%d"]'); if (!r) return false;
  const v = document.getElementById("log-view").getBoundingClientRect(), b = r.getBoundingClientRect();
  return b.top >= v.top - 1 && b.bottom <= v.bottom + 1; })()`, n)
}

// A step that runs, seen from its log's page: its lines show as it prints
// them, without a reload, coloured and escaped, until the log is complete;
// the secret it printed is masked in the page, the events and the raw log.
func TestLogPageFollowsARunningStep(t *testing.T) {
	const secretValue = "weblog-s3cr3t-value"
	_, release, repoDir := heldProject(t, "logs", "SLUICE_TEST_WEBLOG_TOKEN", secretValue,
		`printf '\033[32mfirst line\033[0m \033[38;2;255;128;0morange\033[0m\n'; echo token=$TOKEN; echo '<b>not bold</b>'`)
	e := startWith(t, func(c *server.Config) {
		c.NoRunner = false
		c.Repositories = []server.Repository{{Name: "logs", URL: repoDir}}
	})
	tok := token(t, e.home, "alice")
	req, _ := http.NewRequest("POST", e.url+"/api/v1/runs", strings.NewReader(`{"repository": "logs", "ref": "main"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var res server.DeliveryResult
	if err := json.Unmarshal(b, &res); resp.StatusCode != http.StatusCreated || err != nil || len(res.Runs) != 1 {
		t.Fatalf("starting the run: %d %s", resp.StatusCode, b)
	}
	run := res.Runs[0].RunID
	query := logQuery("build", "hello")

	ctx := browse(t, e.url, tok, "/runs/"+url.PathEscape(run)+"/log?"+query)
	waitFor(t, ctx, "the first lines, live", `sluiceLog.lines() >= 3 && document.getElementById("log-state").textContent === "live"`, 90*time.Second)
	if got := eval[string](t, ctx, `document.querySelector('.log-row[data-line="1"] .log-t span.f2').textContent`); got != "first line" {
		t.Errorf("line 1 in green: %q", got)
	}
	// A 24-bit colour, under the page's Content-Security-Policy.
	if got := eval[string](t, ctx, `getComputedStyle(document.querySelector('.log-row[data-line="1"] .log-t span[data-fg]')).color`); got != "rgb(255, 128, 0)" {
		t.Errorf("orange on line 1: %q", got)
	}
	if got := eval[string](t, ctx, `sluiceLog.text(2)`); got != "token=***" {
		t.Errorf("line 2: %q, want the secret masked", got)
	}
	if got := eval[string](t, ctx, `sluiceLog.text(3)`); got != "<b>not bold</b>" {
		t.Errorf("line 3: %q", got)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll(".log-t b").length`); n != 0 {
		t.Errorf("the log's text made %d elements", n)
	}
	if eval[bool](t, ctx, `sluiceLog.done()`) {
		t.Error("the log is complete while the step runs")
	}
	// The step goes on; the page shows it without a reload.
	eval[bool](t, ctx, `window.sameDocument = true`)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the last line and the end", `sluiceLog.done() && sluiceLog.text(4) === "second line"`, 90*time.Second)
	if !eval[bool](t, ctx, `window.sameDocument === true`) {
		t.Error("the page was reloaded")
	}
	if got := eval[string](t, ctx, `document.getElementById("log-state").textContent`); got != "complete" {
		t.Errorf("state %q, want complete", got)
	}
	html := eval[string](t, ctx, `document.documentElement.outerHTML`)

	// The secret is nowhere: the page, its events, the raw log.
	get := func(path string) string {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	base := "/runs/" + url.PathEscape(run) + "/log"
	for what, s := range map[string]string{
		"page":   html,
		"events": get(base + "/events?" + query),
		"raw":    get(base + "/raw?" + query),
	} {
		if strings.Contains(s, secretValue) || !strings.Contains(s, "token=***") {
			t.Errorf("the %s holds the secret, or not its mask:\n%s", what, s)
		}
	}
}

// lines writes n numbered lines, "line 1" to "line n", some coloured.
func writeLines(t testing.TB, w io.Writer, from, to int) {
	t.Helper()
	bw := bufio.NewWriterSize(w, 1<<20)
	for i := from; i <= to; i++ {
		if i%10 == 0 {
			fmt.Fprintf(bw, "\x1b[1;34mline %d\x1b[0m ok   github.com/sluice-ci/sluice/pkg%05d\t0.%03ds\n", i, i, i%1000)
		} else {
			fmt.Fprintf(bw, "line %d ok   github.com/sluice-ci/sluice/pkg%05d\t0.%03ds\n", i, i, i%1000)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// A line anchor in the URL scrolls to its line and highlights it; a
// range highlights its lines; a click on a line's number, then a
// shift-click on another's, selects the lines between them and puts them
// in the URL.
func TestLogPageAnchors(t *testing.T) {
	e := start(t)
	tok := token(t, e.home, "alice")
	w, err := e.srv.Stack().Logs.Writer("run-3", "build", "unit")
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 1, 500)
	w.Close()
	page := "/runs/run-3/log?" + logQuery("build", "unit")

	ctx := browse(t, e.url, tok, page+"#L12")
	waitFor(t, ctx, "line 12 in view", `sluiceLog.done() && `+inView(12), 20*time.Second)
	if !eval[bool](t, ctx, `document.querySelector('.log-row[data-line="12"]').classList.contains("hl")`) {
		t.Error("line 12 is not highlighted")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll(".log-row.hl").length`); n != 1 {
		t.Errorf("%d lines highlighted, want 1", n)
	}
	if eval[bool](t, ctx, `sluiceLog.following()`) {
		t.Error("the view follows the end despite the anchor")
	}

	// A range far down, by changing the hash.
	eval[bool](t, ctx, `(location.hash = "#L400-L410", true)`)
	waitFor(t, ctx, "lines 400 to 410 highlighted", inView(400)+` && document.querySelectorAll(".log-row.hl").length === 11 && document.querySelector('.log-row[data-line="410"]').classList.contains("hl")`, 10*time.Second)

	// Click 402, shift-click 405.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`.log-row[data-line="402"] a.log-n`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "line 402 selected", `location.hash === "#L402" && document.querySelectorAll(".log-row.hl").length === 1`, 5*time.Second)
	type point struct{ X, Y float64 }
	p := eval[point](t, ctx, `(() => { const b = document.querySelector('.log-row[data-line="405"] a.log-n').getBoundingClientRect(); return {X: b.left + b.width / 2, Y: b.top + b.height / 2}; })()`)
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(p.X, p.Y, chromedp.ButtonModifiers(chromedp.ModifierShift))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "lines 402 to 405 selected", `location.hash === "#L402-L405" && document.querySelectorAll(".log-row.hl").length === 4`, 5*time.Second)
	for n, want := range map[int]bool{401: false, 402: true, 405: true, 406: false} {
		if got := eval[bool](t, ctx, fmt.Sprintf(`document.querySelector('.log-row[data-line="%d"]').classList.contains("hl")`, n)); got != want {
			t.Errorf("line %d highlighted: %v, want %v", n, got, want)
		}
	}

	// The range, opened in a new page, scrolls to its first line.
	ctx = browse(t, e.url, tok, page+"#L402-L405")
	waitFor(t, ctx, "line 402 in view, 402 to 405 highlighted", inView(402)+` && document.querySelectorAll(".log-row.hl").length === 4`, 20*time.Second)
}

// A log of 100,000 lines: the page reaches its end, holds only the rows in
// view, and scrolls back to the top.
func TestLogPageLongLog(t *testing.T) {
	e := start(t)
	tok := token(t, e.home, "alice")
	const n = 100_000
	w, err := e.srv.Stack().Logs.Writer("run-4", "build", "unit")
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 1, n)
	w.Close()
	ctx := browse(t, e.url, tok, "/runs/run-4/log?"+logQuery("build", "unit"))
	waitFor(t, ctx, "the end of the log in view", fmt.Sprintf(`sluiceLog.done() && sluiceLog.lines() === %d && %s`, n, inView(n)), 60*time.Second)
	if got := eval[string](t, ctx, fmt.Sprintf(`sluiceLog.text(%d)`, n)); !strings.HasPrefix(got, fmt.Sprintf("line %d ", n)) {
		t.Errorf("the last line: %q", got)
	}
	if rows := eval[int](t, ctx, `document.querySelectorAll(".log-row").length`); rows > 200 {
		t.Errorf("%d rows in the page for a log of %d lines", rows, n)
	}
	waitFor(t, ctx, "the mark of the end shown", `performance.getEntriesByName("sluice-log-end").length === 1`, 5*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#log-top"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "line 1 in view", inView(1), 10*time.Second)
	// The middle, by scrolling.
	eval[bool](t, ctx, fmt.Sprintf(`(document.getElementById("log-view").scrollTop = %d * 18, true)`, n/2))
	waitFor(t, ctx, "the middle in view", inView(n/2+5), 10*time.Second)
	if got := eval[string](t, ctx, fmt.Sprintf(`sluiceLog.text(%d)`, n/2)); !strings.HasPrefix(got, fmt.Sprintf("line %d ", n/2)) {
		t.Errorf("line %d: %q", n/2, got)
	}
}

// The view follows the newest line as lines come, until the reader
// scrolls up: then it stays where the reader is. Back at the bottom, or
// with Follow pressed, it follows again.
func TestLogPageFollowMode(t *testing.T) {
	e := start(t)
	tok := token(t, e.home, "alice")
	w, err := e.srv.Stack().Logs.Writer("run-6", "build", "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeLines(t, w, 1, 200)
	ctx := browse(t, e.url, tok, "/runs/run-6/log?"+logQuery("build", "unit"))
	waitFor(t, ctx, "line 200 in view", `sluiceLog.following() && `+inView(200), 20*time.Second)
	writeLines(t, w, 201, 300)
	waitFor(t, ctx, "line 300 in view", inView(300), 10*time.Second)

	// The reader scrolls up with the keyboard.
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS("#log-view")), chromedp.KeyEvent(kb.PageUp)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "following to stop", `!sluiceLog.following() && `+inView(250)+` && document.getElementById("log-follow").getAttribute("aria-pressed") === "false"`, 5*time.Second)
	settle(t, ctx)
	top := eval[float64](t, ctx, `document.getElementById("log-view").scrollTop`)
	writeLines(t, w, 301, 400)
	waitFor(t, ctx, "400 lines", `sluiceLog.lines() === 400`, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // some frames
	if got := eval[float64](t, ctx, `document.getElementById("log-view").scrollTop`); got != top || eval[bool](t, ctx, inView(400)) {
		t.Errorf("the view moved from %v to %v while the reader looked up", top, got)
	}

	// Follow, pressed, goes to the end and stays there.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#log-follow"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "line 400 in view", `sluiceLog.following() && `+inView(400), 5*time.Second)
	writeLines(t, w, 401, 450)
	waitFor(t, ctx, "line 450 in view", inView(450), 10*time.Second)

	// Up again, then down to the end.
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS("#log-view")), chromedp.KeyEvent(kb.PageUp)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "following to stop", `!sluiceLog.following()`, 5*time.Second)
	settle(t, ctx)
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.PageDown), chromedp.KeyEvent(kb.PageDown)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "following again at the end", `sluiceLog.following() && `+inView(450), 5*time.Second)
	writeLines(t, w, 451, 500)
	waitFor(t, ctx, "line 500 in view", inView(500), 10*time.Second)
}

// settle waits for the log's box to stop scrolling (keys scroll smoothly).
func settle(t *testing.T, ctx context.Context) {
	t.Helper()
	for still := false; !still; {
		still = eval[bool](t, ctx, `new Promise((ok) => { const v = document.getElementById("log-view"), a = v.scrollTop; setTimeout(() => ok(v.scrollTop === a), 200); })`, chromedp.EvalAwaitPromise)
	}
}

// A page whose stream is cut (the server restarts while the step runs)
// reconnects by itself and carries on from its last line: every line once,
// in order.
func TestLogPageReconnects(t *testing.T) {
	sharedTemporal()
	home := t.TempDir()
	tok := token(t, home, "alice")
	startAt := func(listen string) *server.Server {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		srv, err := server.Start(ctx, server.Config{Listen: listen, Home: home, NoRunner: true,
			TemporalAddress: ts.GetFrontendHostPort(), Namespace: ts.GetDefaultNamespace()}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := startAt("127.0.0.1:0")
	addr := srv.Addr()
	defer func() { srv.Close() }()
	w, err := srv.Stack().Logs.Writer("run-5", "build", "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeLines(t, w, 1, 50)
	io.WriteString(w, "line 51 is being wri")
	ctx := browse(t, srv.URL(), tok, "/runs/run-5/log?"+logQuery("build", "unit"))
	waitFor(t, ctx, "50 lines and a partial one", `sluiceLog.lines() === 50 && sluiceLog.text(51) === "line 51 is being wri"`, 20*time.Second)

	srv.Close()
	waitFor(t, ctx, "the page to see the cut", `document.getElementById("log-state").textContent.startsWith("reconnecting")`, 10*time.Second)
	io.WriteString(w, "tten\n")
	writeLines(t, w, 52, 100)
	srv = startAt(addr)
	waitFor(t, ctx, "line 100", `sluiceLog.lines() === 100`, 30*time.Second)
	writeLines(t, w, 101, 120)
	w.Close()
	waitFor(t, ctx, "the end", `sluiceLog.done()`, 20*time.Second)
	lines := eval[[]string](t, ctx, `Array.from({length: sluiceLog.lines()}, (_, i) => sluiceLog.text(i + 1))`)
	if len(lines) != 120 {
		t.Fatalf("%d lines, want 120", len(lines))
	}
	for i, l := range lines {
		want := fmt.Sprintf("line %d ", i+1)
		if i == 50 {
			want = "line 51 is being written"
		}
		if !strings.HasPrefix(l, want) {
			t.Errorf("line %d: %q, want %q…", i+1, l, want)
		}
	}
}

// screenshotLog is a step's log as programs colour it, for the picture in
// docs/images/log.png.
const screenshotLog = "\x1b[1m$ go vet ./...\x1b[0m\n" +
	"\x1b[1m$ go test -race ./...\x1b[0m\n" +
	"\x1b[32mok\x1b[0m  \tgithub.com/acme/shop/cart\t0.412s\tcoverage: 87.1% of statements\n" +
	"\x1b[32mok\x1b[0m  \tgithub.com/acme/shop/catalog\t1.093s\tcoverage: 91.4% of statements\n" +
	"\x1b[32mok\x1b[0m  \tgithub.com/acme/shop/checkout\t2.310s\tcoverage: 78.9% of statements\n" +
	"?   \tgithub.com/acme/shop/cmd/shop\t[no test files]\n" +
	"\x1b[33mwarning:\x1b[0m github.com/acme/shop/legacy is deprecated: use github.com/acme/shop/checkout\n" +
	"\x1b[32mok\x1b[0m  \tgithub.com/acme/shop/payments\t0.877s\tcoverage: 83.0% of statements\n" +
	"\x1b[1m$ docker build -t harbor.example.com/shop/api:4f9c2e1 .\x1b[0m\n" +
	"\x1b[36m#1\x1b[0m [internal] load build definition from Dockerfile\n" +
	"\x1b[36m#1\x1b[0m transferring dockerfile: 412B done\n" +
	"\x1b[36m#2\x1b[0m [build 1/4] FROM golang:1.26 \x1b[2m(cached)\x1b[0m\n" +
	"\x1b[36m#3\x1b[0m [build 2/4] COPY go.mod go.sum ./\n" +
	"\x1b[36m#4\x1b[0m [build 3/4] RUN go mod download\n" +
	"\x1b[36m#5\x1b[0m [build 4/4] RUN CGO_ENABLED=0 go build -o /out/api ./cmd/api\n" +
	"\x1b[36m#6\x1b[0m exporting to image\n" +
	"\x1b[36m#6\x1b[0m pushing \x1b[38;5;39mharbor.example.com/shop/api:4f9c2e1\x1b[0m \x1b[32mdone\x1b[0m\n" +
	"\x1b[1m$ trivy image --severity HIGH,CRITICAL harbor.example.com/shop/api:4f9c2e1\x1b[0m\n" +
	"┌────────────────────┬────────────────┬──────────┬───────────────────┐\n" +
	"│      Library       │ Vulnerability  │ Severity │ Installed Version │\n" +
	"├────────────────────┼────────────────┼──────────┼───────────────────┤\n" +
	"│ golang.org/x/net   │ CVE-2026-10001 │ \x1b[38;2;255;90;60mHIGH\x1b[0m     │ 0.38.0            │\n" +
	"│ example.org/pdfgen │ CVE-2026-10002 │ \x1b[1;41mCRITICAL\x1b[0m │ 1.2.3             │\n" +
	"└────────────────────┴────────────────┴──────────┴───────────────────┘\n" +
	"\x1b[1;31m--- FAIL: 1 CRITICAL vulnerability; the gate allows none\x1b[0m\n" +
	"token used: ***\n"

// With SLUICE_SCREENSHOTS=1, a picture of the log view for the README:
// docs/images/log.png.
func TestLogPageScreenshot(t *testing.T) {
	if os.Getenv("SLUICE_SCREENSHOTS") == "" {
		t.Skip("SLUICE_SCREENSHOTS=1 saves the screenshot")
	}
	e := start(t)
	tok := token(t, e.home, "alice")
	w, err := e.srv.Stack().Logs.Writer("shop-4f9c2e1-17", "release", "scan")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, screenshotLog)
	w.Close()
	ctx := browse(t, e.url, tok, "/runs/shop-4f9c2e1-17/log?"+logQuery("release", "scan")+"#L22-L25")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 640)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the log", `sluiceLog.done() && `+inView(22), 20*time.Second)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "images", "log.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
