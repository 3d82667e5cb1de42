package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

type harness struct {
	env   *testsuite.TestWorkflowEnvironment
	exec  *fakeExec
	ws    *countingWorkspaces
	logs  *memLogs
	acts  *Activities
	state RunStatus
	err   error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger())
	h := &harness{env: s.NewTestWorkflowEnvironment(), exec: newFakeExec(), logs: newMemLogs()}
	h.ws = &countingWorkspaces{TempWorkspaces: TempWorkspaces{Dir: t.TempDir()}}
	h.acts = &Activities{
		Runner:            "r1",
		Queue:             RunnerQueue("r1"),
		Workspaces:        h.ws,
		Executors:         steps.Registry{plan.KindRun: h.exec},
		Logs:              h.logs,
		HeartbeatInterval: 20 * time.Millisecond,
		Secrets: HostSecrets{LookupEnv: func(k string) (string, bool) {
			if k == "TOKEN_ENV" {
				return "s3cr3t-value", true
			}
			return "", false
		}},
	}
	h.env.RegisterWorkflowWithOptions(Pipeline, workflow.RegisterOptions{Name: WorkflowName})
	h.env.RegisterActivity(h.acts)
	h.env.SetTestTimeout(30 * time.Second)
	// See stopActivity.
	h.env.SetOnActivityCanceledListener(func(info *activity.Info) { h.exec.stopActivity(info.ActivityID) })
	return h
}

