package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// StartOptions configures Start.
type StartOptions struct {
	// RunID is the run's ID (its Temporal workflow ID); empty means a new
	// one made from the pipeline name.
	RunID string
	// TaskQueue is where the workflow runs; empty means WorkflowTaskQueue.
	TaskQueue string
	// Source is where runners find the code of a run started from a
	// developer's machine.
	Source *Source
	// DryRun starts the run as a dry run (see RunInput.DryRun).
	DryRun bool
}

// ErrRunExists says a run with the ID given to Start exists already (it may
// have ended): the server starts runs with IDs derived from what triggered
// them, so a second start of the same run finds the first.
var ErrRunExists = errors.New("a run with this ID exists")

// Start starts a run of a plan and returns its run ID.
func Start(ctx context.Context, c client.Client, p plan.Plan, o StartOptions) (string, error) {
	if err := validatePlan(&p); err != nil {
		return "", fmt.Errorf("starting pipeline %q: %w", p.Pipeline, err)
	}
	id := o.RunID
	if id == "" {
		id = NewRunID(p.Pipeline)
	}
	q := o.TaskQueue
	if q == "" {
		q = WorkflowTaskQueue
	}
	if err := start(ctx, c, id, q, RunInput{Plan: p, Source: o.Source, DryRun: o.DryRun}, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE); err != nil {
		return "", err
	}
	return id, nil
}

func start(ctx context.Context, c client.Client, id, queue string, in RunInput, reuse enumspb.WorkflowIdReusePolicy) error {
	p := in.Plan
	// Runners poll the queues of the label sets plans ask for: they learn
	// this plan's before its stages wait on them.
	if err := noteLabelSets(ctx, c, &p); err != nil {
		return err
	}
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             queue,
		WorkflowIDReusePolicy: reuse,
		// Without this the SDK answers a start with an ID already used by
		// handing back the earlier run, as if it had started.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrPipeline.ValueSet(p.Pipeline),
			AttrRepo.ValueSet(p.Git.Repo),
			AttrRef.ValueSet(p.Git.Ref),
			AttrSHA.ValueSet(p.Git.SHA),
			AttrStatus.ValueSet(string(StatePending)),
			AttrEvent.ValueSet(p.Git.Event),
			AttrActor.ValueSet(p.Git.Actor),
		),
		StaticSummary: fmt.Sprintf("%s %s@%s", p.Pipeline, p.Git.Repo, shortSHA(p.Git.SHA)),
		// A worker that takes up a large run again replays its history in
		// one workflow task (see workflowTaskTimeout).
		WorkflowTaskTimeout: workflowTaskTimeout(&p),
		// A server starting a run from a delivery hosts the run's workflow
		// too: its worker takes the first workflow task in the start's
		// answer rather than through the task queue. Without such a
		// worker on this client the start is as usual.
		EnableEagerStart: true,
	}, WorkflowName, in)
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &dup) {
		return fmt.Errorf("starting pipeline %q: the run ID %q is already used; give another one, or none to get a new one: %w", p.Pipeline, id, ErrRunExists)
	}
	if err != nil {
		return fmt.Errorf("starting run %q of pipeline %q: %w", id, p.Pipeline, err)
	}
	return nil
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

var notIDChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// NewRunID makes a run ID: the pipeline name and a random suffix, short
// enough to type after `sluice approve`.
func NewRunID(pipeline string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Trim(notIDChars.ReplaceAllString(pipeline, "-"), "-")
	if name == "" {
		name = "run"
	}
	return name + "-" + hex.EncodeToString(b[:])
}

// Status returns the status of a run: from the running workflow's status
// query, or from the result a finished run left behind.
func Status(ctx context.Context, c client.Client, runID string) (RunStatus, error) {
	st, _, err := status(ctx, c, runID, "", false)
	return st, err
}

// ExecutionStatus is Status for one execution of a run (a retry is a new
// execution of the same run ID), with whether that execution has ended.
// An execution is the Temporal run ID; "" means the latest.
func ExecutionStatus(ctx context.Context, c client.Client, runID, execution string) (st RunStatus, ended bool, err error) {
	desc, err := c.DescribeWorkflowExecution(ctx, runID, execution)
	if err != nil {
		return RunStatus{}, false, runError("looking up", runID, err)
	}
	ended = desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	st, _, err = status(ctx, c, runID, execution, false)
	return st, ended, err
}

