package engine

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/runners/artifacts"
	"github.com/sluice-ci/sluice/steps"
)

// One real Temporal server serves every test that needs one; they run one
// after the other, since runners share the well-known task queues.
var (
	srvOnce sync.Once
	srv     *temporaltest.TestServer
	srvErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	os.Exit(code)
}

func testClient(t testing.TB) client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Temporal server")
	}
	srvOnce.Do(func() {
		srv = temporaltest.NewServer(temporaltest.WithBaseClientOptions(client.Options{Logger: quietLogger()}))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srvErr = RegisterSearchAttributes(ctx, srv.GetDefaultClient(), srv.GetDefaultNamespace())
	})
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	return srv.GetDefaultClient()
}

type testRunner struct {
	exec *fakeExec
	ws   *countingWorkspaces
	logs *memLogs
}

// startRunner starts an in-process runner that also runs the workflows.
func startRunner(t testing.TB, c client.Client, name string) *testRunner {
	t.Helper()
	tr := &testRunner{exec: newFakeExec(), ws: &countingWorkspaces{TempWorkspaces: TempWorkspaces{Dir: t.TempDir()}}, logs: newMemLogs()}
	startTestRunner(t, c, RunnerOptions{
		Name: name,
		Activities: &Activities{
			Workspaces: tr.ws,
			Executors:  steps.Registry{plan.KindRun: tr.exec},
			Logs:       tr.logs,
		},
		Artifacts: artifacts.Store{Dir: t.TempDir()},
		Workflows: true,
	})
	return tr
}

