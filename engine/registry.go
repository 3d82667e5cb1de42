package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// The runner registry: every runner reports itself (labels, version, what
// it runs) to one workflow of the namespace, RegistryWorkflowID, by signal
// with start, when it starts, every RegistryReport while up, whenever its
// stages change, and when it stops. `sluice runners` and the API read it
// with a query. It lives in Temporal, like everything a runner shares, so
// that runners need only the Temporal address.

const (
	// RegistryWorkflowID is the registry's workflow ID.
	RegistryWorkflowID = "sluice-runners"
	// RegistryWorkflowName is its registered name.
	RegistryWorkflowName = "RunnerRegistry"
	// SignalRunner carries a RunnerReport.
	SignalRunner = "runner"
	// QueryRunners returns []RunnerReport.
	QueryRunners = "runners"
	// SignalLabelSet carries a label set ([]string) a stage asks for.
	SignalLabelSet = "label-set"
	// QueryLabelSets returns [][]string.
	QueryLabelSets = "label-sets"
	// RegistryReport is how often a runner reports while up.
	RegistryReport = 15 * time.Second
	// RunnerOffline is how long after its last report a runner counts as
	// offline (it died without saying so).
	RunnerOffline = 45 * time.Second
	// registryForget is how long an offline runner stays listed.
	registryForget = 24 * time.Hour
	// registryHistory bounds the registry's history before it continues
	// as new.
	registryHistory = 2000
)

// RunnerReport is what a runner says of itself.
type RunnerReport struct {
	Name      string   `json:"name"`
	Labels    []string `json:"labels,omitempty"`
	Version   string   `json:"version,omitempty"`
	MaxStages int      `json:"max_stages,omitempty"`
	// Stages are the stages it runs now, as RUN/STAGE.
	Stages []string `json:"stages,omitempty"`
	// State is "idle", "busy", "draining" or "stopped".
	State    string    `json:"state"`
	LastSeen time.Time `json:"last_seen"`
	// Online is set by Runners: the runner reported within RunnerOffline
	// and did not say it stopped.
	Online bool `json:"online"`
}

// RegistryState is what the registry carries from one run to the next.
type RegistryState struct {
	Runners []RunnerReport `json:"runners,omitempty"`
	// Sets are the label sets stages ask for (runs_on), each sorted: a
	// runner polls the queue of each set it has (see Runner).
	Sets [][]string `json:"sets,omitempty"`
}

