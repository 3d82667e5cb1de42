package engine

import (
	"errors"
	"fmt"
	"sync"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// RegisterWorkflows registers the Pipeline and ConcurrencyGroup workflows,
// and the Control activities they need, on a worker of WorkflowTaskQueue.
func RegisterWorkflows(r worker.Registry, c client.Client) {
	r.RegisterWorkflowWithOptions(Pipeline, workflow.RegisterOptions{Name: WorkflowName})
	r.RegisterWorkflowWithOptions(ConcurrencyGroup, workflow.RegisterOptions{Name: GroupWorkflowName})
	r.RegisterActivity(&Control{Client: c})
}

// NewWorkflowWorker returns a worker that runs the workflows, for a process
// (such as the server) that hosts no runner.
func NewWorkflowWorker(c client.Client, o worker.Options) worker.Worker {
	setBinaryID()
	w := worker.New(c, WorkflowTaskQueue, o)
	RegisterWorkflows(w, c)
	return w
}

// RegisterActivities registers a runner's activities on one of its workers.
func RegisterActivities(r worker.Registry, a *Activities) {
	r.RegisterActivity(a)
}

// maxLabels bounds a runner's labels: a runner listens on the queue of
// every subset of its labels, 2^n queues.
const maxLabels = 6

// RunnerOptions configures a Runner.
type RunnerOptions struct {
	// Name identifies the runner; it must be unique among runners and stable
	// across restarts, since it names the runner's own queue.
	Name string
	// Labels are what the runner offers to runs_on.
	Labels []string
	// Activities are the runner's executors, workspaces, secrets and logs;
	// Runner and Queue are filled in.
	Activities *Activities
	// Artifacts stores the files stages declare as artifacts and fetches
	// those of the stages a stage needs (see artifacts.go); nil refuses
	// stages that hand on or receive artifacts.
	Artifacts ArtifactStore
	// Workflows makes the runner also run the workflows (on
	// WorkflowTaskQueue), as a single-process `sluice run` needs.
	Workflows bool
	// Worker are the options of every worker the runner starts.
	Worker worker.Options
}

// Runner is a worker process's Temporal side: one worker on the shared
// queue of every subset of its labels, where stages are taken, one on its
// own queue, where the steps of the stages it took arrive, and optionally
// one for the workflows.
type Runner struct {
	name    string
	queue   string
	workers []worker.Worker
	started []worker.Worker
}

// NewRunner creates a runner's workers; Start starts them.
func NewRunner(c client.Client, o RunnerOptions) (*Runner, error) {
	if o.Name == "" {
		return nil, errors.New("a runner needs a name")
	}
	if o.Activities == nil {
		return nil, errors.New("a runner needs activities")
	}
	if n := len(normLabels(o.Labels)); n > maxLabels {
		return nil, fmt.Errorf("runner %q has %d labels; at most %d are supported", o.Name, n, maxLabels)
	}
	a := *o.Activities
	a.Runner = o.Name
	a.Queue = RunnerQueue(o.Name)
	a.artifacts = o.Artifacts
	if a.Heartbeats == nil {
		a.Heartbeats = c
	}
	wo := o.Worker
	if wo.Identity == "" {
		wo.Identity = "sluice-runner/" + o.Name
	}
	// A step learns that it was cancelled from the answer to a heartbeat;
	// the SDK would otherwise hold heartbeats back for 80% of
	// HeartbeatTimeout, so a cancel could take 24 s to reach a step.
	if wo.MaxHeartbeatThrottleInterval == 0 {
		wo.MaxHeartbeatThrottleInterval = HeartbeatThrottle
	}
	if wo.DefaultHeartbeatThrottleInterval == 0 {
		wo.DefaultHeartbeatThrottleInterval = HeartbeatThrottle
	}
	setBinaryID()
	r := &Runner{name: o.Name, queue: a.Queue}
	for _, q := range append(labelQueues(o.Labels), a.Queue) {
		w := worker.New(c, q, wo)
		RegisterActivities(w, &a)
		r.workers = append(r.workers, w)
	}
	if o.Workflows {
		r.workers = append(r.workers, NewWorkflowWorker(c, wo))
	}
	return r, nil
}

// Queue is the runner's own task queue.
func (r *Runner) Queue() string { return r.queue }

// Start starts every worker of the runner, all at once: each asks the
// server about the namespace before it polls.
func (r *Runner) Start() error {
	errs := make([]error, len(r.workers))
	var wg sync.WaitGroup
	for i, w := range r.workers {
		wg.Go(func() { errs[i] = w.Start() })
	}
	wg.Wait()
	for i, w := range r.workers {
		if errs[i] == nil {
			r.started = append(r.started, w)
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.Stop()
		return fmt.Errorf("starting runner %q: %w", r.name, err)
	}
	return nil
}

// Stop stops the runner's workers, all at once; running activities are
// cancelled.
func (r *Runner) Stop() {
	var wg sync.WaitGroup
	for _, w := range r.started {
		wg.Go(w.Stop)
	}
	wg.Wait()
	r.started = nil
}
