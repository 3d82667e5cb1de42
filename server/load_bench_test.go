package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/testing/pgtest"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
	"github.com/sluice-ci/sluice/server/webhook"
)

// BenchmarkWebhookLoad is issue 9's webhook benchmark: signed GitHub push
// deliveries sent open-loop at a fixed rate to a real `sluice server`
// (embedded Temporal on SQLite, no runner: runs are started and their
// workflows hosted, no step runs) reading its pipelines from the fake
// GitHub. It reports the latency to the 202 and to the run's workflow
// start as Temporal records it, and counts lost and duplicate runs.
//
//	make build   # bin/sluice-temporal
//	go test ./server -run '^$' -bench BenchmarkWebhookLoad -benchtime 1x -timeout 30m
//
// SLUICE_BENCH_RATE (deliveries a second, default 200), SLUICE_BENCH_SECONDS
// (default 60) and SLUICE_BENCH_DRAIN (how long to wait for the last runs
// after the load, default 3m) set the load. The load runs once whatever
// b.N is: use -benchtime 1x. SLUICE_BENCH_DB=postgres puts the embedded
// Temporal on a PostgreSQL of the benchmark's own (internal/testing/pgtest,
// on loopback, Debian's durable defaults) instead of SQLite.
// SLUICE_BENCH_INBOX=off answers the deliveries once Temporal has started
// their workflows rather than from the server's inbox.
func BenchmarkWebhookLoad(b *testing.B) {
	rate := benchEnvInt(b, "SLUICE_BENCH_RATE", 200)
	seconds := benchEnvInt(b, "SLUICE_BENCH_SECONDS", 60)
	drain, err := time.ParseDuration(cmp.Or(os.Getenv("SLUICE_BENCH_DRAIN"), "3m"))
	if err != nil {
		b.Fatalf("SLUICE_BENCH_DRAIN: %v", err)
	}
	useTemporalFromRepo(b)

	const (
		repo         = "Codertocat/Hello-World" // the fixture's repository
		installation = 1                        // the fixture's installation
		secret       = "load-bench-secret"
		warmups      = 20
	)
	n := rate * seconds
	gh := githubfake.New(b)
	gh.AddRepo(repo, installation)
	base := gh.Commit(repo, "", map[string]string{
		".sluice/p.hcl": loadPipeline,
		"README.md":     "# Hello-World\n",
	})
	gh.SetBranch(repo, "main", base)
	// One commit per delivery, each a child of base that changes one file:
	// every delivery is a distinct push and a distinct run.
	deliveries := make([]*loadDelivery, warmups+n)
	tmpl := pushTemplate(b)
	for i := range deliveries {
		sha := gh.Commit(repo, base, map[string]string{"load.txt": strconv.Itoa(i) + "\n"})
		body := bytes.ReplaceAll(tmpl, []byte("@AFTER@"), []byte(sha))
		body = bytes.ReplaceAll(body, []byte("@BEFORE@"), []byte(base))
		body = bytes.ReplaceAll(body, []byte("@N@"), []byte(strconv.Itoa(i)))
		deliveries[i] = &loadDelivery{
			id:   fmt.Sprintf("bench-%08d-%s", i, sha[:12]),
			sha:  sha,
			body: body,
			sig:  webhook.Sign(secret, body),
		}
	}
	if c := runIDCollisions(repo, deliveries); c > 0 {
		b.Logf("note: %d of the %d commits share a run ID with another commit (RunID keeps 32 bits of the key's digest): those deliveries find an existing run and start none", c, len(deliveries))
	}

	dir := b.TempDir()
	keyFile := filepath.Join(dir, "app.pem")
	if err := os.WriteFile(keyFile, gh.PrivateKey, 0o600); err != nil {
		b.Fatal(err)
	}
	store, srv := startBenchServer(b, dir, Config{
		// SLUICE_BENCH_INBOX=off answers once Temporal has the delivery,
		// as before the inbox.
		Inbox: os.Getenv("SLUICE_BENCH_INBOX"),
		GitHub: GitHubConfig{
			AppID:          gh.AppID,
			PrivateKeyFile: keyFile,
			WebhookSecrets: []string{secret},
			APIURL:         gh.URL(),
		},
	})
	ctx := context.Background()
	url := srv.URL() + "/webhooks/github"
	hc := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute},
	}
	defer hc.CloseIdleConnections()

	// Warm up: the installation token, the blob cache, the workers' pollers.
	// These runs are not measured.
	var wg sync.WaitGroup
	for _, d := range deliveries[:warmups] {
		wg.Go(func() { d.send(hc, url) })
	}
	wg.Wait()
	for _, d := range deliveries[:warmups] {
		if d.status != http.StatusAccepted {
			b.Fatalf("warm-up delivery answered %d (%v): %s", d.status, d.err, d.answer)
		}
	}
	if _, err := waitRuns(ctx, srv, deliveries[:warmups], time.Minute); err != nil {
		b.Fatal(err)
	}
	measured := deliveries[warmups:]

	// The load: open loop, one goroutine per request, never waiting for
	// an answer before the next tick. Every 100th tick also redelivers the
	// delivery of one second before (the same GUID and body), which must
	// start nothing.
	var redeliveries []*loadDelivery
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	began := time.Now()
	for i, d := range measured {
		if i > 0 {
			<-tick.C
		}
		wg.Go(func() { d.send(hc, url) })
		if i%100 == 99 && i >= rate {
			orig := measured[i-rate]
			r := &loadDelivery{id: orig.id, sha: orig.sha, body: orig.body, sig: orig.sig, redelivery: orig}
			redeliveries = append(redeliveries, r)
			wg.Go(func() { r.send(hc, url) })
		}
	}
	tick.Stop()
	sendSpan := time.Since(began)
	wg.Wait()
	b.StopTimer()

	runs, err := waitRuns(ctx, srv, measured, drain)
	if err != nil {
		b.Logf("waiting for the runs: %v", err)
	}
	results := deliveryResults(ctx, srv, measured)

	// Count.
	var lat202, latStarted []time.Duration
	status := map[int]int{}
	answers := map[string]int{}
	accepted, lost, lostAccepted, refusedStarted, existing, failed := 0, 0, 0, 0, 0, 0
	for _, d := range measured {
		status[d.status]++
		rs := runs[d.sha]
		if d.status != http.StatusAccepted {
			answers[d.why()]++
			if len(rs) > 0 {
				refusedStarted++
			}
		}
		if d.status == http.StatusAccepted {
			accepted++
			lat202 = append(lat202, d.answered.Sub(d.sent))
		}
		if len(rs) == 0 {
			lost++
			if d.status == http.StatusAccepted {
				lostAccepted++
			}
			continue
		}
		latStarted = append(latStarted, rs[0].Start.Sub(d.sent))
	}
	for _, r := range results {
		if r.err != nil {
			failed++
		}
		for _, run := range r.res.Runs {
			if run.Existing {
				existing++
			}
		}
	}
	duplicates := 0
	for _, rs := range runs {
		if len(rs) > 1 {
			duplicates += len(rs) - 1
		}
	}
	redeliveryStatus := map[int]int{}
	for _, r := range redeliveries {
		redeliveryStatus[r.status]++
		if r.status == http.StatusAccepted && r.redelivery.status == http.StatusAccepted {
			duplicates++ // two Delivery workflows taken for one GUID
		}
	}
	deliveryWorkflows, err := srv.client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s'", DeliveryWorkflowName)})
	if err != nil {
		b.Logf("counting Delivery workflows: %v", err)
	}

	slices.Sort(lat202)
	slices.Sort(latStarted)
	b.ReportMetric(ms(pct(lat202, 50)), "p50-202-ms")
	b.ReportMetric(ms(pct(lat202, 99)), "p99-202-ms")
	b.ReportMetric(ms(pct(latStarted, 50)), "p50-started-ms")
	b.ReportMetric(ms(pct(latStarted, 99)), "p99-started-ms")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(duplicates), "duplicates")
	b.ReportMetric(0, "ns/op")

	b.Logf("store: %s", store)
	b.Logf("load: %d deliveries at %d/s for %d s (sent in %.1f s, %.1f/s), %d redeliveries; GOMAXPROCS %d",
		len(measured), rate, seconds, sendSpan.Seconds(), float64(len(measured))/sendSpan.Seconds(), len(redeliveries), runtime.GOMAXPROCS(0))
	b.Logf("to the 202 (%d): p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
		len(lat202), ms(pct(lat202, 50)), ms(pct(lat202, 90)), ms(pct(lat202, 99)), ms(pct(lat202, 100)))
	b.Logf("to the run's workflow started (%d): p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
		len(latStarted), ms(pct(latStarted, 50)), ms(pct(latStarted, 90)), ms(pct(latStarted, 99)), ms(pct(latStarted, 100)))
	b.Logf("counts: sent %d, accepted (202) %d, runs started %d, lost %d (%d of them accepted, %d refused), duplicates %d",
		len(measured), accepted, len(measured)-lost, lost, lostAccepted, lost-lostAccepted, duplicates)
	b.Logf("refused but started anyway %d; found an existing run %d; failed or unfinished Delivery workflows %d; Delivery workflows in Temporal %d (%d warm-up), still running %d; still in the inbox %d (inbox %s)",
		refusedStarted, existing, failed, deliveryWorkflows.GetCount(), warmups, runningDeliveries(ctx, srv), srv.InboxPending(), srv.cfg.Inbox)
	b.Logf("answers: %v; redeliveries answered %v", status, redeliveryStatus)
	for msg, n := range answers {
		b.Logf("%d answered %s", n, msg)
	}
	historyPerDelivery(ctx, b, srv, measured, results)
	if v := gh.Violations(); len(v) > 0 {
		b.Errorf("%d violations of GitHub's API description", len(v))
	}
}

