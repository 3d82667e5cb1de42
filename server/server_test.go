package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/sluice-ci/sluice/cmd/sluice/cli"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
	"github.com/sluice-ci/sluice/server/webhook"
)

var (
	tsOnce sync.Once
	ts     *temporaltest.TestServer
	tsErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if ts != nil {
		ts.Stop()
	}
	os.Exit(code)
}

const secret = "It's a Secret to Everybody"

const repo = "Codertocat/Hello-World"

const installation = 1

const webPipeline = `
pipeline "web" {
  on "push" {
    branches = ["main"]
    paths    = ["src/**", ".sluice/**"]
  }
  on "pull_request" { branches = ["main"] }
  on "tag" { pattern = "v*" }
}

stage "build" {
  step "run" "hello" {
    command = ["echo", "${git.event} ${git.branch} ${git.short_sha}"]
  }
}
`

type env struct {
	t      *testing.T
	gh     *githubfake.Server
	srv    *server.Server
	client client.Client
	url    string
	home   string
	// clone is the clone URL webhooks give, when runners clone.
	clone string
}

// start brings up a server on the shared Temporal test server, with no
// runner (runs are started, not run), as the GitHub App of a fake GitHub.
func start(t *testing.T) *env {
	t.Helper()
	return startWith(t, func(*server.Config) {})
}

// sharedTemporal starts the Temporal test server the tests share, once.
func sharedTemporal() {
	tsOnce.Do(func() {
		ts = temporaltest.NewServer(temporaltest.WithBaseClientOptions(client.Options{Logger: nil}))
	})
}

// startWith is start with the configuration changed by set.
func startWith(t *testing.T, set func(*server.Config)) *env {
	t.Helper()
	return startWithGitHub(t, func(_ *githubfake.Server, c *server.Config) { set(c) })
}

