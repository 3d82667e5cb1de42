package engine

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// Pipeline is the one workflow that runs every plan. It returns the final
// RunStatus; a failed run returns an ApplicationError of type
// "PipelineFailed" and a cancelled run a CanceledError, both carrying the
// RunStatus as details, so that the status of a finished run can be read
// without a worker (see Status).
//
// Workflow code: only workflow.* APIs for time, waiting and concurrency, no
// map iteration (maps are only indexed), and every change in behaviour
// behind workflow.GetVersion with a new change id, so that the histories in
// testdata/ and runs in flight keep replaying.
func Pipeline(ctx workflow.Context, in RunInput) (RunStatus, error) {
	r, err := newRun(ctx, in)
	if err != nil {
		return RunStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPlan", nil)
	}
	if err := r.setHandlers(ctx); err != nil {
		return RunStatus{}, err
	}
	return r.run(ctx)
}

// run is the state of one pipeline run. Everything here is workflow state:
// it is rebuilt by replay and must only change in deterministic ways.
type run struct {
	plan   *plan.Plan
	source *Source
	// dryRun is RunInput.DryRun.
	dryRun bool
	status RunStatus
	stages []*stageRun
	byID   map[string]int

	logger interface {
		Info(string, ...any)
		Warn(string, ...any)
	}

	runCancel workflow.CancelFunc
	// stopped is why the run stopped starting stages: a failure, a timeout
	// or a cancellation; empty while it runs.
	stopped string
	// failure is the error of the first stage that failed the run.
	failure  string
	timedOut bool

	// active counts started stage goroutines; changed ticks whenever one
	// finishes, so that the scheduler looks again.
	active  int
	changed int

	// running and queue bound how many stages hold a runner at once.
	running int
	queue   []int
}

type stageRun struct {
	idx     int
	plan    *plan.Stage
	status  *StageStatus
	started bool
	// ancestors are the indexes of every stage this one needs, directly or
	// not, in plan order: the stages whose outputs it may read.
	ancestors []int
	// outputs by step name, for the steps of this stage that finished.
	outputs map[string]map[string]string
	// first is the first step to run; earlier ones were kept by a retry.
	first        int
	approvalKept bool
	decision     *Decision
	decisionKind string
	// lost notes a runner lost during a step, until the stage has a
	// runner again (see restartNote).
	lost string
}

func newRun(ctx workflow.Context, in RunInput) (*run, error) {
	r, err := newRunState(in, workflow.GetInfo(ctx).WorkflowExecution.ID, workflow.Now(ctx))
	if err != nil {
		return nil, err
	}
	r.logger = workflow.GetLogger(ctx)
	return r, nil
}

