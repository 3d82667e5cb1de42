package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// RegisterWorkflows registers the Pipeline and ConcurrencyGroup workflows,
// and the Control activities they need, on a worker of WorkflowTaskQueue.
func RegisterWorkflows(r worker.Registry, c client.Client) {
	r.RegisterWorkflowWithOptions(Pipeline, workflow.RegisterOptions{Name: WorkflowName})
	r.RegisterWorkflowWithOptions(ConcurrencyGroup, workflow.RegisterOptions{Name: GroupWorkflowName})
	r.RegisterActivity(&Control{Client: c})
	r.RegisterWorkflowWithOptions(RunnerRegistry, workflow.RegisterOptions{Name: RegistryWorkflowName})
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
	// MaxStages is how many stages the runner holds at once; it polls
	// for a stage only when it has room for one. Zero means no bound but
	// the SDK's (sluice runner's default is 1).
	MaxStages int
	// DrainTimeout is how long stopping waits for running stages (the
	// workers' WorkerStopTimeout) before cancelling them.
	DrainTimeout time.Duration
	// Logger receives the runner's own warnings; nil discards them.
	Logger log.Logger
	// Version is what the runner reports of its build (sluice runners).
	Version string
	// Report makes the runner report itself to the registry (see
	// registry.go): standalone runners do.
	Report bool
	// Namespace is the client's namespace, for failing at Start the
	// activities a crashed process of this runner left (Activities.StateDir).
	Namespace string
}

// Runner is a worker process's Temporal side: one worker on the shared
// queue of every subset of its labels, where stages are taken, one on its
// own queue, where the steps of the stages it took arrive, and optionally
// one for the workflows.
type Runner struct {
	name    string
	queue   string
	pool    *StagePool
	workers []worker.Worker
	started []worker.Worker
	// takers are the workers of the label queues, where stages are taken.
	takers  []worker.Worker
	mu      sync.Mutex
	stopped map[worker.Worker]bool
	abort   chan struct{}
	aborted sync.Once

	client    client.Client
	namespace string
	stateDir  string
	logger    log.Logger
	labels    []string
	version   string
	reports   bool
	// stopReports ends the reports to the registry; reported is closed
	// once the last one was sent.
	stopReports context.CancelFunc
	reported    chan struct{}
}

func (r *Runner) log(msg string, kv ...any) {
	if r.logger != nil {
		r.logger.Warn(msg, kv...)
	}
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
	abort := make(chan struct{})
	a.Abort = abort
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
	if wo.WorkerStopTimeout == 0 {
		wo.WorkerStopTimeout = o.DrainTimeout
	}
	setBinaryID()
	r := &Runner{name: o.Name, queue: a.Queue, pool: NewStagePool(cmp.Or(o.MaxStages, unboundedStages)), stopped: map[worker.Worker]bool{}, abort: abort,
		client: c, namespace: cmp.Or(o.Namespace, "default"), stateDir: a.StateDir, logger: o.Logger,
		labels: normLabels(o.Labels), version: o.Version, reports: o.Report}
	a.Pool = r.pool
	// The workers that take stages share the pool: they poll only when
	// the runner has room for a stage.
	taking := wo
	if taking.Tuner == nil {
		fixed := func(n int) worker.SlotSupplier {
			s, _ := worker.NewFixedSizeSlotSupplier(n)
			return s
		}
		tuner, err := worker.NewCompositeTuner(worker.CompositeTunerOptions{
			WorkflowSlotSupplier: fixed(10), ActivitySlotSupplier: r.pool,
			LocalActivitySlotSupplier: fixed(10), NexusSlotSupplier: fixed(1), SessionActivitySlotSupplier: fixed(1),
		})
		if err != nil {
			return nil, err
		}
		taking.Tuner = tuner
		taking.MaxConcurrentActivityExecutionSize = 0
	}
	for _, q := range labelQueues(o.Labels) {
		w := worker.New(c, q, taking)
		RegisterActivities(w, &a)
		r.workers = append(r.workers, w)
		r.takers = append(r.takers, w)
	}
	own := worker.New(c, a.Queue, wo)
	RegisterActivities(own, &a)
	r.workers = append(r.workers, own)
	if o.Workflows {
		r.workers = append(r.workers, NewWorkflowWorker(c, wo))
	}
	return r, nil
}

// unboundedStages is the pool of a runner given no MaxStages.
const unboundedStages = 1000

// Queue is the runner's own task queue.
func (r *Runner) Queue() string { return r.queue }

// Start starts every worker of the runner, all at once: each asks the
// server about the namespace before it polls.
func (r *Runner) Start() error {
	// What a crashed process of this runner was running goes on now, not
	// after the heartbeat timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	n, err := failOrphans(ctx, r.client, r.namespace, r.stateDir, r.name)
	cancel()
	if err != nil {
		r.log("failing the activities of the runner's previous process", "error", err)
	} else if n > 0 {
		r.log("the runner's previous process was running activities: failed them so that they go on", "count", n)
	}
	if r.reports && r.stopReports == nil {
		rctx, cancel := context.WithCancel(context.Background())
		r.stopReports, r.reported = cancel, make(chan struct{})
		go func() {
			defer close(r.reported)
			r.reportLoop(rctx)
		}()
	}
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

// Pool is the runner's stage pool: what it holds.
func (r *Runner) Pool() *StagePool { return r.pool }

// Drain makes the runner take no more stages: its stage queues' workers
// stop polling (a poll in flight is cancelled), while the stages it holds
// go on (a stage run whole on a stage queue keeps its worker until it
// ends, up to DrainTimeout). Wait then waits for them.
func (r *Runner) Drain() {
	r.pool.Drain()
	r.mu.Lock()
	var stop []worker.Worker
	for _, w := range r.takers {
		if slices.Contains(r.started, w) && !r.stopped[w] {
			stop = append(stop, w)
			r.stopped[w] = true
		}
	}
	r.mu.Unlock()
	for _, w := range stop {
		go w.Stop()
	}
}

// Abort cancels the running steps: their stages start again on another
// runner. Stop then returns at once.
func (r *Runner) Abort() { r.aborted.Do(func() { close(r.abort) }) }

// Wait waits until the runner holds no stage, or ctx ends.
func (r *Runner) Wait(ctx context.Context) error { return r.pool.Wait(ctx) }

// Stop stops the runner's workers, all at once; running activities are
// cancelled.
func (r *Runner) Stop() {
	defer func() {
		if r.stopReports != nil {
			r.stopReports()
			<-r.reported
		}
	}()
	r.mu.Lock()
	var stop []worker.Worker
	for _, w := range r.started {
		if !r.stopped[w] {
			stop = append(stop, w)
			r.stopped[w] = true
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range stop {
		wg.Go(w.Stop)
	}
	wg.Wait()
}
