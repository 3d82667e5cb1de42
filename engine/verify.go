package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/verify/watch"
)

// A verify step is not one long activity. The workflow watches it: a short
// VerifyCheck activity reads the query once, then a workflow timer waits
// for the next check, until the step's `for` has passed in workflow time.
// Between checks nothing runs and no runner is held, and a restarted worker
// replays the watch and goes on where it was: the checks it made stay made
// and the timer keeps its deadline. The checks go to the shared queue of
// the stage's runs_on, so whichever runner of the stage's labels is free
// takes one; a runner lost between checks costs nothing.
//
// When the value crosses its bound and the step says on_failure =
// "rollback", the workflow rolls back the deploy the step follows: the
// nearest argocd step before it, in its stage or in a stage it needs,
// through a Rollback activity that hands that step and its previous_image
// output to the argocd executor's Rollback.

// VerifyChecker is what a runner's executor for verify steps offers besides
// Execute: one reading of the step's query. steps/verify's Executor is one.
// An error with a method NoData() bool that returns true is a missed
// reading (no series, or Prometheus did not answer) and the watch goes on;
// any other error fails the step.
type VerifyChecker interface {
	Check(ctx context.Context, req steps.Request) (value float64, crossed bool, err error)
}

// Rollbacker is what a runner's executor for argocd steps offers besides
// Execute: deploying the image a step replaced. req is the argocd step,
// resolved as when it ran. steps/argocd's Executor is one.
type Rollbacker interface {
	Rollback(ctx context.Context, req steps.Request, previousImage string) (steps.Result, error)
}

// VerifyCheckTimeout bounds one check of a verify step.
const VerifyCheckTimeout = 30 * time.Second

// VerifyCheckInput is the input of the VerifyCheck activity.
type VerifyCheckInput struct {
	Step StepInput `json:"step"`
	// Check numbers the check in the watch, from 1, for the log.
	Check int `json:"check"`
}

// RollbackInput is the input of the Rollback activity: the argocd step to
// roll back and the image it replaced.
type RollbackInput struct {
	Step          StepInput `json:"step"`
	PreviousImage string    `json:"previous_image"`
}

// executorFunc runs a step with a function.
type executorFunc func(ctx context.Context, req steps.Request) (steps.Result, error)

func (f executorFunc) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	return f(ctx, req)
}

// runWith runs a step as RunStep does (secrets, masking, log) with exec in
// place of the registered executor of its kind.
func (a *Activities) runWith(ctx context.Context, in StepInput, exec steps.Executor) (StepResult, error) {
	b := *a
	b.Executors = steps.Registry{in.Step.Kind: exec}
	return b.runStep(ctx, in)
}

// Reading outputs: how a check's reading leaves runStep, masked like any
// step output.
const (
	readingValue   = "value"
	readingCrossed = "crossed"
	readingNoData  = "no_data"
)

// VerifyCheck reads a verify step's query once.
func (a *Activities) VerifyCheck(ctx context.Context, in VerifyCheckInput) (watch.Reading, error) {
	checker, ok := a.Executors[plan.KindVerify].(VerifyChecker)
	if !ok {
		return watch.Reading{}, stepFailure(fmt.Sprintf("runner %q cannot check verify steps: it has no verify executor with a Check method. Register steps/verify's Executor for %q steps", a.Runner, plan.KindVerify), "UnknownKind")
	}
	ctx, stop := a.heartbeat(ctx)
	defer stop()
	res, err := a.runWith(ctx, in.Step, executorFunc(func(ctx context.Context, req steps.Request) (steps.Result, error) {
		value, crossed, err := checker.Check(ctx, req)
		var nd interface{ NoData() bool }
		if errors.As(err, &nd) && nd.NoData() {
			fmt.Fprintf(req.Log, "verify: check %d: no reading: %v\n", in.Check, err)
			return steps.Result{Outputs: map[string]string{readingNoData: err.Error()}}, nil
		}
		if err != nil {
			return steps.Result{}, err
		}
		v := watch.Format(value)
		fmt.Fprintf(req.Log, "verify: check %d: %s\n", in.Check, v)
		return steps.Result{Outputs: map[string]string{readingValue: v, readingCrossed: strconv.FormatBool(crossed)}}, nil
	}))
	if err != nil {
		return watch.Reading{}, err
	}
	if nd := res.Outputs[readingNoData]; nd != "" {
		return watch.Reading{NoData: nd}, nil
	}
	value, err := strconv.ParseFloat(res.Outputs[readingValue], 64)
	if err != nil {
		return watch.Reading{}, stepFailure(fmt.Sprintf("reading the value of step %q: %v", in.Step.Step.Name, err), "Verify")
	}
	return watch.Reading{Value: value, Crossed: res.Outputs[readingCrossed] == "true"}, nil
}

