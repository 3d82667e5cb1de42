package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/sluice-ci/sluice/cmd/sluice/cli"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/testing/metricstest"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/webhook"
	"github.com/sluice-ci/sluice/steps/verify/promtest"
)

// meteredPipeline has two stages of one step each, on any runner.
const meteredPipeline = `
pipeline "metered" {
  on "push" { branches = ["main"] }
}

stage "build" {
  step "run" "hello" {
    command = ["echo", "hello"]
  }
}

stage "test" {
  step "run" "check" {
    command = ["true"]
  }
}
`

// meteredRepo makes a git repository holding meteredPipeline and returns
// its directory; commit adds a commit to it and returns its SHA.
func meteredRepo(t *testing.T) (dir string, commit func(msg string) string) {
	t.Helper()
	dir = t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	if err := os.MkdirAll(filepath.Join(dir, ".sluice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".sluice", "metered.hcl"), []byte(meteredPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, func(msg string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "change.txt"), []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", ".")
		git("commit", "-qm", msg)
		return git("rev-parse", "HEAD")
	}
}

// gitPush sends the git hook request of a push of sha to main, signed
// with home's hook secret, and returns the delivery's workflow ID.
func gitPush(t *testing.T, serverURL, home, repoDir, sha string) string {
	t.Helper()
	secret, err := server.LocalHookSecret(home)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(server.GitHookRequest{Repository: "metered", URL: repoDir, Pusher: "t",
		Updates: []server.GitUpdate{{Old: strings.Repeat("0", 40), New: sha, Ref: "refs/heads/main", Message: "change"}}})
	req, _ := http.NewRequest("POST", serverURL+"/hooks/git", bytes.NewReader(body))
	req.Header.Set(server.GitHookSignatureHeader, webhook.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var answer struct {
		Updates []struct{ Workflow string }
	}
	if err := json.Unmarshal(b, &answer); resp.StatusCode != http.StatusAccepted || err != nil || len(answer.Updates) != 1 {
		t.Fatalf("git hook: %d %s", resp.StatusCode, b)
	}
	return answer.Updates[0].Workflow
}

// deliveredRun waits for a delivery and returns the run it started.
func deliveredRun(t *testing.T, c client.Client, delivery string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res server.DeliveryResult
	if err := c.GetWorkflow(ctx, delivery, "").Get(ctx, &res); err != nil || len(res.Runs) != 1 {
		t.Fatalf("delivery %s: %+v, %v", delivery, res, err)
	}
	return res.Runs[0].RunID
}

// scrapeValue reads the sample of family name whose labels include want
// from a /metrics; a histogram's value is its count.
func scrapeValue(t *testing.T, metricsURL, name string, want map[string]string) (float64, bool) {
	t.Helper()
	return metricstest.Scrape(t, metricsURL).Value(name, want)
}

// waitValue waits until the sample's value satisfies ok.
func waitValue(t *testing.T, metricsURL, name string, labels map[string]string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, found := scrapeValue(t, metricsURL, name, labels)
		if found && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v at %s: %v (found %v) after 30 s", name, labels, metricsURL, v, found)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func is(n float64) func(float64) bool { return func(v float64) bool { return v == n } }

// A completed run is counted once: by the server that sees it end, or,
// when it ended while no server was up, by the next one; a server started
// again on the same home counts none of the runs counted before.
func TestMetricsCountRunsOnceAcrossRestarts(t *testing.T) {
	sharedTemporal()
	home := t.TempDir()
	repoDir, commit := meteredRepo(t)
	startServer := func(set func(*server.Config)) *server.Server {
		t.Helper()
		cfg := server.Config{Listen: "127.0.0.1:0", Home: home, TemporalAddress: ts.GetFrontendHostPort(), Namespace: ts.GetDefaultNamespace(),
			NoRunner: true, MetricsInterval: 100 * time.Millisecond}
		if set != nil {
			set(&cfg)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := server.Start(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cancelled := map[string]string{"pipeline": "metered", "result": "cancelled"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a := startServer(nil)
	closeA := a.Close
	defer func() { closeA() }()
	c := a.Stack().Client
	// With no runner, a run waits for one until it is cancelled.
	run1 := deliveredRun(t, c, gitPush(t, a.URL(), home, repoDir, commit("one")))
	if err := engine.Cancel(ctx, c, run1); err != nil {
		t.Fatal(err)
	}
	waitValue(t, a.MetricsURL(), "sluice_runs_completed_total", cancelled, is(1))
	waitValue(t, a.MetricsURL(), "sluice_run_duration_seconds", cancelled, is(1))
	waitValue(t, a.MetricsURL(), "sluice_webhooks_received_total", map[string]string{"source": "git", "event": "push", "result": "queued"}, is(1))
	if v, _ := scrapeValue(t, a.MetricsURL(), "sluice_webhook_duration_seconds", map[string]string{"source": "git", "event": "push"}); v != 1 {
		t.Errorf("webhook durations observed: %v, want 1", v)
	}
	run2 := deliveredRun(t, c, gitPush(t, a.URL(), home, repoDir, commit("two")))
	a.Close()
	closeA = func() {}

	// While no server is up, run 2 ends (a workflow worker of its own
	// takes its cancellation).
	tc := ts.NewClientWithOptions(client.Options{Namespace: ts.GetDefaultNamespace()})
	defer tc.Close()
	w := engine.NewWorkflowWorker(tc, worker.Options{})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	if err := engine.Cancel(ctx, tc, run2); err != nil {
		t.Fatal(err)
	}
	if st, err := engine.Wait(ctx, tc, run2); err != nil || st.State != engine.StateCancelled {
		t.Fatalf("run 2: %+v, %v", st.State, err)
	}
	w.Stop()

	// The next server counts run 2, and never run 1 again; it serves its
	// metrics on a listener of their own.
	b := startServer(func(c *server.Config) { c.MetricsListen = "127.0.0.1:0" })
	defer b.Close()
	if b.MetricsURL() == b.URL()+"/metrics" {
		t.Fatalf("MetricsListen: metrics still at %s", b.MetricsURL())
	}
	waitValue(t, b.MetricsURL(), "sluice_runs_completed_total", cancelled, is(1))
	refreshed := waitValue(t, b.MetricsURL(), "sluice_metrics_refreshed_timestamp_seconds", nil, func(float64) bool { return true })
	waitValue(t, b.MetricsURL(), "sluice_metrics_refreshed_timestamp_seconds", nil, func(v float64) bool { return v > refreshed+0.3 })
	if v, _ := scrapeValue(t, b.MetricsURL(), "sluice_runs_completed_total", cancelled); v != 1 {
		t.Errorf("after more refreshes the restarted server counts %v cancelled runs, want 1 (run 2 alone)", v)
	}
	resp, err := http.Get(b.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), b.MetricsURL()) {
		t.Errorf("/metrics on the server's listener with --metrics-listen: %d %s", resp.StatusCode, body)
	}
}

// waitLine waits until out has a line matching re and returns its first
// submatch.
func waitLine(t *testing.T, out *syncBuffer, exited <-chan int, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(time.Minute)
	for {
		if m := rx.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-exited:
			t.Fatalf("exited (%d) before printing %q:\n%s", code, re, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q within a minute:\n%s", re, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The real Prometheus scrapes a server (sluice server, on its own
// Temporal) and a runner (sluice runner --metrics-listen) while a push
// runs a pipeline, and its query API shows the series a dashboard and
// the alerts of docs/operations.md use: present, and moving with the run.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	// A Temporal of its own: no run of another test reaches this runner.
	temporal := temporaltest.NewServer(temporaltest.WithT(t), temporaltest.WithBaseClientOptions(client.Options{Logger: nil}))
	home := t.TempDir()
	t.Setenv("SLUICE_HOME", home)
	t.Setenv("SLUICE_SERVER", "")
	t.Setenv("SLUICE_TOKEN", "")
	t.Setenv("SLUICE_METRICS_LISTEN", "")
	repoDir, commit := meteredRepo(t)
	sha := commit("first")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	start := func(args ...string) (*syncBuffer, <-chan int) {
		var out syncBuffer
		exited := make(chan int, 1)
		go func() { exited <- cli.MainContext(ctx, args, &out, &out) }()
		return &out, exited
	}
	serverOut, serverExited := start("server", "--listen", "127.0.0.1:0", "--no-runner", "--no-build",
		"--temporal-address", temporal.GetFrontendHostPort(), "--namespace", temporal.GetDefaultNamespace(), "--metrics-interval", "500ms")
	serverURL := waitLine(t, serverOut, serverExited, `Sluice server at (http://\S+) `)
	if got := waitLine(t, serverOut, serverExited, `metrics: +(\S+)`); got != serverURL+"/metrics" {
		t.Errorf("the server says its metrics are at %s, want %s/metrics", got, serverURL)
	}
	runnerOut, runnerExited := start("runner", "--temporal-address", temporal.GetFrontendHostPort(), "--namespace", temporal.GetDefaultNamespace(),
		"--name", "metered-runner", "--work-dir", t.TempDir(), "--min-free-disk", "0", "--metrics-listen", "127.0.0.1:0")
	runnerMetrics := waitLine(t, runnerOut, runnerExited, `Metrics at (http://\S+)\.`)
	waitLine(t, runnerOut, runnerExited, `(Sluice runner) metered-runner`)
	defer func() {
		stop()
		for name, ch := range map[string]<-chan int{"server": serverExited, "runner": runnerExited} {
			select {
			case code := <-ch:
				if code != 0 {
					t.Errorf("sluice %s exited %d", name, code)
				}
			case <-time.After(time.Minute):
				t.Errorf("sluice %s did not stop", name)
			}
		}
	}()

	target := func(u string) string {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		return p.Host
	}
	prom := promtest.Start(t, promtest.Job{Name: "sluice-server", Target: target(serverURL)}, promtest.Job{Name: "sluice-runner", Target: target(runnerMetrics)})
	const within = 30 * time.Second
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	prom.WaitFor(t, `up{job="sluice-server"}`, is(1), within)
	prom.WaitFor(t, `up{job="sluice-runner"}`, is(1), within)

	// Before the push: the runner is online for stages without labels,
	// nothing waits, no run has completed.
	prom.WaitFor(t, `sluice_runners_online{job="sluice-server",labels=""}`, is(1), within)
	prom.WaitFor(t, `sluice_queue_backlog{job="sluice-server",queue="stages",labels=""}`, is(0), within)
	prom.WaitFor(t, `sluice_runner_stages_running{job="sluice-runner"}`, is(0), within)
	prom.WaitFor(t, `sluice_runner_disk_free_bytes{job="sluice-runner"}`, func(v float64) bool { return v > 0 }, within)
	prom.WaitFor(t, `sluice_runner_info{job="sluice-runner",runner="metered-runner"}`, is(1), within)
	if _, found := prom.Value(t, `sluice_runs_completed_total{pipeline="metered"}`); found {
		t.Fatal("a run of metered completed before the push")
	}
	serverRequests := prom.WaitFor(t, `sum(temporal_request_total{job="sluice-server"})`, atLeast(1), within)
	runnerPolls := prom.WaitFor(t, `sum(temporal_long_request_total{job="sluice-runner"})`, atLeast(1), within)

	// The push runs the pipeline.
	run := deliveredRun(t, temporal.GetDefaultClient(), gitPush(t, serverURL, home, repoDir, sha))
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if st, err := engine.Wait(rctx, temporal.GetDefaultClient(), run); err != nil || st.State != engine.StateSucceeded {
		t.Fatalf("run %s: %+v, %v", run, st, err)
	}

	// After it: the series exist and moved.
	prom.WaitFor(t, `sluice_webhooks_received_total{job="sluice-server",source="git",event="push",result="queued"}`, is(1), within)
	prom.WaitFor(t, `sluice_webhook_duration_seconds_count{job="sluice-server",source="git",event="push"}`, is(1), within)
	prom.WaitFor(t, `sluice_runs_completed_total{job="sluice-server",pipeline="metered",result="succeeded"}`, is(1), within)
	prom.WaitFor(t, `sluice_run_duration_seconds_count{job="sluice-server",pipeline="metered",result="succeeded"}`, is(1), within)
	prom.WaitFor(t, `sum(sluice_stage_duration_seconds_count{job="sluice-server",pipeline="metered",result="succeeded"})`, is(2), within)
	prom.WaitFor(t, `sluice_stage_duration_seconds_count{job="sluice-server",pipeline="metered",stage="test",result="succeeded"}`, is(1), within)
	prom.WaitFor(t, `sluice_runs_active{job="sluice-server",state="running"}`, is(0), within)
	prom.WaitFor(t, `sluice_runner_step_duration_seconds_count{job="sluice-runner",kind="run",result="succeeded"}`, is(2), within)
	prom.WaitFor(t, `sluice_runner_stages_taken_total{job="sluice-runner"}`, atLeast(2), within)
	prom.WaitFor(t, `sum(temporal_activity_execution_latency_seconds_count{job="sluice-runner"})`, atLeast(2), within)
	prom.WaitFor(t, `sum(temporal_request_total{job="sluice-server"})`, func(v float64) bool { return v > serverRequests }, within)
	prom.WaitFor(t, `sum(temporal_long_request_total{job="sluice-runner"})`, func(v float64) bool { return v > runnerPolls }, within)
	// An alert of docs/operations.md, evaluated: runs succeed.
	prom.WaitFor(t, `sum(increase(sluice_runs_completed_total{result="failed"}[5m])) or vector(0)`, is(0), within)
}

// GitHub's webhooks are counted by event and result, whatever the
// sender put in X-GitHub-Event, and the requests the delivery made to
// GitHub by endpoint and status, with what GitHub said is left of the
// installation's rate limit.
func TestMetricsOfGitHubWebhooks(t *testing.T) {
	e := start(t)
	metricsURL := e.srv.MetricsURL()
	if metricsURL != e.url+"/metrics" {
		t.Fatalf("metrics at %s, want on the server's listener", metricsURL)
	}
	base := e.commit("", map[string]string{".sluice/web.hcl": webPipeline})
	// Commits of their own: run IDs derive from them, and the tests share
	// a Temporal.
	head := e.commit(base, map[string]string{"src/metered.go": "package metered"})
	e.pushNew("m-1", head, "add metered")
	e.result("m-1")
	if code, out := e.deliver("push", "m-1", pushPayload(t, "refs/heads/main", strings.Repeat("0", 40), head, "add metered")); code != http.StatusOK {
		t.Fatalf("redelivery: %d %s", code, out)
	}
	if code, out := e.deliver("ping", "m-2", fixture(t, "ping/with-app_id.payload.json", func(map[string]any) {})); code != http.StatusOK {
		t.Fatalf("ping: %d %s", code, out)
	}
	if code, out := e.deliver("sponsorship", "m-3", []byte(`{"action":"created"}`)); code != http.StatusOK {
		t.Fatalf("an event Sluice does not act on: %d %s", code, out)
	}
	// A forged delivery, with an event name made up to fill the label.
	req, _ := http.NewRequest("POST", e.url+"/webhooks/github", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "made-up-"+strings.Repeat("x", 100))
	req.Header.Set("X-GitHub-Delivery", "m-4")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign("not the secret", []byte(`{}`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged delivery: %d", resp.StatusCode)
	}

	for _, c := range []struct{ event, result string }{
		{"push", "queued"}, {"push", "duplicate"}, {"ping", "ping"}, {"other", "ignored"}, {"other", "unauthorized"},
	} {
		if v, _ := scrapeValue(t, metricsURL, "sluice_webhooks_received_total", map[string]string{"source": "github", "event": c.event, "result": c.result}); v != 1 {
			t.Errorf("webhooks %s %s: %v, want 1", c.event, c.result, v)
		}
	}
	if v, _ := scrapeValue(t, metricsURL, "sluice_webhook_duration_seconds", map[string]string{"source": "github", "event": "push"}); v != 2 {
		t.Errorf("push webhooks timed: %v, want 2", v)
	}
	// The delivery read the pipeline files at the commit with the
	// installation's token.
	for _, want := range []map[string]string{
		{"endpoint": "/app/installations/{installation_id}/access_tokens", "method": "POST", "status": "201"},
		{"endpoint": "/repos/{owner}/{repo}/git/trees/{tree_sha}", "method": "GET", "status": "200"},
	} {
		if v, _ := scrapeValue(t, metricsURL, "sluice_github_api_requests_total", want); v < 1 {
			t.Errorf("GitHub requests %v: %v, want at least 1", want, v)
		}
	}
	if v, ok := scrapeValue(t, metricsURL, "sluice_github_rate_limit_remaining", map[string]string{"installation": "1", "resource": "core"}); !ok || v != 4999 {
		t.Errorf("installation 1's rate limit left: %v (%v), want 4999", v, ok)
	}
}
