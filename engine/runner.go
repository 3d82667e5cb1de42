package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// RegisterWorkflows registers the workflows of WorkflowTaskQueue
// (RegisterWorkflowTypes) and the Control activities they need on one of
// its workers.
func RegisterWorkflows(r worker.Registry, c client.Client) {
	RegisterWorkflowTypes(r)
	r.RegisterActivity(&Control{Client: c})
}

// RegisterWorkflowTypes registers the Pipeline, ConcurrencyGroup and
// RunnerRegistry workflows under the names their histories record. The
// workers of WorkflowTaskQueue and the replayer of recorded histories
// (sluice replay, TestReplay) both register them here, so that a replay
// checks the code the workers run.
func RegisterWorkflowTypes(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(Pipeline, workflow.RegisterOptions{Name: WorkflowName})
	r.RegisterWorkflowWithOptions(ConcurrencyGroup, workflow.RegisterOptions{Name: GroupWorkflowName})
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

	// newTaker makes a worker for a stage queue; polled are the stage
	// queues the runner has a worker for.
	newTaker func(queue string) worker.Worker
	polled   map[string]bool
	// stopSets ends the watch for new label sets.
	stopSets context.CancelFunc
	setsDone chan struct{}
}

// knownSets asks the registry which label sets stages use; none when it
// cannot say (a new namespace: the first plan started tells it).
func (r *Runner) knownSets() [][]string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sets, err := LabelSets(ctx, r.client)
	if err != nil {
		r.log("asking the registry for the label sets in use", "error", err)
	}
	return sets
}

// stageQueues are the queues of the sets the runner has, and of no labels.
func (r *Runner) stageQueues(sets [][]string) []string {
	queues := []string{StageQueue(nil)}
	for _, set := range sets {
		if subsetOf(set, r.labels) {
			queues = append(queues, StageQueue(set))
		}
	}
	return queues
}

// addQueues starts workers for stage queues of new label sets.
func (r *Runner) addQueues(sets [][]string) {
	for _, q := range r.stageQueues(sets) {
		r.mu.Lock()
		if r.polled[q] || r.pool.Draining() || r.started == nil {
			r.mu.Unlock()
			continue
		}
		r.polled[q] = true
		r.mu.Unlock()
		w := r.newTaker(q)
		if err := w.Start(); err != nil {
			r.log("polling a new stage queue", "queue", q, "error", err)
			r.mu.Lock()
			delete(r.polled, q)
			r.mu.Unlock()
			continue
		}
		r.mu.Lock()
		r.workers = append(r.workers, w)
		r.takers = append(r.takers, w)
		r.started = append(r.started, w)
		r.mu.Unlock()
	}
}

// SetsPoll is how often a runner asks the registry for new label sets;
// runners of the process that starts a plan learn its sets at once.
const SetsPoll = 2 * time.Second

// watchSets adds the queues of label sets that appear, until ctx ends.
func (r *Runner) watchSets(ctx context.Context) {
	local := make(chan []string, 16)
	hook := func(set []string) {
		select {
		case local <- set:
		default:
		}
	}
	setHooks.Lock()
	setHooks.fs = append(setHooks.fs, hook)
	setHooks.Unlock()
	t := time.NewTicker(SetsPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case set := <-local:
			r.addQueues([][]string{set})
		case <-t.C:
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			sets, err := LabelSets(qctx, r.client)
			cancel()
			if err == nil {
				r.addQueues(sets)
			}
		}
	}
}

// Queues returns the stage queues the runner polls.
func (r *Runner) Queues() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.polled))
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
	r := &Runner{name: o.Name, queue: a.Queue, pool: NewStagePool(cmp.Or(o.MaxStages, unboundedStages)), stopped: map[worker.Worker]bool{}, abort: abort, polled: map[string]bool{},
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
	r.newTaker = func(q string) worker.Worker {
		w := worker.New(c, q, taking)
		RegisterActivities(w, &a)
		return w
	}
	// The stage queues polled are those of the label sets stages ask for
	// (the registry learns them from the plans started) that the runner
	// has, not one per subset of its labels: a runner's pollers grow with
	// the label sets in use, never with its own label count.
	var sets [][]string
	if !o.Workflows {
		// A process that hosts the workflows cannot answer a query before
		// it starts: it learns the sets from its hooks and watchSets.
		sets = r.knownSets()
	}
	for _, q := range r.stageQueues(sets) {
		w := r.newTaker(q)
		r.workers = append(r.workers, w)
		r.takers = append(r.takers, w)
		r.polled[q] = true
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
	sctx, cancel := context.WithCancel(context.Background())
	r.stopSets, r.setsDone = cancel, make(chan struct{})
	go func() {
		defer close(r.setsDone)
		r.watchSets(sctx)
	}()
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
	if r.stopSets != nil {
		r.stopSets()
		<-r.setsDone
	}
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