// newRunState is the state of a run of in before anything has happened:
// what the workflow starts from, and what ReplayPipeline decides with.
func newRunState(in RunInput, runID string, start time.Time) (*run, error) {
	p := in.Plan
	if err := validatePlan(&p); err != nil {
		return nil, err
	}
	r := &run{
		plan:   &p,
		source: in.Source,
		dryRun: in.DryRun,
		byID:   map[string]int{},
		status: RunStatus{
			RunRef: RunRef{
				RunID:    runID,
				Pipeline: p.Pipeline,
				Repo:     p.Git.Repo,
				Ref:      p.Git.Ref,
				SHA:      p.Git.SHA,
			},
			State:  StatePending,
			Start:  start,
			DryRun: in.DryRun,
			Stages: make([]StageStatus, len(p.Stages)),
		},
	}
	if p.Concurrency != nil {
		r.status.Group = p.Concurrency.Group
	}
	for i := range p.Stages {
		s := &p.Stages[i]
		st := &stageRun{idx: i, plan: s, status: &r.status.Stages[i], outputs: map[string]map[string]string{}}
		seen := make([]bool, len(p.Stages))
		for _, n := range s.Needs {
			j := r.byID[n]
			seen[j] = true
			for _, a := range r.stages[j].ancestors {
				seen[a] = true
			}
		}
		for j, ok := range seen {
			if ok {
				st.ancestors = append(st.ancestors, j)
			}
		}
		*st.status = StageStatus{ID: s.ID, Name: s.Name, State: StatePending, Steps: make([]StepStatus, len(s.Steps))}
		for j, step := range s.Steps {
			st.status.Steps[j] = StepStatus{Name: step.Name, Kind: step.Kind, State: StatePending}
		}
		r.byID[s.ID] = i
		r.stages = append(r.stages, st)
	}
	if in.Resume != nil {
		r.status.ResumedFrom = in.Resume.From
		for _, rs := range in.Resume.Stages {
			i, ok := r.byID[rs.ID]
			if !ok || len(rs.Steps) > len(r.stages[i].plan.Steps) {
				return nil, fmt.Errorf("resumed stage %q does not match the plan", rs.ID)
			}
			st := r.stages[i]
			for j, ss := range rs.Steps {
				if ss.Name != st.plan.Steps[j].Name {
					return nil, fmt.Errorf("resumed step %q of stage %q does not match the plan", ss.Name, rs.ID)
				}
				ss.Resumed = true
				st.status.Steps[j] = ss
				if ss.State == StateSucceeded {
					st.outputs[ss.Name] = ss.Outputs
				}
			}
			st.first = len(rs.Steps)
			if rs.Approval != nil {
				a := *rs.Approval
				st.status.Approval = &a
				st.approvalKept = true
			}
			if st.first == len(st.plan.Steps) {
				st.status.Artifacts = rs.Artifacts
				st.status.State = StateSucceeded
				st.status.Reason = "kept from the attempt before the retry"
				st.started = true
			}
		}
	}
	return r, nil
}

// validatePlan checks what the engine relies on: stage IDs are unique and
// every stage comes after the stages it needs.
func validatePlan(p *plan.Plan) error {
	if p.SchemaVersion > plan.SchemaVersion {
		return fmt.Errorf("plan has schema version %d; this engine understands up to %d", p.SchemaVersion, plan.SchemaVersion)
	}
	for i, s := range p.Stages {
		earlier := p.Stages[:i]
		if slices.ContainsFunc(earlier, func(o plan.Stage) bool { return o.ID == s.ID }) {
			return fmt.Errorf("stage %q appears twice in the plan", s.ID)
		}
		for _, n := range s.Needs {
			if slices.ContainsFunc(earlier, func(o plan.Stage) bool { return o.ID == n }) {
				continue
			}
			if slices.ContainsFunc(p.Stages, func(o plan.Stage) bool { return o.ID == n }) {
				return fmt.Errorf("stage %q needs %q, which comes after it: the plan is not in topological order", s.ID, n)
			}
			return fmt.Errorf("stage %q needs %q, which is not in the plan", s.ID, n)
		}
	}
	return nil
}

func (r *run) setHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (RunStatus, error) {
		return fitStatus(r.status), nil
	}); err != nil {
		return fmt.Errorf("setting status query: %w", err)
	}
	for _, kind := range []string{DecisionApproved, DecisionRejected} {
		name := UpdateApprove
		if kind == DecisionRejected {
			name = UpdateReject
		}
		err := workflow.SetUpdateHandlerWithOptions(ctx, name,
			func(ctx workflow.Context, d Decision) (StageStatus, error) {
				if err := r.decide(d, kind); err != nil {
					return StageStatus{}, err
				}
				return *r.stages[r.byID[d.Stage]].status, nil
			},
			workflow.UpdateHandlerOptions{Validator: func(d Decision) error { return r.validDecision(d) }},
		)
		if err != nil {
			return fmt.Errorf("setting %s update: %w", name, err)
		}
	}
	approve := workflow.GetSignalChannel(ctx, SignalApprove)
	reject := workflow.GetSignalChannel(ctx, SignalReject)
	workflow.Go(ctx, func(ctx workflow.Context) {
		sel := workflow.NewSelector(ctx)
		on := func(kind string) func(workflow.ReceiveChannel, bool) {
			return func(c workflow.ReceiveChannel, _ bool) {
				var d Decision
				c.Receive(ctx, &d)
				if err := r.decide(d, kind); err != nil {
					r.logger.Warn("ignoring approval signal", "decision", kind, "stage", d.Stage, "error", err)
				}
			}
		}
		sel.AddReceive(approve, on(DecisionApproved))
		sel.AddReceive(reject, on(DecisionRejected))
		sel.AddReceive(workflow.GetSignalChannel(ctx, SignalSuperseded), func(c workflow.ReceiveChannel, _ bool) {
			var s Superseded
			c.Receive(ctx, &s)
			if s.By != "" {
				r.status.SupersededBy = s.By
			}
			r.status.Supersedes = append(r.status.Supersedes, s.Supersedes...)
		})
		for ctx.Err() == nil {
			sel.Select(ctx)
		}
	})
	return nil
}