// historyPerDelivery logs what a delivery costs Temporal, as the history
// events of its workflows at the end (the Delivery, the run it started
// and the run's Report), the mean over a sample of the deliveries: every
// event is a write of the store, and most also a task.
func historyPerDelivery(ctx context.Context, b *testing.B, srv *Server, ds []*loadDelivery, results []deliveryOutcome) {
	const sample = 50
	perKind := map[string]int{}
	perType := map[string]int{}
	counted := 0
	count := func(kind, id string) {
		it := srv.client.GetWorkflowHistory(ctx, id, "", false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				b.Logf("reading the history of %s: %v", id, err)
				return
			}
			perKind[kind]++
			perType[kind+" "+strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_")]++
		}
	}
	for i, d := range ds {
		if counted == sample {
			break
		}
		if d.status != http.StatusAccepted || results[i].err != nil || len(results[i].res.Runs) != 1 {
			continue
		}
		counted++
		runID := results[i].res.Runs[0].RunID
		count("Delivery", "github-"+d.id)
		count("run", runID)
		if ex, err := engine.Execution(ctx, srv.client, runID); err == nil {
			count("Report", ReportWorkflowID(runID, ex))
		}
	}
	if counted == 0 {
		return
	}
	var kinds, types []string
	total := 0
	for k, n := range perKind {
		kinds = append(kinds, fmt.Sprintf("%s %.1f", k, float64(n)/float64(counted)))
		total += n
	}
	for t, n := range perType {
		types = append(types, fmt.Sprintf("%s %.1f", t, float64(n)/float64(counted)))
	}
	slices.Sort(kinds)
	slices.Sort(types)
	b.Logf("history events per delivery (mean of %d): %.1f: %s", counted, float64(total)/float64(counted), strings.Join(kinds, ", "))
	b.Logf("by type: %s", strings.Join(types, ", "))
}