// startWithGitHub is startWith for a configuration that needs the fake
// GitHub (its App's OAuth client, say).
func startWithGitHub(t *testing.T, set func(*githubfake.Server, *server.Config)) *env {
	t.Helper()
	sharedTemporal()
	gh := githubfake.New(t)
	gh.AddRepo(repo, installation)
	home := t.TempDir()
	key := filepath.Join(home, "app.pem")
	if err := os.WriteFile(key, gh.PrivateKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Listen: "127.0.0.1:0", Home: home,
		TemporalAddress: ts.GetFrontendHostPort(), Namespace: ts.GetDefaultNamespace(),
		NoRunner: true,
		GitHub:   server.GitHubConfig{AppID: gh.AppID, PrivateKeyFile: key, WebhookSecrets: []string{"old secret", secret}, APIURL: gh.URL()},
		// As with the embedded Temporal, though this one is not: the
		// deliveries go through the inbox.
		Inbox: server.InboxOn,
	}
	set(gh, &cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &env{t: t, gh: gh, srv: s, client: s.Stack().Client, url: s.URL(), home: home}
}

// fixture reads a real GitHub payload and sets fields in it.
func fixture(t *testing.T, file string, set func(m map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("webhook", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["installation"] = map[string]any{"id": installation}
	set(m)
	out, _ := json.Marshal(m)
	return out
}

func pushPayload(t *testing.T, ref, before, after, message string) []byte {
	return fixture(t, "push/with-new-branch.payload.json", func(m map[string]any) {
		m["ref"], m["before"], m["after"] = ref, before, after
		m["created"], m["deleted"], m["forced"] = before == strings.Repeat("0", 40), false, false
		m["head_commit"] = map[string]any{"id": after, "message": message}
	})
}

// deliver posts a signed delivery and returns the status and body.
func (e *env) deliver(event, id string, body []byte) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// result waits for a delivery's result.
func (e *env) result(id string) server.DeliveryResult {
	e.t.Helper()
	e.forwarded()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res server.DeliveryResult
	if err := e.client.GetWorkflow(ctx, "github-"+id, "").Get(ctx, &res); err != nil {
		e.t.Fatalf("delivery %s: %v", id, err)
	}
	return res
}

// forwarded waits until the server's inbox has handed every delivery it
// took to Temporal.
func (e *env) forwarded() {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.srv.InboxPending() > 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d deliveries still in the server's inbox after 30 s", e.srv.InboxPending())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pushNew delivers the push of a new branch main at head, which the
// server must take (202).
// authed sends a request to the server's path with the API token tok and
// returns the answer (its body read and closed, its trailers there) and
// its body.
func (e *env) authed(method, path, tok string, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *env) pushNew(id, head, message string) {
	e.t.Helper()
	if code, out := e.deliver("push", id, pushPayload(e.t, "refs/heads/main", strings.Repeat("0", 40), head, message)); code != http.StatusAccepted {
		e.t.Fatalf("push %s: %d %s", id, code, out)
	}
}

func (e *env) commit(parent string, files map[string]string) string {
	return e.gh.Commit(repo, parent, files)
}

func TestPushStartsRunOnce(t *testing.T) {
	e := start(t)
	base := e.commit("", map[string]string{".sluice/web.hcl": webPipeline, "README.md": "hi"})
	head := e.commit(base, map[string]string{"src/main.go": "package main"})

	body := pushPayload(t, "refs/heads/main", base, head, "add main")
	code, out := e.deliver("push", "d-1", body)
	if code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, out)
	}
	res := e.result("d-1")
	if len(res.Runs) != 1 || res.Runs[0].Pipeline != "web" || res.Runs[0].Existing {
		t.Fatalf("push started %+v, want one new run of web", res)
	}
	p, err := engine.RunPlan(context.Background(), e.client, res.Runs[0].RunID)
	if err != nil {
		t.Fatal(err)
	}
	want := plan.Git{SHA: head, ShortSHA: head[:7], Branch: "main", Ref: "refs/heads/main", Event: "push", Repo: repo, Actor: "Codertocat", ChangedFiles: []string{"src/main.go"}}
	if diff := cmp.Diff(want, p.Git); diff != "" {
		t.Errorf("the run's git (-want +got):\n%s", diff)
	}

	// A redelivery (same GUID) finds the delivery and starts nothing.
	if code, out := e.deliver("push", "d-1", body); code != http.StatusOK || !strings.Contains(out, `"duplicate": true`) {
		t.Errorf("redelivery: %d %s", code, out)
	}
	// A pull request of the same head finds the push's run.
	pr := fixture(t, "pull_request/synchronize.payload.json", func(m map[string]any) {
		p := m["pull_request"].(map[string]any)
		p["head"].(map[string]any)["sha"] = head
		p["base"].(map[string]any)["ref"] = "main"
	})
	e.gh.AddPull(repo, 2, head, []string{"src/main.go"})
	if code, out := e.deliver("pull_request", "d-2", pr); code != http.StatusAccepted {
		t.Fatalf("pull_request: %d %s", code, out)
	}
	if res2 := e.result("d-2"); len(res2.Runs) != 1 || res2.Runs[0].RunID != res.Runs[0].RunID || !res2.Runs[0].Existing {
		t.Errorf("the pull request of the pushed head started %+v, want the push's run %s", res2.Runs, res.Runs[0].RunID)
	}
	runs, err := engine.List(context.Background(), e.client, fmt.Sprintf("%s = '%s'", engine.AttrSHA.GetName(), head))
	if err == nil && len(runs) > 1 {
		t.Errorf("commit %s has %d runs, want 1", head, len(runs))
	}
}

func TestPathFilters(t *testing.T) {
	e := start(t)
	base := e.commit("", map[string]string{".sluice/web.hcl": webPipeline, "docs/a.md": "a"})
	docs := e.commit(base, map[string]string{"docs/a.md": "b"})
	for _, tc := range []struct {
		name, before string
		forced       bool
		runs         int
	}{
		// Only docs changed: the path filter skips the pipeline.
		{name: "docs only", before: base, runs: 0},
		// A new branch: what changed is unknown, so everything did.
		{name: "new branch", before: strings.Repeat("0", 40), runs: 1},
		// A forced push: the same.
		{name: "forced", before: base, forced: true, runs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "paths-" + strings.ReplaceAll(tc.name, " ", "-")
			body := fixture(t, "push/with-new-branch.payload.json", func(m map[string]any) {
				m["ref"], m["before"], m["after"], m["forced"], m["deleted"] = "refs/heads/main", tc.before, docs, tc.forced, false
				m["head_commit"] = map[string]any{"id": docs, "message": tc.name}
			})
			if code, out := e.deliver("push", id, body); code != http.StatusAccepted {
				t.Fatalf("%d %s", code, out)
			}
			res := e.result(id)
			n := len(res.Runs)
			if n != tc.runs {
				t.Errorf("%d runs, want %d: %+v", n, tc.runs, res)
			}
			if tc.runs == 0 && (len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0].Reason, "path")) {
				t.Errorf("skipped %+v, want the pipeline skipped for its paths", res.Skipped)
			}
		})
	}
}

