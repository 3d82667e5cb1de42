package engine

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// silentHeartbeats is the HeartbeatRecorder of a runner whose heartbeats
// never reach the server.
type silentHeartbeats struct{}

func (silentHeartbeats) RecordActivityHeartbeat(context.Context, []byte, ...any) error { return nil }

// TestRecordLostRunnerHistory records testdata/lost_runner.json: a runner
// takes a stage, goes silent in the middle of a batch (its heartbeats stop
// reaching the server) and stops taking stages; after the heartbeat
// timeout another runner takes the stage and runs the rest of the batch.
// It runs only with -update, and takes HeartbeatTimeout; TestReplay
// replays what it records.
func TestRecordLostRunnerHistory(t *testing.T) {
	if !*update {
		t.Skip("run with -update to record histories")
	}
	c := testClient(t)
	wo := worker.Options{WorkflowPanicPolicy: worker.FailWorkflow}

	// The workflows run on their own worker, so that the stage goes to
	// the silent runner first: the only one taking stages at the start.
	wf := NewWorkflowWorker(c, wo)
	if err := wf.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wf.Stop)
	silentExec := newFakeExec()
	silent := &Activities{
		Runner: "silent-runner", Queue: RunnerQueue("silent-runner"),
		Workspaces: &countingWorkspaces{TempWorkspaces: TempWorkspaces{Dir: t.TempDir()}},
		Executors:  steps.Registry{plan.KindRun: silentExec},
		Logs:       newMemLogs(),
		Heartbeats: silentHeartbeats{},
	}
	own, stages := worker.New(c, silent.Queue, wo), worker.New(c, StageQueue(nil), wo)
	for _, w := range []worker.Worker{own, stages} {
		RegisterActivities(w, silent)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(own.Stop)

	p := testPlan("lost_runner", stage("s", nil, step("a", "ok", "x=1"), step("b", "wait", "g"), step("c", "ok", "y=2")), stage("after", needs("s"), step("d", "ok")))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runID, err := Start(ctx, c, p, StartOptions{RunID: "history-lost_runner-" + NewRunID("")})
	if err != nil {
		t.Fatal(err)
	}
	for silentExec.count("s/b") == 0 {
		if ctx.Err() != nil {
			t.Fatal("the silent runner never started step b")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stages.Stop()
	// A runner that works takes the stage once the silent one is given up.
	startRunner(t, c, "good-runner").exec.open("g")
	defer silentExec.open("g")

	if err := c.GetWorkflow(ctx, runID, "").Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, c, runID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateSucceeded {
		t.Fatalf("run ended %s (%s), want succeeded", st.State, st.Error)
	}
	recordHistory(t, c, runID, "lost_runner")
}