// Execution returns the Temporal run ID of a run's latest execution.
func Execution(ctx context.Context, c client.Client, runID string) (string, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, runID, "")
	if err != nil {
		return "", runError("looking up", runID, err)
	}
	return desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), nil
}

// Progress is Status for following a run: while the workflow is busy with
// a task, which a query would wait for, it returns ok false instead.
func Progress(ctx context.Context, c client.Client, runID string) (st RunStatus, ok bool, err error) {
	return status(ctx, c, runID, "", true)
}

func status(ctx context.Context, c client.Client, runID, execution string, unlessBusy bool) (RunStatus, bool, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, runID, execution)
	if err != nil {
		return RunStatus{}, false, runError("looking up", runID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		if unlessBusy && desc.GetPendingWorkflowTask() != nil {
			return RunStatus{}, false, nil
		}
		st, err := queryStatus(ctx, c, runID, execution)
		if err == nil {
			applyBatchProgress(&st, desc)
			explainWaiting(ctx, c, &st)
		}
		return st, err == nil, err
	}
	st, err := finalStatus(ctx, c, runID, info.GetExecution().GetRunId(), info.GetStatus())
	return st, err == nil, err
}

func queryStatus(ctx context.Context, c client.Client, runID, execution string) (RunStatus, error) {
	v, err := c.QueryWorkflow(ctx, runID, execution, QueryStatus)
	if err != nil {
		return RunStatus{}, fmt.Errorf("querying the status of run %q: %w", runID, err)
	}
	var st RunStatus
	if err := v.Get(&st); err != nil {
		return RunStatus{}, fmt.Errorf("decoding the status of run %q: %w", runID, err)
	}
	return st, nil
}

// statusInError reads into st the status a run that failed or was
// cancelled left in the details of its error.
func statusInError(err error, st *RunStatus) bool {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.HasDetails() && ae.Details(st) == nil {
		return true
	}
	var ce *temporal.CanceledError
	return errors.As(err, &ce) && ce.HasDetails() && ce.Details(st) == nil
}

// Wait waits until a run ends and returns its final status. An error that
// is Temporary() is the call's, not the run's: the caller may wait again.
func Wait(ctx context.Context, c client.Client, runID string) (RunStatus, error) {
	var st RunStatus
	err := c.GetWorkflow(ctx, runID, "").Get(ctx, &st)
	if err == nil || statusInError(err, &st) {
		return st, nil
	}
	var temporary interface{ Temporary() bool }
	if errors.As(err, &temporary) || ctx.Err() != nil {
		return RunStatus{}, err
	}
	// Terminated or timed out: the run left no status of its own.
	return Status(ctx, c, runID)
}

// finalStatus reads the status a finished run returned, or left in the
// details of its failure or cancellation. A terminated or timed-out run
// left none; its status comes from a query, which needs a worker.
func finalStatus(ctx context.Context, c client.Client, runID, execution string, status enumspb.WorkflowExecutionStatus) (RunStatus, error) {
	var st RunStatus
	err := c.GetWorkflow(ctx, runID, execution).Get(ctx, &st)
	if err == nil || statusInError(err, &st) {
		return st, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, qerr := queryStatus(qctx, c, runID, execution)
	if qerr != nil {
		return RunStatus{}, fmt.Errorf("run %q ended (%v) without a status: %w", runID, err, qerr)
	}
	switch status {
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		st.State, st.Error = StateCancelled, "the run was terminated"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		st.State, st.Error = StateFailed, "the run timed out"
	default:
		st.State, st.Error = StateFailed, err.Error()
	}
	return st, nil
}

// Approve approves a stage that waits for approval. who is the
// authenticated user; why is optional.
func Approve(ctx context.Context, c client.Client, runID, stage, who, why string) error {
	return decide(ctx, c, runID, UpdateApprove, Decision{Stage: stage, By: who, Reason: why})
}

// Reject rejects a stage that waits for approval, which fails it.
func Reject(ctx context.Context, c client.Client, runID, stage, who, why string) error {
	return decide(ctx, c, runID, UpdateReject, Decision{Stage: stage, By: who, Reason: why})
}

func decide(ctx context.Context, c client.Client, runID, update string, d Decision) error {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   runID,
		UpdateName:   update,
		Args:         []any{d},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		return runError(fmt.Sprintf("%s stage %q of", update, d.Stage), runID, err)
	}
	return nil
}

