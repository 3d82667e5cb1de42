package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

// browser is a client with a cookie jar that does not follow redirects,
// signed in (or not) to a server's web view.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do makes a request and returns the status, the Location and the body.
func (b *browser) do(req *http.Request) (int, string, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

func (b *browser) get(path string) (int, string, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) (int, string, string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfMeta = regexp.MustCompile(`<meta name="sluice-csrf" content="([0-9a-f]*)">`)

// signIn signs in with an API token made for user, and reads the
// session's CSRF token from a page.
func (b *browser) signIn(home, user string) {
	b.t.Helper()
	tok := token(b.t, home, user)
	if code, loc, body := b.post("/login", url.Values{"token": {tok}, "next": {"/runs"}}); code != http.StatusSeeOther || loc != "/runs" {
		b.t.Fatalf("signing in as %s: %d %s %s", user, code, loc, body)
	}
	b.readCSRF()
}

func (b *browser) readCSRF() {
	b.t.Helper()
	code, _, body := b.get("/schedules")
	m := csrfMeta.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil || m[1] == "" {
		b.t.Fatalf("no CSRF token on a page: %d\n%s", code, body)
	}
	b.csrf = m[1]
}

// waitListed waits until the runs page (path, a query) lists every run.
func (b *browser) waitListed(path string, runs ...string) string {
	b.t.Helper()
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var code int
		code, _, body = b.get(path)
		all := code == http.StatusOK
		for _, r := range runs {
			all = all && strings.Contains(body, `data-run="`+r+`"`)
		}
		if all {
			return body
		}
	}
	b.t.Fatalf("%s does not list %v within 30s:\n%s", path, runs, body)
	return ""
}

func rowsOf(body string) int { return strings.Count(body, `class="run-row"`) }

// waitState waits until a run's stage is in state.
func waitState(t *testing.T, e *env, run, stage string, state engine.State) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, err := engine.Status(context.Background(), e.client, run)
		if s, ok := st.Stage(stage); err == nil && ok && s.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stage %s of run %s is not %s within 30s: %+v %v", stage, run, state, st, err)
		}
	}
}