func TestInvalidPipelineStartsNothing(t *testing.T) {
	e := start(t)
	head := e.commit("", map[string]string{".sluice/web.hcl": "pipeline \"web\" {\n  on \"push\" {}\n}\n\nstage \"build\" {\n  step \"run\" \"x\" {\n    comand = [\"true\"]\n  }\n}\n"})
	e.pushNew("bad-1", head, "typo")
	res := e.result("bad-1")
	if len(res.Runs) != 0 || len(res.Invalid) != 1 {
		t.Fatalf("result %+v, want no run and one invalid pipeline", res)
	}
	if d := res.Invalid[0].Diagnostics; !strings.Contains(d, ".sluice/web.hcl:7:5") || !strings.Contains(d, "command") {
		t.Errorf("diagnostics do not point at .sluice/web.hcl:7:5 or suggest command:\n%s", d)
	}
	// GitHub shows it as a failed check with an annotation on the line.
	checks := e.gh.CheckRuns(repo)
	if len(checks) != 1 || checks[0].Conclusion != "failure" || checks[0].Name != "sluice: .sluice" {
		t.Fatalf("checks %+v, want one failed check sluice: .sluice", checks)
	}
	if a := checks[0].Annotations; len(a) != 1 || a[0].Path != ".sluice/web.hcl" || a[0].StartLine != 7 || !strings.Contains(a[0].Message, "comand") {
		t.Errorf("annotations %+v, want one at .sluice/web.hcl:7 about comand", a)
	}
}