func (r *run) validDecision(d Decision) error {
	i, ok := r.byID[d.Stage]
	if !ok {
		return fmt.Errorf("run %s has no stage %q", r.status.RunID, d.Stage)
	}
	st := r.stages[i]
	if st.plan.Approval == nil {
		return fmt.Errorf("stage %q needs no approval", d.Stage)
	}
	if st.status.State != StateWaitingApproval || st.decision != nil {
		return fmt.Errorf("stage %q is not waiting for approval: it is %s", d.Stage, st.status.State)
	}
	if strings.TrimSpace(d.By) == "" {
		return errors.New("an approval decision must say who made it")
	}
	return nil
}

func (r *run) decide(d Decision, kind string) error {
	if err := r.validDecision(d); err != nil {
		return err
	}
	st := r.stages[r.byID[d.Stage]]
	st.decision = &d
	st.decisionKind = kind
	return nil
}

func (r *run) setState(ctx workflow.Context, s State) {
	r.status.State = s
	// A run started without SluiceStatus (not through Start) may be in a
	// namespace without the attribute, where an upsert would fail every
	// workflow task.
	if !workflow.GetTypedSearchAttributes(ctx).ContainsKey(AttrStatus) {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrStatus.ValueSet(string(s))); err != nil {
		r.logger.Warn("updating search attribute SluiceStatus", "error", err)
	}
}

func (r *run) run(ctx workflow.Context) (RunStatus, error) {
	// cleanupCtx outlives a cancellation, for releasing what the run holds.
	cleanupCtx, _ := workflow.NewDisconnectedContext(ctx)

	group := r.plan.Concurrency != nil && r.plan.Concurrency.Group != ""
	if group {
		r.setState(ctx, StateQueued)
		if err := r.acquireGroup(ctx); err != nil {
			if ctx.Err() == nil {
				r.failure = err.Error()
			}
			r.releaseGroup(cleanupCtx)
			return r.finish(ctx, cleanupCtx)
		}
	}
	r.setState(ctx, StateRunning)

	runCtx, cancel := workflow.WithCancel(ctx)
	r.runCancel = cancel
	if d := r.plan.Timeout.Std(); d > 0 {
		timerCtx, stopTimer := workflow.WithCancel(runCtx)
		defer stopTimer()
		workflow.Go(timerCtx, func(ctx workflow.Context) {
			if workflow.Sleep(ctx, d) == nil {
				r.timedOut = true
				r.stop(fmt.Sprintf("the pipeline timed out after %s", d))
			}
		})
	}

	r.schedule(runCtx, cleanupCtx)
	cancel()
	if group {
		r.releaseGroup(cleanupCtx)
	}
	return r.finish(ctx, cleanupCtx)
}

// stop stops the run from starting stages and cancels the running ones.
func (r *run) stop(reason string) {
	if r.stopped != "" {
		return
	}
	r.stopped = reason
	if r.runCancel != nil {
		r.runCancel()
	}
}

