package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// Replaying a recorded run against a changed pipeline (sluice replay RUN
// --pipeline DIR). The changed pipeline is compiled for the run's event,
// which decides its `when` conditions, trigger and skips as a run would;
// then ReplayPipeline takes the plan through the workflow's own decisions,
// on the workflow's own state (newRunState): which stages their needs
// admit, skip or cancel (admit, needsDone), what approvals ask and what a
// decision means (approvalRefusal), what each step receives (resolveWith,
// lookupOutput), how a failed step fails its stage (failsStage) and how a
// failed stage fails the run (failStage). Only what executes is replaced:
//
//   - A step whose stage and name the recorded run has, and whose resolved
//     inputs (kind, configuration and environment, with the outputs of
//     the steps before it substituted) are those it ran with, has its
//     recorded result: its state, error and outputs.
//   - Any other step (new, renamed, given other inputs, or one the run
//     did not finish) is assumed to succeed, or with AssumeFailure to
//     fail. Its outputs are not known: a step that uses one receives the
//     reference itself, ${step.NAME.OUTPUT}, which differs from any value
//     recorded, so it is assumed too.
//   - An approval the run decided keeps its decision (approved, rejected
//     or timed out); one it did not decide is assumed approved. A dry run's
//     approvals are given by the dry run, as they were.
//
// Stages are taken one at a time in plan order, each to its end: the
// replay does not model time, so a stage that in a real run would have
// been cancelled while it ran beside a failing one (fail-fast) finishes
// here if its needs let it start first. Steps are not retried, batched or
// timed out; none of that changes what a step receives.

// ReplayInput is what ReplayPipeline compares.
type ReplayInput struct {
	// Recorded is the plan the run was started with and Status what it
	// recorded.
	Recorded plan.Plan
	Status   RunStatus
	// Plan is the changed pipeline compiled for the run's event
	// (Recorded.Git and Recorded.Inputs).
	Plan plan.Plan
	// AssumeFailure makes the steps that have no recorded result fail
	// instead of succeed.
	AssumeFailure bool
}

// ReplayApprover is who a replay says approved an approval that the
// recorded run did not decide.
const ReplayApprover = "sluice replay (assumed)"

// The results of a replayed step: the recorded one, or an assumed one.
const (
	ResultRecorded = "recorded"
	ResultAssumed  = "assumed"
	// ResultDryRun is the result of an approval a dry run gives itself.
	ResultDryRun = "dry_run"
)

// The changes a replay reports for a stage or a step.
const (
	ChangeAdded     = "added"
	ChangeRemoved   = "removed"
	ChangeChanged   = "changed"
	ChangeUnchanged = "unchanged"
)

