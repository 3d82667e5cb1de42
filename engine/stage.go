package engine

import (
	"context"
	"errors"
	"fmt"
	"go.temporal.io/sdk/client"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// acts is how workflow code names activities: methods on a nil pointer.
var acts *Activities

// Stage-to-runner pinning. A stage takes a runner with a PrepareWorkspace
// activity on the shared queue of its labels (StageQueue); whichever runner
// picks it up prepares the workspace and answers with its own queue
// (RunnerQueue). Every step of the stage, and the final ReleaseWorkspace,
// go to that queue, so the steps run in order on one runner and share one
// workspace. A runner that stops heartbeating, or leaves a step unclaimed
// on its queue for RunnerPickupTimeout, is taken for lost: the step fails
// with a message that says so, and if the step has attempts left the stage
// takes a new runner (a fresh workspace) for the next attempt.

// runStage runs one stage: approval, a runner slot, a workspace, the steps
// in order, and the cleanup, which runs in a disconnected context so that
// it happens after a cancellation too.
func (r *run) runStage(ctx workflow.Context, st *stageRun) {
	s := st.plan
	// Each coroutine blocks only on contexts of its own.
	cleanupCtx, _ := workflow.NewDisconnectedContext(ctx)
	if s.Approval != nil && !st.approvalKept {
		why, err := r.waitApproval(ctx, st)
		if err != nil {
			r.cancelStage(st, r.cancelReason())
			return
		}
		if why != "" {
			r.endSteps(st, st.first, StateSkipped)
			st.status.End = workflow.Now(ctx)
			r.failStage(st, why)
			return
		}
		st.status.State = StatePending
	}
	if err := r.acquireSlot(ctx, st.idx); err != nil {
		r.cancelStage(st, r.cancelReason())
		return
	}
	defer r.releaseSlot()
	st.status.State = StateRunning
	st.status.Start = workflow.Now(ctx)

	stageCtx, cancelStage := workflow.WithCancel(ctx)
	defer cancelStage()
	timedOut := false
	if d := s.Timeout.Std(); d > 0 {
		workflow.Go(stageCtx, func(c workflow.Context) {
			if workflow.Sleep(c, d) == nil {
				timedOut = true
				cancelStage()
			}
		})
	}

	var ws PrepareResult
	defer func() { r.release(cleanupCtx, st, ws) }()

	var stageErr string
	// A stage whose steps can all run as one batch is taken by that batch
	// (see runBatch), unless its history was recorded before.
	take := r.takesStage(st) && workflow.GetVersion(ctx, "stage-batch", workflow.DefaultVersion, 1) == 1
	if !take {
		if err := r.prepare(stageCtx, st, &ws); err != nil {
			stageErr = err.Error()
		}
	}
	// Consecutive steps that need nothing from the workflow between them
	// run as one activity (see batch.go). Histories recorded before run
	// every step alone.
	batches := workflow.GetVersion(ctx, "step-batches", workflow.DefaultVersion, 1) == 1
	// Verify steps are watched by the workflow (see verify.go).
	// A dry run's verify steps check once, like any step (see dryrun.go).
	watched := !r.dryRun && r.watchesVerify(ctx, s)
	for j := st.first; j < len(s.Steps) && stageErr == "" && stageCtx.Err() == nil; {
		next := -1
		if take {
			take = false
			if next = r.runBatch(stageCtx, st, j, len(s.Steps)-j, &ws, true); next < 0 {
				if err := r.prepare(stageCtx, st, &ws); err != nil {
					stageErr = err.Error()
					continue
				}
			}
		}
		if next >= 0 {
			// Taken above.
		} else if watched && s.Steps[j].Kind == plan.KindVerify {
			r.runVerify(stageCtx, st, j, &ws)
			next = j + 1
		} else if batches {
			if n := verifyCut(watched, s.Steps, j, r.batchLen(st, j)); n > 1 {
				next = r.runBatch(stageCtx, st, j, n, &ws, false)
			}
		}
		if next < 0 {
			r.runStep(stageCtx, st, j, &ws)
			next = j + 1
		}
		if next < j {
			// The stage starts again on a new runner (see resetSteps).
			j = next
			continue
		}
		for ; j < next && stageErr == ""; j++ {
			stageErr = failsStage(s.Steps[j], &st.status.Steps[j])
		}
	}
	if stageErr == "" && stageCtx.Err() == nil {
		stageErr = r.uploadArtifacts(stageCtx, st, &ws)
	}
	st.status.End = workflow.Now(ctx)
	switch {
	case timedOut:
		msg := fmt.Sprintf("the stage timed out after %s", s.Timeout.Std())
		for j := st.first; j < len(s.Steps); j++ {
			if ss := &st.status.Steps[j]; ss.State == StateCancelled && ss.Error == "" {
				ss.State, ss.Error = StateFailed, msg
			}
		}
		r.endSteps(st, st.first, StateSkipped)
		r.failStage(st, msg)
	case stageErr != "":
		r.endSteps(st, st.first, StateSkipped)
		r.failStage(st, stageErr)
	case ctx.Err() != nil:
		r.cancelStage(st, r.cancelReason())
	default:
		st.status.State = StateSucceeded
		st.status.Reason = ""
	}
}

// failsStage says how a finished step fails its stage: "" when it did not
// fail, or may fail (continue_on_error).
func failsStage(step plan.Step, ss *StepStatus) string {
	if ss.State == StateFailed && !step.ContinueOnError {
		return fmt.Sprintf("step %s failed: %s", ss.Name, ss.Error)
	}
	return ""
}

// takesStage says whether the stage's steps, from the first to run, can
// all run in one batch that takes the stage: steps the workflow need not
// see between them (batchLen), no verify step for the workflow to watch,
// and no artifacts to fetch before the steps or store after them.
func (r *run) takesStage(st *stageRun) bool {
	s := st.plan
	if st.first >= len(s.Steps) || len(s.Artifacts) > 0 {
		return false
	}
	for _, step := range s.Steps[st.first:] {
		if step.Kind == plan.KindVerify {
			return false
		}
	}
	for _, a := range st.ancestors {
		if r.stages[a].status.Artifacts != nil {
			return false
		}
	}
	return r.batchLen(st, st.first) == len(s.Steps)-st.first
}

func (r *run) cancelReason() string {
	if r.stopped != "" {
		return r.stopped
	}
	return "the run was cancelled"
}

// endSteps gives every step from the first that has not finished the state s.
func (r *run) endSteps(st *stageRun, first int, s State) {
	for j := first; j < len(st.status.Steps); j++ {
		if !st.status.Steps[j].State.Done() {
			st.status.Steps[j].State = s
		}
	}
}

// prepare takes a runner for the stage and a workspace on it.
func (r *run) prepare(ctx workflow.Context, st *stageRun, ws *PrepareResult) error {
	queue := StageQueue(st.plan.RunsOn)
	st.status.Runner = ""
	st.status.Reason = waitingForRunner(queue)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              queue,
		ScheduleToStartTimeout: queueTimeout(st.plan),
		StartToCloseTimeout:    PrepareTimeout,
		HeartbeatTimeout:       HeartbeatTimeout,
		WaitForCancellation:    true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumAttempts: 3,
		},
		Summary: "prepare " + st.plan.ID,
	})
	var res PrepareResult
	err := workflow.ExecuteActivity(actx, acts.PrepareWorkspace, PrepareInput{
		RunID:    r.status.RunID,
		Pipeline: r.plan.Pipeline,
		StageID:  st.plan.ID,
		Git:      r.plan.Git,
		Source:   r.source,
	}).Get(ctx, &res)
	st.status.Reason = ""
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if notTaken(err) {
			return errors.New(noRunnerTook(st.plan))
		}
		msg, _ := describeError(err, "", PrepareTimeout)
		return fmt.Errorf("preparing the workspace: %s", msg)
	}
	*ws = res
	st.status.Runner = res.Runner
	return r.downloadArtifacts(ctx, st, ws)
}