// run executes the workflow and decodes its status from the result or the
// error details.
func (h *harness) run(t *testing.T, in RunInput) RunStatus {
	t.Helper()
	h.env.ExecuteWorkflow(WorkflowName, in)
	if !h.env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	h.err = h.env.GetWorkflowError()
	var st RunStatus
	if h.err == nil {
		if err := h.env.GetWorkflowResult(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	var ae *temporal.ApplicationError
	var ce *temporal.CanceledError
	switch {
	case errors.As(h.err, &ae) && ae.HasDetails():
		if err := ae.Details(&st); err != nil {
			t.Fatal(err)
		}
	case errors.As(h.err, &ce) && ce.HasDetails():
		if err := ce.Details(&st); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("workflow failed without a status: %v", h.err)
	}
	return st
}

func (h *harness) query(t *testing.T) RunStatus {
	t.Helper()
	v, err := h.env.QueryWorkflow(QueryStatus)
	if err != nil {
		t.Fatal(err)
	}
	var st RunStatus
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func stageOf(t *testing.T, st RunStatus, id string) *StageStatus {
	t.Helper()
	s, ok := st.Stage(id)
	if !ok {
		t.Fatalf("no stage %q in status", id)
	}
	return s
}

func wantStage(t *testing.T, st RunStatus, id string, state State, reason string) *StageStatus {
	t.Helper()
	s := stageOf(t, st, id)
	if s.State != state || !strings.Contains(s.Reason, reason) {
		t.Errorf("stage %s: got %s (%q), want %s (containing %q)", id, s.State, s.Reason, state, reason)
	}
	return s
}

func TestDAGOrder(t *testing.T) {
	h := newHarness(t)
	p := testPlan("dag",
		stage("a", nil, step("a1", "sleep", "20ms"), step("a2", "ok")),
		stage("b", needs("a"), step("b1", "sleep", "30ms")),
		stage("c", needs("a"), step("c1", "sleep", "10ms")),
		stage("d", needs("b", "c"), step("d1", "ok")),
	)
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateSucceeded || h.err != nil {
		t.Fatalf("run: %s %v", st.State, h.err)
	}
	ev := h.exec.events()
	if !(indexOf(t, ev, "end a/a1") < indexOf(t, ev, "start a/a2")) {
		t.Errorf("steps of a stage out of order: %q", ev)
	}
	for _, mid := range []string{"b/b1", "c/c1"} {
		if !(indexOf(t, ev, "end a/a2") < indexOf(t, ev, "start "+mid) && indexOf(t, ev, "end "+mid) < indexOf(t, ev, "start d/d1")) {
			t.Errorf("%s out of DAG order: %q", mid, ev)
		}
	}
	if h.exec.maxRunning < 2 {
		t.Errorf("b and c did not run in parallel (max %d at once)", h.exec.maxRunning)
	}
	for _, s := range st.Stages {
		if s.State != StateSucceeded || s.Runner != "r1" || s.Start.IsZero() || s.End.IsZero() {
			t.Errorf("stage %s: %+v", s.ID, s)
		}
		for _, ss := range s.Steps {
			if ss.State != StateSucceeded || ss.Attempt != 1 {
				t.Errorf("step %s/%s: %+v", s.ID, ss.Name, ss)
			}
		}
	}
	if p, r := h.ws.counts(); p != 4 || r != 4 {
		t.Errorf("prepared %d and released %d workspaces, want 4 and 4", p, r)
	}
}

func TestMaxParallel(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
		want int
	}{
		{"bounded", 2, 2},
		{"unbounded", 0, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var stages []plan.Stage
			for _, id := range []string{"s1", "s2", "s3", "s4"} {
				stages = append(stages, stage(id, nil, step("x", "sleep", "150ms")))
			}
			p := testPlan("par", stages...)
			p.MaxParallel = tc.max
			st := h.run(t, RunInput{Plan: p})
			if st.State != StateSucceeded {
				t.Fatalf("run: %s %v", st.State, h.err)
			}
			if h.exec.maxRunning != tc.want {
				t.Errorf("at most %d stages ran at once, want %d", h.exec.maxRunning, tc.want)
			}
		})
	}
}

func TestFailFast(t *testing.T) {
	h := newHarness(t)
	p := testPlan("ff",
		stage("build", nil, step("compile", "sleep", "50ms"), step("link", "fail", "boom"), step("pack", "ok")),
		stage("lint", nil, step("vet", "wait", "never")),
		stage("test", needs("build"), step("unit", "ok")),
		stage("later", needs("lint"), step("x", "ok")),
		stage("off", nil, step("x", "ok")),
	)
	p.Stages[4].Skip = `when is false`
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateFailed {
		t.Fatalf("run state %s, want failed", st.State)
	}
	if !strings.Contains(h.err.Error(), "stage build failed: step link failed") || !strings.Contains(st.Error, "boom") {
		t.Errorf("run error %q / %v", st.Error, h.err)
	}
	b := wantStage(t, st, "build", StateFailed, "step link failed")
	if b.Steps[1].State != StateFailed || b.Steps[2].State != StateSkipped {
		t.Errorf("build steps: %+v", b.Steps)
	}
	l := wantStage(t, st, "lint", StateCancelled, "stage build failed")
	if l.Steps[0].State != StateCancelled {
		t.Errorf("lint step: %+v", l.Steps[0])
	}
	wantStage(t, st, "test", StateSkipped, "needs build which failed")
	wantStage(t, st, "later", StateSkipped, "needs lint which was cancelled")
	wantStage(t, st, "off", StateSkipped, "when is false")
	if h.exec.count("lint/vet") != 1 {
		t.Errorf("lint/vet ran %d times", h.exec.count("lint/vet"))
	}
	if p, r := h.ws.settled(); p != 2 || r != 2 {
		t.Errorf("prepared %d and released %d workspaces, want 2 and 2", p, r)
	}
}

func TestContinueOnError(t *testing.T) {
	h := newHarness(t)
	flaky := step("flaky", "fail", "ignored")
	flaky.ContinueOnError = true
	p := testPlan("coe",
		stage("a", nil, flaky, step("after", "ok")),
		stage("b", nil, step("bad", "fail", "tolerated")),
		stage("c", needs("b"), step("runs", "ok")),
	)
	p.Stages[1].ContinueOnError = true
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateSucceeded || h.err != nil {
		t.Fatalf("run: %s %v", st.State, h.err)
	}
	a := wantStage(t, st, "a", StateSucceeded, "")
	if a.Steps[0].State != StateFailed || !strings.Contains(a.Steps[0].Error, "ignored") || a.Steps[1].State != StateSucceeded {
		t.Errorf("a steps: %+v", a.Steps)
	}
	wantStage(t, st, "b", StateFailed, "tolerated")
	wantStage(t, st, "c", StateSucceeded, "")
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stage     *plan.Retry
		step      *plan.Retry
		flaky     string
		wantState State
		wantCalls int
	}{
		{"step retry succeeds", nil, &plan.Retry{Attempts: 3, Backoff: plan.Duration(time.Second)}, "2", StateSucceeded, 3},
		{"step retry exhausted", nil, &plan.Retry{Attempts: 2}, "5", StateFailed, 2},
		{"stage retry applies", &plan.Retry{Attempts: 4, Backoff: plan.Duration(time.Second), MaxBackoff: plan.Duration(2 * time.Second)}, nil, "3", StateSucceeded, 4},
		{"step overrides stage", &plan.Retry{Attempts: 5}, &plan.Retry{Attempts: 1}, "1", StateFailed, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := step("s", "flaky", tc.flaky, "v=1")
			s.Retry = tc.step
			p := testPlan("retry", stage("a", nil, s))
			p.Stages[0].Retry = tc.stage
			st := h.run(t, RunInput{Plan: p})
			if st.State != tc.wantState {
				t.Fatalf("run %s, want %s (%v)", st.State, tc.wantState, h.err)
			}
			ss := stageOf(t, st, "a").Steps[0]
			if got := h.exec.count("a/s"); got != tc.wantCalls || ss.Attempt != tc.wantCalls {
				t.Errorf("step ran %d times, attempt %d; want %d", got, ss.Attempt, tc.wantCalls)
			}
			if tc.wantState == StateFailed && !strings.Contains(ss.Error, "flaky failure") {
				t.Errorf("step error %q", ss.Error)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	r := &plan.Retry{Attempts: 10, Backoff: plan.Duration(time.Second), MaxBackoff: plan.Duration(5 * time.Second)}
	var got []time.Duration
	for n := 1; n <= 5; n++ {
		got = append(got, backoff(r, n))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff = %v, want %v", got, want)
		}
	}
	if backoff(nil, 3) != 0 {
		t.Error("no retry policy must not back off")
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("step", func(t *testing.T) {
		h := newHarness(t)
		s := step("slow", "sleep", "10s")
		s.Timeout = plan.Duration(300 * time.Millisecond)
		p := testPlan("to", stage("a", nil, s, step("next", "ok")))
		st := h.run(t, RunInput{Plan: p})
		a := wantStage(t, st, "a", StateFailed, "step slow failed: timed out after 300ms")
		if st.State != StateFailed || a.Steps[1].State != StateSkipped {
			t.Errorf("run %s, steps %+v", st.State, a.Steps)
		}
	})
	t.Run("stage", func(t *testing.T) {
		h := newHarness(t)
		p := testPlan("to", stage("a", nil, step("slow", "wait", "never"), step("next", "ok")))
		p.Stages[0].Timeout = plan.Duration(300 * time.Millisecond)
		st := h.run(t, RunInput{Plan: p})
		a := wantStage(t, st, "a", StateFailed, "the stage timed out after 300ms")
		if a.Steps[0].State != StateFailed || a.Steps[1].State != StateSkipped {
			t.Errorf("steps %+v", a.Steps)
		}
		if _, r := h.ws.settled(); r != 1 {
			t.Errorf("workspace released %d times", r)
		}
	})
	t.Run("pipeline", func(t *testing.T) {
		h := newHarness(t)
		p := testPlan("to",
			stage("a", nil, step("slow", "wait", "never")),
			stage("b", needs("a"), step("x", "ok")),
		)
		p.Timeout = plan.Duration(300 * time.Millisecond)
		st := h.run(t, RunInput{Plan: p})
		if st.State != StateFailed || st.Error != "the pipeline timed out after 300ms" {
			t.Errorf("run %s %q", st.State, st.Error)
		}
		wantStage(t, st, "a", StateCancelled, "timed out")
		wantStage(t, st, "b", StateSkipped, "needs a which was cancelled")
	})
}

func approvalPlan(timeout time.Duration) plan.Plan {
	p := testPlan("appr",
		stage("build", nil, step("b", "ok", "digest=sha256:1")),
		stage("deploy", needs("build"), step("d", "ok")),
		stage("after", needs("deploy"), step("x", "ok")),
	)
	p.Stages[1].Approval = &plan.Approval{Approvers: []string{"team:sre"}, Timeout: plan.Duration(timeout), Description: "ship it?"}
	return p
}

func TestApproval(t *testing.T) {
	t.Run("approve", func(t *testing.T) {
		h := newHarness(t)
		var rejected, accepted []string
		update := func(name string, d Decision) {
			h.env.UpdateWorkflow(name, name+d.Stage+d.By, &testsuite.TestUpdateCallback{
				OnAccept: func() { accepted = append(accepted, name+" "+d.Stage) },
				OnReject: func(err error) { rejected = append(rejected, err.Error()) },
			}, d)
		}
		var waiting RunStatus
		h.env.RegisterDelayedCallback(func() {
			waiting = h.query(t)
			update(UpdateApprove, Decision{Stage: "nope", By: "ann"})
			update(UpdateApprove, Decision{Stage: "after", By: "ann"})
			update(UpdateApprove, Decision{Stage: "deploy", By: ""})
			update(UpdateApprove, Decision{Stage: "deploy", By: "ann", Reason: "lgtm"})
			update(UpdateReject, Decision{Stage: "deploy", By: "bob"})
		}, time.Hour)
		st := h.run(t, RunInput{Plan: approvalPlan(24 * time.Hour)})
		if st.State != StateSucceeded {
			t.Fatalf("run %s %v", st.State, h.err)
		}
		d := stageOf(t, waiting, "deploy")
		if d.State != StateWaitingApproval || d.Approval == nil || d.Approval.Deadline.Sub(d.Approval.Requested) != 24*time.Hour || d.Runner != "" {
			t.Errorf("deploy while waiting: %+v", d)
		}
		if p, _ := h.ws.counts(); p != 3 {
			t.Errorf("prepared %d workspaces", p)
		}
		if len(accepted) != 1 || len(rejected) != 4 {
			t.Fatalf("accepted %q, rejected %q", accepted, rejected)
		}
		for i, want := range []string{`no stage "nope"`, `stage "after" needs no approval`, "must say who", `stage "deploy" is not waiting for approval`} {
			if !strings.Contains(rejected[i], want) {
				t.Errorf("rejection %d: %q, want %q", i, rejected[i], want)
			}
		}
		a := stageOf(t, st, "deploy").Approval
		if a.Decision != DecisionApproved || a.By != "ann" || a.Reason != "lgtm" || a.Decided.IsZero() {
			t.Errorf("approval %+v", a)
		}
	})
	t.Run("reject by signal", func(t *testing.T) {
		h := newHarness(t)
		h.env.RegisterDelayedCallback(func() {
			h.env.SignalWorkflow(SignalReject, Decision{Stage: "deploy", By: "bob", Reason: "not today"})
		}, time.Minute)
		st := h.run(t, RunInput{Plan: approvalPlan(0)})
		if st.State != StateFailed {
			t.Fatalf("run %s", st.State)
		}
		d := wantStage(t, st, "deploy", StateFailed, "rejected by bob: not today")
		if d.Approval.Decision != DecisionRejected || d.Steps[0].State != StateSkipped {
			t.Errorf("deploy %+v", d)
		}
		wantStage(t, st, "after", StateSkipped, "needs deploy which failed")
		if h.exec.count("deploy/d") != 0 {
			t.Error("a rejected stage ran")
		}
	})
	t.Run("approve by signal", func(t *testing.T) {
		h := newHarness(t)
		h.env.RegisterDelayedCallback(func() {
			h.env.SignalWorkflow(SignalApprove, Decision{Stage: "nope", By: "x"})
			h.env.SignalWorkflow(SignalApprove, Decision{Stage: "deploy", By: "carol"})
		}, time.Minute)
		st := h.run(t, RunInput{Plan: approvalPlan(0)})
		if st.State != StateSucceeded || stageOf(t, st, "deploy").Approval.By != "carol" {
			t.Fatalf("run %s %+v", st.State, stageOf(t, st, "deploy").Approval)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		h := newHarness(t)
		st := h.run(t, RunInput{Plan: approvalPlan(2 * time.Hour)})
		d := wantStage(t, st, "deploy", StateFailed, "approval timed out")
		if d.Approval.Decision != DecisionTimedOut || d.Approval.Reason != "approval timed out" {
			t.Errorf("approval %+v", d.Approval)
		}
		if st.State != StateFailed {
			t.Errorf("run %s", st.State)
		}
	})
}

func TestOutputs(t *testing.T) {
	h := newHarness(t)
	p := testPlan("outs",
		stage("build", nil,
			step("image", "ok", "digest=sha256:abc", "ref=reg/web"),
			step("same", "ok", tmpl("seen=", out("image", "digest"))),
		),
		stage("deploy", needs("build"),
			step("use", "env", "IMAGE", "TOKEN", "LEAK", "PLAIN"),
			step("chain", "ok", tmpl("x=", out("use", "IMAGE"), "+", out("same", "seen"))),
		),
		stage("bad", needs("build"), step("missing", "ok", tmpl("x=", out("image", "nope")))),
	)
	p.Secrets = []plan.Secret{{Name: "tok", Env: "TOKEN_ENV"}}
	p.Env = map[string]plan.Template{"PLAIN": plan.Lit("pipeline"), "IMAGE": plan.Lit("overridden")}
	p.Stages[1].Env = map[string]plan.Template{"IMAGE": tmpl(out("image", "ref"), "@", out("image", "digest"))}
	p.Stages[1].Steps[0].Env = map[string]plan.Template{
		"TOKEN": tmpl(plan.Ref{Secret: "tok"}),
		"LEAK":  tmpl("user:", plan.Ref{Secret: "tok"}, "@host"),
	}
	p.Stages[2].ContinueOnError = true
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateSucceeded {
		t.Fatalf("run %s %v", st.State, h.err)
	}
	b := stageOf(t, st, "build")
	if got := b.Steps[1].Outputs["seen"]; got != "sha256:abc" {
		t.Errorf("same-stage output: %q", got)
	}
	d := stageOf(t, st, "deploy")
	want := map[string]string{"IMAGE": "reg/web@sha256:abc", "TOKEN": "***", "LEAK": "user:***@host", "PLAIN": "pipeline"}
	for k, v := range want {
		if d.Steps[0].Outputs[k] != v {
			t.Errorf("output %s = %q, want %q", k, d.Steps[0].Outputs[k], v)
		}
	}
	if got := d.Steps[1].Outputs["x"]; got != "reg/web@sha256:abc+sha256:abc" {
		t.Errorf("chained output %q", got)
	}
	log := h.logs.get("deploy/use")
	if strings.Contains(log, "s3cr3t") || !strings.Contains(log, "TOKEN=***") {
		t.Errorf("secret not masked in log:\n%s", log)
	}
	bad := wantStage(t, st, "bad", StateFailed, `step "image" has no output "nope"`)
	if h.exec.count("bad/missing") != 0 || bad.Steps[0].State != StateFailed {
		t.Errorf("step with an unresolvable reference ran: %+v", bad.Steps[0])
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	p := testPlan("cancel",
		stage("a", nil, step("long", "wait", "never"), step("next", "ok")),
		stage("b", needs("a"), step("x", "ok")),
		stage("gate", nil, step("g", "ok")),
	)
	p.Stages[2].Approval = &plan.Approval{}
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 300*time.Millisecond)
	st := h.run(t, RunInput{Plan: p})
	var ce *temporal.CanceledError
	if !errors.As(h.err, &ce) || st.State != StateCancelled {
		t.Fatalf("run %s, error %v", st.State, h.err)
	}
	a := wantStage(t, st, "a", StateCancelled, "cancelled")
	if a.Steps[0].State != StateCancelled || a.Steps[1].State != StateCancelled {
		t.Errorf("a steps %+v", a.Steps)
	}
	wantStage(t, st, "b", StateSkipped, "needs a which was cancelled")
	wantStage(t, st, "gate", StateCancelled, "cancelled")
	// Stage a's batch may be cancelled before it prepared its workspace.
	if p, r := h.ws.settled(); p > 1 || r != p {
		t.Errorf("prepared %d, released %d workspaces", p, r)
	}
}

func TestInvalidPlan(t *testing.T) {
	h := newHarness(t)
	p := testPlan("bad", stage("a", needs("b"), step("x", "ok")), stage("b", nil, step("y", "ok")))
	h.env.ExecuteWorkflow(WorkflowName, RunInput{Plan: p})
	err := h.env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "not in topological order") {
		t.Fatalf("error %v", err)
	}
}

func TestRunnerLost(t *testing.T) {
	for _, tc := range []struct {
		name      string
		losses    int // how many times the runner is lost before the step runs
		wantState State
		wantPrep  int
	}{
		{"the step goes again without using an attempt", 1, StateSucceeded, 2},
		// The step has two attempts: the first ends after MaxLostRunners+1
		// losses, the second at its first loss.
		{"a step whose runners keep getting lost fails", MaxLostRunners + 2, StateFailed, MaxLostRunners + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			calls := 0
			h.env.OnActivity(h.acts.RunStep, mock.Anything, mock.Anything).Return(
				func(ctx context.Context, in StepInput) (StepResult, error) {
					calls++
					if calls <= tc.losses {
						return StepResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_HEARTBEAT, nil)
					}
					return StepResult{Outputs: map[string]string{"attempt": fmt.Sprint(in.Attempt)}}, nil
				})
			// Retried by the workflow, the step runs as its own activity.
			s := step("s", "ok")
			s.Retry = &plan.Retry{Attempts: 2}
			st := h.run(t, RunInput{Plan: testPlan("lost", stage("a", nil, s))})
			if st.State != tc.wantState {
				t.Fatalf("run %s (%s)", st.State, st.Error)
			}
			if p, _ := h.ws.counts(); p != tc.wantPrep {
				t.Errorf("prepared %d workspaces, want %d", p, tc.wantPrep)
			}
			ss := stageOf(t, st, "a").Steps[0]
			if tc.wantState == StateFailed && (!strings.Contains(ss.Error, `runner "r1" stopped responding`) || !strings.Contains(ss.Error, "runners were lost")) {
				t.Errorf("step error %q", ss.Error)
			}
			if tc.wantState == StateSucceeded && ss.Outputs["attempt"] != "1" {
				t.Errorf("step %+v", ss)
			}
		})
	}
}

func TestSearchAttributeStatus(t *testing.T) {
	h := newHarness(t)
	if err := h.env.SetTypedSearchAttributesOnStart(temporal.NewSearchAttributes(AttrStatus.ValueSet(string(StatePending)))); err != nil {
		t.Fatal(err)
	}
	var states []string
	h.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		v, _ := sa.GetKeyword(AttrStatus)
		states = append(states, v)
	}).Return(nil)
	st := h.run(t, RunInput{Plan: testPlan("sa", stage("a", nil, step("x", "fail", "no")))})
	if st.State != StateFailed {
		t.Fatalf("run %s", st.State)
	}
	if strings.Join(states, ",") != "running,failed" {
		t.Errorf("SluiceStatus went %q", states)
	}
}