// Rollback deploys again the image an argocd step replaced.
func (a *Activities) Rollback(ctx context.Context, in RollbackInput) (StepResult, error) {
	rb, ok := a.Executors[plan.KindArgoCD].(Rollbacker)
	if !ok {
		return StepResult{}, stepFailure(fmt.Sprintf("runner %q cannot roll back argocd steps: it has no argocd executor with a Rollback method", a.Runner), "UnknownKind")
	}
	ctx, stop := a.heartbeat(ctx)
	defer stop()
	return a.runWith(ctx, in.Step, executorFunc(func(ctx context.Context, req steps.Request) (steps.Result, error) {
		fmt.Fprintf(req.Log, "sluice: rolling back step %q to %s\n", req.Step.Name, in.PreviousImage)
		return rb.Rollback(ctx, req, in.PreviousImage)
	}))
}

// watchesVerify says whether the stage's verify steps are watched by the
// workflow; histories recorded before ran them as one RunStep.
func (r *run) watchesVerify(ctx workflow.Context, s *plan.Stage) bool {
	for _, step := range s.Steps {
		if step.Kind == plan.KindVerify {
			return workflow.GetVersion(ctx, "verify-watch", workflow.DefaultVersion, 1) == 1
		}
	}
	return false
}

// verifyCut shortens a batch of n steps from the j-th to end before the
// first verify step, which the workflow watches itself.
func verifyCut(watched bool, steps []plan.Step, j, n int) int {
	if !watched {
		return n
	}
	for k := j; k < j+n && k < len(steps); k++ {
		if steps[k].Kind == plan.KindVerify {
			return k - j
		}
	}
	return n
}

// runVerify watches verify step j of a stage and records the outcome.
func (r *run) runVerify(ctx workflow.Context, st *stageRun, j int, ws *PrepareResult) {
	step, ss, end, resolved, env, ok := r.beginStep(ctx, st, j, 1)
	if !ok {
		return
	}
	opts := workflow.ActivityOptions{
		TaskQueue:           StageQueue(st.plan.RunsOn),
		StartToCloseTimeout: VerifyCheckTimeout,
		HeartbeatTimeout:    HeartbeatTimeout,
		WaitForCancellation: true,
		// A check only reads: one lost with its runner is made again.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
		Summary:     st.plan.ID + "/" + step.Name,
	}
	// The checks go to the runner that holds the stage: a runner that
	// takes no more stages than it may (it stops polling the stage queues
	// when full) would otherwise never take them. If that runner is lost,
	// they go to any runner of the stage's labels. Histories recorded
	// before sent them to the stage queue.
	onRunner := ws.Queue != "" && workflow.GetVersion(ctx, "verify-runner-queue", workflow.DefaultVersion, 1) == 1
	if onRunner {
		opts.TaskQueue, opts.ScheduleToStartTimeout = ws.Queue, RunnerPickupTimeout
	}
	actx := workflow.WithActivityOptions(ctx, opts)
	w := watch.New(resolved.Verify)
	start := workflow.Now(ctx)
	for {
		var reading watch.Reading
		err := workflow.ExecuteActivity(actx, acts.VerifyCheck, VerifyCheckInput{
			Step: StepInput{
				RunID:    r.status.RunID,
				Pipeline: r.plan.Pipeline,
				StageID:  st.plan.ID,
				Step:     resolved,
				Env:      env,
				Git:      r.plan.Git,
				Secrets:  r.plan.Secrets,
				Attempt:  1,
			},
			Check: w.Checks + 1,
		}).Get(ctx, &reading)
		if err != nil {
			if ctx.Err() != nil {
				end(StateCancelled, "")
				return
			}
			msg, lost := describeError(err, "", VerifyCheckTimeout)
			if lost && onRunner {
				onRunner = false
				opts.TaskQueue, opts.ScheduleToStartTimeout = StageQueue(st.plan.RunsOn), 0
				actx = workflow.WithActivityOptions(ctx, opts)
				continue
			}
			end(StateFailed, msg)
			return
		}
		d := w.Next(workflow.Now(ctx).Sub(start), reading)
		ss.Outputs = w.Outputs()
		ss.Error = w.Note
		if d.Fail != "" {
			if step.ContinueOnError && ss.Outputs != nil {
				st.outputs[step.Name] = ss.Outputs
			}
			msg := d.Fail
			if d.Crossed && resolved.Verify.OnFailure == "rollback" {
				msg += "; " + r.rollback(ctx, st, j, ws)
			}
			end(StateFailed, msg)
			return
		}
		if d.Done {
			st.outputs[step.Name] = ss.Outputs
			end(StateSucceeded, "")
			return
		}
		if workflow.Sleep(ctx, d.Wait) != nil {
			end(StateCancelled, "")
			return
		}
	}
}