// ReplayReport is what a replay found: for each stage and step of the
// recorded run and of the changed pipeline, what happened and what would
// have. It is the JSON of sluice replay -o json.
type ReplayReport struct {
	RunID    string `json:"run_id"`
	Pipeline string `json:"pipeline"`
	// Git is the run's event, which the changed pipeline was compiled for.
	Git plan.Git `json:"git"`
	// Assume is what steps without a recorded result are assumed to do:
	// "success" or "failure".
	Assume string `json:"assume"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Changed says whether anything below differs from the recorded run.
	Changed bool          `json:"changed"`
	Trigger ReplayTrigger `json:"trigger"`
	Vars    []ReplayValue `json:"vars,omitempty"`
	Run     ReplayRun     `json:"run"`
	Stages  []ReplayStage `json:"stages"`
	Summary ReplaySummary `json:"summary"`
	Digests ReplayDigests `json:"digests"`
}

// ReplayDigests are the digests of the recorded and the replayed plans.
type ReplayDigests struct {
	Before string `json:"before"`
	After  string `json:"after"`
}

// ReplayTrigger is whether the run's event starts the pipeline, before
// and after the change.
type ReplayTrigger struct {
	Before plan.Trigger `json:"before"`
	After  plan.Trigger `json:"after"`
}

// ReplayRun is how the run ended, and how it would have.
type ReplayRun struct {
	Before ReplayOutcome `json:"before"`
	After  ReplayOutcome `json:"after"`
}

// ReplayOutcome is the end of a run.
type ReplayOutcome struct {
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
}

// ReplayValue is a value that differs: a variable, or an input or a
// setting of a step. Before or After is absent where there is none.
type ReplayValue struct {
	Path   string  `json:"path"`
	Before *string `json:"before,omitempty"`
	After  *string `json:"after,omitempty"`
}

// ReplayStage is one stage, matched by ID.
type ReplayStage struct {
	ID     string `json:"id"`
	Change string `json:"change"`
	// Before is the stage in the recorded run, absent for an added one;
	// After in the replay, absent for a removed one.
	Before *ReplayStageOutcome `json:"before,omitempty"`
	After  *ReplayStageOutcome `json:"after,omitempty"`
	Steps  []ReplayStep        `json:"steps"`
}

// ReplayStageOutcome is what became of a stage.
type ReplayStageOutcome struct {
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Skip is why the plan skips the stage (its when, the trigger, a
	// skipped need), decided when the pipeline was compiled.
	Skip     string          `json:"skip,omitempty"`
	Needs    []string        `json:"needs,omitempty"`
	Approval *ReplayApproval `json:"approval,omitempty"`
}

// ReplayApproval is a stage's approval gate.
type ReplayApproval struct {
	Approvers []string `json:"approvers,omitempty"`
	// Asked says whether the run asked for (or the replay would ask for)
	// the approval: the stage got that far.
	Asked    bool   `json:"asked"`
	Decision string `json:"decision,omitempty"`
	By       string `json:"by,omitempty"`
	// Result is, in a replay, where the decision comes from: recorded,
	// assumed or dry_run.
	Result string `json:"result,omitempty"`
}

// ReplayStep is one step of a stage, matched by name: a renamed step is
// one removed and one added.
type ReplayStep struct {
	Name   string             `json:"name"`
	Kind   string             `json:"kind"`
	Change string             `json:"change"`
	Before *ReplayStepOutcome `json:"before,omitempty"`
	After  *ReplayStepOutcome `json:"after,omitempty"`
	// Inputs are the resolved inputs that differ from those of the
	// recorded step, for a step the replay runs: paths such as
	// run.command, image.tags or env.NAME, values as JSON.
	Inputs []ReplayValue `json:"inputs,omitempty"`
	// Settings are timeout, retry and continue_on_error, where they differ.
	Settings []ReplayValue `json:"settings,omitempty"`
}

// ReplayStepOutcome is what became of a step.
type ReplayStepOutcome struct {
	State   State             `json:"state"`
	Error   string            `json:"error,omitempty"`
	Outputs map[string]string `json:"outputs,omitempty"`
	// Result is, in a replay, recorded or assumed; empty for a step that
	// did not run or failed before it could (its inputs).
	Result string `json:"result,omitempty"`
	// Why says why a result is assumed.
	Why string `json:"why,omitempty"`
}

// ReplaySummary counts what changed.
type ReplaySummary struct {
	StagesAdded   int `json:"stages_added"`
	StagesRemoved int `json:"stages_removed"`
	StagesChanged int `json:"stages_changed"`
	StepsAdded    int `json:"steps_added"`
	StepsRemoved  int `json:"steps_removed"`
	StepsChanged  int `json:"steps_changed"`
	// InputsChanged counts the steps that would receive different inputs.
	InputsChanged int `json:"inputs_changed"`
	// Assumed counts the steps whose result the replay assumed.
	Assumed int `json:"assumed"`
	// ApprovalsAsked counts the approvals the replay asks; NewApprovals
	// those of them the recorded run did not ask.
	ApprovalsAsked int `json:"approvals_asked"`
	NewApprovals   int `json:"new_approvals"`
}

// Why a step's result is assumed.
const (
	whyNew         = "a new step"
	whyInputs      = "its inputs changed"
	whyNotRun      = "it did not run in the recorded run"
	whyNotFinished = "it did not finish in the recorded run"
)

// replayStep is what the replay learns about one step.
type replayStep struct {
	status   *StepStatus
	inputs   map[string]string // nil until the step is resolved
	settings map[string]string
	result   string
	why      string
}

// replaySide is one of the two runs a replay compares: the recorded one,
// rebuilt from its status, or the replay.
type replaySide struct {
	r     *run
	steps [][]replayStep // by stage and step index
	// unknown holds, by stage index, the steps whose outputs are not
	// known: assumed, or dropped from the recorded status.
	unknown []map[string]bool
	// approval holds, by stage index, where the decision came from.
	approval []string
}

func newReplaySide(p plan.Plan, st RunStatus) (*replaySide, error) {
	r, err := newRunState(RunInput{Plan: p, DryRun: st.DryRun}, st.RunID, st.Start)
	if err != nil {
		return nil, err
	}
	s := &replaySide{r: r, steps: make([][]replayStep, len(r.stages)), unknown: make([]map[string]bool, len(r.stages)), approval: make([]string, len(r.stages))}
	for i, sr := range r.stages {
		s.unknown[i] = map[string]bool{}
		s.steps[i] = make([]replayStep, len(sr.plan.Steps))
		for j, step := range sr.plan.Steps {
			s.steps[i][j] = replayStep{status: &sr.status.Steps[j], settings: stepSettings(sr.plan, step)}
		}
	}
	return s, nil
}

// lookup gives a step of st the value of a step output, or, when the
// output's step has outputs that are not known, the reference itself.
func (s *replaySide) lookup(st *stageRun) func(plan.Ref) (plan.Part, error) {
	return func(ref plan.Ref) (plan.Part, error) {
		v, err := s.r.lookupOutput(st, ref)
		if err != nil && s.unknownOutputs(st, ref.Step) {
			return plan.Part{Ref: &ref}, nil
		}
		return plan.Part{Lit: v}, err
	}
}

// unknownOutputs says whether the step that lookupOutput finds for name,
// from st, has outputs that are not known.
func (s *replaySide) unknownOutputs(st *stageRun, name string) bool {
	if _, ok := st.outputs[name]; ok {
		return s.unknown[st.idx][name]
	}
	for _, a := range st.ancestors {
		if _, ok := s.r.stages[a].outputs[name]; ok && s.unknown[a][name] {
			return true
		}
	}
	return false
}

// keep records the outputs of a finished step for the steps after it, as
// runStep does: a step that failed passes them on only when it may fail.
func (s *replaySide) keep(st *stageRun, step plan.Step, ss *StepStatus, unknown bool) {
	switch {
	case ss.State == StateSucceeded:
	case ss.State == StateFailed && step.ContinueOnError && (ss.Outputs != nil || unknown):
	default:
		return
	}
	outs := ss.Outputs
	if outs == nil {
		outs = map[string]string{}
	}
	st.outputs[step.Name] = outs
	if unknown {
		s.unknown[st.idx][step.Name] = true
	}
}

// recorded rebuilds what the steps of the recorded run received, from its
// plan and the results it recorded. A step that did not run is resolved
// as far as the run's outputs go, for comparison.
func recorded(p plan.Plan, st RunStatus) (*replaySide, error) {
	s, err := newReplaySide(p, st)
	if err != nil {
		return nil, fmt.Errorf("the recorded plan: %w", err)
	}
	for i, sr := range s.r.stages {
		rs, _ := st.Stage(sr.plan.ID)
		if rs != nil {
			*sr.status = *rs
			// The recorded status is the run's: its steps match the plan
			// by name, in case the status is not the plan's shape.
			sr.status.Steps = make([]StepStatus, len(sr.plan.Steps))
			for j, step := range sr.plan.Steps {
				sr.status.Steps[j] = StepStatus{Name: step.Name, Kind: step.Kind, State: StatePending}
				if k := slices.IndexFunc(rs.Steps, func(ss StepStatus) bool { return ss.Name == step.Name }); k >= 0 {
					sr.status.Steps[j] = rs.Steps[k]
				}
			}
		}
		for j, step := range sr.plan.Steps {
			rstep := &s.steps[i][j]
			rstep.status = &sr.status.Steps[j]
			resolved, env, err := s.r.resolveWith(sr, step, func(ref plan.Ref) (plan.Part, error) {
				v, err := s.r.lookupOutput(sr, ref)
				if err != nil {
					return plan.Part{Ref: &ref}, nil
				}
				return plan.Part{Lit: v}, nil
			})
			if err == nil {
				rstep.inputs = stepInputs(resolved, env)
			}
			s.keep(sr, step, rstep.status, rstep.status.OutputsDropped)
		}
	}
	return s, nil
}

// ReplayPipeline works out what the changed pipeline in.Plan would have done with
// the results the run recorded: see the comment at the top of pipelinereplay.go.
// Nothing runs.
func ReplayPipeline(in ReplayInput) (*ReplayReport, error) {
	before, err := recorded(in.Recorded, in.Status)
	if err != nil {
		return nil, err
	}
	after, err := newReplaySide(in.Plan, in.Status)
	if err != nil {
		return nil, fmt.Errorf("the changed plan: %w", err)
	}
	rp := &replayer{in: in, before: before, after: after}
	rp.schedule()
	return rp.report(), nil
}

type replayer struct {
	in            ReplayInput
	before, after *replaySide
}

// recordedStep is the step of the recorded run with this stage ID and
// step name.
func (rp *replayer) recordedStep(stage, step string) *replayStep {
	i, ok := rp.before.r.byID[stage]
	if !ok {
		return nil
	}
	for j := range rp.before.steps[i] {
		if rs := &rp.before.steps[i][j]; rs.status.Name == step {
			return rs
		}
	}
	return nil
}

// schedule takes the stages in plan order through the workflow's
// decisions (see run.schedule), each to its end.
func (rp *replayer) schedule() {
	r := rp.after.r
	for {
		started, pending := 0, 0
		for _, st := range r.stages {
			if st.started {
				continue
			}
			done, blocker := r.needsDone(st)
			if !done {
				pending++
				continue
			}
			started++
			if r.admit(st, blocker, false) {
				st.started = true
				rp.runStage(st)
			}
		}
		if pending == 0 || started == 0 {
			break
		}
	}
	for _, st := range r.stages {
		if !st.status.State.Done() {
			r.cancelStage(st, r.cancelReason())
		}
	}
	r.status.State, r.status.Error = StateSucceeded, ""
	if r.failure != "" {
		r.status.State, r.status.Error = StateFailed, r.failure
	}
}

// runStage is run.runStage without runners: the approval, then the steps
// in order until one fails the stage.
func (rp *replayer) runStage(st *stageRun) {
	r, s := rp.after.r, st.plan
	if ap := s.Approval; ap != nil {
		a := &ApprovalStatus{Approvers: ap.Approvers, Description: ap.Description}
		st.status.Approval = a
		rec, _ := rp.in.Status.Stage(s.ID)
		switch {
		case r.dryRun:
			dryRunApproval(a, rp.in.Status.Start)
			rp.after.approval[st.idx] = ResultDryRun
		case rec != nil && rec.Approval != nil && rec.Approval.Decision != "":
			a.Decision, a.By, a.Reason, a.Decided = rec.Approval.Decision, rec.Approval.By, rec.Approval.Reason, rec.Approval.Decided
			rp.after.approval[st.idx] = ResultRecorded
		default:
			a.Decision, a.By = DecisionApproved, ReplayApprover
			a.Reason = "the recorded run did not decide this approval"
			rp.after.approval[st.idx] = ResultAssumed
		}
		if why := approvalRefusal(ap, a); why != "" {
			r.endSteps(st, st.first, StateSkipped)
			r.failStage(st, why)
			return
		}
	}
	st.status.State = StateRunning
	stageErr := ""
	for j := st.first; j < len(s.Steps) && stageErr == ""; j++ {
		rp.runStep(st, j)
		stageErr = failsStage(s.Steps[j], &st.status.Steps[j])
	}
	if stageErr != "" {
		r.endSteps(st, st.first, StateSkipped)
		r.failStage(st, stageErr)
		return
	}
	st.status.State, st.status.Reason = StateSucceeded, ""
}

// runStep resolves step j of st as the workflow would and gives it the
// recorded result when it received the same inputs, or assumes one.
func (rp *replayer) runStep(st *stageRun, j int) {
	step := st.plan.Steps[j]
	ss := &st.status.Steps[j]
	out := &rp.after.steps[st.idx][j]
	resolved, env, err := rp.after.r.resolveWith(st, step, rp.after.lookup(st))
	if err != nil {
		ss.State, ss.Error = StateFailed, err.Error()
		return
	}
	out.inputs = stepInputs(resolved, env)
	rec := rp.recordedStep(st.plan.ID, step.Name)
	switch {
	case rec == nil:
		out.why = whyNew
	case !maps.Equal(rec.inputs, out.inputs):
		out.why = whyInputs
	case rec.status.State == StateSucceeded || rec.status.State == StateFailed:
		ss.State, ss.Error, ss.Outputs, ss.OutputsDropped = rec.status.State, rec.status.Error, rec.status.Outputs, rec.status.OutputsDropped
		ss.Start, ss.End, ss.Attempt, ss.Tests = rec.status.Start, rec.status.End, rec.status.Attempt, rec.status.Tests
		out.result = ResultRecorded
		rp.after.keep(st, step, ss, ss.OutputsDropped)
		return
	case rec.status.State == StateSkipped || rec.status.State == StatePending:
		out.why = whyNotRun
	default:
		out.why = whyNotFinished
	}
	out.result = ResultAssumed
	ss.State = StateSucceeded
	if rp.in.AssumeFailure {
		ss.State, ss.Error = StateFailed, "assumed to fail: "+out.why+", so the recorded run has no result for it"
	}
	rp.after.keep(st, step, ss, true)
}

// report compares the two sides.
func (rp *replayer) report() *ReplayReport {
	in := rp.in
	rep := &ReplayReport{
		RunID:    in.Status.RunID,
		Pipeline: in.Plan.Pipeline,
		Git:      in.Plan.Git,
		Assume:   "success",
		DryRun:   in.Status.DryRun,
		Trigger:  ReplayTrigger{Before: in.Recorded.Trigger, After: in.Plan.Trigger},
		Vars:     varChanges(in.Recorded.Vars, in.Plan.Vars),
		Run: ReplayRun{
			Before: ReplayOutcome{State: in.Status.State, Error: in.Status.Error},
			After:  ReplayOutcome{State: rp.after.r.status.State, Error: rp.after.r.status.Error},
		},
		Stages:  []ReplayStage{},
		Digests: ReplayDigests{Before: in.Recorded.Digest, After: in.Plan.Digest},
	}
	if in.AssumeFailure {
		rep.Assume = "failure"
	}
	b, a := rp.before.r, rp.after.r
	ids := func(r *run) []string {
		out := make([]string, len(r.stages))
		for i, st := range r.stages {
			out[i] = st.plan.ID
		}
		return out
	}
	sum := &rep.Summary
	for _, id := range mergeOrder(ids(b), ids(a)) {
		rs := ReplayStage{ID: id, Change: ChangeUnchanged, Steps: []ReplayStep{}}
		bi, inBefore := b.byID[id]
		ai, inAfter := a.byID[id]
		var bsteps, asteps []string
		if inBefore {
			rs.Before = rp.before.stageOutcome(bi, "")
			for _, step := range b.stages[bi].plan.Steps {
				bsteps = append(bsteps, step.Name)
			}
		}
		if inAfter {
			rs.After = rp.after.stageOutcome(ai, rp.after.approval[ai])
			for _, step := range a.stages[ai].plan.Steps {
				asteps = append(asteps, step.Name)
			}
			if ap := rs.After.Approval; ap != nil && ap.Asked {
				sum.ApprovalsAsked++
				if rs.Before == nil || rs.Before.Approval == nil || !rs.Before.Approval.Asked {
					sum.NewApprovals++
				}
			}
		}
		stepsChanged := false
		for _, name := range mergeOrder(bsteps, asteps) {
			step := rp.stepReplay(bi, inBefore, ai, inAfter, name)
			switch step.Change {
			case ChangeAdded:
				sum.StepsAdded++
			case ChangeRemoved:
				sum.StepsRemoved++
			case ChangeChanged:
				sum.StepsChanged++
			}
			if len(step.Inputs) > 0 {
				sum.InputsChanged++
			}
			if step.After != nil && step.After.Result == ResultAssumed {
				sum.Assumed++
			}
			stepsChanged = stepsChanged || step.Change != ChangeUnchanged
			rs.Steps = append(rs.Steps, step)
		}
		switch {
		case !inBefore:
			rs.Change = ChangeAdded
			sum.StagesAdded++
		case !inAfter:
			rs.Change = ChangeRemoved
			sum.StagesRemoved++
		case stepsChanged || !sameStage(rs.Before, rs.After):
			rs.Change = ChangeChanged
			sum.StagesChanged++
		}
		rep.Stages = append(rep.Stages, rs)
	}
	rep.Changed = sum.StagesAdded+sum.StagesRemoved+sum.StagesChanged > 0 || len(rep.Vars) > 0 ||
		rep.Run.Before != rep.Run.After || rep.Trigger.Before.Matched != rep.Trigger.After.Matched
	return rep
}

// sameStage says whether a stage ends the same way in the recorded run
// and in the replay, whatever its approval's decision came from.
func sameStage(b, a *ReplayStageOutcome) bool {
	if b.State != a.State || b.Reason != a.Reason || b.Skip != a.Skip || !slices.Equal(b.Needs, a.Needs) {
		return false
	}
	if b.Approval == nil || a.Approval == nil {
		return b.Approval == a.Approval
	}
	ba, aa := *b.Approval, *a.Approval
	return slices.Equal(ba.Approvers, aa.Approvers) && ba.Asked == aa.Asked && ba.Decision == aa.Decision && ba.By == aa.By
}

// stageOutcome describes stage i of a side.
func (s *replaySide) stageOutcome(i int, approvalResult string) *ReplayStageOutcome {
	st := s.r.stages[i]
	o := &ReplayStageOutcome{State: st.status.State, Reason: st.status.Reason, Skip: st.plan.Skip, Needs: st.plan.Needs}
	if o.State == StateSucceeded {
		// A stage a retry kept says so; it succeeded all the same.
		o.Reason = ""
	}
	if ap := st.plan.Approval; ap != nil {
		o.Approval = &ReplayApproval{Approvers: ap.Approvers}
		if a := st.status.Approval; a != nil {
			o.Approval.Asked, o.Approval.Decision, o.Approval.By, o.Approval.Result = true, a.Decision, a.By, approvalResult
		}
	}
	return o
}

// stepReplay compares the step of this name in stage bi of the recorded
// run and stage ai of the replay.
func (rp *replayer) stepReplay(bi int, inBefore bool, ai int, inAfter bool, name string) ReplayStep {
	find := func(s *replaySide, i int, ok bool) (*replayStep, plan.Step) {
		if !ok {
			return nil, plan.Step{}
		}
		for j, step := range s.r.stages[i].plan.Steps {
			if step.Name == name {
				return &s.steps[i][j], step
			}
		}
		return nil, plan.Step{}
	}
	b, bstep := find(rp.before, bi, inBefore)
	a, astep := find(rp.after, ai, inAfter)
	out := ReplayStep{Name: name, Change: ChangeUnchanged}
	if b != nil {
		out.Kind = bstep.Kind
		out.Before = &ReplayStepOutcome{State: b.status.State, Error: b.status.Error, Outputs: b.status.Outputs}
	}
	if a != nil {
		out.Kind = astep.Kind
		out.After = &ReplayStepOutcome{State: a.status.State, Error: a.status.Error, Outputs: a.status.Outputs, Result: a.result, Why: a.why}
	}
	switch {
	case b == nil:
		out.Change = ChangeAdded
		return out
	case a == nil:
		out.Change = ChangeRemoved
		return out
	}
	if a.inputs != nil {
		out.Inputs = valueChanges(b.inputs, a.inputs)
	}
	out.Settings = valueChanges(b.settings, a.settings)
	if len(out.Inputs) > 0 || len(out.Settings) > 0 || a.result == ResultAssumed ||
		out.Before.State != out.After.State || out.Before.Error != out.After.Error {
		out.Change = ChangeChanged
	}
	return out
}

// mergeOrder lists the names of before and after once each: after's in
// its order, each name only before in its old place among the names of
// both, ahead of those only after (a renamed step reads as removed, then
// added).
func mergeOrder(before, after []string) []string {
	at := make(map[string]int, len(before))
	for i, n := range before {
		at[n] = i
	}
	kept := make(map[string]bool, len(after))
	for _, n := range after {
		kept[n] = true
	}
	// nextOld[k] is the index in before of the first name of after[k:]
	// that before has.
	nextOld := make([]int, len(after)+1)
	nextOld[len(after)] = len(before)
	for k := len(after) - 1; k >= 0; k-- {
		nextOld[k] = nextOld[k+1]
		if i, ok := at[after[k]]; ok {
			nextOld[k] = i
		}
	}
	out := make([]string, 0, len(before)+len(after))
	next := 0 // the first name of before not yet passed
	for k, n := range after {
		for ; next < nextOld[k]; next++ {
			if !kept[before[next]] {
				out = append(out, before[next])
			}
		}
		out = append(out, n)
	}
	for ; next < len(before); next++ {
		if !kept[before[next]] {
			out = append(out, before[next])
		}
	}
	return out
}

// stepInputs flattens what a resolved step receives into paths and JSON
// values: its kind, its configuration (run.command, image.tags[...]) and
// its environment (env.NAME). A list of plain values is one value.
func stepInputs(step plan.Step, env map[string]plan.Template) map[string]string {
	m := map[string]string{"kind": jsonText(step.Kind)}
	if cfg := step.Config(); cfg != nil && !reflect.ValueOf(cfg).IsNil() {
		b, err := json.Marshal(cfg)
		if err != nil {
			panic(err) // a plan always encodes
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			panic(err)
		}
		flatten(step.Kind, templatesAsText(v), m)
	}
	for k, t := range env {
		m["env."+k] = jsonText(t.String())
	}
	return m
}

// templatesAsText replaces each encoded template with references
// ({"template": [...]}) by its text, ${step.NAME.OUTPUT} for a reference.
func templatesAsText(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if parts, ok := v["template"].([]any); ok && len(v) == 1 {
			b, _ := json.Marshal(map[string]any{"template": parts})
			var t plan.Template
			if json.Unmarshal(b, &t) == nil {
				return t.String()
			}
		}
		for k, e := range v {
			v[k] = templatesAsText(e)
		}
	case []any:
		for i, e := range v {
			v[i] = templatesAsText(e)
		}
	}
	return v
}

func flatten(path string, v any, m map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			m[path] = "{}"
		}
		for k, e := range v {
			flatten(path+"."+k, e, m)
		}
		return
	case []any:
		if slices.ContainsFunc(v, func(e any) bool {
			switch e.(type) {
			case map[string]any, []any:
				return true
			}
			return false
		}) {
			for i, e := range v {
				flatten(fmt.Sprintf("%s[%d]", path, i), e, m)
			}
			return
		}
	}
	m[path] = jsonText(v)
}

// jsonText is v as compact JSON, without HTML escapes.
func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// stepSettings are what a step runs with besides its inputs.
func stepSettings(s *plan.Stage, step plan.Step) map[string]string {
	m := map[string]string{}
	if step.Timeout > 0 {
		m["timeout"] = jsonText(step.Timeout.String())
	}
	retry := step.Retry
	if retry == nil {
		retry = s.Retry
	}
	if retry != nil {
		m["retry"] = jsonText(retry)
	}
	if step.ContinueOnError {
		m["continue_on_error"] = "true"
	}
	return m
}

// valueChanges lists the paths whose values differ, sorted.
func valueChanges(before, after map[string]string) []ReplayValue {
	var out []ReplayValue
	for _, k := range slices.Sorted(maps.Keys(before)) {
		bv := before[k]
		av, ok := after[k]
		switch {
		case !ok:
			out = append(out, ReplayValue{Path: k, Before: &bv})
		case av != bv:
			out = append(out, ReplayValue{Path: k, Before: &bv, After: &av})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[k]; !ok {
			av := after[k]
			out = append(out, ReplayValue{Path: k, After: &av})
		}
	}
	slices.SortStableFunc(out, func(a, b ReplayValue) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// varChanges lists the variables whose values differ.
func varChanges(before, after map[string]json.RawMessage) []ReplayValue {
	text := func(m map[string]json.RawMessage) map[string]string {
		out := make(map[string]string, len(m))
		for k, raw := range m {
			var b bytes.Buffer
			if json.Compact(&b, raw) != nil {
				b.Reset()
				b.Write(raw)
			}
			out["var."+k] = b.String()
		}
		return out
	}
	return valueChanges(text(before), text(after))
}