// finish sets the final state and returns the workflow's result: the
// status, cut to fit in a payload (fitStatus).
func (r *run) finish(ctx, cleanupCtx workflow.Context) (RunStatus, error) {
	r.status.End = workflow.Now(cleanupCtx)
	for _, st := range r.stages {
		if !st.status.State.Done() {
			r.cancelStage(st, r.cancelReason())
		}
	}
	switch {
	case ctx.Err() != nil && r.status.SupersededBy != "":
		r.status.Error = fmt.Sprintf("superseded by run %s (a newer run of concurrency group %q; cancel_in_progress)", r.status.SupersededBy, r.status.Group)
		r.setState(cleanupCtx, StateCancelled)
		st := fitStatus(r.status)
		return st, temporal.NewCanceledError(st)
	case ctx.Err() != nil:
		r.status.Error = "the run was cancelled"
		r.setState(cleanupCtx, StateCancelled)
		st := fitStatus(r.status)
		return st, temporal.NewCanceledError(st)
	case r.timedOut:
		r.status.Error = r.stopped
	case r.failure != "":
		r.status.Error = r.failure
	default:
		r.setState(cleanupCtx, StateSucceeded)
		return fitStatus(r.status), nil
	}
	r.setState(cleanupCtx, StateFailed)
	st := fitStatus(r.status)
	return st, temporal.NewApplicationErrorWithOptions(st.Error, "PipelineFailed", temporal.ApplicationErrorOptions{
		NonRetryable: true,
		Details:      []any{st},
	})
}

// schedule starts stages as their needs finish until every stage is done.
// The loop waits on waitCtx, which a cancellation does not reach, so that
// it outlives runCtx and sees every stage to its end.
func (r *run) schedule(runCtx, waitCtx workflow.Context) {
	stopping := func() bool { return runCtx.Err() != nil || r.stopped != "" }
	for {
		handled := stopping()
		pending := 0
		for _, st := range r.stages {
			if st.started {
				continue
			}
			done, blocker := r.needsDone(st)
			if !done {
				pending++
				continue
			}
			if r.admit(st, blocker, runCtx.Err() != nil) {
				st.started = true
				r.active++
				workflow.Go(runCtx, func(ctx workflow.Context) {
					r.runStage(ctx, st)
					r.active--
					r.changed++
				})
			}
		}
		if pending == 0 && r.active == 0 {
			return
		}
		seen := r.changed
		_ = workflow.Await(waitCtx, func() bool {
			return r.changed != seen || (!handled && stopping())
		})
	}
}

// admit decides about a stage whose needs are done: it skips the stage
// (blocker is why its needs hold it back, see needsDone; or the plan skips
// it), or cancels it (the run stopped, or cancelled is true), or returns
// true: the stage starts.
func (r *run) admit(st *stageRun, blocker string, cancelled bool) bool {
	switch {
	case blocker != "":
		r.skipStage(st, blocker)
	case st.plan.Skip != "":
		r.skipStage(st, st.plan.Skip)
	case r.stopped != "":
		r.cancelStage(st, r.stopped)
	case cancelled:
		r.cancelStage(st, "the run was cancelled")
	default:
		return true
	}
	return false
}

// needsDone reports whether all needs of a stage are done and, if one did
// not succeed, why the stage is skipped.
func (r *run) needsDone(st *stageRun) (bool, string) {
	blocker := ""
	for _, n := range st.plan.Needs {
		ns := r.stages[r.byID[n]]
		s := ns.status.State
		if !s.Done() {
			return false, ""
		}
		if blocker != "" {
			continue
		}
		switch {
		case s == StateSucceeded:
		case s == StateFailed && ns.plan.ContinueOnError:
			// A failed stage that may fail does not hold back its dependents.
		case s == StateFailed:
			blocker = fmt.Sprintf("needs %s which failed", n)
		case s == StateSkipped && ns.plan.Skip != "":
			// Skipped by the plan (its when, or its own needs): the
			// compiler already decided whether this stage runs, and one
			// matrix instance that runs is enough for it.
		case s == StateSkipped:
			blocker = fmt.Sprintf("needs %s which was skipped", n)
		default:
			blocker = fmt.Sprintf("needs %s which was cancelled", n)
		}
	}
	return true, blocker
}

