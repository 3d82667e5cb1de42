package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// Step batches. A step run as its own activity costs two trips through the
// server (a workflow task to schedule it, an activity task to run it) and
// their writes to the database: about 19 ms on a one-machine server, which
// is most of the time of a short step. So consecutive steps of a stage that
// need nothing from the workflow between them run in one RunSteps activity:
// steps without retries (the workflow decides about retries) whose
// templates use no output of a step in the same batch (the workflow
// substitutes outputs before it schedules).
//
// A batch keeps the promise of a step per activity, that a step that
// finished never runs again after a crash. RunSteps records what finished
// so far before it starts the next step, in two places: in the workspace's
// journal (journal.go), which a batch started again on the same runner
// after a crash reads, and in a heartbeat to the server (not through the
// SDK's throttled heartbeats), whose progress the workflow keeps when the
// runner is lost. Without a journal, RunSteps waits until the server has
// stored each heartbeat; with one, it goes on while the server is at most
// JournalLead steps behind. When the runner is lost, the batch's heartbeat
// timeout carries the stored progress back to the workflow, which keeps
// those steps and starts the rest of the batch again once a runner has
// taken the stage: in the same workspace, the journal skips the steps that
// had finished there. Status reads the same progress from the running
// activity, so that a batch's steps show as they finish.

// RunStepsActivity is the name of the activity that runs a batch of steps.
const RunStepsActivity = "RunSteps"

// StepsInput is the input of the RunSteps activity: consecutive steps of a
// stage, run in order in one workspace.
type StepsInput struct {
	RunID     string        `json:"run_id"`
	Pipeline  string        `json:"pipeline"`
	StageID   string        `json:"stage_id"`
	Workspace string        `json:"workspace"`
	Git       plan.Git      `json:"git"`
	Secrets   []plan.Secret `json:"secrets,omitempty"`
	// First is the index of Steps[0] among the stage's steps.
	First int         `json:"first"`
	Steps []BatchStep `json:"steps"`
	// Take makes the batch the whole rest of a stage that no runner holds
	// yet: scheduled on the stage's shared queue, it prepares the
	// workspace (Workspace is then empty), runs the steps and releases the
	// workspace, in one activity (see runStage).
	Take *PrepareInput `json:"take,omitempty"`
}

// BatchStep is one step of a batch, with outputs substituted, as in
// StepInput.
type BatchStep struct {
	Step    plan.Step                `json:"step"`
	Env     map[string]plan.Template `json:"env,omitempty"`
	Timeout time.Duration            `json:"timeout"`
}

// StepsResult is what RunSteps returns, and the progress it records in its
// heartbeats: one entry per finished step, in order.
type StepsResult struct {
	StageID string `json:"stage_id"`
	// Runner is the runner that runs the batch.
	Runner string            `json:"runner,omitempty"`
	First  int               `json:"first"`
	Steps  []BatchStepResult `json:"steps"`
}

// BatchStepResult is how one step of a batch ended.
type BatchStepResult struct {
	// Error is why the step failed; empty when it succeeded.
	Error   string            `json:"error,omitempty"`
	Outputs map[string]string `json:"outputs,omitempty"`
	Start   time.Time         `json:"start"`
	End     time.Time         `json:"end"`
	// DryRun is StepResult.DryRun.
	DryRun string `json:"dry_run,omitempty"`
	// Tests is StepResult.Tests, of a step that failed too.
	Tests *TestReport `json:"tests,omitempty"`
}

// HeartbeatRecorder sends an activity's heartbeat to the server and waits
// for the answer; client.Client is one.
type HeartbeatRecorder interface {
	RecordActivityHeartbeat(ctx context.Context, taskToken []byte, details ...any) error
}