func TestSkipCI(t *testing.T) {
	e := start(t)
	head := e.commit("", map[string]string{".sluice/web.hcl": webPipeline})
	e.pushNew("skip-1", head, "docs [Skip CI]")
	if res := e.result("skip-1"); len(res.Runs) != 0 || !strings.Contains(res.Ignored, "[Skip CI]") {
		t.Errorf("result %+v, want nothing started for [skip ci]", res)
	}
	// A neutral check says so, under the pipeline's name.
	if c := e.gh.CheckRuns(repo); len(c) != 1 || c[0].Name != "web" || c[0].Conclusion != "neutral" || !strings.Contains(c[0].Summary, "[Skip CI]") {
		t.Errorf("checks %+v, want one neutral check web", c)
	}
	// [sluice skip] too; a tag is never skipped.
	head2 := e.commit(head, map[string]string{"src/x": "x"})
	e.pushNew("skip-2", head2, "wip [SLUICE SKIP]")
	if res := e.result("skip-2"); len(res.Runs) != 0 {
		t.Errorf("[sluice skip] started %+v", res)
	}
	tag := fixture(t, "push/with-new-branch.payload.json", func(m map[string]any) {
		m["ref"], m["before"], m["after"] = "refs/tags/v1.0.0", strings.Repeat("0", 40), head2
		m["head_commit"] = map[string]any{"id": head2, "message": "wip [SLUICE SKIP]"}
	})
	if code, out := e.deliver("push", "skip-3", tag); code != http.StatusAccepted {
		t.Fatalf("tag: %d %s", code, out)
	}
	if res := e.result("skip-3"); len(res.Runs) != 1 {
		t.Errorf("a tag whose commit says [sluice skip] started %+v, want its run", res)
	}
	// A pull request whose head says [ci skip]: its event does not carry
	// the message, which is read from GitHub.
	head3 := e.gh.CommitMessage(repo, head2, "try [ci skip]", map[string]string{"src/y": "y"})
	e.gh.AddPull(repo, 2, head3, []string{"src/y"})
	pr := fixture(t, "pull_request/synchronize.payload.json", func(m map[string]any) {
		p := m["pull_request"].(map[string]any)
		p["head"].(map[string]any)["sha"] = head3
		p["base"].(map[string]any)["ref"] = "main"
	})
	if code, out := e.deliver("pull_request", "skip-4", pr); code != http.StatusAccepted {
		t.Fatalf("pull_request: %d %s", code, out)
	}
	if res := e.result("skip-4"); len(res.Runs) != 0 || !strings.Contains(res.Ignored, "[ci skip]") {
		t.Errorf("a pull request whose head says [ci skip] started %+v", res)
	}
}

// GitHub answering 502 and then 429 while the pipeline is fetched: the
// delivery retries inside its workflow and starts the run.
func TestGitHubErrorsRetried(t *testing.T) {
	e := start(t)
	head := e.commit("", map[string]string{".sluice/web.hcl": webPipeline})
	e.gh.FailNext("/repos/"+repo+"/git/trees", http.StatusBadGateway, 1, nil)
	e.gh.FailNext("/repos/"+repo+"/git/blobs", http.StatusTooManyRequests, 1, map[string]string{"Retry-After": "1"})
	e.pushNew("retry-1", head, "x")
	if res := e.result("retry-1"); len(res.Runs) != 1 {
		t.Fatalf("result %+v, want one run after the retries", res)
	}
	var failed int
	for _, r := range e.gh.Requests() {
		if r.Status >= 500 || r.Status == 429 {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("GitHub answered %d errors, want the 2 injected", failed)
	}
}

// Refused deliveries start nothing and say why.
func TestBadDeliveries(t *testing.T) {
	e := start(t)
	body := pushPayload(t, "refs/heads/main", strings.Repeat("0", 40), strings.Repeat("a", 40), "x")
	post := func(mod func(r *http.Request)) (int, string) {
		req, _ := http.NewRequest("POST", e.url+"/webhooks/github", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "bad")
		req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
		mod(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name string
		mod  func(r *http.Request)
		code int
		msg  string
	}{
		{"no signature", func(r *http.Request) { r.Header.Del("X-Hub-Signature-256") }, 401, "X-Hub-Signature-256"},
		{"unknown secret", func(r *http.Request) { r.Header.Set("X-Hub-Signature-256", webhook.Sign("nope", body)) }, 401, "does not match"},
		{"sha-1 only", func(r *http.Request) {
			r.Header.Del("X-Hub-Signature-256")
			r.Header.Set("X-Hub-Signature", "sha1=0000000000000000000000000000000000000000")
		}, 401, "X-Hub-Signature-256"},
		{"no delivery id", func(r *http.Request) { r.Header.Del("X-GitHub-Delivery") }, 400, "X-GitHub-Delivery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := post(tc.mod)
			if code != tc.code || !strings.Contains(out, tc.msg) {
				t.Errorf("%d %s; want %d mentioning %q", code, out, tc.code, tc.msg)
			}
		})
	}
	e.forwarded()
	if _, err := e.client.DescribeWorkflowExecution(context.Background(), "github-bad", ""); err == nil {
		t.Error("a refused delivery started a workflow")
	}
	if code, out := e.deliver("issues", "issue-1", []byte(`{"action":"opened"}`)); code != 200 || !strings.Contains(out, "ignored") {
		t.Errorf("unknown event: %d %s", code, out)
	}
}

// The server and `sluice plan --event` compile the same event into the
// same plan.
func TestPlanAgreesWithServer(t *testing.T) {
	e := start(t)
	base := e.commit("", map[string]string{".sluice/web.hcl": webPipeline})
	head := e.commit(base, map[string]string{"src/a.go": "package a"})
	if code, out := e.deliver("push", "agree-1", pushPayload(t, "refs/heads/main", base, head, "a")); code != http.StatusAccepted {
		t.Fatalf("%d %s", code, out)
	}
	res := e.result("agree-1")
	if len(res.Runs) != 1 {
		t.Fatalf("result %+v", res)
	}
	got, err := engine.RunPlan(context.Background(), e.client, res.Runs[0].RunID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".sluice"), 0o755)
	os.WriteFile(filepath.Join(dir, ".sluice", "web.hcl"), []byte(webPipeline), 0o644)
	var stdout, stderr bytes.Buffer
	if code := cli.Main([]string{"plan", filepath.Join(dir, ".sluice"), "-o", "json", "--event", "push", "--ref", "main", "--sha", head, "--repo", repo, "--actor", "Codertocat", "--changed", "src/a.go"}, &stdout, &stderr); code != 0 {
		t.Fatalf("sluice plan: %d %s", code, stderr.String())
	}
	var want plan.Plan
	if err := json.Unmarshal(stdout.Bytes(), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sluice plan (-) and the server (+) differ:\n%s", diff)
	}
}