// waitingForRunner is the reason of a stage that waits for a runner to
// take it.
func waitingForRunner(queue string) string {
	return fmt.Sprintf("%s %q", waitingForRunnerPrefix, queue)
}

const waitingForRunnerPrefix = "waiting for a runner on queue"

// release cleans up the stage's workspace on its runner; a failure is
// logged, not reported, since the stage's result stands.
func (r *run) release(ctx workflow.Context, st *stageRun, ws PrepareResult) {
	if ws.Queue == "" {
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              ws.Queue,
		ScheduleToStartTimeout: RunnerPickupTimeout,
		StartToCloseTimeout:    ReleaseTimeout,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
		Summary:                "release " + st.plan.ID,
	})
	err := workflow.ExecuteActivity(actx, acts.ReleaseWorkspace, ReleaseInput{
		RunID:     r.status.RunID,
		StageID:   st.plan.ID,
		Workspace: ws.Workspace,
		Git:       r.plan.Git,
	}).Get(ctx, nil)
	if err != nil {
		r.logger.Warn("releasing workspace", "stage", st.plan.ID, "runner", ws.Runner, "error", err)
	}
}

// beginStep marks step j of a stage running at attempt and resolves its
// templates; end records how it ended. A step that cannot be resolved has
// failed, and ok is false.
func (r *run) beginStep(ctx workflow.Context, st *stageRun, j, attempt int) (step plan.Step, ss *StepStatus, end func(State, string), resolved plan.Step, env map[string]plan.Template, ok bool) {
	step = st.plan.Steps[j]
	ss = &st.status.Steps[j]
	ss.State, ss.Start, ss.Error, ss.Attempt = StateRunning, workflow.Now(ctx), "", attempt
	end = func(s State, msg string) {
		ss.State, ss.Error, ss.End = s, msg, workflow.Now(ctx)
	}
	resolved, env, err := r.resolve(st, step)
	if err != nil {
		end(StateFailed, err.Error())
		return step, ss, end, resolved, env, false
	}
	return step, ss, end, resolved, env, true
}

