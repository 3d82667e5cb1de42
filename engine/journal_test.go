package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// keptWorkspaces gives a stage prepared again the workspace it had, as the
// local stack's workspaces do after a crash, and keeps a journal beside it.
type keptWorkspaces struct {
	root     string
	mu       sync.Mutex
	prepared int
}

func (k *keptWorkspaces) Prepare(_ context.Context, req WorkspaceRequest) (string, error) {
	k.mu.Lock()
	k.prepared++
	k.mu.Unlock()
	dir := filepath.Join(k.root, unsafePath.ReplaceAllString(req.RunID+"-"+req.StageID, "_"))
	return dir, os.MkdirAll(dir, 0o755)
}

func (k *keptWorkspaces) Release(_ context.Context, _ WorkspaceRequest, dir string) error {
	return errors.Join(os.RemoveAll(dir), os.RemoveAll(dir+".journal"))
}

func (k *keptWorkspaces) StepJournal(_ WorkspaceRequest, dir string) (string, error) {
	return dir + ".journal", nil
}

func batchOf(ws string, steps ...plan.Step) StepsInput {
	in := StepsInput{RunID: "run-1", Pipeline: "p", StageID: "s", Workspace: ws}
	for _, s := range steps {
		in.Steps = append(in.Steps, BatchStep{Step: s, Timeout: time.Minute})
	}
	return in
}