// loadPipeline is the repository's pipeline: run on every push to main,
// one host step.
const loadPipeline = `pipeline "load" {
  on "push" {
    branches = ["main"]
  }
}

stage "test" {
  step "run" "hello" {
    command = ["echo", "hello from ${git.short_sha}"]
  }
}
`

type loadDelivery struct {
	id, sha    string
	body       []byte
	sig        string
	redelivery *loadDelivery // the first delivery of a redelivery

	sent, answered time.Time
	status         int
	answer         string
	err            error
}

func (d *loadDelivery) send(hc *http.Client, url string) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.body))
	if err != nil {
		d.err = err
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/bench")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", d.id)
	req.Header.Set("X-GitHub-Hook-ID", "1")
	req.Header.Set("X-Hub-Signature-256", d.sig)
	d.sent = time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		d.answered, d.err = time.Now(), err
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d.answered, d.status = time.Now(), resp.StatusCode
	if resp.StatusCode != http.StatusAccepted {
		d.answer = string(b)
	}
}

// why is a compact account of an answer other than 202.
func (d *loadDelivery) why() string {
	if d.err != nil {
		msg := d.err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return "no answer: " + msg
	}
	var e struct{ Error string }
	if json.Unmarshal([]byte(d.answer), &e) == nil && e.Error != "" {
		return fmt.Sprintf("%d: %s", d.status, e.Error)
	}
	return fmt.Sprintf("%d: %s", d.status, strings.TrimSpace(d.answer))
}