// "Re-run all checks" on GitHub (check_suite rerequested) runs the head
// commit's pipelines again, as a new run.
// "Re-run all checks" of a commit whose run is in progress is refused;
// once the run ended, it retries that run (a new execution of the same
// run) rather than starting another.
func TestRerunRetriesTheRun(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	head := e.commit("", map[string]string{".sluice/web.hcl": webPipeline, "rerun": "x"})
	e.pushNew("first", head, "x")
	runID := e.result("first").Runs[0].RunID
	rerun := func(id string) server.DeliveryResult {
		body := fixture(t, "check_suite/rerequested.payload.json", func(m map[string]any) {
			cs := m["check_suite"].(map[string]any)
			cs["head_sha"], cs["head_branch"] = head, "main"
		})
		if code, out := e.deliver("check_suite", id, body); code != http.StatusAccepted {
			t.Fatalf("rerequested: %d %s", code, out)
		}
		return e.result(id)
	}
	if res := rerun("rerun-1"); len(res.Runs) != 0 || len(res.Refused) != 1 || !strings.Contains(res.Refused[0], "still") {
		t.Errorf("re-running a run in progress: %+v", res)
	}
	before, err := engine.Execution(ctx, e.client, runID)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.Cancel(ctx, e.client, runID); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Wait(ctx, e.client, runID); err != nil {
		t.Fatal(err)
	}
	if res := rerun("rerun-2"); len(res.Done) != 1 || !strings.Contains(res.Done[0], runID) || len(res.Runs) != 0 {
		t.Errorf("re-running the cancelled run: %+v", res)
	}
	if after, err := engine.Execution(ctx, e.client, runID); err != nil || after == before {
		t.Errorf("the run was not retried: execution %s, before %s (%v)", after, before, err)
	}
}

const scheduledPipeline = `
pipeline "nightly" {
  on "push" { branches = ["main"] }
  on "schedule" {
    cron   = "0 3 * * *"
    branch = "main"
  }
}

stage "check" {
  step "run" "x" { command = ["echo", "${git.event}"] }
}
`