// Cancel cancels a run: running steps are cancelled, workspaces cleaned up
// and the run ends "cancelled".
func Cancel(ctx context.Context, c client.Client, runID string) error {
	desc, err := c.DescribeWorkflowExecution(ctx, runID, "")
	if err != nil {
		return runError("cancelling", runID, err)
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return runError("cancelling", runID, errors.New("workflow execution already completed"))
	}
	if err := c.CancelWorkflow(ctx, runID, ""); err != nil {
		return runError("cancelling", runID, err)
	}
	return nil
}

// Retry resumes a finished run from a step.
//
// The run keeps its ID: a new Temporal execution of the same workflow ID
// starts with the same plan and a Resume that carries the steps it keeps:
//   - in the stage of the step, the steps before it (they must have
//     succeeded, or failed with continue_on_error), with their outputs;
//   - every other stage that succeeded and does not need that stage,
//     directly or not, whole.
//
// Everything else runs again. Kept steps are not re-run and show as
// resumed in the status; their outputs feed the steps that run. The stage
// of the step takes a fresh workspace, so a step that reads files an
// earlier step of its stage wrote should be retried from that earlier step.
// An approval given to a stage whose earlier steps are kept stands; other
// stages ask again.
//
// This continuation was chosen over resetting the workflow
// (ResetWorkflowExecution) because a reset replays to an event, and in a
// DAG with parallel stages no single event separates "before the step" from
// "after it"; nor would a reset bring back the released workspace.
//
// from names a step as "STEP" (if the name is unique), "STAGE/STEP", or
// "STAGE" for the first step of a stage.
func Retry(ctx context.Context, c client.Client, runID, from string) error {
	desc, err := c.DescribeWorkflowExecution(ctx, runID, "")
	if err != nil {
		return runError("looking up", runID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return fmt.Errorf("run %q is still running; cancel it or wait for it to finish before retrying it", runID)
	}
	execution := info.GetExecution().GetRunId()
	in, err := runInput(ctx, c, runID, execution)
	if err != nil {
		return err
	}
	prev, err := finalStatus(ctx, c, runID, execution, info.GetStatus())
	if err != nil {
		return err
	}
	if from == "" {
		if from, err = firstNotSucceeded(&in.Plan, prev); err != nil {
			return fmt.Errorf("retrying run %q: %w", runID, err)
		}
	}
	res, err := resumeFrom(&in.Plan, prev, from)
	if err != nil {
		return fmt.Errorf("retrying run %q from %q: %w", runID, from, err)
	}
	res.Previous = execution
	in.Resume = res
	return start(ctx, c, runID, info.GetTaskQueue(), in, enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE)
}

// RunPlan returns the plan of a run's latest execution: what a retry runs
// again.
func RunPlan(ctx context.Context, c client.Client, runID string) (plan.Plan, error) {
	if _, err := c.DescribeWorkflowExecution(ctx, runID, ""); err != nil {
		return plan.Plan{}, runError("looking up", runID, err)
	}
	in, err := runInput(ctx, c, runID, "")
	return in.Plan, err
}

// RunSource returns where a run's code comes from (nil for a run that
// names none).
func RunSource(ctx context.Context, c client.Client, runID string) (*Source, error) {
	in, err := runInput(ctx, c, runID, "")
	return in.Source, err
}

// runInput reads the input a run was started with from its history.
func runInput(ctx context.Context, c client.Client, runID, execution string) (RunInput, error) {
	it := c.GetWorkflowHistory(ctx, runID, execution, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return RunInput{}, fmt.Errorf("run %q has no history", runID)
	}
	ev, err := it.Next()
	if err != nil {
		return RunInput{}, fmt.Errorf("reading the history of run %q: %w", runID, err)
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil {
		return RunInput{}, fmt.Errorf("run %q: history does not start with the workflow's start", runID)
	}
	var in RunInput
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		return RunInput{}, fmt.Errorf("decoding the plan of run %q: %w", runID, err)
	}
	return in, nil
}

// firstNotSucceeded names, as STAGE/STEP, the first step in the plan's
// order that did not succeed (a failed step that may fail counts as
// succeeded): where a retry without --from starts.
func firstNotSucceeded(p *plan.Plan, prev RunStatus) (string, error) {
	for _, s := range p.Stages {
		ps, ok := prev.Stage(s.ID)
		if !ok || len(ps.Steps) != len(s.Steps) {
			return "", fmt.Errorf("the status of the run does not match its plan at stage %q", s.ID)
		}
		if s.Skip != "" {
			continue
		}
		for j, st := range ps.Steps {
			if st.State != StateSucceeded && (st.State != StateFailed || !s.Steps[j].ContinueOnError) {
				return s.ID + "/" + st.Name, nil
			}
		}
	}
	return "", errors.New("every step succeeded; say where to start again with --from STEP")
}

// findStep locates the step a retry starts from.
func findStep(p *plan.Plan, from string) (int, int, error) {
	if i := slices.IndexFunc(p.Stages, func(s plan.Stage) bool { return s.ID == from }); i >= 0 {
		if len(p.Stages[i].Steps) == 0 {
			return 0, 0, fmt.Errorf("stage %q has no steps", from)
		}
		return i, 0, nil
	}
	stage, step := "", from
	if k := strings.LastIndex(from, "/"); k >= 0 {
		stage, step = from[:k], from[k+1:]
	}
	type hit struct{ i, j int }
	var hits []hit
	var names []string
	for i, s := range p.Stages {
		if stage != "" && s.ID != stage {
			continue
		}
		for j, st := range s.Steps {
			if st.Name == step {
				hits = append(hits, hit{i, j})
				names = append(names, s.ID+"/"+st.Name)
			}
		}
	}
	switch len(hits) {
	case 0:
		return 0, 0, fmt.Errorf("the run has no step %q; name it as STEP, STAGE/STEP or STAGE", from)
	case 1:
		return hits[0].i, hits[0].j, nil
	}
	return 0, 0, fmt.Errorf("step %q is in several stages; say which: %s", from, strings.Join(names, ", "))
}

// resumeFrom works out what a retry from a step keeps of the run before.
func resumeFrom(p *plan.Plan, prev RunStatus, from string) (*Resume, error) {
	si, sj, err := findStep(p, from)
	if err != nil {
		return nil, err
	}
	// after holds the stage of the step and every stage that needs it. A
	// stage whose status lost the outputs of a step (too large a status:
	// see fitStatus) runs again too, with the stages that need it: its
	// outputs are not there to keep.
	after := make([]bool, len(p.Stages))
	after[si] = true
	for i, s := range p.Stages {
		if ps, ok := prev.Stage(s.ID); ok && i != si && slices.ContainsFunc(ps.Steps, func(ss StepStatus) bool { return ss.OutputsDropped }) {
			after[i] = true
		}
	}
	for i := range p.Stages {
		for _, n := range p.Stages[i].Needs {
			if k := slices.IndexFunc(p.Stages, func(s plan.Stage) bool { return s.ID == n }); k >= 0 && after[k] {
				after[i] = true
			}
		}
	}
	res := &Resume{From: from}
	for i, s := range p.Stages {
		ps, ok := prev.Stage(s.ID)
		if !ok || len(ps.Steps) != len(s.Steps) {
			return nil, fmt.Errorf("the status of the run does not match its plan at stage %q", s.ID)
		}
		var approval *ApprovalStatus
		if ps.Approval != nil && ps.Approval.Decision == DecisionApproved {
			a := *ps.Approval
			approval = &a
		}
		switch {
		case i == si:
			if sj == 0 {
				continue
			}
			for j := range sj {
				st := ps.Steps[j]
				if st.State != StateSucceeded && (st.State != StateFailed || !s.Steps[j].ContinueOnError) {
					return nil, fmt.Errorf("step %s/%s before it did not succeed (%s); retry from %s/%s", s.ID, st.Name, st.State, s.ID, st.Name)
				}
				if st.OutputsDropped {
					return nil, fmt.Errorf("the outputs of step %s/%s before it were dropped from the run's status, which was too large to hold them all; retry from %s/%s", s.ID, st.Name, s.ID, st.Name)
				}
			}
			res.Stages = append(res.Stages, ResumedStage{ID: s.ID, Approval: approval, Steps: slices.Clone(ps.Steps[:sj])})
		case !after[i] && ps.State == StateSucceeded:
			res.Stages = append(res.Stages, ResumedStage{ID: s.ID, Approval: approval, Steps: slices.Clone(ps.Steps), Artifacts: ps.Artifacts})
		}
	}
	return res, nil
}

// RunInfo is a run as List finds it.
type RunInfo struct {
	RunRef
	// Event is what triggered the run (push, pull_request, tag, manual,
	// schedule...) and Actor who; empty for runs started before they
	// were recorded.
	Event  string    `json:"event,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	Status State     `json:"status"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end,omitzero"`
}

// List finds runs through Temporal's visibility. query is a visibility
// query over the search attributes, e.g. `SluicePipeline = 'web' AND
// SluiceStatus = 'failed'`; empty lists every run. Visibility is
// eventually consistent: a run started a moment ago may be missing.
func List(ctx context.Context, c client.Client, query string) ([]RunInfo, error) {
	q := fmt.Sprintf("WorkflowType = '%s'", WorkflowName)
	if strings.TrimSpace(query) != "" {
		q += " AND (" + query + ")"
	}
	var runs []RunInfo
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("listing runs (%s): %w", q, err)
		}
		for _, e := range resp.GetExecutions() {
			runs = append(runs, runInfo(e))
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return runs, nil
		}
	}
}