// RunSteps runs a batch of steps in order. It stops at a step that failed,
// unless the step may fail. Each step's failure is in its result, not in
// the activity's error: the activity fails only when the runner could not
// go on (cancelled: a CanceledError carrying the progress). A step the
// workspace's journal holds as finished is not run again: its recorded
// result stands (see journal.go).
func (a *Activities) RunSteps(ctx context.Context, in StepsInput) (StepsResult, error) {
	step := ""
	if len(in.Steps) > 0 {
		step = in.Steps[0].Step.Name
	}
	defer a.noteRunning(ctx, step)()
	res, err := a.runSteps(ctx, in)
	if ctx.Err() == nil && a.Abort != nil {
		// Aborted steps fail in the result: the stage goes elsewhere.
		select {
		case <-a.Abort:
			name := ""
			if len(in.Steps) > 0 {
				name = in.Steps[0].Step.Name
			}
			return res, a.stopped(name)
		default:
		}
	}
	return res, err
}

func (a *Activities) runSteps(ctx context.Context, in StepsInput) (StepsResult, error) {
	ctx, _ = a.abortable(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := StepsResult{StageID: in.StageID, First: in.First, Runner: a.Runner}
	defer a.busy(in.RunID, in.StageID)()
	// keep is set, at the end, when the workspace must outlive the batch
	// (see progress.cutOff).
	keep := false
	if in.Take != nil {
		// Taken here, on a stage queue: the activity's own slot counts the
		// stage in the runner's pool, until the activity ends.
		pctx, stop := a.heartbeat(ctx)
		ws, err := a.prepare(pctx, *in.Take)
		stop()
		if err == nil && a.Pool != nil {
			defer a.Pool.Running(stageKey(in.RunID, in.StageID))()
		}
		if err != nil {
			return res, temporal.NewNonRetryableApplicationError(err.Error(), NotTakenError, err)
		}
		in.Workspace = ws.Workspace
		defer func() {
			if keep {
				activity.GetLogger(ctx).Warn("the server has not heard from this batch lately: keeping the workspace and its journal for the stage's next take", "stage", in.StageID)
				return
			}
			// Cancelled or not, the stage ends here.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReleaseTimeout)
			defer cancel()
			if err := a.ReleaseWorkspace(rctx, ReleaseInput{RunID: in.RunID, StageID: in.StageID, Workspace: ws.Workspace, Git: in.Git}); err != nil {
				activity.GetLogger(ctx).Warn("releasing workspace", "stage", in.StageID, "error", err)
			}
		}()
	}
	j, err := a.openJournal(in)
	if err != nil {
		return res, err
	}
	defer j.close()
	p := a.startProgress(ctx, cancel, j != nil, res)
	defer p.stop()
	defer func() { keep = j != nil && p.cutOff() }()

	replay := j != nil
	for i, bs := range in.Steps {
		r, ok := j.finished(in.First+i, bs.Step.Name)
		if replay = replay && ok; !replay {
			r = a.runBatchStep(ctx, in, bs)
			if ctx.Err() != nil {
				// Cancelled: the step did not finish; what did goes back.
				return res, temporal.NewCanceledError(res)
			}
			if j != nil {
				if err := j.record(in.First+i, bs.Step.Name, r); err != nil {
					// Without the journal, only the server's copy of the
					// progress keeps the step from running again.
					activity.GetLogger(ctx).Warn("writing the step journal; waiting for each heartbeat instead", "error", err)
					j.close()
					j = nil
					p.setJournaled(false)
				}
			}
		}
		res.Steps = append(res.Steps, r)
		if r.Error != "" && !bs.Step.ContinueOnError {
			break
		}
		if i < len(in.Steps)-1 {
			p.record(res)
		}
	}
	return res, nil
}

// runBatchStep runs one step of a batch and says how it ended.
func (a *Activities) runBatchStep(ctx context.Context, in StepsInput, bs BatchStep) BatchStepResult {
	r := BatchStepResult{Start: time.Now()}
	sctx, scancel := context.WithTimeout(ctx, bs.Timeout)
	defer scancel()
	out, err := a.runStep(sctx, StepInput{
		RunID:     in.RunID,
		Pipeline:  in.Pipeline,
		StageID:   in.StageID,
		Workspace: in.Workspace,
		Step:      bs.Step,
		Env:       bs.Env,
		Git:       in.Git,
		Secrets:   in.Secrets,
		Attempt:   1,
	})
	r.End = time.Now()
	r.Outputs, r.DryRun, r.Tests = out.Outputs, out.DryRun, out.Tests
	if err != nil {
		r.Error = err.Error()
		var ae *temporal.ApplicationError
		switch {
		case errors.Is(sctx.Err(), context.DeadlineExceeded):
			r.Error = fmt.Sprintf("timed out after %s", bs.Timeout)
		case errors.As(err, &ae):
			r.Error = ae.Message()
			var failed StepResult
			if ae.HasDetails() && ae.Details(&failed) == nil {
				r.Outputs, r.Tests = failed.Outputs, failed.Tests
			}
		}
	}
	return r
}

// progress heartbeats a batch: as soon as it can after each finished step,
// and every HeartbeatInterval in between, always with the latest progress,
// from one goroutine so that an older heartbeat never lands after a newer
// one. Without a journal, record holds the batch back until the server has
// stored every finished step; with one, heartbeats go at most every
// JournalHeartbeatGap, and record holds the batch back only while a step
// that finished more than JournalLead ago is not stored yet.
type progress struct {
	a      *Activities
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	last      StepsResult
	journaled bool
	finished  []time.Time   // when record learnt of each step
	acked     int           // steps the server has stored
	ack       chan struct{} // closed when acked changes
	heard     time.Time     // when a heartbeat last reached the server
}

// cutOff says whether the server may not know what the batch did: it has
// not stored every finished step and no heartbeat reached it for half the
// heartbeat timeout (its frontend is unreachable). The workspace, which
// holds the journal, is then kept: the stage's next take on this runner
// goes on from it instead of running those steps again.
func (p *progress) cutOff() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return activity.IsActivity(p.ctx) && p.a.Heartbeats != nil && p.acked < len(p.last.Steps) && time.Since(p.heard) > HeartbeatTimeout/2
}