// A push to the default branch makes the pipeline's schedule a Temporal
// Schedule, a later push without it deletes it, and a firing runs the
// pipeline at the head of its branch as a schedule event.
func TestSchedulesReconciled(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	push := func(id, before, after string) {
		t.Helper()
		body := fixture(t, "push/with-new-branch.payload.json", func(m map[string]any) {
			m["ref"], m["before"], m["after"], m["deleted"], m["forced"] = "refs/heads/main", before, after, false, false
			m["head_commit"] = map[string]any{"id": after, "message": id}
			m["repository"].(map[string]any)["default_branch"] = "main"
		})
		if code, out := e.deliver("push", id, body); code != http.StatusAccepted {
			t.Fatalf("%d %s", code, out)
		}
		e.result(id)
	}
	one := e.commit("", map[string]string{".sluice/nightly.hcl": scheduledPipeline})
	e.gh.SetBranch(repo, "main", one)
	push("s-1", strings.Repeat("0", 40), one)
	var list []server.ScheduleInfo
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l, err := server.ListSchedules(ctx, e.client)
		if err != nil {
			t.Fatal(err)
		}
		if list = l; len(list) == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(list) != 1 || list[0].Pipeline != "nightly" || list[0].Cron != "0 3 * * *" || list[0].Branch != "main" || len(list[0].Next) == 0 || list[0].Next[0].UTC().Hour() != 3 {
		t.Fatalf("schedules %+v, want nightly at 0 3 * * * with its next times", list)
	}
	updated := func() time.Time {
		t.Helper()
		d, err := e.client.ScheduleClient().GetHandle(ctx, list[0].ID).Describe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d.Info.LastUpdateAt
	}
	// A push that leaves the schedule as it is does not write it again;
	// one that changes its cron updates it.
	before := updated()
	same := e.commit(one, map[string]string{"README.md": "unrelated"})
	e.gh.SetBranch(repo, "main", same)
	push("s-1b", one, same)
	if after := updated(); !after.Equal(before) {
		t.Errorf("a push with the same schedule updated it (%v, then %v)", before, after)
	}
	moved := e.commit(same, map[string]string{".sluice/nightly.hcl": strings.Replace(scheduledPipeline, "0 3 * * *", "0 4 * * *", 1)})
	e.gh.SetBranch(repo, "main", moved)
	push("s-1c", same, moved)
	if l, err := server.ListSchedules(ctx, e.client); err != nil || len(l) != 1 || l[0].Cron != "0 4 * * *" || len(l[0].Next) == 0 || l[0].Next[0].UTC().Hour() != 4 || !updated().After(before) {
		t.Errorf("after a push that moved the cron to 0 4 * * *: %+v %v", l, err)
	}

	// A firing compiles the pipeline at the branch's head.
	two := e.commit(one, map[string]string{"README.md": "later"})
	e.gh.SetBranch(repo, "main", two)
	if err := e.client.ScheduleClient().GetHandle(ctx, list[0].ID).Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	var runs []engine.RunInfo
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && len(runs) == 0; time.Sleep(200 * time.Millisecond) {
		runs, _ = engine.List(ctx, e.client, fmt.Sprintf("%s = '%s'", engine.AttrSHA.GetName(), two))
	}
	if len(runs) != 1 {
		t.Fatalf("the firing started %d runs of %s, want 1", len(runs), two)
	}
	if p, err := engine.RunPlan(ctx, e.client, runs[0].RunID); err != nil || p.Git.Event != "schedule" || p.Git.Branch != "main" {
		t.Errorf("the scheduled run's git is %+v (%v), want a schedule event on main", p.Git, err)
	}

	// A push without the schedule deletes it.
	noSched := e.commit(two, map[string]string{".sluice/nightly.hcl": "pipeline \"nightly\" {\n  on \"push\" { branches = [\"main\"] }\n}\n\nstage \"check\" {\n  step \"run\" \"x\" { command = [\"true\"] }\n}\n"})
	push("s-2", two, noSched)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if list, _ = server.ListSchedules(ctx, e.client); len(list) == 0 {
			return
		}
	}
	t.Errorf("the schedule is still there after a push without it: %+v", list)
}

