package server

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluice-ci/sluice/engine/logstore"
	"github.com/sluice-ci/sluice/runners/local"
)

// sseEvent is one server-sent event as an EventSource reads it.
type sseEvent struct {
	ID    string // "" when the event has no id field
	Event string
	Data  string
}

// parseEvents reads a stream of events, leaving out the retry field and
// comments.
func parseEvents(t testing.TB, s string) []sseEvent {
	t.Helper()
	var out []sseEvent
	for block := range strings.SplitSeq(s, "\n\n") {
		if block == "" {
			continue
		}
		var ev sseEvent
		any := false
		for f := range strings.SplitSeq(block, "\n") {
			name, value, _ := strings.Cut(f, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "id":
				ev.ID, any = value, true
			case "event":
				ev.Event, any = value, true
			case "data":
				ev.Data, any = value, true
			case "retry", "":
			default:
				t.Fatalf("field %q in %q", name, block)
			}
		}
		if any {
			out = append(out, ev)
		}
	}
	return out
}

// stream runs a logStream over chunks, as logEvents does: a partial line
// is sent after each chunk.
func stream(t testing.TB, after int, complete bool, chunks ...string) []sseEvent {
	t.Helper()
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	l := &logStream{w: w, after: after}
	for _, c := range chunks {
		l.write([]byte(c))
		l.partial()
	}
	if complete {
		l.end()
	}
	w.Flush()
	return parseEvents(t, b.String())
}

func lineEvent(n int, data string) sseEvent { return sseEvent{ID: fmt.Sprint(n), Data: data} }