func (r *run) skipStage(st *stageRun, reason string) {
	st.started = true
	st.status.State = StateSkipped
	st.status.Reason = reason
	for j := st.first; j < len(st.status.Steps); j++ {
		st.status.Steps[j].State = StateSkipped
	}
}

func (r *run) cancelStage(st *stageRun, reason string) {
	st.started = true
	st.status.State = StateCancelled
	st.status.Reason = reason
	for j := st.first; j < len(st.status.Steps); j++ {
		if !st.status.Steps[j].State.Done() {
			st.status.Steps[j].State = StateCancelled
		}
	}
}

// failStage records a stage failure and, unless the stage may fail, fails
// the run: other stages are cancelled (fail-fast).
func (r *run) failStage(st *stageRun, reason string) {
	st.status.State = StateFailed
	st.status.Reason = reason
	if st.plan.ContinueOnError {
		return
	}
	if r.failure == "" {
		r.failure = fmt.Sprintf("stage %s failed: %s", st.plan.ID, reason)
	}
	r.stop(fmt.Sprintf("stage %s failed", st.plan.ID))
}

// acquireSlot waits, in FIFO order, until fewer than MaxParallel stages hold
// a runner, and never more than MaxRunningStages (see stageCap).
func (r *run) acquireSlot(ctx workflow.Context, i int) error {
	max := r.stageCap(ctx, r.plan.MaxParallel)
	if max <= 0 {
		r.running++
		return nil
	}
	r.queue = append(r.queue, i)
	err := workflow.Await(ctx, func() bool { return r.running < max && r.queue[0] == i })
	r.queue = slices.DeleteFunc(r.queue, func(j int) bool { return j == i })
	if err != nil {
		return err
	}
	r.running++
	return nil
}

func (r *run) releaseSlot() { r.running-- }

// waitApproval holds a stage until it is approved, rejected or the approval
// times out. It takes no runner. It returns "" when approved, otherwise why
// not; err is set when the run was cancelled.
func (r *run) waitApproval(ctx workflow.Context, st *stageRun) (string, error) {
	ap := st.plan.Approval
	now := workflow.Now(ctx)
	st.status.Approval = &ApprovalStatus{
		Approvers:   ap.Approvers,
		Description: ap.Description,
		Requested:   now,
	}
	if d := ap.Timeout.Std(); d > 0 {
		st.status.Approval.Deadline = now.Add(d)
	}
	if r.dryRun {
		dryRunApproval(st.status.Approval, now)
		return "", nil
	}
	st.status.State = StateWaitingApproval
	decided := func() bool { return st.decision != nil }
	var err error
	ok := true
	if d := ap.Timeout.Std(); d > 0 {
		ok, err = workflow.AwaitWithTimeout(ctx, d, decided)
	} else {
		err = workflow.Await(ctx, decided)
	}
	if err != nil {
		return "", err
	}
	a := st.status.Approval
	a.Decided = workflow.Now(ctx)
	if !ok {
		a.Decision = DecisionTimedOut
		a.Reason = "approval timed out"
	} else {
		a.Decision, a.By, a.Reason = st.decisionKind, st.decision.By, st.decision.Reason
	}
	return approvalRefusal(ap, a), nil
}

// approvalRefusal says why a decided approval holds its stage back: "" when
// it was approved.
func approvalRefusal(ap *plan.Approval, a *ApprovalStatus) string {
	switch a.Decision {
	case DecisionApproved:
		return ""
	case DecisionTimedOut:
		return fmt.Sprintf("approval timed out after %s", ap.Timeout.Std())
	}
	msg := "rejected by " + a.By
	if a.Reason != "" {
		msg += ": " + a.Reason
	}
	return msg
}