// Installation events tell the server which installation of the App
// reaches which repository; removals forget it.
func TestInstallationEvents(t *testing.T) {
	e := start(t)
	read := func() map[string]int64 {
		m := map[string]int64{}
		b, _ := os.ReadFile(filepath.Join(e.home, "server", "installations.json"))
		_ = json.Unmarshal(b, &m)
		return m
	}
	added, err := os.ReadFile(filepath.Join("webhook", "testdata", "installation_repositories", "added.payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	if code, out := e.deliver("installation_repositories", "inst-1", added); code != http.StatusOK {
		t.Fatalf("%d %s", code, out)
	}
	if got := read()["octo-org/new-service"]; got != 4242 {
		t.Errorf("octo-org/new-service is reached by installation %d, want 4242 (%v)", got, read())
	}
	var m map[string]any
	_ = json.Unmarshal(added, &m)
	m["action"], m["repositories_removed"], m["repositories_added"] = "removed", m["repositories_added"], []any{}
	removed, _ := json.Marshal(m)
	if code, out := e.deliver("installation_repositories", "inst-2", removed); code != http.StatusOK {
		t.Fatalf("%d %s", code, out)
	}
	if _, ok := read()["octo-org/new-service"]; ok {
		t.Errorf("a removed repository is still known: %v", read())
	}
}

const gatedPipeline = `
pipeline "gated" {
  on "push" { branches = ["main"] }
}

stage "deploy" {
  approval { approvers = ["team:sre", "carol"] }
  step "run" "x" { command = ["true"] }
}
`

// Approvers are enforced through the API: a member of the GitHub team
// (through the App) or a named login may approve; anyone else is refused
// with who may.
func TestApproversEnforced(t *testing.T) {
	e := start(t)
	e.gh.AddTeam("Codertocat", "sre", "alice")
	tok := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		tok[u] = token(t, e.home, u)
	}
	head := e.commit("", map[string]string{".sluice/gated.hcl": gatedPipeline})
	e.pushNew("gate-1", head, "x")
	run := e.result("gate-1").Runs[0].RunID
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, err := engine.Status(context.Background(), e.client, run)
		if err == nil && len(st.Stages) == 1 && st.Stages[0].State == engine.StateWaitingApproval {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run does not wait for approval: %+v %v", st, err)
		}
	}
	post := func(user, path, body string) (int, string) {
		resp, b := e.authed("POST", "/api/v1/"+path, tok[user], strings.NewReader(body))
		return resp.StatusCode, string(b)
	}
	approve := func(user string) (int, string) {
		return post(user, "runs/"+run+"/approve", `{"stage":"deploy","reason":"ok"}`)
	}
	if code, out := approve("bob"); code != http.StatusForbidden || !strings.Contains(out, "its approvers are team:sre, carol") {
		t.Errorf("bob: %d %s; want 403 naming the approvers", code, out)
	}
	if code, out := approve("alice"); code != http.StatusOK || !strings.Contains(out, `"by": "alice"`) {
		t.Errorf("alice of team sre: %d %s", code, out)
	}
	st, _ := engine.Status(context.Background(), e.client, run)
	if a := st.Stages[0].Approval; a == nil || a.By != "alice" || a.Decision != engine.DecisionApproved {
		t.Errorf("approval %+v, want approved by alice", a)
	}

	// Cancelling and retrying runs of a repository of the App take write
	// access to it on GitHub, as GitHub's own buttons do.
	e.gh.SetPermission("Codertocat/Hello-World", "carol", "read")
	for _, act := range []string{"cancel", "retry"} {
		for user, has := range map[string]string{"bob": "none", "carol": "read"} {
			code, out := post(user, "runs/"+run+"/"+act, "")
			if code != http.StatusForbidden || !strings.Contains(out, "that takes write access to the repository on GitHub, and "+user+" has "+has) {
				t.Errorf("%s %s: %d %s; want 403 saying write access is needed", user, act, code, out)
			}
		}
	}
	if code, out := post("bob", "runs/no-such-run/cancel", ""); code != http.StatusNotFound {
		t.Errorf("cancelling a run that does not exist: %d %s", code, out)
	}
	e.gh.SetPermission("Codertocat/Hello-World", "carol", "maintain")
	if code, out := post("carol", "runs/"+run+"/cancel", ""); code != http.StatusAccepted {
		t.Errorf("carol, a maintainer, cancelling: %d %s", code, out)
	}
}