func TestLogStream(t *testing.T) {
	long := strings.Repeat("x", maxLogLine-1) + "é" + strings.Repeat("y", 10) // é crosses the limit
	for _, tc := range []struct {
		name     string
		after    int
		complete bool
		chunks   []string
		want     []sseEvent
	}{
		{name: "lines", complete: true, chunks: []string{"one\ntwo\n"},
			want: []sseEvent{lineEvent(1, "one"), lineEvent(2, "two"), {Event: "end", Data: "2"}}},
		{name: "a line in pieces", chunks: []string{"on", "e\ntw", "o"},
			want: []sseEvent{{Event: "partial", Data: "on"}, lineEvent(1, "one"), {Event: "partial", Data: "tw"}, {Event: "partial", Data: "two"}}},
		{name: "the last line without a newline ends complete", complete: true, chunks: []string{"one\ntwo"},
			want: []sseEvent{lineEvent(1, "one"), {Event: "partial", Data: "two"}, lineEvent(2, "two"), {Event: "end", Data: "2"}}},
		{name: "an unchanged partial line is not sent again", chunks: []string{"a", "", "b\n"},
			want: []sseEvent{{Event: "partial", Data: "a"}, lineEvent(1, "ab")}},
		{name: "empty lines count", complete: true, chunks: []string{"\n\nx\n"},
			want: []sseEvent{lineEvent(1, ""), lineEvent(2, ""), lineEvent(3, "x"), {Event: "end", Data: "3"}}},
		{name: "resumed after line 2", after: 2, complete: true, chunks: []string{"one\ntwo\nthree\n"},
			want: []sseEvent{lineEvent(3, "three"), {Event: "end", Data: "3"}}},
		{name: "resumed in a partial line", after: 1, chunks: []string{"one\ntw"},
			want: []sseEvent{{Event: "partial", Data: "tw"}}},
		{name: "resumed after every line", after: 2, complete: true, chunks: []string{"one\ntwo\n"},
			want: []sseEvent{{Event: "end", Data: "2"}}},
		{name: "colour carried over skipped lines", after: 1, chunks: []string{"\x1b[31mred\nstill red\n"},
			want: []sseEvent{lineEvent(2, `<span class="f1">still red</span>`)}},
		{name: "escaped", chunks: []string{"<img src=x onerror=alert(1)>\r\n"},
			want: []sseEvent{lineEvent(1, "&lt;img src=x onerror=alert(1)&gt;")}},
		{name: "a carriage return does not end an event", chunks: []string{"50%\r100%\rdone\n"},
			want: []sseEvent{lineEvent(1, "done")}},
		{name: "a long line is cut", chunks: []string{long + "\n"},
			want: []sseEvent{lineEvent(1, long[:maxLogLine-1]), lineEvent(2, "é"+strings.Repeat("y", 10))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := stream(t, tc.after, tc.complete, tc.chunks...)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// completeLines is the line events of a stream, without the partial ones.
func completeLines(evs []sseEvent) []sseEvent {
	var out []sseEvent
	for _, e := range evs {
		if e.Event != "partial" {
			out = append(out, e)
		}
	}
	return out
}

// However a log arrives in pieces, and wherever a reader resumes, the
// lines it is sent are the log's lines: none lost, none twice, the same
// numbers, the same colours.
func FuzzLogStream(f *testing.F) {
	f.Add([]byte("one\ntwo\n\x1b[32mthree\nfour"), uint16(5), uint16(2), true)
	f.Add([]byte("a\r\nb\rc\n\n\n"), uint16(1), uint16(1), false)
	f.Add(bytes.Repeat([]byte("z"), maxLogLine*2+3), uint16(7000), uint16(1), true)
	f.Fuzz(checkStream)
}

// Many logs of lines, escapes, carriage returns and long lines, in pieces:
// FuzzLogStream's check without the fuzzer's build, which is slow for this
// package.
func TestLogStreamRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	parts := []string{"\n", "\r", "\r\n", "a", "line ", "\x1b[1;31m", "\x1b[0m", "\x1b[38;5;", "2;200m", "é", "\xff", strings.Repeat("x", maxLogLine/3)}
	for range 300 {
		var b strings.Builder
		for range r.IntN(40) {
			b.WriteString(parts[r.IntN(len(parts))])
		}
		checkStream(t, []byte(b.String()), uint16(r.IntN(1<<16)), uint16(r.IntN(1<<16)), r.IntN(2) == 0)
	}
}

// checkStream checks that a log cut into pieces of step bytes, read in
// full and resumed after a line, gives the lines it gives read at once.
func checkStream(t *testing.T, log []byte, step uint16, after uint16, complete bool) {
	whole := completeLines(stream(t, 0, complete, string(log)))
	var chunks []string
	n := int(step%512) + 1
	if len(log) > 4096 {
		n = int(step) + 1
	}
	for rest := log; len(rest) > 0; {
		k := min(n, len(rest))
		chunks = append(chunks, string(rest[:k]))
		rest = rest[k:]
	}
	pieces := completeLines(stream(t, 0, complete, chunks...))
	if diff := cmp.Diff(whole, pieces); diff != "" {
		t.Fatalf("in pieces of %d bytes (-whole +pieces):\n%s", n, diff)
	}
	lines := 0
	for _, e := range whole {
		if e.ID != "" {
			lines++
		}
	}
	// The backlog is the same lines.
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	bare := &logStream{w: w, bare: true}
	for _, c := range chunks {
		bare.write([]byte(c))
	}
	if complete {
		bare.end()
	}
	w.Flush()
	var want strings.Builder
	for _, e := range whole {
		if e.ID != "" {
			want.WriteString(e.Data + "\n")
		}
	}
	if b.String() != want.String() {
		t.Fatalf("the backlog %q, the events' lines %q", b.String(), want.String())
	}
	k := int(after) % (lines + 1)
	resumed := completeLines(stream(t, k, complete, chunks...))
	if diff := cmp.Diff(whole[k:], resumed, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("resumed after %d (-want +got):\n%s", k, diff)
	}
}

// The backlog is the complete lines, bare, the last one only if the log is
// complete.
func TestLogStreamBare(t *testing.T) {
	for _, complete := range []bool{false, true} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		l := &logStream{w: w, bare: true}
		l.write([]byte("one\n\x1b[31mtwo\n<thr"))
		l.partial()
		if complete {
			l.end()
		}
		w.Flush()
		want := "one\n<span class=\"f1\">two</span>\n"
		if complete {
			want += "<span class=\"f1\">&lt;thr</span>\n"
		}
		if b.String() != want {
			t.Errorf("complete %v: %q, want %q", complete, b.String(), want)
		}
	}
}

// A quiet stream sends comments, so that proxies keep it open, and still
// sends the line that comes after them.
func TestLogEventsHeartbeat(t *testing.T) {
	defer func(d time.Duration) { logHeartbeat = d }(logHeartbeat)
	logHeartbeat = 50 * time.Millisecond
	home := t.TempDir()
	tokens, err := OpenTokens(TokensFile(home))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logstore.FS{Dir: filepath.Join(home, "logs")}
	s := &Server{tokens: tokens, stack: &local.Stack{Logs: logs}}
	mux := http.NewServeMux()
	s.webLogRoutes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	w, err := logs.Writer("r", "build", "quiet")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/runs/r/log/events?stage=build&step=quiet", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readLine := func() string {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for beats := 0; beats < 2; {
		if readLine() == ": keep-alive\n" {
			beats++
		}
	}
	fmt.Fprintln(w, "after the quiet")
	for l := readLine(); l != "data: after the quiet\n"; l = readLine() {
		if l != "id: 1\n" && l != "\n" && l != ": keep-alive\n" {
			t.Fatalf("%q", l)
		}
	}
}
