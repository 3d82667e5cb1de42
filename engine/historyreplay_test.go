package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/internal/testing/replaytest"
)

func readHistory(t *testing.T, name string) *historypb.History {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// withPipeline registers this build's workflows with fn as the Pipeline.
func withPipeline(fn func(workflow.Context, RunInput) (RunStatus, error)) func(worker.WorkflowRegistry) {
	return func(r worker.WorkflowRegistry) { RegisterWorkflowTypes(replaytest.Replacing(r, WorkflowName, fn)) }
}

// firstTask makes the commands of the Pipeline's first workflow task in
// testdata/linear.json up to its first activity (event 7): the status
// search attribute (event 5) and the run's timer (event 6).
func firstTask(ctx workflow.Context) workflow.Context {
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrStatus.ValueSet(string(StateRunning)))
	timerCtx, _ := workflow.WithCancel(ctx)
	workflow.NewTimer(timerCtx, time.Hour)
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
}

// TestReplayHistory replays testdata/linear.json (a run of three stages
// recorded from this code) against the workflow as it is and as changes
// made without workflow.GetVersion would leave it, and checks that each
// change is found at the event where the code leaves the history, with
// what the history has there and what the code did instead.
func TestReplayHistory(t *testing.T) {
	const file = "linear.json"
	tests := []struct {
		name     string
		register func(worker.WorkflowRegistry)
		want     HistoryReplay
	}{
		{
			name:     "unchanged",
			register: RegisterWorkflowTypes,
			want:     HistoryReplay{Result: ReplayOK},
		},
		{
			name: "an activity added before the run starts",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				ao := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
				if err := workflow.ExecuteActivity(ao, "Announce", in.Plan.Pipeline).Get(ctx, nil); err != nil {
					return RunStatus{}, err
				}
				return Pipeline(ctx, in)
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 5, EventType: "UpsertWorkflowSearchAttributes", History: "search attributes SluiceStatus", Code: "scheduled activity Announce",
			}},
		},
		{
			name: "a timer added before the run starts",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				_ = workflow.Sleep(ctx, time.Second)
				return Pipeline(ctx, in)
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 5, EventType: "UpsertWorkflowSearchAttributes", History: "search attributes SluiceStatus", Code: "started a timer of 1s",
			}},
		},
		{
			name: "a search attribute set more",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				_ = workflow.UpsertTypedSearchAttributes(ctx, AttrStatus.ValueSet(string(StateRunning)))
				_ = workflow.UpsertTypedSearchAttributes(ctx, AttrPipeline.ValueSet(in.Plan.Pipeline))
				return RunStatus{}, workflow.Await(ctx, func() bool { return false })
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 6, EventType: "TimerStarted", History: "a timer of 1h0m0s", Code: "set search attributes SluicePipeline",
			}},
		},
		{
			name: "a search attribute no longer set",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				timerCtx, _ := workflow.WithCancel(ctx)
				workflow.NewTimer(timerCtx, time.Hour)
				return RunStatus{}, workflow.Await(ctx, func() bool { return false })
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 5, EventType: "UpsertWorkflowSearchAttributes", History: "search attributes SluiceStatus", Code: "started a timer of 1h0m0s",
			}},
		},
		{
			name: "another activity in place of one",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				ao := firstTask(ctx)
				return RunStatus{}, workflow.ExecuteActivity(ao, "PrepareCache").Get(ctx, nil)
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 7, EventType: "ActivityTaskScheduled", History: "activity PrepareWorkspace", Code: "scheduled activity PrepareCache",
			}},
		},
		{
			name: "an activity removed",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				firstTask(ctx)
				return RunStatus{}, workflow.Await(ctx, func() bool { return false })
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 7, EventType: "ActivityTaskScheduled", History: "activity PrepareWorkspace", Code: "made no such command in that workflow task",
			}},
		},
		{
			name: "a timer added",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				ao := firstTask(ctx)
				_ = workflow.Sleep(ctx, time.Minute)
				return RunStatus{}, workflow.ExecuteActivity(ao, "PrepareWorkspace").Get(ctx, nil)
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 7, EventType: "ActivityTaskScheduled", History: "activity PrepareWorkspace", Code: "started a timer of 1m0s",
			}},
		},
		{
			name: "the run ends early",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				firstTask(ctx)
				return RunStatus{}, nil
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 7, EventType: "ActivityTaskScheduled", History: "activity PrepareWorkspace", Code: "completed the workflow",
			}},
		},
		{
			name: "an activity added after the last stage",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				st, err := Pipeline(ctx, in)
				ao := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
				_ = workflow.ExecuteActivity(ao, "Notify").Get(ctx, nil)
				return st, err
			}),
			want: HistoryReplay{Result: ReplayNondeterministic, Divergence: &Divergence{
				EventID: 49, EventType: "WorkflowExecutionCompleted", History: "the workflow's completion", Code: "scheduled activity Notify",
			}},
		},
		{
			name: "the workflow panics",
			register: withPipeline(func(ctx workflow.Context, in RunInput) (RunStatus, error) {
				panic("the plan has no stages")
			}),
			want: HistoryReplay{Result: ReplayFailed, Error: "the plan has no stages"},
		},
		{
			name:     "the workflow type is gone",
			register: func(worker.WorkflowRegistry) {},
			want:     HistoryReplay{Result: ReplayFailed, Error: "unable to find workflow type: sluice.Pipeline"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReplayHistory(readHistory(t, file), tt.register)
			if got.WorkflowID != "history-linear-run-b69d324a" || got.RunID != "01a201d4-e125-7c31-b523-2a763d9a7a94" ||
				got.WorkflowType != WorkflowName || got.Events != 49 {
				t.Errorf("the execution is %s %s (%s, %d events), want history-linear-run-b69d324a 01a201d4-e125-7c31-b523-2a763d9a7a94 (sluice.Pipeline, 49 events)",
					got.WorkflowID, got.RunID, got.WorkflowType, got.Events)
			}
			if got.Divergence != nil {
				t.Logf("the SDK's message: %s", got.Divergence.SDK)
				if !strings.Contains(got.Divergence.SDK, "TMPRL1100") {
					t.Errorf("the SDK's message is %q, want its nondeterminism error", got.Divergence.SDK)
				}
				got.Divergence.SDK = ""
			}
			if !strings.Contains(got.Error, tt.want.Error) {
				t.Errorf("error %q, want it to say %q", got.Error, tt.want.Error)
			}
			got.Error = tt.want.Error
			got.WorkflowID, got.RunID, got.WorkflowType, got.Events = "", "", "", 0
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("replay (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReplayHistoryRecorded replays every recorded history with
// ReplayHistory, as sluice replay --history does in make replay-check.
func TestReplayHistoryRecorded(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if got := ReplayHistory(readHistory(t, filepath.Base(f)), RegisterWorkflowTypes); got.Result != ReplayOK {
				t.Errorf("replay: %s %s %+v", got.Result, got.Error, got.Divergence)
			}
		})
	}
}

