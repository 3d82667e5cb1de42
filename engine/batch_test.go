package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// activityCalls records the activities a test workflow started, with the
// steps each RunStep or RunSteps carried.
type activityCalls struct {
	mu    sync.Mutex
	calls []string
}

func (a *activityCalls) listen(h *harness) {
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		call := info.ActivityType.Name
		switch call {
		case "RunStep":
			var in StepInput
			if args.Get(&in) == nil {
				call += " " + in.Step.Name
			}
		case RunStepsActivity:
			var in StepsInput
			if args.Get(&in) == nil {
				for _, s := range in.Steps {
					call += " " + s.Step.Name
				}
			}
		default:
			return
		}
		a.mu.Lock()
		a.calls = append(a.calls, call)
		a.mu.Unlock()
	})
}

func (a *activityCalls) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.calls, "; ")
}

func TestStepBatches(t *testing.T) {
	retried := step("retried", "ok")
	retried.Retry = &plan.Retry{Attempts: 2}
	mayFail := step("lint", "fail", "style")
	mayFail.ContinueOnError = true
	for _, tc := range []struct {
		name      string
		steps     []plan.Step
		wantCalls string
		wantState State
		check     func(t *testing.T, s *StageStatus)
	}{
		{
			name:      "steps without retries or outputs between them run as one activity",
			steps:     []plan.Step{step("a", "ok", "x=1"), mayFail, step("b", "ok")},
			wantCalls: "RunSteps a lint b",
			wantState: StateSucceeded,
			check: func(t *testing.T, s *StageStatus) {
				a, lint := s.Steps[0], s.Steps[1]
				if a.State != StateSucceeded || a.Outputs["x"] != "1" || a.Start.IsZero() || a.End.Before(a.Start) {
					t.Errorf("step a: %+v", a)
				}
				if lint.State != StateFailed || !strings.Contains(lint.Error, "style") {
					t.Errorf("step lint: %+v", lint)
				}
			},
		},
		{
			name:      "a step using an output of the batch, or with retries, starts anew",
			steps:     []plan.Step{step("a", "ok", "x=1"), step("b", "ok"), step("c", "ok", tmpl("y=", out("a", "x"))), step("d", "ok"), retried, step("e", "ok")},
			wantCalls: "RunSteps a b; RunSteps c d; RunStep retried; RunStep e",
			wantState: StateSucceeded,
			check: func(t *testing.T, s *StageStatus) {
				if got := s.Steps[2].Outputs["y"]; got != "1" {
					t.Errorf("step c saw y=%q, want 1", got)
				}
			},
		},
		{
			name:      "a failed step ends the batch and the stage",
			steps:     []plan.Step{step("a", "ok"), step("b", "fail", "broken"), step("c", "ok")},
			wantCalls: "RunSteps a b c",
			wantState: StateFailed,
			check: func(t *testing.T, s *StageStatus) {
				if s.Steps[1].State != StateFailed || s.Steps[2].State != StateSkipped || !strings.Contains(s.Reason, "step b failed") {
					t.Errorf("stage %+v", s)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var calls activityCalls
			calls.listen(h)
			st := h.run(t, RunInput{Plan: testPlan("batch", stage("s", nil, tc.steps...))})
			if got := calls.String(); got != tc.wantCalls {
				t.Errorf("activities: %s\nwant: %s", got, tc.wantCalls)
			}
			s := wantStage(t, st, "s", tc.wantState, "")
			tc.check(t, s)
			if h.exec.count("s/c") > 0 && tc.wantState == StateFailed {
				t.Error("step c ran after the step before it failed")
			}
		})
	}
}

// TestBatchRunnerLost loses the runner in the middle of a batch: the steps
// its heartbeat recorded as finished are kept and never run again; the
// rest of the batch, from the step that was running, goes again on a new
// runner, then the steps after it.
func TestBatchRunnerLost(t *testing.T) {
	h := newHarness(t)
	var calls activityCalls
	calls.listen(h)
	loseFirstBatch(h, func(_ context.Context, in StepsInput) StepsResult {
		now := time.Now()
		return StepsResult{StageID: in.StageID, First: in.First, Steps: []BatchStepResult{
			{Outputs: map[string]string{"x": "1"}, Start: now, End: now},
			{Start: now, End: now},
		}}
	})
	p := testPlan("lost", stage("s", nil, step("a", "ok"), step("b", "ok"), step("c", "ok"), step("d", "ok", tmpl("x=", out("a", "x"))), step("e", "ok")))
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateSucceeded {
		t.Fatalf("run %s (%s)", st.State, st.Error)
	}
	if want := "RunSteps a b c; RunSteps c; RunSteps d e"; calls.String() != want {
		t.Errorf("activities: %s\nwant: %s", calls.String(), want)
	}
	for key, want := range map[string]int{"s/a": 0, "s/b": 0, "s/c": 1, "s/d": 1, "s/e": 1} {
		if got := h.exec.count(key); got != want {
			t.Errorf("%s ran %d times, want %d", key, got, want)
		}
	}
	if prep, _ := h.ws.counts(); prep != 2 {
		t.Errorf("prepared %d workspaces, want 2 (the runner was lost once)", prep)
	}
	s := stageOf(t, st, "s")
	if s.Steps[0].Outputs["x"] != "1" || s.Steps[3].Outputs["x"] != "1" {
		t.Errorf("the output of a kept step did not reach the step using it: %+v", s.Steps)
	}
}

// loseFirstBatch makes the first RunSteps of a test end as one whose runner
// was lost: a heartbeat timeout carrying the progress that progress
// returns. Later ones run.
func loseFirstBatch(h *harness, progress func(context.Context, StepsInput) StepsResult) {
	lost := false
	h.env.OnActivity(h.acts.RunSteps, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in StepsInput) (StepsResult, error) {
			if lost {
				return h.acts.RunSteps(ctx, in)
			}
			lost = true
			return StepsResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_HEARTBEAT, nil, progress(ctx, in))
		})
}

// TestServerBatchProgress runs a batch on a real server: while a step of
// it waits, Status shows the steps before it finished (from the batch's
// heartbeat), and the step running.
func TestServerBatchProgress(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "batch-runner")
	ctx := testCtx(t)
	p := testPlan("progress", stage("s", nil, step("a", "ok", "x=1"), step("b", "ok"), step("gate", "wait", "g"), step("c", "ok")))
	runID, err := Start(ctx, c, p, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := waitFor(t, c, runID, "steps a and b to show as finished", func(st RunStatus) bool {
		s, _ := st.Stage("s")
		return s != nil && s.Steps[1].State == StateSucceeded
	})
	s := stageOf(t, st, "s")
	if s.Steps[0].State != StateSucceeded || s.Steps[0].Outputs["x"] != "1" || s.Steps[2].State != StateRunning || s.Steps[3].State != StatePending {
		t.Errorf("while the batch runs: %+v", s.Steps)
	}
	tr.exec.open("g")
	st = waitDone(t, c, runID)
	if st.State != StateSucceeded {
		t.Fatalf("run %s: %s", st.State, st.Error)
	}
	for _, key := range []string{"s/a", "s/b", "s/gate", "s/c"} {
		if got := tr.exec.count(key); got != 1 {
			t.Errorf("%s ran %d times, want once", key, got)
		}
	}
}