func (a *Activities) startProgress(ctx context.Context, cancel context.CancelFunc, journaled bool, first StepsResult) *progress {
	p := &progress{a: a, ctx: ctx, cancel: cancel, journaled: journaled, last: first, wake: make(chan struct{}, 1), done: make(chan struct{}), ack: make(chan struct{}), heard: time.Now()}
	if !activity.IsActivity(ctx) {
		return p
	}
	every := a.HeartbeatInterval
	if every <= 0 {
		every = time.Second
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		p.beat()
		for {
			select {
			case <-p.done:
				return
			case <-ctx.Done():
				return
			case <-p.wake:
			case <-t.C:
			}
			p.beat()
			p.mu.Lock()
			journaled := p.journaled
			p.mu.Unlock()
			if journaled {
				// The journal keeps finished steps on this runner; the
				// server's copy is for another runner, and fewer
				// heartbeats leave the server's CPU to the steps.
				select {
				case <-p.done:
					return
				case <-ctx.Done():
					return
				case <-time.After(JournalHeartbeatGap):
				}
			}
		}
	}()
	return p
}

// record makes res the progress, has it sent, and returns once the server
// holds enough of it (see progress).
func (p *progress) record(res StepsResult) {
	if !activity.IsActivity(p.ctx) {
		return
	}
	n := len(res.Steps)
	now := time.Now()
	p.mu.Lock()
	p.last = StepsResult{StageID: res.StageID, Runner: res.Runner, First: res.First, Steps: res.Steps[:n:n]}
	for len(p.finished) < n {
		p.finished = append(p.finished, now)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	for {
		p.mu.Lock()
		ok := p.acked >= n || p.journaled && time.Since(p.finished[p.acked]) < JournalLead
		ack := p.ack
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ack:
		case <-p.ctx.Done():
			return
		}
	}
}

func (p *progress) setJournaled(j bool) {
	p.mu.Lock()
	p.journaled = j
	p.mu.Unlock()
}