func TestReplayHistoryNotAHistory(t *testing.T) {
	h := readHistory(t, "linear.json")
	h.Events = h.Events[1:]
	got := ReplayHistory(h, RegisterWorkflowTypes)
	if got.Result != ReplayUnavailable || !strings.Contains(got.Error, "not a workflow history: its first event is WorkflowTaskScheduled") {
		t.Errorf("replay of a history without its start: %s %q, want unavailable, not a workflow history", got.Result, got.Error)
	}
	got = ReplayHistory(&historypb.History{}, RegisterWorkflowTypes)
	if got.Result != ReplayUnavailable || !strings.Contains(got.Error, "no events") {
		t.Errorf("replay of no events: %s %q, want unavailable", got.Result, got.Error)
	}
}

// TestParseSDKMessage reads the SDK's nondeterminism messages, in each of
// the ways it words them, into the event of the history they are about.
func TestParseSDKMessage(t *testing.T) {
	events := readHistory(t, "linear.json").Events
	tests := []struct {
		msg  string
		want int64
		code string
	}{
		{"[TMPRL1100] During replay, a matching Timer command was expected in history event position 6. However, the replayed code did not produce that. Possible causes are nondeterministic workflow definition code, or an incompatible change in the workflow definition.", 6, "made no such command"},
		{"[TMPRL1100] During replay, a matching Activity command was expected in history event position 15. However, ...", 15, "made no such command"},
		{"[TMPRL1100] nondeterministic workflow: missing replay command for ActivityTaskScheduled: (ActivityId:21, ActivityType:(Name:RunStep), TaskQueue:(Name:sluice-runner-x, Kind:TASK_QUEUE_KIND_NORMAL))", 21, "made no such command"},
		{"[TMPRL1100] nondeterministic workflow: extra replay command for ScheduleActivityTask: (ActivityId:50, ActivityType:(Name:Notify), TaskQueue:(Name:sluice-workflows))", 50, "scheduled activity Notify"},
		{"[TMPRL1100] nondeterministic workflow: history event is ActivityTaskScheduled: (ActivityId:7, ActivityType:(Name:PrepareWorkspace)), replay command is ScheduleActivityTask: (ActivityId:7, ActivityType:(Name:main.PrepareCache))", 7, "scheduled activity PrepareCache"},
		{"[TMPRL1100] nondeterministic workflow: history event is TimerStarted: (TimerId:6, StartToFireTimeout:1h0m0s), replay command is StartTimer: (TimerId:6)", 6, "started a timer"},
		{"[TMPRL1100] lookup failed for scheduledEventID to activityID: scheduleEventID: 7, activityID: 7", 7, "made no such command"},
		{"[TMPRL1100] nondeterministic workflow: missing replay command for WorkflowExecutionCompleted: (Result:[len=1])", 49, "made no such command"},
		{"something else entirely", 0, ""},
	}
	for _, tt := range tests {
		m := parseSDKMessage(tt.msg)
		if got := m.locate(events); got != tt.want {
			t.Errorf("%q names event %d, want %d", tt.msg, got, tt.want)
		}
		if got := m.codeText(); got != tt.code {
			t.Errorf("%q: the code %q, want %q", tt.msg, got, tt.code)
		}
	}
}

