package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// slowServer answers heartbeats after delay, with err.
type slowServer struct {
	delay time.Duration
	err   error
	calls atomic.Int32
}

func (s *slowServer) RecordActivityHeartbeat(ctx context.Context, _ []byte, _ ...any) error {
	s.calls.Add(1)
	select {
	case <-time.After(s.delay):
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func runStepWith(t *testing.T, hb HeartbeatRecorder, cmd ...any) (StepResult, error, *fakeExec) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger())
	env := s.NewTestActivityEnvironment()
	exec := newFakeExec()
	ws := &keptWorkspaces{root: t.TempDir()}
	a := &Activities{Runner: "r1", Workspaces: ws, Executors: steps.Registry{plan.KindRun: exec}, Heartbeats: hb, HeartbeatInterval: 10 * time.Millisecond}
	env.RegisterActivity(a)
	dir, _ := ws.Prepare(context.Background(), WorkspaceRequest{RunID: "run-1", StageID: "s"})
	v, err := env.ExecuteActivity(a.RunStep, StepInput{RunID: "run-1", Pipeline: "p", StageID: "s", Workspace: dir, Step: step("x", cmd...)})
	var res StepResult
	if err == nil {
		_ = v.Get(&res)
	}
	return res, err, exec
}

// A loaded server that answers a step's heartbeats slower than the
// heartbeat throttle (here after 3.5 s, failing: deadline exceeded) does not
// cancel the step: only the server's heartbeat timeout decides that a
// runner is lost. (Through the SDK, such a heartbeat cancelled the
// activity: "unexpected activity cancel error".)
func TestSlowHeartbeatsDoNotCancelSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for slow heartbeats")
	}
	srv := &slowServer{delay: HeartbeatThrottle + 500*time.Millisecond, err: context.DeadlineExceeded}
	_, err, exec := runStepWith(t, srv, "sleep", (2 * HeartbeatThrottle).String())
	if err != nil {
		t.Fatalf("the step failed with its heartbeats slow: %v", err)
	}
	if exec.count("s/x") != 1 || len(exec.cancelled) != 0 {
		t.Errorf("step ran %d times, cancelled: %q", exec.count("s/x"), exec.cancelled)
	}
	if n := srv.calls.Load(); n < 2 {
		t.Errorf("%d heartbeats sent in 6 s, want a few", n)
	}
}

// A server that answers a heartbeat with a cancellation (the run was
// cancelled) cancels the running step at once.
func TestCancelledHeartbeatCancelsStep(t *testing.T) {
	srv := &slowServer{err: temporal.NewCanceledError()}
	start := time.Now()
	_, err, exec := runStepWith(t, srv, "wait", "never")
	if err == nil {
		t.Fatal("the step ended without error after its run was cancelled")
	}
	if len(exec.cancelled) != 1 {
		t.Errorf("the executor saw no cancellation: %q (err %v)", exec.cancelled, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelling took %s", took)
	}
}