// beat sends the latest progress; only the progress goroutine calls it.
func (p *progress) beat() {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if p.a.Heartbeats == nil {
		// The SDK throttles and stores nothing we could wait for.
		activity.RecordHeartbeat(p.ctx, last)
		p.stored(len(last.Steps))
		return
	}
	err := p.a.Heartbeats.RecordActivityHeartbeat(p.ctx, activity.GetInfo(p.ctx).TaskToken, last)
	var cancelled *temporal.CanceledError
	var gone *serviceerror.NotFound
	switch {
	case err == nil:
		p.mu.Lock()
		p.heard = time.Now()
		p.mu.Unlock()
		p.stored(len(last.Steps))
	case errors.As(err, &cancelled) || errors.As(err, &gone):
		// The run was cancelled, or the workflow gave the batch up.
		p.cancel()
	}
}

func (p *progress) stored(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n > p.acked {
		p.acked = n
		close(p.ack)
		p.ack = make(chan struct{})
	}
}

func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
}

// batchLen says how many steps from the j-th can run in one batch: steps
// without retries, none using an output of an earlier step of the batch.
func (r *run) batchLen(st *stageRun, j int) int {
	var names []string
	for k := j; k < len(st.plan.Steps); k++ {
		step := st.plan.Steps[k]
		if p := stepRetry(st, step); p != nil && p.Attempts > 1 {
			break
		}
		uses := false
		refs := func(_ string, t plan.Template) {
			for _, ref := range t.Refs() {
				for _, n := range names {
					uses = uses || (ref.Secret == "" && ref.Step == n)
				}
			}
		}
		// plan.Templates uses reflection, whose panic paths workflowcheck
		// takes for non-determinism; the answer does not depend on order.
		//workflowcheck:ignore
		plan.Templates(step, refs)
		//workflowcheck:ignore
		plan.Templates(st.plan.Env, refs)
		//workflowcheck:ignore
		plan.Templates(r.plan.Env, refs)
		if uses {
			break
		}
		names = append(names, step.Name)
	}
	return len(names)
}