// The pages need a session; signed in with a token, the runs page lists
// runs with their filters and pages, and the run page shows the run with
// links to GitHub and its steps' logs.
func TestWebRunsAndRunPages(t *testing.T) {
	e := start(t)
	b := newBrowser(t, e.url)

	// Signed out: pages send you to sign in and back; actions are refused.
	if code, loc, _ := b.get("/"); code != http.StatusFound || loc != "/runs" {
		t.Errorf("/: %d %s, want a redirect to /runs", code, loc)
	}
	if code, loc, _ := b.get("/runs?pipeline=web"); code != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape("/runs?pipeline=web") {
		t.Errorf("/runs signed out: %d %q", code, loc)
	}
	if code, _, _ := b.post("/runs/x/cancel", nil); code != http.StatusUnauthorized {
		t.Errorf("a POST signed out: %d, want 401", code)
	}
	if code, _, body := b.get("/login"); code != http.StatusOK || strings.Contains(body, "/login/github") {
		t.Errorf("the sign-in page of a server without GitHub sign-in: %d, offers GitHub: %v", code, strings.Contains(body, "/login/github"))
	}
	b.signIn(e.home, "alice")

	// Two runs of web (a push, a pull request) and one of gated.
	base := e.commit("", map[string]string{".sluice/web.hcl": webPipeline, "deploy/.sluice/gated.hcl": gatedPipeline, "TestWebRunsAndRunPages": ""})
	head := e.commit(base, map[string]string{"src/main.go": "package main"})
	e.pushNew("web-1", head, "add main")
	push := e.result("web-1")
	other := e.commit(head, map[string]string{"src/x.go": "package main"})
	pr := fixture(t, "pull_request/synchronize.payload.json", func(m map[string]any) {
		p := m["pull_request"].(map[string]any)
		p["head"].(map[string]any)["sha"] = other
		p["base"].(map[string]any)["ref"] = "main"
		m["number"] = 7
		p["number"] = 7
		e.gh.AddPull(repo, 7, other, []string{"src/x.go"})
	})
	if code, out := e.deliver("pull_request", "web-2", pr); code != http.StatusAccepted {
		t.Fatalf("pull_request: %d %s", code, out)
	}
	prRuns := e.result("web-2").Runs
	var webPush, gated string
	for _, r := range push.Runs {
		switch r.Pipeline {
		case "web":
			webPush = r.RunID
		case "gated":
			gated = r.RunID
		}
	}
	if webPush == "" || gated == "" || len(prRuns) != 1 {
		t.Fatalf("the push started %+v and the pull request %+v", push, prRuns)
	}
	webPR := prRuns[0].RunID

	// (Other tests' runs share the Temporal server: the filters here
	// name these commits.)
	body := b.waitListed("/runs?per_page=200", webPush, webPR, gated)
	for _, want := range []string{"Codertocat", "pull_request", head[:7], `href="/runs/` + webPush + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the runs page lacks %q", want)
		}
	}
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"commit", "sha=" + head, []string{webPush, gated}},
		{"pipeline", "pipeline=gated&sha=" + head, []string{gated}},
		{"event", "event=pull_request&sha=" + other, []string{webPR}},
		{"pipeline and event", "pipeline=web&event=push&sha=" + head, []string{webPush}},
		{"branch", "branch=main&pipeline=web&sha=" + head, []string{webPush}},
		{"status", "status=running&sha=" + head, []string{webPush, gated}},
		{"another status", "status=failed&sha=" + head, nil},
		{"repository", "repo=" + url.QueryEscape(repo) + "&pipeline=gated&sha=" + head, []string{gated}},
		{"nothing", "repo=nobody/nothing", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := b.waitListed("/runs?"+tc.query, tc.want...)
			if rowsOf(body) != len(tc.want) {
				t.Errorf("%d rows, want %d (%v)", rowsOf(body), len(tc.want), tc.want)
			}
			if len(tc.want) == 0 && !strings.Contains(body, "No runs match these filters") {
				t.Errorf("no 'no runs' row")
			}
		})
	}
	if code, _, body := b.get("/runs?pipeline=a'b"); code != http.StatusBadRequest || !strings.Contains(body, "has a quote in it") {
		t.Errorf("a quote in a filter: %d", code)
	}
	// Pages of one run: two pages, each linking to the next and back.
	seen := map[string]bool{}
	path := "/runs?per_page=1&sha=" + head
	for i := 1; path != ""; i++ {
		_, _, body := b.get(path)
		if rowsOf(body) != 1 {
			t.Fatalf("page %d has %d rows", i, rowsOf(body))
		}
		seen[regexp.MustCompile(`data-run="([^"]+)"`).FindStringSubmatch(body)[1]] = true
		if i > 1 && !strings.Contains(body, `rel="prev"`) {
			t.Errorf("page %d links to no newer page", i)
		}
		next := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(body)
		path = ""
		if next != nil {
			path = strings.ReplaceAll(next[1], "&amp;", "&")
		}
		if i > 2 {
			t.Fatal("more than two pages of two runs")
		}
	}
	if len(seen) != 2 || !seen[webPush] || !seen[gated] {
		t.Errorf("the pages showed %v, want %s and %s", seen, webPush, gated)
	}
	// The rows alone, which the page fetches to stay current.
	if code, _, body := b.get("/runs?part=rows&pipeline=gated"); code != http.StatusOK || strings.Contains(body, "<html") || !strings.Contains(body, gated) {
		t.Errorf("the rows fragment: %d\n%s", code, body)
	}

	// The run page: its graph, stages and steps, links to the commit, the
	// pull request and the step's log.
	code, _, body := b.get("/runs/" + webPR)
	if code != http.StatusOK {
		t.Fatalf("run page: %d\n%s", code, body)
	}
	web := strings.TrimSuffix(e.gh.URL(), "/")
	for _, want := range []string{
		`<svg class="graph"`, `data-stage="build"`, `id="stage-0"`,
		`href="` + web + `/Codertocat/Hello-World/pull/7"`, `/Codertocat/Hello-World/commit/`,
		`href="/runs/` + webPR + `/log?stage=build&amp;step=hello"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the run page lacks %q", want)
		}
	}
	// A server that exports no traces shows no trace ID.
	if strings.Contains(body, engine.TraceID(webPR)) {
		t.Errorf("the run page shows a trace ID, and this server exports no traces")
	}
	// Checks' details links: the run, and the run at a stage.
	if code, _, body := b.get("/runs/" + webPR + "/stages/build"); code != http.StatusOK || !strings.Contains(body, `class="stage focus" id="stage-0"`) {
		t.Errorf("the run page at a stage: %d, focused: %v", code, strings.Contains(body, `stage focus`))
	}
	if code, _, _ := b.get("/runs/" + webPR + "/stages/nope"); code != http.StatusNotFound {
		t.Errorf("a stage that is not there: %d", code)
	}
	if code, _, body := b.get("/runs/no-such-run"); code != http.StatusNotFound || !strings.Contains(body, "There is no run") {
		t.Errorf("a run that is not there: %d", code)
	}
	// Its state for the page's script, with an ETag.
	req, _ := http.NewRequest("GET", e.url+"/runs/"+webPR+"/live", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var live struct {
		State  string `json:"state"`
		Stages []struct {
			ID    string                   `json:"id"`
			Steps []struct{ State string } `json:"steps"`
		} `json:"stages"`
	}
	err = json.NewDecoder(resp.Body).Decode(&live)
	resp.Body.Close()
	if err != nil || len(live.Stages) != 1 || live.Stages[0].ID != "build" || len(live.Stages[0].Steps) != 1 {
		t.Errorf("live state %+v, %v", live, err)
	}
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if code, _, _ := b.do(req); code != http.StatusNotModified && code != http.StatusOK {
		t.Errorf("the live state again with its ETag: %d", code)
	}

	// Runners and schedules render.
	for _, p := range []string{"/runners", "/schedules", "/runners?part=rows"} {
		if code, _, body := b.get(p); code != http.StatusOK {
			t.Errorf("%s: %d\n%s", p, code, body)
		}
	}
}

// Actions carry the session's CSRF token, and approving checks the
// stage's approvers as the API does; cancel and retry take the API's
// paths.
func TestWebActions(t *testing.T) {
	e := start(t)
	e.gh.AddTeam("Codertocat", "sre", "alice")
	// (A commit of its own: runs are named after their commit, and other
	// tests' runs share the Temporal server.)
	head := e.commit("", map[string]string{".sluice/gated.hcl": gatedPipeline, "TestWebActions": ""})
	e.pushNew("gate-web", head, "x")
	run := e.result("gate-web").Runs[0].RunID
	waitState(t, e, run, "deploy", engine.StateWaitingApproval)

	alice, bob := newBrowser(t, e.url), newBrowser(t, e.url)
	alice.signIn(e.home, "alice")
	bob.signIn(e.home, "bob")

	// bob sees the gate but no buttons; alice sees them.
	if _, _, body := bob.get("/runs/" + run); !strings.Contains(body, "You are not one of its approvers") || strings.Contains(body, `value="approve"`) {
		t.Errorf("bob's run page offers the approval")
	}
	if _, _, body := alice.get("/runs/" + run); !strings.Contains(body, `value="approve"`) || !strings.Contains(body, "team:sre, carol") {
		t.Errorf("alice's run page does not offer the approval")
	}
	approve := url.Values{"stage": {"deploy"}, "decision": {"approve"}, "reason": {"looks good"}}

	// Without the token, with another session's, with a stale one: 403.
	for name, csrf := range map[string]string{"none": "", "bob's": bob.csrf, "made up": strings.Repeat("0", 32)} {
		form := url.Values{"csrf": {csrf}}
		for k, v := range approve {
			form[k] = v
		}
		if code, _, body := alice.post("/runs/"+run+"/approve", form); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("approving with %s CSRF token: %d %s", name, code, body)
		}
	}
	// bob, with his token, is not an approver.
	form := url.Values{"csrf": {bob.csrf}}
	for k, v := range approve {
		form[k] = v
	}
	if code, _, body := bob.post("/runs/"+run+"/approve", form); code != http.StatusForbidden || !strings.Contains(body, "its approvers are team:sre, carol") {
		t.Errorf("bob approving: %d %s", code, body)
	}
	waitState(t, e, run, "deploy", engine.StateWaitingApproval)
	// alice is, through the team.
	form.Set("csrf", alice.csrf)
	if code, loc, body := alice.post("/runs/"+run+"/approve", form); code != http.StatusSeeOther || loc != "/runs/"+run+"/stages/deploy" {
		t.Fatalf("alice approving: %d %s %s", code, loc, body)
	}
	st, _ := engine.Status(context.Background(), e.client, run)
	if a := st.Stages[0].Approval; a == nil || a.By != "alice" || a.Decision != engine.DecisionApproved || a.Reason != "looks good" {
		t.Errorf("approval %+v, want approved by alice", a)
	}
	if _, _, body := alice.get("/runs/" + run); !strings.Contains(body, "Approved by alice: looks good") {
		t.Errorf("the run page does not say who approved")
	}

	// Cancelling and retrying take write access to the repository on
	// GitHub: bob, who has read, has no buttons and is refused (403);
	// alice, who has write, has them.
	e.gh.SetPermission("Codertocat/Hello-World", "alice", "write")
	e.gh.SetPermission("Codertocat/Hello-World", "bob", "read")
	if _, _, body := bob.get("/runs/" + run); strings.Contains(body, `id="cancel"`) || strings.Contains(body, "Retry from here") ||
		!strings.Contains(body, "bob may not cancel or retry runs of Codertocat/Hello-World: that takes write access to the repository on GitHub, and bob has read.") {
		t.Errorf("bob's run page offers cancel or retry, or does not say why not")
	}
	if _, _, body := alice.get("/runs/" + run); !strings.Contains(body, `id="cancel"`) || strings.Contains(body, `id="no-operate"`) {
		t.Errorf("alice's run page does not offer cancel")
	}
	for _, act := range []string{"cancel", "retry"} {
		if code, _, body := bob.post("/runs/"+run+"/"+act, url.Values{"csrf": {bob.csrf}}); code != http.StatusForbidden || !strings.Contains(body, "bob may not "+act+" runs of Codertocat/Hello-World: that takes write access") {
			t.Errorf("bob %s: %d %s; want 403 saying write access is needed", act, code, body)
		}
	}

	// Retrying a running run is refused (409), cancelling it works, then
	// a retry of the cancelled run starts again.
	if code, _, body := alice.post("/runs/"+run+"/retry", url.Values{"csrf": {alice.csrf}}); code != http.StatusConflict || !strings.Contains(body, "still running") {
		t.Errorf("retrying a running run: %d %s", code, body)
	}
	if code, _, _ := alice.post("/runs/"+run+"/cancel", url.Values{}); code != http.StatusForbidden {
		t.Errorf("cancelling without a CSRF token: %d", code)
	}
	if code, loc, body := alice.post("/runs/"+run+"/cancel", url.Values{"csrf": {alice.csrf}}); code != http.StatusSeeOther || loc != "/runs/"+run {
		t.Fatalf("cancelling: %d %s %s", code, loc, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := engine.Wait(ctx, e.client, run); err != nil || st.State != engine.StateCancelled {
		t.Fatalf("after cancel the run is %s (%v)", st.State, err)
	}
	if code, _, body := alice.post("/runs/"+run+"/cancel", url.Values{"csrf": {alice.csrf}}); code != http.StatusConflict {
		t.Errorf("cancelling a finished run: %d %s", code, body)
	}
	if code, _, body := alice.post("/runs/"+run+"/retry", url.Values{"csrf": {alice.csrf}, "from": {"deploy/x"}}); code != http.StatusSeeOther {
		t.Errorf("retrying from deploy/x: %d %s", code, body)
	}
	waitState(t, e, run, "deploy", engine.StateWaitingApproval)
}

// Signing in with GitHub through the App: to GitHub's authorize page and
// back, the code exchanged, the login read; someone the App's
// installations do not reach is refused, and so is a callback whose state
// this browser did not start.
func TestWebGitHubSignIn(t *testing.T) {
	var gh struct{ id, secret string }
	e := startWithGitHub(t, func(f *githubfake.Server, c *server.Config) {
		gh.id, gh.secret = f.OAuthClient()
		c.GitHub.ClientID, c.GitHub.ClientSecret = gh.id, gh.secret
	})
	e.gh.SetPermission(repo, "octocat", "write")
	e.gh.SetCallbackURL(e.url + "/login/github/callback")

	b := newBrowser(t, e.url)
	if _, _, body := b.get("/login?next=/runners"); !strings.Contains(body, `href="/login/github?next=%2frunners"`) {
		t.Errorf("the sign-in page does not offer GitHub:\n%s", body)
	}
	// follow goes from /login/github through the fake and back, as a
	// browser does, and returns the last answer.
	follow := func(b *browser, path string) (int, string, string) {
		code, loc, body := b.get(path)
		for i := 0; i < 5 && code >= 300 && code < 400; i++ {
			req, _ := http.NewRequest("GET", loc, nil)
			if strings.HasPrefix(loc, "/") {
				req, _ = http.NewRequest("GET", e.url+loc, nil)
			}
			code, loc, body = b.do(req)
		}
		return code, loc, body
	}
	e.gh.SignInAs("octocat")
	code, loc, body := b.get("/login/github?next=/runners")
	if code != http.StatusFound || !strings.HasPrefix(loc, strings.TrimSuffix(e.gh.URL(), "/")+"/login/oauth/authorize?") {
		t.Fatalf("/login/github: %d %s", code, loc)
	}
	u, _ := url.Parse(loc)
	if u.Query().Get("client_id") != gh.id || u.Query().Get("redirect_uri") != e.url+"/login/github/callback" || len(u.Query().Get("state")) < 32 {
		t.Errorf("the authorize URL %s", loc)
	}
	if code, _, body = follow(b, "/login/github?next=/runners"); code != http.StatusOK || !strings.Contains(body, `<span class="user">octocat</span>`) || !strings.Contains(body, "<h1>Runners</h1>") {
		t.Errorf("signed in with GitHub, the next page: %d\n%s", code, body)
	}

	// Someone with no access to the App's repositories is refused.
	m := newBrowser(t, e.url)
	e.gh.SignInAs("mallory")
	if code, _, body := follow(m, "/login/github"); code != http.StatusForbidden || !strings.Contains(body, "mallory has no access to any repository") {
		t.Errorf("mallory signing in: %d\n%s", code, body)
	}
	if code, _, _ := m.get("/runs"); code != http.StatusSeeOther {
		t.Errorf("mallory has a session: %d", code)
	}
	// A callback this browser did not start (a code slipped in by someone
	// else) signs nobody in.
	e.gh.SignInAs("octocat")
	_, loc, _ = newBrowser(t, e.url).get("/login/github")
	req, _ := http.NewRequest("GET", loc, nil)
	_, cb, _ := m.do(req) // the fake's redirect back, with a code
	if code, _, body := m.get(strings.TrimPrefix(cb, e.url)); code != http.StatusBadRequest || !strings.Contains(body, "not started here") {
		t.Errorf("a callback another browser started: %d\n%s", code, body)
	}
	// Declined on GitHub.
	d := newBrowser(t, e.url)
	e.gh.DenyAuthorization()
	if code, _, body := follow(d, "/login/github"); code != http.StatusForbidden || !strings.Contains(body, "declined") {
		t.Errorf("declined: %d\n%s", code, body)
	}
}

// New run: the web view's form starts a manual run as the API does, and
// goes to it; what cannot start is said on the form, kept as typed.
func TestWebNewRun(t *testing.T) {
	dir := t.TempDir()
	repoDir := gitProject(t, dir, "dry.hcl", []byte(dryPipeline))
	e := startWith(t, func(c *server.Config) {
		c.Repositories = []server.Repository{{Name: "dry", URL: repoDir}}
	})
	alice := newBrowser(t, e.url)
	alice.signIn(e.home, "alice")

	if code, _, body := alice.get("/runs"); code != http.StatusOK || !strings.Contains(body, `href="/runs/new"`) {
		t.Errorf("the runs page has no New run link: %d", code)
	}
	code, _, body := alice.get("/runs/new?repo=dry&ref=main")
	if code != http.StatusOK || !strings.Contains(body, `<option value="dry">`) || !strings.Contains(body, `name="repo" value="dry"`) || !strings.Contains(body, `name="ref" value="main"`) {
		t.Fatalf("the form: %d\n%s", code, body)
	}
	form := func(fields ...string) url.Values {
		v := url.Values{"csrf": {alice.csrf}, "repo": {"dry"}, "ref": {"main"}}
		for i := 0; i+1 < len(fields); i += 2 {
			v.Set(fields[i], fields[i+1])
		}
		return v
	}
	if code, _, _ := alice.post("/runs/new", url.Values{"repo": {"dry"}, "ref": {"main"}}); code != http.StatusForbidden {
		t.Errorf("without a CSRF token: %d", code)
	}
	for _, tt := range []struct {
		name   string
		form   url.Values
		status int
		says   string
	}{
		{"a branch that does not exist", form("ref", "nope"), http.StatusNotFound, `repository &#34;dry&#34; has no ref refs/heads/nope`},
		{"an input that is not name=value", form("inputs", "target"), http.StatusBadRequest, `Input line 1, &#34;target&#34;, is not name=value.`},
		{"a pipeline that is not there", form("pipeline", "nosuch"), http.StatusUnprocessableEntity, "Nothing to run."},
		{"a repository the server does not know", form("repo", "acme/elsewhere"), http.StatusNotFound, "is not one of this server&#39;s repositories"},
	} {
		code, _, body := alice.post("/runs/new", tt.form)
		if code != tt.status || !strings.Contains(body, tt.says) || !strings.Contains(body, `name="ref" value="`+tt.form.Get("ref")+`"`) {
			t.Errorf("%s: %d, want %d saying %q on the form as typed:\n%s", tt.name, code, tt.status, tt.says, body)
		}
	}

	code, loc, body := alice.post("/runs/new", form("dry_run", "1"))
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/runs/dry-") {
		t.Fatalf("starting a dry run: %d %s\n%s", code, loc, body)
	}
	run := strings.TrimPrefix(loc, "/runs/")
	p, err := engine.RunPlan(context.Background(), e.client, run)
	if err != nil {
		t.Fatal(err)
	}
	if p.Git.Event != "manual" || p.Git.Actor != "alice" || p.Git.Branch != "main" || p.Stages[1].Skip != "when is false: !pipeline.dry_run" {
		t.Errorf("the run's plan: %+v, smoke skip %q; want a manual dry run of main by alice", p.Git, p.Stages[1].Skip)
	}
	if st, err := engine.Status(context.Background(), e.client, run); err != nil || !st.DryRun {
		t.Errorf("the run is not a dry run: %+v %v", st, err)
	}
}