func TestResumeFrom(t *testing.T) {
	p := testPlan("r",
		stage("build", nil, step("a", "ok"), step("b", "ok")),
		stage("test", needs("build"), step("c", "ok")),
		stage("lint", nil, step("l", "ok")),
		stage("broken", nil, step("x", "ok")),
		stage("deploy", needs("test"), step("d", "ok")),
	)
	p.Stages[0].Approval = &plan.Approval{}
	prev := RunStatus{}
	for _, s := range p.Stages {
		ss := StageStatus{ID: s.ID, State: StateSucceeded}
		for _, step := range s.Steps {
			ss.Steps = append(ss.Steps, StepStatus{Name: step.Name, State: StateSucceeded, Outputs: map[string]string{"o": step.Name}})
		}
		prev.Stages = append(prev.Stages, ss)
	}
	prev.Stages[0].Approval = &ApprovalStatus{Decision: DecisionApproved, By: "ann"}
	prev.Stages[3].State = StateFailed
	prev.Stages[3].Steps[0].State = StateFailed

	kept := func(r *Resume) map[string]int {
		m := map[string]int{}
		for _, s := range r.Stages {
			m[s.ID] = len(s.Steps)
		}
		return m
	}
	for _, tc := range []struct {
		from    string
		want    map[string]int
		wantErr string
	}{
		{from: "b", want: map[string]int{"build": 1, "lint": 1}},
		{from: "build/b", want: map[string]int{"build": 1, "lint": 1}},
		{from: "test", want: map[string]int{"build": 2, "lint": 1}},
		{from: "c", want: map[string]int{"build": 2, "lint": 1}},
		{from: "build", want: map[string]int{"lint": 1}},
		{from: "d", want: map[string]int{"build": 2, "test": 1, "lint": 1}},
		{from: "zzz", wantErr: `no step "zzz"`},
	} {
		t.Run(tc.from, func(t *testing.T) {
			r, err := resumeFrom(&p, prev, tc.from)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, kept(r)); diff != "" {
				t.Errorf("kept steps (-want +got):\n%s", diff)
			}
			if r.From != tc.from {
				t.Errorf("from %q", r.From)
			}
		})
	}
	t.Run("approval kept with the steps before", func(t *testing.T) {
		r, _ := resumeFrom(&p, prev, "b")
		if r.Stages[0].Approval == nil || r.Stages[0].Approval.By != "ann" {
			t.Errorf("approval %+v", r.Stages[0].Approval)
		}
	})
	t.Run("earlier step failed", func(t *testing.T) {
		bad := prev
		bad.Stages = slices.Clone(prev.Stages)
		bad.Stages[0].Steps = slices.Clone(prev.Stages[0].Steps)
		bad.Stages[0].Steps[0].State = StateFailed
		if _, err := resumeFrom(&p, bad, "b"); err == nil || !strings.Contains(err.Error(), "retry from build/a") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("ambiguous", func(t *testing.T) {
		q := testPlan("q", stage("m[x=1]", nil, step("u", "ok")), stage("m[x=2]", nil, step("u", "ok")))
		if _, _, err := findStep(&q, "u"); err == nil || !strings.Contains(err.Error(), "m[x=1]/u, m[x=2]/u") {
			t.Errorf("error %v", err)
		}
	})
}

// TestResumeInWorkflow checks what a resumed run does with what it keeps.
func TestResumeInWorkflow(t *testing.T) {
	h := newHarness(t)
	p := testPlan("res",
		stage("build", nil, step("a", "ok", "o=A"), step("b", "ok", tmpl("o=", out("a", "o")))),
		stage("gate", needs("build"), step("g1", "ok"), step("g2", "ok")),
	)
	p.Stages[1].Approval = &plan.Approval{}
	in := RunInput{Plan: p, Resume: &Resume{From: "g2", Stages: []ResumedStage{
		{ID: "build", Steps: []StepStatus{
			{Name: "a", Kind: "run", State: StateSucceeded, Attempt: 1, Outputs: map[string]string{"o": "kept"}},
			{Name: "b", Kind: "run", State: StateSucceeded, Attempt: 1, Outputs: map[string]string{"o": "kept"}},
		}},
		{ID: "gate", Approval: &ApprovalStatus{Decision: DecisionApproved, By: "ann"}, Steps: []StepStatus{
			{Name: "g1", Kind: "run", State: StateSucceeded, Attempt: 1},
		}},
	}}}
	st := h.run(t, in)
	if st.State != StateSucceeded || st.ResumedFrom != "g2" {
		t.Fatalf("run %s %q", st.State, st.Error)
	}
	if got := h.exec.events(); !slices.Equal(got, []string{"start gate/g2", "end gate/g2"}) {
		t.Errorf("executed %q", got)
	}
	g := stageOf(t, st, "gate")
	if !g.Steps[0].Resumed || g.Steps[1].Resumed || g.Approval.By != "ann" {
		t.Errorf("gate %+v", g)
	}
}

// TestPlanSkippedNeeds checks that a stage the plan skips (its when is
// false) does not hold back the stages after it when one instance of the
// matrix it belongs to runs, as the compiler decided, while a stage that
// fails at run time still does.
func TestPlanSkippedNeeds(t *testing.T) {
	h := newHarness(t)
	skipped := stage("test[svc=web]", nil, step("t2", "ok"))
	skipped.Skip = "when is false: changed(\"web/**\")"
	p := testPlan("mono",
		stage("test[svc=api]", nil, step("t1", "ok")),
		skipped,
		stage("build", needs("test[svc=api]", "test[svc=web]"), step("b", "ok")),
	)
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateSucceeded {
		t.Fatalf("run %s (%s)", st.State, st.Error)
	}
	if s := stageOf(t, st, "test[svc=web]"); s.State != StateSkipped {
		t.Errorf("test[svc=web] is %s; want skipped", s.State)
	}
	if s := stageOf(t, st, "build"); s.State != StateSucceeded {
		t.Errorf("build is %s (%s); want succeeded", s.State, s.Reason)
	}
}

// TestFailedStepOutputs checks that a step that may fail hands its outputs,
// exit_code included, to the steps after it.
func TestFailedStepOutputs(t *testing.T) {
	h := newHarness(t)
	check := step("check", "exit", "3", "report=partial")
	check.ContinueOnError = true
	use := step("use", "ok", tmpl("code=", out("check", "exit_code")), tmpl("report=", out("check", "report")))
	st := h.run(t, RunInput{Plan: testPlan("outs", stage("a", nil, check, use))})
	if st.State != StateSucceeded {
		t.Fatalf("run %s (%s)", st.State, st.Error)
	}
	a := stageOf(t, st, "a")
	if a.Steps[0].State != StateFailed || a.Steps[0].Outputs["exit_code"] != "3" {
		t.Errorf("check: %+v", a.Steps[0])
	}
	if got := a.Steps[1].Outputs; got["code"] != "3" || got["report"] != "partial" {
		t.Errorf("use saw %v; want code=3 and report=partial", got)
	}
}

func TestStageTakenByOneActivity(t *testing.T) {
	h := newHarness(t)
	var started []string
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		started = append(started, info.ActivityType.Name)
	})
	// Stage a's steps can run as one batch, and the batch takes the stage;
	// stage b's second step needs the first one's output from the
	// workflow, so b is prepared, run step by step and released.
	uses := step("uses", "ok")
	uses.Env = map[string]plan.Template{"N": tmpl(out("makes", "n"))}
	uses.Refs = append(uses.Refs, out("makes", "n"))
	p := testPlan("take",
		stage("a", nil, step("one", "ok"), step("two", "ok")),
		stage("b", needs("a"), step("makes", "ok", "n=1"), uses),
	)
	st := h.run(t, RunInput{Plan: p})
	if st.State != StateSucceeded {
		t.Fatalf("run %s (%s)", st.State, st.Error)
	}
	want := []string{RunStepsActivity, "PrepareWorkspace", "RunStep", "RunStep", "ReleaseWorkspace"}
	if !slices.Equal(started, want) {
		t.Errorf("activities %v, want %v", started, want)
	}
	if p, r := h.ws.counts(); p != 2 || r != 2 {
		t.Errorf("prepared %d, released %d workspaces, want 2 and 2", p, r)
	}
	for _, id := range []string{"a", "b"} {
		if s := stageOf(t, st, id); s.Runner != "r1" || s.Reason != "" {
			t.Errorf("stage %s: runner %q, reason %q", id, s.Runner, s.Reason)
		}
	}
	for _, k := range []string{"a/one", "a/two", "b/makes", "b/uses"} {
		if n := h.exec.count(k); n != 1 {
			t.Errorf("%s ran %d times", k, n)
		}
	}
}

