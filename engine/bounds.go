package engine

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// Large runs. A run is one workflow execution, held to Temporal's limits
// per execution: a history of at most 51,200 events and 50 MB, payloads of
// at most 2 MB each, at most 2,000 pending activities. The history grows
// by about five events a stage whose steps run as one batch, and by about
// five more for each step that runs alone: a 1,000-stage pipeline stays
// under half of the event limit (docs/benchmarks.md, "Large runs"), so a
// run stays one execution. What grows with a run is bounded here: the
// stages running at once (each holds at most one pending activity), by
// MaxRunningStages; the run's status, which the status query answers and
// the run returns, by StatusBudget; and the time a worker takes to replay
// the history, by a longer workflow task timeout (LargeRunTaskTimeout).

// MaxRunningStages bounds the stages of a run that hold a runner at once,
// whatever its max_parallel. Each holds at most one pending activity;
// Temporal refuses to schedule an activity beyond 2,000 pending ones
// (limit.numPendingActivities.error) by failing the workflow task, again
// and again, which would stall the run. Stages beyond the bound wait, in
// order, for a stage to end, as they do for max_parallel.
const MaxRunningStages = 500

// stageCap is the bound on running stages that applies to a stage asking
// for a slot under max_parallel limit (0 for none): MaxRunningStages when
// it binds, except in histories recorded before the bound ("stage-cap").
// The version is asked for only when the bound binds, so that a history
// that never reached it has no marker and replays unchanged.
func (r *run) stageCap(ctx workflow.Context, limit int) int {
	if limit > 0 && limit <= MaxRunningStages {
		return limit
	}
	if r.running < MaxRunningStages && len(r.queue) == 0 {
		return limit
	}
	if workflow.GetVersion(ctx, "stage-cap", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return limit
	}
	return MaxRunningStages
}

// LargeRunStages is the number of stages from which a run's workflow
// tasks may take LargeRunTaskTimeout rather than Temporal's default of
// 10 s. A worker that takes up a run it does not hold in its cache (after
// a crash or a restart, or once the run left the cache) replays the run's
// whole history in one workflow task, and the replay takes time in the
// number of stages running at once times the events: 0.3 s for a matrix
// of 256 instances, 0.7 s for 1,000 stages as a DAG, 3 to 7 s for 1,000
// stages of three steps that do not batch, on two busy cores
// (docs/benchmarks.md). A task that takes longer than its timeout is
// taken up again, from the start, and again: the run would be stuck.
const (
	LargeRunStages      = 200
	LargeRunTaskTimeout = time.Minute
)

// workflowTaskTimeout is the workflow task timeout of a run of p; zero
// means Temporal's default.
func workflowTaskTimeout(p *plan.Plan) time.Duration {
	if len(p.Stages) >= LargeRunStages {
		return LargeRunTaskTimeout
	}
	return 0
}

// StatusBudget is the most a run's status may take, as JSON, in the status
// query's answer and in the run's result (or the details of its failure):
// half of Temporal's payload limit (2 MiB, limit.blobSize.error), which
// leaves room for the plan beside the steps a retry keeps. Above the limit
// the server fails the query and terminates the run, which then has no
// status at all. A status over the budget is cut by fitStatus.
const StatusBudget = 1 << 20

// maxStatusText is how much of an error or a reason a cut status keeps.
const maxStatusText = 1 << 10

// fitStatus returns the status as it is when it fits in StatusBudget, and
// otherwise a copy cut to fit: first every error and reason cut to
// maxStatusText bytes and the details of test failures dropped (the step
// logs and test reports keep them); then, largest first, the outputs of
// steps (marked OutputsDropped, so that a retry runs such a step again
// rather than keep it without its outputs) and the lists of failed tests
// (their counts stay), until it fits. Trimmed says what was cut. The
// workflow's own state keeps everything: steps still get their outputs.
func fitStatus(st RunStatus) RunStatus {
	size := jsonSize(st)
	if size <= StatusBudget {
		return st
	}
	st.Stages = slices.Clone(st.Stages)
	st.Error = cutText(st.Error)
	for i := range st.Stages {
		s := &st.Stages[i]
		s.Reason = cutText(s.Reason)
		if len(s.Restarts) > 0 {
			s.Restarts = slices.Clone(s.Restarts)
			for k := range s.Restarts {
				s.Restarts[k] = cutText(s.Restarts[k])
			}
		}
		s.Steps = slices.Clone(s.Steps)
		for j := range s.Steps {
			ss := &s.Steps[j]
			ss.Error = cutText(ss.Error)
			if ss.Tests != nil && len(ss.Tests.Failures) > 0 {
				t := *ss.Tests
				t.Failures = slices.Clone(t.Failures)
				for k := range t.Failures {
					t.Failures[k].Details = ""
				}
				ss.Tests = &t
			}
		}
	}
	notes := []string{fmt.Sprintf("errors and reasons cut to %d bytes, test failures without their details", maxStatusText)}
	if size = jsonSize(st); size > StatusBudget {
		type bulk struct {
			stage, step, size int
			tests             bool
		}
		var items []bulk
		for i, s := range st.Stages {
			for j, ss := range s.Steps {
				if len(ss.Outputs) > 0 {
					items = append(items, bulk{stage: i, step: j, size: jsonSize(ss.Outputs)})
				}
				if ss.Tests != nil && len(ss.Tests.Failures) > 0 {
					items = append(items, bulk{stage: i, step: j, size: jsonSize(ss.Tests.Failures), tests: true})
				}
			}
		}
		slices.SortStableFunc(items, func(a, b bulk) int { return cmp.Compare(b.size, a.size) })
		outputs, tests := 0, 0
		for _, it := range items {
			if size <= StatusBudget {
				break
			}
			ss := &st.Stages[it.stage].Steps[it.step]
			if it.tests {
				t := *ss.Tests
				t.Failures = nil
				ss.Tests = &t
				tests++
			} else {
				ss.Outputs, ss.OutputsDropped = nil, true
				outputs++
			}
			// The field's name and separators go too: size only
			// overestimates what is left.
			size -= it.size
		}
		if outputs > 0 {
			notes = append(notes, fmt.Sprintf("the outputs of %d steps dropped (outputs_dropped)", outputs))
		}
		if tests > 0 {
			notes = append(notes, fmt.Sprintf("the failed tests of %d steps dropped (their counts stay)", tests))
		}
	}
	st.Trimmed = fmt.Sprintf("the status was cut to fit in %d KiB: %s; the step logs have everything", StatusBudget>>10, strings.Join(notes, "; "))
	return st
}

// jsonSize is the length of v as JSON, as the data converter encodes it.
func jsonSize(v any) int {
	// encoding/json writes map keys sorted; workflowcheck takes its
	// reflection and its cache of encoders for non-determinism.
	//workflowcheck:ignore
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(b)
}

// cutText cuts s to maxStatusText bytes, at a rune boundary, saying so.
func cutText(s string) string {
	if len(s) <= maxStatusText {
		return s
	}
	n := maxStatusText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf(" … (%d more bytes cut)", len(s)-n)
}