func TestDivergenceExplain(t *testing.T) {
	tests := []struct {
		d    Divergence
		want string
	}{
		{
			Divergence{EventID: 7, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED.String(), History: "activity PrepareWorkspace", Code: "scheduled activity PrepareCache"},
			"at event 7 the history has ActivityTaskScheduled (activity PrepareWorkspace), but the code scheduled activity PrepareCache",
		},
		{
			Divergence{EventID: 13, EventType: "MarkerRecorded", History: `marker Version of change "stage-batch"`},
			`at event 13 the history has MarkerRecorded (marker Version of change "stage-batch"), which the code does not match`,
		},
		{
			Divergence{EventID: 50, History: "nothing: it ends before that event", Code: "scheduled activity Notify"},
			"at event 50 the history has nothing: it ends before that event, but the code scheduled activity Notify",
		},
		{
			Divergence{Code: "started a timer"},
			"the code started a timer, which the history does not have",
		},
		{
			Divergence{},
			"the code decides differently from the history (see the SDK's message)",
		},
	}
	for _, tt := range tests {
		if got := tt.d.Explain(); got != tt.want {
			t.Errorf("Explain() = %q, want %q", got, tt.want)
		}
	}
}

// TestEventText says what the events of testdata/linear.json record.
func TestEventText(t *testing.T) {
	events := readHistory(t, "linear.json").Events
	for id, want := range map[int64]string{
		5:  "search attributes SluiceStatus",
		6:  "a timer of 1h0m0s",
		7:  "activity PrepareWorkspace",
		13: `marker Version of change "step-batches"`,
		49: "the workflow's completion",
	} {
		if got := eventText(eventByID(events, id)); got != want {
			t.Errorf("event %d: %q, want %q", id, got, want)
		}
	}
}