// deployBefore finds the argocd step a verify step j of st follows: the
// last one before it in its stage, else the last one of the nearest stage
// it needs that has one (stages are in plan order, so the last ancestor
// with one ran nearest before).
func (r *run) deployBefore(st *stageRun, j int) (*stageRun, int) {
	for k := j - 1; k >= 0; k-- {
		if st.plan.Steps[k].Kind == plan.KindArgoCD {
			return st, k
		}
	}
	for i := len(st.ancestors) - 1; i >= 0; i-- {
		a := r.stages[st.ancestors[i]]
		for k := len(a.plan.Steps) - 1; k >= 0; k-- {
			if a.plan.Steps[k].Kind == plan.KindArgoCD {
				return a, k
			}
		}
	}
	return nil, -1
}

// rollback rolls back the deploy verify step j of st follows and says what
// happened, for the step's error.
func (r *run) rollback(ctx workflow.Context, st *stageRun, j int, ws *PrepareResult) string {
	dst, k := r.deployBefore(st, j)
	if dst == nil {
		return "nothing was rolled back: no argocd step runs before this step in its stage or in a stage it needs"
	}
	argo := dst.plan.Steps[k]
	prev, ok := dst.outputs[argo.Name]["previous_image"]
	switch {
	case !ok:
		return fmt.Sprintf("nothing was rolled back: argocd step %q did not succeed", argo.Name)
	case prev == "":
		return fmt.Sprintf("nothing was rolled back: argocd step %q recorded no previous image (the first deploy)", argo.Name)
	}
	resolved, env, err := r.resolve(dst, argo)
	if err != nil {
		return fmt.Sprintf("rolling back step %q failed: %v", argo.Name, err)
	}
	// The stage's own runner rolls back a deploy of this stage, in its
	// workspace; a runner of the deploy stage's labels one of another.
	queue, dir := StageQueue(dst.plan.RunsOn), ""
	if dst != st && ws.Queue != "" && subsetOf(dst.plan.RunsOn, st.plan.RunsOn) &&
		workflow.GetVersion(ctx, "rollback-runner-queue", workflow.DefaultVersion, 1) == 1 {
		// This stage's runner has the deploy stage's labels: it rolls
		// back, since a full runner does not poll the stage queues.
		queue = ws.Queue
	}
	if dst == st && ws.Queue != "" {
		queue, dir = ws.Queue, ws.Workspace
	}
	timeout := stepTimeout(argo)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    HeartbeatTimeout,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:             "rollback " + dst.plan.ID + "/" + argo.Name,
	})
	err = workflow.ExecuteActivity(actx, acts.Rollback, RollbackInput{
		Step: StepInput{
			RunID:     r.status.RunID,
			Pipeline:  r.plan.Pipeline,
			StageID:   dst.plan.ID,
			Workspace: dir,
			Step:      resolved,
			Env:       env,
			Git:       r.plan.Git,
			Secrets:   r.plan.Secrets,
			Attempt:   1,
		},
		PreviousImage: prev,
	}).Get(ctx, nil)
	if err != nil {
		msg, _ := describeError(err, "", timeout)
		return fmt.Sprintf("rolling back step %q to %s failed: %s", argo.Name, prev, msg)
	}
	return fmt.Sprintf("rolled back step %q (stage %s) to %s", argo.Name, dst.plan.ID, prev)
}

// subsetOf says whether every label of a is in b.
func subsetOf(a, b []string) bool {
	for _, l := range a {
		if !slices.Contains(b, l) {
			return false
		}
	}
	return true
}
