package engine

import (
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Names that clients, workers and workflows must agree on. Changing any of
// them breaks running workflows and recorded histories.
const (
	// WorkflowName is the Temporal workflow type of a pipeline run.
	WorkflowName = "sluice.Pipeline"
	// GroupWorkflowName is the workflow type of a concurrency group's lock.
	GroupWorkflowName = "sluice.ConcurrencyGroup"

	// WorkflowTaskQueue is where pipeline and concurrency group workflows
	// (and the few activities that talk to Temporal itself) run.
	WorkflowTaskQueue = "sluice-workflows"
	// StageTaskQueue is the shared queue for stages without runs_on labels;
	// stages with labels use StageQueue(labels).
	StageTaskQueue = "sluice"

	// QueryStatus returns a RunStatus.
	QueryStatus = "status"
	// UpdateApprove and UpdateReject decide an approval; they take a
	// Decision and are refused for unknown stages and stages not waiting.
	UpdateApprove = "approve"
	UpdateReject  = "reject"
	// SignalApprove and SignalReject are fire-and-forget alternatives to
	// the updates; invalid ones are logged and ignored.
	SignalApprove = "approve"
	SignalReject  = "reject"

	// signalGroupGranted tells a run it holds its concurrency group.
	signalGroupGranted = "sluice-group-granted"
	// signalGroupAcquire and signalGroupRelease go to the group workflow.
	signalGroupAcquire = "acquire"
	// SignalSuperseded tells a run that a newer run of its concurrency
	// group cancelled it (cancel_in_progress), or which runs it cancelled.
	SignalSuperseded   = "sluice-superseded"
	signalGroupRelease = "release"
)

// Timeouts of the activities a pipeline schedules.
const (
	// DefaultStepTimeout bounds a step that sets no timeout.
	DefaultStepTimeout = time.Hour
	// HeartbeatTimeout is how long a step may go without a heartbeat before
	// its runner is taken for dead. Activities heartbeat every few seconds
	// while the executor runs.
	HeartbeatTimeout = 30 * time.Second
	// HeartbeatThrottle is the longest a runner holds back a heartbeat, and
	// so about the longest a cancelled step runs on.
	HeartbeatThrottle = 3 * time.Second
	// RunnerPickupTimeout is how long a step or cleanup waits on a runner's
	// own queue before the runner is taken for gone.
	RunnerPickupTimeout = 2 * time.Minute
	// PrepareTimeout bounds preparing a workspace (a checkout).
	PrepareTimeout = 30 * time.Minute
	// ReleaseTimeout bounds cleaning up a workspace.
	ReleaseTimeout = 5 * time.Minute
)

// NotTakenError is the error type of a RunSteps activity that was to take
// its stage (StepsInput.Take) and could not prepare the workspace.
const NotTakenError = "NotTaken"

// Search attributes of a run. The server registers them as Keyword
// attributes (see SearchAttributes); Start sets all but SluiceStatus,
// which the workflow keeps current. SluiceEvent and SluiceActor (what
// triggered the run, and who) are for the web view's list of runs.
var (
	AttrPipeline = temporal.NewSearchAttributeKeyKeyword("SluicePipeline")
	AttrRepo     = temporal.NewSearchAttributeKeyKeyword("SluiceRepo")
	AttrRef      = temporal.NewSearchAttributeKeyKeyword("SluiceRef")
	AttrSHA      = temporal.NewSearchAttributeKeyKeyword("SluiceSHA")
	AttrStatus   = temporal.NewSearchAttributeKeyKeyword("SluiceStatus")
	AttrEvent    = temporal.NewSearchAttributeKeyKeyword("SluiceEvent")
	AttrActor    = temporal.NewSearchAttributeKeyKeyword("SluiceActor")
)

// SearchAttributes names every search attribute the engine uses; each is a
// Keyword. The embedded server and tests register them in their namespace.
var SearchAttributes = []string{"SluicePipeline", "SluiceRepo", "SluiceRef", "SluiceSHA", "SluiceStatus", "SluiceEvent", "SluiceActor"}

// StageQueue returns the shared task queue for stages that run on runners
// with all of labels. Labels are sorted and deduplicated so that
// `runs_on = ["linux", "gpu"]` and `["gpu", "linux"]` share a queue.
func StageQueue(labels []string) string {
	ls := normLabels(labels)
	if len(ls) == 0 {
		return StageTaskQueue
	}
	return StageTaskQueue + "@" + strings.Join(ls, ",")
}

// RunnerQueue returns the task queue only the runner with this name listens
// on. It is stable across restarts so that a restarted runner picks up
// steps scheduled for it.
func RunnerQueue(runner string) string {
	return StageTaskQueue + "-runner/" + runner
}

// GroupWorkflowID returns the workflow ID of a concurrency group's lock.
func GroupWorkflowID(group string) string {
	return "sluice-group/" + group
}

func normLabels(labels []string) []string {
	var ls []string
	for _, l := range labels {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	slices.Sort(ls)
	return slices.Compact(ls)
}

// MaxLostRunners bounds how often a step is started again because the
// runner running it was lost (crashed, killed, cut off), on top of the
// attempts its retry block allows.
const MaxLostRunners = 5