// runInfo reads a run from its visibility record.
func runInfo(e *workflowpb.WorkflowExecutionInfo) RunInfo {
	fields := e.GetSearchAttributes().GetIndexedFields()
	ri := RunInfo{
		RunRef: RunRef{
			RunID:    e.GetExecution().GetWorkflowId(),
			Pipeline: keyword(fields, AttrPipeline.GetName()),
			Repo:     keyword(fields, AttrRepo.GetName()),
			Ref:      keyword(fields, AttrRef.GetName()),
			SHA:      keyword(fields, AttrSHA.GetName()),
		},
		Event:  keyword(fields, AttrEvent.GetName()),
		Actor:  keyword(fields, AttrActor.GetName()),
		Status: State(keyword(fields, AttrStatus.GetName())),
		Start:  e.GetStartTime().AsTime(),
	}
	if e.GetCloseTime() != nil {
		ri.End = e.GetCloseTime().AsTime()
	}
	ri.Status = closedState(ri.Status, e.GetStatus())
	return ri
}

// closedState reconciles the status a run recorded with how its execution
// ended: a terminated run could not record its end.
func closedState(s State, es enumspb.WorkflowExecutionStatus) State {
	if s.Done() {
		return s
	}
	switch es {
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return StateSucceeded
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return StateFailed
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return StateCancelled
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return StateRunning
	}
	return s
}