// startTestRunner starts a runner that heartbeats every 200 ms and fails
// a workflow that panics, and stops it when the test ends.
func startTestRunner(t testing.TB, c client.Client, o RunnerOptions) {
	t.Helper()
	o.Activities.HeartbeatInterval = 200 * time.Millisecond
	o.Worker.WorkflowPanicPolicy = worker.FailWorkflow
	o.Worker.MaxHeartbeatThrottleInterval = 200 * time.Millisecond
	r, err := NewRunner(c, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls the status of a run until cond holds.
func waitFor(t *testing.T, c client.Client, runID string, what string, cond func(RunStatus) bool) RunStatus {
	t.Helper()
	ctx := testCtx(t)
	var st RunStatus
	var err error
	for ctx.Err() == nil {
		st, err = Status(ctx, c, runID)
		if err == nil && cond(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("run %s: waiting for %s: last status %+v, error %v", runID, what, st, err)
	return st
}

// waitDone waits for the latest execution of a run to end and returns its
// status.
func waitDone(t *testing.T, c client.Client, runID string) RunStatus {
	t.Helper()
	ctx := testCtx(t)
	_ = c.GetWorkflow(ctx, runID, "").Get(ctx, nil)
	st, err := Status(ctx, c, runID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func stageState(id string, s State) func(RunStatus) bool {
	return func(st RunStatus) bool {
		ss, ok := st.Stage(id)
		return ok && ss.State == s
	}
}

func TestServerEndToEnd(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "e2e-runner")
	ctx := testCtx(t)

	test := func(goVersion string) plan.Stage {
		s := stage("test[go="+goVersion+"]", needs("build"), step("unit", "env", "GO"))
		s.Matrix = map[string]string{"go": goVersion}
		s.Env = map[string]plan.Template{"GO": plan.Lit(goVersion)}
		return s
	}
	p := testPlan("e2e",
		stage("build", nil, step("image", "ok", "digest=sha256:feed")),
		test("1.22"), test("1.23"),
		stage("deploy", needs("test[go=1.22]", "test[go=1.23]"), step("ship", "ok", tmpl("shipped=", out("image", "digest")))),
	)
	p.Stages[3].Approval = &plan.Approval{Approvers: []string{"team:sre"}}
	runID, err := Start(ctx, c, p, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(runID, "e2e-") {
		t.Errorf("run ID %q", runID)
	}

	st := waitFor(t, c, runID, "deploy to wait for approval", stageState("deploy", StateWaitingApproval))
	if st.State != StateRunning || tr.exec.count("deploy/ship") != 0 {
		t.Errorf("while waiting: run %s, ship ran %d times", st.State, tr.exec.count("deploy/ship"))
	}
	for _, id := range []string{"test[go=1.22]", "test[go=1.23]"} {
		if got := stageOf(t, st, id).Steps[0].Outputs["GO"]; got != strings.TrimSuffix(strings.TrimPrefix(id, "test[go="), "]") {
			t.Errorf("%s saw GO=%q", id, got)
		}
	}
	if err := Approve(ctx, c, runID, "build", "ann", ""); err == nil || !strings.Contains(err.Error(), "needs no approval") {
		t.Errorf("approving a stage without approval: %v", err)
	}
	if err := Approve(ctx, c, runID, "deploy", "ann", "lgtm"); err != nil {
		t.Fatal(err)
	}
	if err := Reject(ctx, c, runID, "deploy", "bob", "too late"); err == nil {
		t.Error("a second decision was accepted")
	}

	st = waitDone(t, c, runID)
	if st.State != StateSucceeded {
		t.Fatalf("run %s: %s", st.State, st.Error)
	}
	d := stageOf(t, st, "deploy")
	if d.Approval.By != "ann" || d.Steps[0].Outputs["shipped"] != "sha256:feed" || d.Runner != "e2e-runner" {
		t.Errorf("deploy %+v", d)
	}
	for key, want := range map[string]int{"build/image": 1, "test[go=1.22]/unit": 1, "test[go=1.23]/unit": 1, "deploy/ship": 1} {
		if got := tr.exec.count(key); got != want {
			t.Errorf("%s ran %d times, want %d", key, got, want)
		}
	}
	if p, r := tr.ws.counts(); p != 4 || r != 4 {
		t.Errorf("prepared %d, released %d workspaces", p, r)
	}

	// Visibility is eventually consistent.
	deadline := time.Now().Add(15 * time.Second)
	for {
		runs, err := List(ctx, c, "SluicePipeline = 'e2e' AND SluiceStatus = 'succeeded'")
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(runs, func(r RunInfo) bool { return r.RunID == runID })
		if i >= 0 {
			r := runs[i]
			if r.Pipeline != "e2e" || r.Repo != "acme/web" || r.Ref != "refs/heads/main" || r.SHA != p.Git.SHA || r.Start.IsZero() || r.End.IsZero() {
				t.Errorf("listed %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s not listed: %+v", runID, runs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestServerCancel(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "cancel-runner")
	ctx := testCtx(t)
	p := testPlan("cancel", stage("long", nil, step("wait", "wait", "never"), step("next", "ok")))
	runID, err := Start(ctx, c, p, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, runID, "the step to run", func(st RunStatus) bool { return tr.exec.count("long/wait") == 1 })
	if err := Retry(ctx, c, runID, "next"); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("retrying a running run: %v", err)
	}
	if err := Cancel(ctx, c, runID); err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, c, runID)
	if st.State != StateCancelled || stageOf(t, st, "long").Steps[0].State != StateCancelled {
		t.Errorf("run %s, stage %+v", st.State, stageOf(t, st, "long"))
	}
	if !slices.Equal(tr.exec.cancelled, []string{"long/wait"}) {
		t.Errorf("the executor saw cancellation of %q", tr.exec.cancelled)
	}
	if p, r := tr.ws.counts(); p != 1 || r != 1 {
		t.Errorf("prepared %d, released %d workspaces", p, r)
	}
}

func TestServerConcurrencyGroup(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "group-runner")
	ctx := testCtx(t)
	groupPlan := func(id string, cancel bool, cmd ...any) plan.Plan {
		p := testPlan("grouped", stage(id, nil, step("x", cmd...)))
		p.Concurrency = &plan.Concurrency{Group: "deploy-prod", CancelInProgress: cancel}
		return p
	}

	// Without cancel_in_progress the second run waits for the first.
	a, err := Start(ctx, c, groupPlan("a", false, "wait", "a"), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, a, "a to run", func(RunStatus) bool { return tr.exec.count("a/x") == 1 })
	b, err := Start(ctx, c, groupPlan("b", false, "ok"), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, b, "b to queue", func(st RunStatus) bool { return st.State == StateQueued })
	time.Sleep(500 * time.Millisecond)
	if n := tr.exec.count("b/x"); n != 0 {
		t.Fatalf("b ran while a held the group")
	}
	tr.exec.open("a")
	if st := waitDone(t, c, b); st.State != StateSucceeded || st.Group != "deploy-prod" {
		t.Fatalf("b: %s %s", st.State, st.Error)
	}
	if st := waitDone(t, c, a); st.State != StateSucceeded {
		t.Fatalf("a: %s", st.State)
	}
	events := tr.exec.events()
	if indexOf(t, events, "end a/x") > indexOf(t, events, "start b/x") {
		t.Errorf("b started before a ended: %q", events)
	}

	// With cancel_in_progress the new run cancels the one in progress.
	cRun, err := Start(ctx, c, groupPlan("c", false, "wait", "never"), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, cRun, "c to run", func(RunStatus) bool { return tr.exec.count("c/x") == 1 })
	d, err := Start(ctx, c, groupPlan("d", true, "ok"), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, c, d)
	if st.State != StateSucceeded {
		t.Fatalf("d: %s %s", st.State, st.Error)
	}
	// Both runs say so: the older is superseded by the newer, which lists
	// what it superseded.
	if !slices.Equal(st.Supersedes, []string{cRun}) {
		t.Errorf("d supersedes %q, want [%s]", st.Supersedes, cRun)
	}
	if st := waitDone(t, c, cRun); st.State != StateCancelled || st.SupersededBy != d || !strings.Contains(st.Error, "superseded by run "+d) {
		t.Fatalf("c: %s, superseded by %q, error %q", st.State, st.SupersededBy, st.Error)
	}
	if !slices.Contains(tr.exec.cancelled, "c/x") {
		t.Errorf("c's step was not cancelled: %q", tr.exec.cancelled)
	}
}

func TestServerRetryFromStep(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "retry-runner")
	ctx := testCtx(t)
	p := testPlan("retry",
		stage("build", nil, step("a", "ok", "out=A1"), step("b", "ok")),
		stage("test", needs("build"), step("c", "flaky", "1"), step("d", "ok", tmpl("got=", out("a", "out")))),
		stage("other", nil, step("e", "ok")),
	)
	runID, err := Start(ctx, c, p, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, c, runID)
	if st.State != StateFailed || !strings.Contains(st.Error, "flaky failure") {
		t.Fatalf("first attempt: %s %q", st.State, st.Error)
	}

	if err := Retry(ctx, c, runID, "nope"); err == nil || !strings.Contains(err.Error(), `no step "nope"`) {
		t.Errorf("retry from an unknown step: %v", err)
	}
	if err := Retry(ctx, c, runID, "c"); err != nil {
		t.Fatal(err)
	}
	st = waitDone(t, c, runID)
	if st.State != StateSucceeded || st.ResumedFrom != "c" {
		t.Fatalf("retried run: %s %q from %q", st.State, st.Error, st.ResumedFrom)
	}
	want := map[string]int{"build/a": 1, "build/b": 1, "test/c": 2, "test/d": 1, "other/e": 1}
	for key, n := range want {
		if got := tr.exec.count(key); got != n {
			t.Errorf("%s ran %d times, want %d", key, got, n)
		}
	}
	b := stageOf(t, st, "build")
	if !b.Steps[0].Resumed || b.State != StateSucceeded {
		t.Errorf("build after retry: %+v", b)
	}
	if got := stageOf(t, st, "test").Steps[1].Outputs["got"]; got != "A1" {
		t.Errorf("kept output reached d as %q", got)
	}

	// Retrying from inside a stage keeps the steps before it.
	if err := Retry(ctx, c, runID, "build/b"); err != nil {
		t.Fatal(err)
	}
	st = waitDone(t, c, runID)
	if st.State != StateSucceeded {
		t.Fatalf("second retry: %s %q", st.State, st.Error)
	}
	want = map[string]int{"build/a": 1, "build/b": 2, "test/c": 3, "test/d": 2, "other/e": 1}
	for key, n := range want {
		if got := tr.exec.count(key); got != n {
			t.Errorf("after the second retry %s ran %d times, want %d", key, got, n)
		}
	}
}