// lookupOutput finds step.<name>.<output> for a step of stage st: in an
// earlier step of the same stage, else in a stage it needs. A name that
// several needed stages have (matrix instances) is ambiguous.
func (r *run) lookupOutput(st *stageRun, ref plan.Ref) (string, error) {
	outs, ok := st.outputs[ref.Step]
	if !ok {
		found := -1
		for _, a := range st.ancestors {
			if o, has := r.stages[a].outputs[ref.Step]; has {
				if found >= 0 {
					return "", fmt.Errorf("step %q runs in both %s and %s; refer to a step whose name is unique", ref.Step, r.stages[found].plan.ID, r.stages[a].plan.ID)
				}
				found, outs = a, o
			}
		}
		if found < 0 {
			return "", fmt.Errorf("step %q has not succeeded in this stage or in a stage it needs", ref.Step)
		}
	}
	v, ok := outs[ref.Output]
	if !ok {
		return "", fmt.Errorf("step %q has no output %q", ref.Step, ref.Output)
	}
	return v, nil
}

// resolve substitutes step outputs into a step and the environment it runs
// with; secret references stay for the runner.
func (r *run) resolve(st *stageRun, step plan.Step) (plan.Step, map[string]plan.Template, error) {
	return r.resolveWith(st, step, func(ref plan.Ref) (plan.Part, error) {
		v, err := r.lookupOutput(st, ref)
		return plan.Part{Lit: v}, err
	})
}

// resolveWith is resolve with the part that stands for each step-output
// reference given by lookup (ReplayPipeline leaves some in place).
func (r *run) resolveWith(st *stageRun, step plan.Step, lookup func(plan.Ref) (plan.Part, error)) (plan.Step, map[string]plan.Template, error) {
	sub := func(t plan.Template) (plan.Template, error) {
		if t.IsLiteral() {
			return t, nil
		}
		var out plan.Template
		for _, p := range t.Parts {
			if p.Ref == nil || p.Ref.Secret != "" {
				out.Append(p)
				continue
			}
			part, err := lookup(*p.Ref)
			if err != nil {
				return out, fmt.Errorf("resolving %s: %w", p.Ref, err)
			}
			out.Append(part)
		}
		return out, nil
	}
	// plan.MapTemplates uses reflection, whose panic paths workflowcheck takes
	// for non-determinism; it walks maps in sorted key order.
	//workflowcheck:ignore
	resolved, err := plan.MapTemplates(step, sub)
	if err != nil {
		return plan.Step{}, nil, err
	}
	var refs []plan.Ref
	for _, ref := range resolved.Refs {
		if ref.Secret != "" {
			refs = append(refs, ref)
		}
	}
	resolved.Refs = refs

	env := map[string]plan.Template{}
	for _, layer := range []map[string]plan.Template{r.plan.Env, st.plan.Env, step.Env} {
		//workflowcheck:ignore sortedStrings sorts the keys it collects
		for _, k := range sortedStrings(layer) {
			t, err := sub(layer[k])
			if err != nil {
				return plan.Step{}, nil, fmt.Errorf("env %s: %w", k, err)
			}
			env[k] = t
		}
	}
	if r.dryRun {
		env[EnvDryRun] = plan.Lit("true")
	}
	return resolved, env, nil
}

func sortedStrings[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// backoff is the wait before attempt n+1 (n >= 1).
func backoff(r *plan.Retry, n int) time.Duration {
	if r == nil || r.Backoff <= 0 {
		return 0
	}
	d := r.Backoff.Std()
	for i := 1; i < n; i++ {
		d *= 2
		if r.MaxBackoff > 0 && d >= r.MaxBackoff.Std() {
			return r.MaxBackoff.Std()
		}
		if d > 24*time.Hour {
			return 24 * time.Hour
		}
	}
	if r.MaxBackoff > 0 && d > r.MaxBackoff.Std() {
		return r.MaxBackoff.Std()
	}
	return d
}