const manualPipeline = `
pipeline "ship" {
  on "manual" {
    input "target" {
      options = ["staging", "production"]
    }
  }
}

stage "ship" {
  step "run" "x" { command = ["echo", pipeline.inputs.target] }
}
`

// A manual run of a repository the GitHub App is installed on, through
// the API (sluice run --server --repo owner/name): the branch's head is
// read through the App, the pipeline compiled at it with the inputs, and
// only a user with write access to the repository may start it.
func TestManualRunOfAGitHubRepository(t *testing.T) {
	e := start(t)
	head := e.commit("", map[string]string{".sluice/ship.hcl": manualPipeline, "TestManualRunOfAGitHubRepository": ""})
	e.gh.SetBranch(repo, "release/1.x", head)
	// The push teaches the server the repository's installation; the
	// pipeline runs on no push.
	e.pushNew("manual-learn", head, "x")
	if res := e.result("manual-learn"); len(res.Runs) != 0 {
		t.Fatalf("the push started %+v", res.Runs)
	}
	e.gh.SetPermission(repo, "alice", "write")
	e.gh.SetPermission(repo, "bob", "read")
	start := func(user, body string) (int, []byte) {
		resp, b := e.authed("POST", "/api/v1/runs", token(t, e.home, user), strings.NewReader(body))
		return resp.StatusCode, b
	}
	body := `{"repository": "` + repo + `", "ref": "release/1.x", "inputs": {"target": "production"}}`
	if code, b := start("bob", body); code != http.StatusForbidden || !strings.Contains(string(b), "bob may not start runs of "+repo+": that takes write access") {
		t.Errorf("bob, who has read: %d %s; want 403", code, b)
	}
	code, b := start("alice", body)
	var res server.DeliveryResult
	if err := json.Unmarshal(b, &res); code != http.StatusCreated || err != nil || len(res.Runs) != 1 {
		t.Fatalf("alice starting the run: %d %s", code, b)
	}
	p, err := engine.RunPlan(context.Background(), e.client, res.Runs[0].RunID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Git.Event != "manual" || p.Git.SHA != head || p.Git.Branch != "release/1.x" || p.Git.Actor != "alice" || p.Git.Repo != repo {
		t.Errorf("the run's git: %+v; want a manual run of %s at %s by alice", p.Git, head, "release/1.x")
	}
	if got := p.Stages[0].Steps[0].Run.Command[1].Literal(); got != "production" {
		t.Errorf("the input: %q", got)
	}
	if code, b := start("alice", `{"repository": "`+repo+`", "ref": "no-such-branch"}`); code != http.StatusNotFound || !strings.Contains(string(b), "no-such-branch") {
		t.Errorf("a branch that does not exist: %d %s", code, b)
	}
	if code, b := start("alice", `{"repository": "acme/elsewhere", "ref": "main"}`); code != http.StatusNotFound || !strings.Contains(string(b), "nor a repository the GitHub App is installed on") {
		t.Errorf("a repository the server does not know: %d %s", code, b)
	}
}