func TestTakenStageRunnerLost(t *testing.T) {
	h := newHarness(t)
	var calls []StepsInput
	h.env.OnActivity(h.acts.RunSteps, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in StepsInput) (StepsResult, error) {
			calls = append(calls, in)
			if len(calls) == 1 {
				// The runner that took the stage is lost after its first
				// step finished, which its last heartbeat recorded.
				return StepsResult{}, temporal.NewHeartbeatTimeoutError(StepsResult{StageID: "a", Runner: "r1", Steps: []BatchStepResult{{Outputs: map[string]string{"n": "1"}}}})
			}
			return h.acts.RunSteps(ctx, in)
		})
	st := h.run(t, RunInput{Plan: testPlan("lost", stage("a", nil, step("one", "ok", "n=1"), step("two", "ok"), step("three", "ok")))})
	if st.State != StateSucceeded {
		t.Fatalf("run %s (%s)", st.State, st.Error)
	}
	if len(calls) != 2 || calls[0].Take == nil || calls[1].Take != nil || calls[1].First != 1 || len(calls[1].Steps) != 2 {
		t.Fatalf("batches: %+v", calls)
	}
	// The second batch went to the runner that took the stage again, in
	// the workspace PrepareWorkspace made, which ReleaseWorkspace removed.
	if calls[1].Workspace == "" {
		t.Error("second batch has no workspace")
	}
	if p, r := h.ws.counts(); p != 1 || r != 1 {
		t.Errorf("prepared %d, released %d workspaces, want 1 and 1", p, r)
	}
	a := stageOf(t, st, "a")
	if a.Steps[0].Outputs["n"] != "1" || h.exec.count("a/one") != 0 || h.exec.count("a/two") != 1 || h.exec.count("a/three") != 1 {
		t.Errorf("steps %+v, runs one %d two %d three %d", a.Steps, h.exec.count("a/one"), h.exec.count("a/two"), h.exec.count("a/three"))
	}
}