// runStep runs step j of a stage with its retries, and records the outcome
// in the step's status.
func (r *run) runStep(ctx workflow.Context, st *stageRun, j int, ws *PrepareResult) {
	step, ss, end, resolved, env, ok := r.beginStep(ctx, st, j, 0)
	if !ok {
		return
	}
	policy := stepRetry(st, step)
	attempts := 1
	if policy != nil && policy.Attempts > 1 {
		attempts = policy.Attempts
	}
	timeout := stepTimeout(step)

	lostRunners := 0
	for attempt := 1; ; attempt++ {
		ss.Attempt = attempt
		if ws.Queue == "" {
			if err := r.prepare(ctx, st, ws); err != nil {
				end(StateFailed, err.Error())
				return
			}
			if ctx.Err() != nil {
				end(StateCancelled, "")
				return
			}
			if st.lost != "" {
				st.status.Restarts = append(st.status.Restarts, st.lost+fmt.Sprintf("; stage restarted on runner %q", ws.Runner))
				st.lost = ""
			}
		}
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			TaskQueue:              ws.Queue,
			ScheduleToStartTimeout: RunnerPickupTimeout,
			StartToCloseTimeout:    timeout,
			HeartbeatTimeout:       HeartbeatTimeout,
			WaitForCancellation:    true,
			// The workflow retries, so that the status shows each attempt
			// and a lost runner can be replaced between attempts.
			RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
			Summary:     st.plan.ID + "/" + step.Name,
		})
		var res StepResult
		err := workflow.ExecuteActivity(actx, acts.RunStep, StepInput{
			RunID:     r.status.RunID,
			Pipeline:  r.plan.Pipeline,
			StageID:   st.plan.ID,
			Workspace: ws.Workspace,
			Step:      resolved,
			Env:       env,
			Git:       r.plan.Git,
			Secrets:   r.plan.Secrets,
			Attempt:   attempt,
		}).Get(ctx, &res)
		if err == nil {
			st.outputs[step.Name] = res.Outputs
			ss.Outputs, ss.DryRun, ss.Tests = res.Outputs, res.DryRun, res.Tests
			end(StateSucceeded, "")
			return
		}
		if ctx.Err() != nil {
			end(StateCancelled, "")
			return
		}
		msg, lost := describeError(err, ws.Runner, timeout)
		if lost {
			// The workspace went with the runner: nothing to release, and
			// the step goes again on whichever runner takes the stage now
			// (the same one, once it is back). A lost runner is not the
			// step's failure, so it does not use up the step's attempts.
			lostRunner := ws.Runner
			*ws = PrepareResult{}
			if lostRunners++; lostRunners <= MaxLostRunners {
				ss.Error = msg
				attempt--
				st.lost = restartNote(lostRunner, ss.Name, msg, "")
				continue
			}
			msg += fmt.Sprintf("; %d runners were lost running this step", lostRunners)
		}
		if attempt >= attempts {
			// A failed step's outputs (exit_code, what it wrote before it
			// failed) reach the steps after it when it may fail, and its
			// test report its status. Histories recorded before this
			// change replay without them.
			if workflow.GetVersion(ctx, "failed-step-outputs", workflow.DefaultVersion, 1) == 1 {
				var failed StepResult
				var ae *temporal.ApplicationError
				if errors.As(err, &ae) && ae.HasDetails() && ae.Details(&failed) == nil {
					if failed.Outputs != nil {
						ss.Outputs = failed.Outputs
						if step.ContinueOnError {
							st.outputs[step.Name] = failed.Outputs
						}
					}
					// The tests that failed it, for the status.
					ss.Tests = failed.Tests
				}
			}
			end(StateFailed, msg)
			return
		}
		ss.Error = msg
		if d := backoff(policy, attempt); d > 0 {
			if workflow.Sleep(ctx, d) != nil {
				end(StateCancelled, "")
				return
			}
		}
	}
}