// runBatch runs up to n steps from the j-th in one RunSteps activity and
// returns the index of the first step it did not finish.
//
// With take, the n steps are the rest of a stage that no runner holds yet
// (see takesStage): the batch goes to the stage's shared queue and the
// runner that takes it prepares the workspace first and releases it last,
// saving the workflow the round trips of a PrepareWorkspace and a
// ReleaseWorkspace activity. runBatch returns -1, having changed nothing,
// when the batch cannot take the stage: a step cannot be resolved yet, or
// the runner could not prepare the workspace; the stage then goes the
// usual way, whose PrepareWorkspace retries and reports.
func (r *run) runBatch(ctx workflow.Context, st *stageRun, j, n int, ws *PrepareResult, take bool) int {
	if ws.Queue == "" && !take {
		// No runner holds the stage (it was lost): the step takes one.
		r.runStep(ctx, st, j, ws)
		return j + 1
	}
	in := StepsInput{
		RunID:     r.status.RunID,
		Pipeline:  r.plan.Pipeline,
		StageID:   st.plan.ID,
		Workspace: ws.Workspace,
		Git:       r.plan.Git,
		Secrets:   r.plan.Secrets,
		First:     j,
	}
	for k := j; k < j+n; k++ {
		step := st.plan.Steps[k]
		resolved, env, err := r.resolve(st, step)
		if err != nil {
			break
		}
		in.Steps = append(in.Steps, BatchStep{Step: resolved, Env: env, Timeout: stepTimeout(step)})
	}
	switch {
	case take && len(in.Steps) < n:
		return -1
	case len(in.Steps) < 2 && !take:
		r.runStep(ctx, st, j, ws)
		return j + 1
	}
	first := &st.status.Steps[j]
	first.State, first.Start, first.Error, first.Attempt = StateRunning, workflow.Now(ctx), "", 1
	lostAt, lostRunners := j, 0
	for {
		var total time.Duration
		for _, bs := range in.Steps {
			total += bs.Timeout
		}
		opts := workflow.ActivityOptions{
			TaskQueue:              ws.Queue,
			ScheduleToStartTimeout: RunnerPickupTimeout,
			StartToCloseTimeout:    total,
			HeartbeatTimeout:       HeartbeatTimeout,
			WaitForCancellation:    true,
			RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 1},
			Summary:                st.plan.ID + "/" + st.plan.Steps[j].Name + ".." + st.plan.Steps[j+len(in.Steps)-1].Name,
		}
		if take {
			// Like a PrepareWorkspace: any runner of the stage's labels,
			// however long they are all busy.
			in.Take = &PrepareInput{RunID: r.status.RunID, Pipeline: r.plan.Pipeline, StageID: st.plan.ID, Git: r.plan.Git, Source: r.source}
			opts.TaskQueue = StageQueue(st.plan.RunsOn)
			opts.ScheduleToStartTimeout = queueTimeout(st.plan)
			opts.StartToCloseTimeout += PrepareTimeout + ReleaseTimeout
			opts.Summary = "take " + opts.Summary
			st.status.Runner = ""
			st.status.Reason = waitingForRunner(opts.TaskQueue)
		}
		var res StepsResult
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), acts.RunSteps, in).Get(ctx, &res)
		if err != nil {
			res = batchProgress(err)
		}
		if take {
			st.status.Reason = ""
			if res.Runner != "" {
				st.status.Runner = res.Runner
			}
			var ae *temporal.ApplicationError
			if errors.As(err, &ae) && ae.Type() == NotTakenError && ctx.Err() == nil {
				first.State, first.Start, first.Attempt = StatePending, time.Time{}, 0
				return -1
			}
			if notTaken(err) && ctx.Err() == nil {
				first.State, first.Error, first.End = StateFailed, noRunnerTook(st.plan), workflow.Now(ctx)
				return j + 1
			}
			// Whatever happens next, the workspace of this batch is gone:
			// released by the batch, or lost with its runner.
			take, in.Take = false, nil
		}
		done := min(len(res.Steps), len(in.Steps))
		for i := range done {
			step := st.plan.Steps[j+i]
			res.Steps[i].setStatus(&st.status.Steps[j+i])
			if res.Steps[i].Error == "" || step.ContinueOnError {
				st.outputs[step.Name] = res.Steps[i].Outputs
			}
		}
		next := j + done
		if err == nil || done == len(in.Steps) {
			return next
		}
		// The batch ended while step next ran.
		ss := &st.status.Steps[next]
		ss.Attempt = 1
		if ss.Start.IsZero() {
			ss.Start = workflow.Now(ctx)
		}
		if ctx.Err() != nil {
			ss.State, ss.End = StateCancelled, workflow.Now(ctx)
			return next + 1
		}
		msg, lost := describeError(err, ws.Runner, in.Steps[done].Timeout)
		if !lost {
			ss.State, ss.Error, ss.End = StateFailed, msg, workflow.Now(ctx)
			return next + 1
		}
		// The workspace went with the runner: the stage takes a runner
		// again (the same one, once it is back). Histories recorded before
		// step journals run the step that was running alone, then go on.
		*ws = PrepareResult{}
		if workflow.GetVersion(ctx, "step-journal", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			r.runStep(ctx, st, next, ws)
			return next + 1
		}
		// The rest of the batch goes again, so that on the same runner the
		// steps its journal holds as finished, which the server may not
		// have heard of yet, are not run again (see journal.go).
		if next > lostAt {
			lostAt, lostRunners = next, 0
		}
		if lostRunners++; lostRunners > MaxLostRunners {
			ss.State, ss.End = StateFailed, workflow.Now(ctx)
			ss.Error = fmt.Sprintf("%s; %d runners were lost running this step", msg, lostRunners)
			return next + 1
		}
		ss.Error = msg
		lostRunner := st.status.Runner
		if err := r.prepare(ctx, st, ws); err != nil || ctx.Err() != nil {
			ss.State, ss.End = StateCancelled, workflow.Now(ctx)
			if err != nil {
				ss.State, ss.Error = StateFailed, err.Error()
			}
			return next + 1
		}
		st.status.Restarts = append(st.status.Restarts, restartNote(lostRunner, ss.Name, msg, ws.Runner))
		// On another runner the workspace is new: the stage starts again
		// from its first step (histories recorded before went on from the
		// lost step).
		if ws.Runner != lostRunner && workflow.GetVersion(ctx, "restart-stage-elsewhere", workflow.DefaultVersion, 1) == 1 {
			r.resetSteps(st, st.first, next+1)
			return st.first
		}
		ss.State = StateRunning
		j, in.First, in.Workspace, in.Steps = next, next, ws.Workspace, in.Steps[done:]
	}
}