// TestRunStepsJournal crashes a batch (its context ends) while a step runs,
// and runs it again in the same workspace: the steps that had finished are
// not run again and keep their results; the one that was running runs
// again. In another workspace, every step runs.
func TestRunStepsJournal(t *testing.T) {
	exec := newFakeExec()
	ws := &keptWorkspaces{root: t.TempDir()}
	a := &Activities{Runner: "r1", Workspaces: ws, Executors: steps.Registry{plan.KindRun: exec}}
	dir, err := ws.Prepare(context.Background(), WorkspaceRequest{RunID: "run-1", StageID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	in := batchOf(dir, step("a", "ok", "x=1"), step("lint", "fail", "style"), step("b", "wait", "g"), step("c", "ok"))
	in.Steps[1].Step.ContinueOnError = true

	ctx, crash := context.WithCancel(context.Background())
	go func() {
		for exec.count("s/b") == 0 {
			time.Sleep(time.Millisecond)
		}
		crash()
	}()
	first, err := a.RunSteps(ctx, in)
	var ce *temporal.CanceledError
	if !errors.As(err, &ce) || len(first.Steps) != 2 {
		t.Fatalf("crashed batch: %d steps, %v; want 2 steps and a cancellation", len(first.Steps), err)
	}
	// A line cut short by a crash is not a finished step.
	f, err := os.OpenFile(dir+".journal", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"ws":"` + dir + `","i":2,"step":"b","res":{"sta`)
	f.Close()

	exec.open("g")
	again, err := a.RunSteps(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{"s/a": 1, "s/lint": 1, "s/b": 2, "s/c": 1} {
		if got := exec.count(key); got != want {
			t.Errorf("%s ran %d times, want %d", key, got, want)
		}
	}
	if len(again.Steps) != 4 {
		t.Fatalf("batch run again finished %d steps, want 4", len(again.Steps))
	}
	for i := range 2 {
		got, want := again.Steps[i], first.Steps[i]
		if !got.Start.Equal(want.Start) || got.Error != want.Error || cloneJSON(t, got.Outputs) != cloneJSON(t, want.Outputs) {
			t.Errorf("step %d from the journal: %+v, want %+v", i, got, want)
		}
	}
	if again.Steps[0].Outputs["x"] != "1" || !strings.Contains(again.Steps[1].Error, "style") {
		t.Errorf("results from the journal: %+v", again.Steps[:2])
	}

	// A batch starting later in the stage finds its own steps only.
	tail := in
	tail.First, tail.Steps = 3, in.Steps[3:]
	if _, err := a.RunSteps(context.Background(), tail); err != nil {
		t.Fatal(err)
	}
	if got := exec.count("s/c"); got != 1 {
		t.Errorf("step c ran %d times after the journal recorded it, want 1", got)
	}

	// The journal speaks for its workspace only.
	other := filepath.Join(t.TempDir(), "fresh")
	os.MkdirAll(other, 0o755)
	in.Workspace = other
	os.Link(dir+".journal", other+".journal")
	if _, err := a.RunSteps(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if got := exec.count("s/a"); got != 2 {
		t.Errorf("step a ran %d times in all, want 2: once more in a new workspace", got)
	}
}

// TestBatchRunnerLostJournal loses the runner after it finished two steps
// of a batch but before the server heard of the second: the stage is
// prepared again, and the rest of the batch goes again in the same
// workspace, where the journal keeps the second step from running twice.
func TestBatchRunnerLostJournal(t *testing.T) {
	h := newHarness(t)
	ws := &keptWorkspaces{root: t.TempDir()}
	h.acts.Workspaces = ws
	var calls activityCalls
	calls.listen(h)
	loseFirstBatch(h, func(ctx context.Context, in StepsInput) StepsResult {
		part := in
		part.Steps = in.Steps[:2]
		res, err := h.acts.RunSteps(ctx, part)
		if err != nil {
			t.Error(err)
		}
		// The heartbeat that stored step b never reached the server.
		res.Steps = res.Steps[:1]
		return res
	})
	p := testPlan("lost", stage("s", nil, step("a", "ok"), step("b", "ok", "y=2"), step("c", "ok"), step("d", "ok", tmpl("x=", out("b", "y")))))
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateSucceeded {
		t.Fatalf("run %s (%s)", st.State, st.Error)
	}
	if want := "RunSteps a b c; RunSteps b c; RunStep d"; calls.String() != want {
		t.Errorf("activities: %s\nwant: %s", calls.String(), want)
	}
	for key, want := range map[string]int{"s/a": 1, "s/b": 1, "s/c": 1, "s/d": 1} {
		if got := h.exec.count(key); got != want {
			t.Errorf("%s ran %d times, want %d", key, got, want)
		}
	}
	if ws.prepared != 2 {
		t.Errorf("prepared %d workspaces, want 2 (the runner was lost once)", ws.prepared)
	}
	s := stageOf(t, st, "s")
	if s.Steps[3].Outputs["x"] != "2" || s.Steps[1].State != StateSucceeded {
		t.Errorf("the output of the step from the journal did not reach the step using it: %+v", s.Steps)
	}
}

// cutOff is a HeartbeatRecorder for a runner cut off from the server until
// reconnect is called.
type cutOff struct {
	mu        sync.Mutex
	connected bool
}

func (c *cutOff) RecordActivityHeartbeat(context.Context, []byte, ...any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.connected {
		return errors.New("connection refused")
	}
	return nil
}

func (c *cutOff) reconnect() {
	c.mu.Lock()
	c.connected = true
	c.mu.Unlock()
}

// TestJournalLeadStopsCutOffRunner runs a batch with a journal on a runner
// that cannot reach the server: it goes on without waiting for heartbeats
// at first, but does not start a step while one that finished JournalLead
// ago is not stored, so that it does not run the stage alone for long.
func TestJournalLeadStopsCutOffRunner(t *testing.T) {
	if testing.Short() {
		t.Skip("waits JournalLead")
	}
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger())
	env := s.NewTestActivityEnvironment()
	exec := newFakeExec()
	ws := &keptWorkspaces{root: t.TempDir()}
	net := &cutOff{}
	a := &Activities{Runner: "r1", Workspaces: ws, Executors: steps.Registry{plan.KindRun: exec}, Heartbeats: net, HeartbeatInterval: 20 * time.Millisecond}
	env.RegisterActivity(a)
	dir, _ := ws.Prepare(context.Background(), WorkspaceRequest{RunID: "run-1", StageID: "s"})
	in := batchOf(dir, step("a", "ok"), step("b", "sleep", (JournalLead+500*time.Millisecond).String()), step("c", "ok"))

	reconnected := make(chan time.Time, 1)
	go func() {
		for !slices.Contains(exec.events(), "end s/b") {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		reconnected <- time.Now()
		net.reconnect()
	}()
	if _, err := env.ExecuteActivity(a.RunSteps, in); err != nil {
		t.Fatal(err)
	}
	events := exec.events()
	if i := slices.Index(events, "start s/b"); i != 2 {
		t.Errorf("step b did not start at once after a, unstored: %q", events)
	}
	if exec.count("s/c") != 1 {
		t.Fatalf("step c ran %d times, want once", exec.count("s/c"))
	}
	// c started only after the server could store a again.
	select {
	case <-reconnected:
	default:
		t.Error("step c started while the runner was cut off, with a unstored for longer than JournalLead")
	}
}