// RunnerRegistry keeps the last report of each runner, and the label sets
// stages have asked for.
func RunnerRegistry(ctx workflow.Context, state RegistryState) error {
	runners := map[string]RunnerReport{}
	for _, r := range state.Runners {
		runners[r.Name] = r
	}
	sets := map[string][]string{}
	for _, set := range state.Sets {
		sets[strings.Join(set, ",")] = set
	}
	if err := workflow.SetQueryHandler(ctx, QueryRunners, func() ([]RunnerReport, error) {
		out := make([]RunnerReport, 0, len(runners))
		//workflowcheck:ignore sortedStrings sorts the keys it collects
		for _, name := range sortedStrings(runners) {
			out = append(out, runners[name])
		}
		return out, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryLabelSets, func() ([][]string, error) {
		out := make([][]string, 0, len(sets))
		//workflowcheck:ignore sortedStrings sorts the keys it collects
		for _, k := range sortedStrings(sets) {
			out = append(out, sets[k])
		}
		return out, nil
	}); err != nil {
		return err
	}
	reports := workflow.GetSignalChannel(ctx, SignalRunner)
	labelSets := workflow.GetSignalChannel(ctx, SignalLabelSet)
	onReport := func(r RunnerReport) {
		r.LastSeen = workflow.Now(ctx)
		runners[r.Name] = r
		//workflowcheck:ignore sortedStrings sorts the keys it collects
		for _, name := range sortedStrings(runners) {
			if r.LastSeen.Sub(runners[name].LastSeen) > registryForget {
				delete(runners, name)
			}
		}
	}
	onSet := func(set []string) {
		set = normLabels(set)
		if len(set) > 0 {
			sets[strings.Join(set, ",")] = set
		}
	}
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(reports, func(c workflow.ReceiveChannel, _ bool) {
		var r RunnerReport
		c.Receive(ctx, &r)
		onReport(r)
	})
	sel.AddReceive(labelSets, func(c workflow.ReceiveChannel, _ bool) {
		var set []string
		c.Receive(ctx, &set)
		onSet(set)
	})
	for workflow.GetInfo(ctx).GetCurrentHistoryLength() < registryHistory {
		sel.Select(ctx)
	}
	// Signals received meanwhile go on with the next run.
	for {
		var r RunnerReport
		if !reports.ReceiveAsync(&r) {
			break
		}
		onReport(r)
	}
	for {
		var set []string
		if !labelSets.ReceiveAsync(&set) {
			break
		}
		onSet(set)
	}
	var next RegistryState
	//workflowcheck:ignore sortedStrings sorts the keys it collects
	for _, name := range sortedStrings(runners) {
		next.Runners = append(next.Runners, runners[name])
	}
	//workflowcheck:ignore sortedStrings sorts the keys it collects
	for _, k := range sortedStrings(sets) {
		next.Sets = append(next.Sets, sets[k])
	}
	return workflow.NewContinueAsNewError(ctx, RunnerRegistry, next)
}

// registryStart starts the registry if it does not run, with a signal.
func registryStart(ctx context.Context, c client.Client, signal string, arg any) error {
	_, err := c.SignalWithStartWorkflow(ctx, RegistryWorkflowID, signal, arg, client.StartWorkflowOptions{
		ID:                    RegistryWorkflowID,
		TaskQueue:             WorkflowTaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:         "the runners' reports and the label sets stages use (sluice runners)",
	}, RegistryWorkflowName, RegistryState{})
	return err
}

// ReportRunner sends a runner's report to the registry, starting it if it
// does not run.
func ReportRunner(ctx context.Context, c client.Client, r RunnerReport) error {
	return registryStart(ctx, c, SignalRunner, r)
}

// knownSets are the label sets this process has told the registry of, and
// setHooks the runners of this process, told at once of a new one.
var (
	knownSets sync.Map // "a,b" -> bool
	setHooks  struct {
		sync.Mutex
		fs []func([]string)
	}
)

// noteLabelSets tells the registry of the label sets a plan's stages ask
// for, those this process has not told it of yet, and the runners of this
// process at once.
func noteLabelSets(ctx context.Context, c client.Client, p *plan.Plan) error {
	for _, st := range p.Stages {
		set := normLabels(st.RunsOn)
		key := strings.Join(set, ",")
		if len(set) == 0 {
			continue
		}
		if _, ok := knownSets.Load(key); ok {
			continue
		}
		if err := registryStart(ctx, c, SignalLabelSet, set); err != nil {
			return fmt.Errorf("telling the runner registry of the labels [%s]: %w", key, err)
		}
		knownSets.Store(key, true)
		setHooks.Lock()
		fs := append([]func([]string){}, setHooks.fs...)
		setHooks.Unlock()
		for _, f := range fs {
			f(set)
		}
	}
	return nil
}

// LabelSets returns the label sets stages have asked for.
func LabelSets(ctx context.Context, c client.Client) ([][]string, error) {
	v, err := c.QueryWorkflow(ctx, RegistryWorkflowID, "", QueryLabelSets)
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return nil, nil
		}
		return nil, err
	}
	var sets [][]string
	err = v.Get(&sets)
	return sets, err
}

// Runners lists the runners that reported, online first.
func Runners(ctx context.Context, c client.Client) ([]RunnerReport, error) {
	v, err := c.QueryWorkflow(ctx, RegistryWorkflowID, "", QueryRunners)
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return []RunnerReport{}, nil
		}
		return nil, fmt.Errorf("asking the runner registry: %w", err)
	}
	var out []RunnerReport
	if err := v.Get(&out); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Online = out[i].State != "stopped" && time.Since(out[i].LastSeen) < RunnerOffline
	}
	slices.SortStableFunc(out, func(a, b RunnerReport) int {
		switch {
		case a.Online == b.Online:
			return 0
		case a.Online:
			return -1
		}
		return 1
	})
	return out, nil
}

// report is what the runner says of itself now.
func (r *Runner) report(state string) RunnerReport {
	stages := r.pool.Stages()
	if state == "" {
		state = "idle"
		if r.pool.Busy() > 0 {
			state = "busy"
		}
		if why := r.pool.Blocked(); why != "" {
			state = "blocked: " + why
		}
		if r.pool.Draining() {
			state = "draining"
		}
	}
	return RunnerReport{Name: r.name, Labels: r.labels, Version: r.version, MaxStages: r.pool.MaxSlots(), Stages: stages, State: state}
}

// reportLoop reports the runner every RegistryReport and whenever its
// stages change, until ctx ends; then it reports it stopped.
func (r *Runner) reportLoop(ctx context.Context) {
	send := func(state string) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := ReportRunner(sctx, r.client, r.report(state)); err != nil && !errors.Is(err, context.Canceled) {
			r.log("reporting the runner to the registry", "error", err)
		}
	}
	t := time.NewTicker(RegistryReport)
	defer t.Stop()
	for {
		send("")
		select {
		case <-ctx.Done():
			send("stopped")
			return
		case <-t.C:
		case <-r.pool.Changed():
			// Several changes at once make one report.
			time.Sleep(200 * time.Millisecond)
		}
	}
}