// describeError turns an activity error into a message for the user, and
// says whether it means the runner is gone.
func describeError(err error, runner string, timeout time.Duration) (string, bool) {
	if runner == "" {
		runner = "the runner"
	} else {
		runner = fmt.Sprintf("runner %q", runner)
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		switch te.TimeoutType() {
		case enumspb.TIMEOUT_TYPE_HEARTBEAT:
			return fmt.Sprintf("%s stopped responding (no heartbeat for %s)", runner, HeartbeatTimeout), true
		case enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START:
			return fmt.Sprintf("%s did not pick up the step within %s; is it still running?", runner, RunnerPickupTimeout), true
		default:
			return fmt.Sprintf("timed out after %s", timeout), false
		}
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		// A runner stopped mid-step (drained, then told to stop) is lost
		// as one that died is, without waiting for its heartbeat.
		return ae.Message(), ae.Type() == RunnerStoppedError
	}
	var pe *temporal.PanicError
	if errors.As(err, &pe) {
		return "the runner panicked: " + pe.Error(), false
	}
	return err.Error(), false
}

// restartNote says that a runner was lost during a step and where the
// stage went on.
func restartNote(lost, step, why, next string) string {
	if lost == "" {
		lost = "?"
	}
	note := fmt.Sprintf("runner %q lost during step %q (%s)", lost, step, why)
	if next != "" {
		note += fmt.Sprintf("; stage restarted on runner %q", next)
	}
	return note
}

// DefaultQueueTimeout is how long a stage waits for a runner with its
// labels when it sets no queue_timeout.
const DefaultQueueTimeout = time.Hour

func queueTimeout(s *plan.Stage) time.Duration {
	if d := s.QueueTimeout.Std(); d > 0 {
		return d
	}
	return DefaultQueueTimeout
}

// notTaken says whether an activity timed out waiting for a worker.
func notTaken(err error) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}

// noRunnerTook says that no runner took a stage within its queue timeout.
func noRunnerTook(s *plan.Stage) string {
	labels := "no labels"
	if len(s.RunsOn) > 0 {
		labels = "labels [" + strings.Join(s.RunsOn, ", ") + "]"
	}
	return fmt.Sprintf("no runner with %s took the stage within %s (queue_timeout); start one (sluice runner --labels %s), or change the stage's runs_on", labels, queueTimeout(s), strings.Join(s.RunsOn, ","))
}

// OnlineWindow is how recently a runner must have polled a stage queue to
// count as waiting for work there: a long poll lasts a minute.
const OnlineWindow = 70 * time.Second

// explainWaiting replaces the reason of each stage that waits for a runner
// with what the stage's queue says: no runner with its labels online, or
// some, all busy. Temporal keeps a queue's pollers for five minutes, and a
// full runner does not poll, so a runner seen within that time is busy.
func explainWaiting(ctx context.Context, c client.Client, st *RunStatus) {
	for i := range st.Stages {
		ss := &st.Stages[i]
		queue, ok := strings.CutPrefix(ss.Reason, waitingForRunnerPrefix+" ")
		if !ok || ss.State.Done() {
			continue
		}
		queue = strings.Trim(queue, `"`)
		labels := "no labels"
		if _, l, found := strings.Cut(queue, "@"); found {
			labels = "labels [" + strings.ReplaceAll(l, ",", ", ") + "]"
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.DescribeTaskQueue(dctx, queue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		cancel()
		if err != nil {
			continue
		}
		online, busy := 0, 0
		for _, p := range resp.GetPollers() {
			if time.Since(p.GetLastAccessTime().AsTime()) < OnlineWindow {
				online++
			} else {
				busy++
			}
		}
		switch {
		case online > 0:
			ss.Reason = fmt.Sprintf("waiting for a runner with %s (%d polling)", labels, online)
		case busy > 0:
			ss.Reason = fmt.Sprintf("waiting: every runner with %s is busy (%d seen in the last 5 minutes)", labels, busy)
		default:
			ss.Reason = fmt.Sprintf("waiting: no runner with %s is online", labels)
		}
	}
}