// pushTemplate is GitHub's push payload of the fixture made a push to
// main: after, before and the head commit's message are placeholders.
func pushTemplate(b *testing.B) []byte {
	raw, err := os.ReadFile(filepath.Join("webhook", "testdata", "push", "with-installation.payload.json"))
	if err != nil {
		b.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		b.Fatal(err)
	}
	p["ref"] = "refs/heads/main"
	p["before"] = "@BEFORE@"
	p["after"] = "@AFTER@"
	p["created"], p["deleted"], p["forced"] = false, false, false
	p["base_ref"] = nil
	p["compare"] = "https://github.com/Codertocat/Hello-World/compare/@BEFORE@...@AFTER@"
	author := map[string]any{"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com", "username": "Codertocat"}
	head := map[string]any{
		"id": "@AFTER@", "tree_id": "@AFTER@", "distinct": true, "message": "load @N@",
		"timestamp": "2024-01-02T03:04:05Z", "url": "https://github.com/Codertocat/Hello-World/commit/@AFTER@",
		"author": author, "committer": author, "added": []string{}, "removed": []string{}, "modified": []string{"load.txt"},
	}
	p["head_commit"] = head
	p["commits"] = []any{head}
	out, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// waitRuns waits until every delivery's commit has a run, or no Delivery
// workflow is left running and no run has started for 10 s, or drain has
// passed, and returns the repository's runs by commit.
func waitRuns(ctx context.Context, srv *Server, ds []*loadDelivery, drain time.Duration) (map[string][]engine.RunInfo, error) {
	want := map[string]bool{}
	for _, d := range ds {
		want[d.sha] = true
	}
	deadline := time.Now().Add(drain)
	last, lastChange := -1, time.Now()
	for {
		all, err := engine.List(ctx, srv.client, "")
		if err != nil {
			return nil, err
		}
		runs := map[string][]engine.RunInfo{}
		found := 0
		for _, r := range all {
			if want[r.SHA] {
				if len(runs[r.SHA]) == 0 {
					found++
				}
				runs[r.SHA] = append(runs[r.SHA], r)
			}
		}
		if found == len(want) {
			return runs, nil
		}
		if found != last {
			last, lastChange = found, time.Now()
		}
		running, inbox := runningDeliveries(ctx, srv), srv.InboxPending()
		if time.Now().After(deadline) || (running == 0 && inbox == 0 && time.Since(lastChange) > 10*time.Second) {
			return runs, fmt.Errorf("%d of %d commits have a run after the drain; %d Delivery workflows still running, %d deliveries in the inbox", found, len(want), running, inbox)
		}
		time.Sleep(time.Second)
	}
}

func runningDeliveries(ctx context.Context, srv *Server) int64 {
	n, err := srv.client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", DeliveryWorkflowName)})
	if err != nil {
		return -1
	}
	return n.GetCount()
}

type deliveryOutcome struct {
	res DeliveryResult
	err error
}

// deliveryResults reads what each delivery's workflow did.
func deliveryResults(ctx context.Context, srv *Server, ds []*loadDelivery) []deliveryOutcome {
	out := make([]deliveryOutcome, len(ds))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, d := range ds {
		if d.status != http.StatusAccepted {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i].err = srv.client.GetWorkflow(ctx, "github-"+d.id, "").Get(ctx, &out[i].res)
		})
	}
	wg.Wait()
	return out
}

// runIDCollisions counts the commits whose run ID another commit's run
// also has.
func runIDCollisions(repo string, ds []*loadDelivery) int {
	seen := map[string]int{}
	for _, d := range ds {
		in := DeliveryInput{Via: ViaGitHub, Event: webhook.Event{Kind: webhook.KindPush, Repo: repo}}
		seen[RunID("load", runKey(in, "", plan.Git{Event: "push", SHA: d.sha}))]++
	}
	n := 0
	for _, c := range seen {
		if c > 1 {
			n += c
		}
	}
	return n
}

// useTemporalFromRepo points SLUICE_TEMPORAL_BIN at the repository's
// bin/sluice-temporal (make build) unless it is set.
func useTemporalFromRepo(b *testing.B) {
	if os.Getenv("SLUICE_TEMPORAL_BIN") != "" {
		return
	}
	p, err := filepath.Abs(filepath.Join("..", "bin", "sluice-temporal"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("the benchmark needs the embedded Temporal server: run `make build` (no %s), or set SLUICE_TEMPORAL_BIN", p)
	}
	b.Setenv("SLUICE_TEMPORAL_BIN", p)
}

// startBenchServer starts the benchmarks' server in dir: cfg with no
// runner, on a free loopback port, its home in dir and its embedded
// Temporal on the store SLUICE_BENCH_DB asks for (benchStore), logging
// its warnings to dir/server.log. It is closed when the benchmark ends.
func startBenchServer(b *testing.B, dir string, cfg Config) (store string, srv *Server) {
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	store, cfg.DB = benchStore(b)
	cfg.Listen, cfg.Home, cfg.Migrate, cfg.NoRunner = "127.0.0.1:0", filepath.Join(dir, "home"), cfg.DB != "", true
	srv, err = Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return store, srv
}

// benchStore is the embedded Temporal's store that SLUICE_BENCH_DB asks
// for: "sqlite" (the default, in the server's home) or "postgres", a
// PostgreSQL of the benchmark's own, whose URL it returns as db.
func benchStore(b *testing.B) (store, db string) {
	store = cmp.Or(os.Getenv("SLUICE_BENCH_DB"), "sqlite")
	switch store {
	case "sqlite":
	case "postgres":
		pg := pgtest.StartOptions(b, pgtest.Options{Durable: true})
		pg.CreateUser("sluice", "bench")
		db = pg.URL("sluice", "bench", "sluice", "sslmode=disable")
	default:
		b.Fatalf("SLUICE_BENCH_DB %q: give sqlite or postgres", store)
	}
	return store, db
}

func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