// batchProgress is the progress a failed batch left: in its heartbeat when
// the runner was lost, in its cancellation when the run was cancelled.
func batchProgress(err error) StepsResult {
	var res StepsResult
	var te *temporal.TimeoutError
	var ce *temporal.CanceledError
	switch {
	case errors.As(err, &te) && te.HasLastHeartbeatDetails():
		if te.LastHeartbeatDetails(&res) != nil {
			return StepsResult{}
		}
	case errors.As(err, &ce) && ce.HasDetails():
		if ce.Details(&res) != nil {
			return StepsResult{}
		}
	}
	return res
}

// setStatus records in ss how the step ended.
func (res BatchStepResult) setStatus(ss *StepStatus) {
	ss.Attempt, ss.Start, ss.End, ss.Error, ss.Outputs, ss.DryRun, ss.Tests = 1, res.Start, res.End, res.Error, res.Outputs, res.DryRun, res.Tests
	ss.State = StateSucceeded
	if res.Error != "" {
		ss.State = StateFailed
	}
}

// stepRetry is the retry policy of a step: its own, else its stage's.
func stepRetry(st *stageRun, step plan.Step) *plan.Retry {
	if step.Retry != nil {
		return step.Retry
	}
	return st.plan.Retry
}

// stepTimeout is how long a step may run.
func stepTimeout(step plan.Step) time.Duration {
	if d := step.Timeout.Std(); d > 0 {
		return d
	}
	return DefaultStepTimeout
}

// applyBatchProgress shows the steps that running batches have finished in
// a status queried from the workflow, which learns of them only when the
// batch ends.
func applyBatchProgress(st *RunStatus, desc *workflowservice.DescribeWorkflowExecutionResponse) {
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != RunStepsActivity || pa.GetHeartbeatDetails() == nil {
			continue
		}
		var p StepsResult
		if converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &p) != nil {
			continue
		}
		for i := range st.Stages {
			s := &st.Stages[i]
			if s.ID != p.StageID || p.First < 0 || p.First+len(p.Steps) > len(s.Steps) {
				continue
			}
			if p.Runner != "" && s.Runner == "" {
				// A batch that took its stage (StepsInput.Take) has begun.
				s.Runner = p.Runner
				if strings.HasPrefix(s.Reason, waitingForRunnerPrefix) {
					s.Reason = ""
				}
			}
			for k, res := range p.Steps {
				if ss := &s.Steps[p.First+k]; !ss.State.Done() {
					res.setStatus(ss)
				}
			}
			if next := p.First + len(p.Steps); next < len(s.Steps) && s.Steps[next].State == StatePending {
				s.Steps[next].State = StateRunning
				s.Steps[next].Attempt = 1
			}
		}
	}
}

// resetSteps makes steps [from, to) of a stage pending again, forgetting
// their outputs: the stage runs them again on a new runner.
func (r *run) resetSteps(st *stageRun, from, to int) {
	for k := from; k < to && k < len(st.status.Steps); k++ {
		ss := &st.status.Steps[k]
		ss.State, ss.Start, ss.End, ss.Outputs, ss.DryRun, ss.Tests = StatePending, time.Time{}, time.Time{}, nil, "", nil
		delete(st.outputs, ss.Name)
	}
}