func keyword(fields map[string]*commonpb.Payload, name string) string {
	p, ok := fields[name]
	if !ok {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}

// RegisterSearchAttributes adds the engine's search attributes (Keyword)
// to a namespace where they are missing.
func RegisterSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	_, err := addSearchAttributes(ctx, c, namespace)
	return err
}

// addSearchAttributes adds the engine's missing search attributes and
// returns their names. A cluster that does not let this client add them
// (a production cluster gives servers and runners no operator rights) is
// an error that says which are missing and how to add them.
func addSearchAttributes(ctx context.Context, c client.Client, namespace string) ([]string, error) {
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("listing search attributes of namespace %q: %w", namespace, err)
	}
	add := map[string]enumspb.IndexedValueType{}
	var names []string
	for _, name := range SearchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			add[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
			names = append(names, name)
		}
	}
	if len(add) == 0 {
		return nil, nil
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: add,
	}); err != nil {
		var denied *serviceerror.PermissionDenied
		if errors.As(err, &denied) {
			return nil, fmt.Errorf("namespace %q lacks Sluice's search attributes %v and this client may not add them: run `sluice admin setup --temporal-address HOST:PORT --namespace %s` once with an administrator's credentials: %w", namespace, names, namespace, err)
		}
		return nil, fmt.Errorf("adding search attributes to namespace %q: %w", namespace, err)
	}
	return names, nil
}

// runError says what went wrong with a run in the user's terms: a run that
// does not exist, or has already finished, is not a server error.
func runError(doing, runID string, err error) error {
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound) && strings.Contains(err.Error(), "already completed"),
		strings.Contains(err.Error(), "already completed"):
		return fmt.Errorf("%s run %q: the run has already finished; `sluice status %s` shows how it ended", doing, runID, runID)
	case errors.As(err, &notFound):
		return fmt.Errorf("%s run %q: there is no such run here; `sluice runs` lists the runs", doing, runID)
	}
	return fmt.Errorf("%s run %q: %w", doing, runID, err)
}
