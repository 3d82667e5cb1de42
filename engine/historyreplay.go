package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Replaying a recorded history against this build's workflow code is how
// an upgrade is checked before it is rolled out (sluice replay, docs/
// operations.md): a worker of the new build takes up the workflows in
// flight by replaying their histories, and a change that makes the code
// decide differently from what a history recorded (an activity scheduled
// where the history has another, a timer more or less) stops them. The
// Temporal SDK's replayer finds that; its message names the command it
// missed, not always where the code went another way, so the replay also
// notes the commands the code asks for (callRecorder) and compares them,
// workflow task by workflow task, with the history's (diverge).

// The results of a replay (HistoryReplay.Result).
const (
	// ReplayOK: the code makes the decisions the history recorded.
	ReplayOK = "ok"
	// ReplayNondeterministic: the code decides differently at some event
	// (HistoryReplay.Divergence); a worker of this build would stop the
	// workflow there.
	ReplayNondeterministic = "nondeterministic"
	// ReplayFailed: the replay failed for another reason (Error): the
	// build has no workflow of the history's type, or the code panicked.
	ReplayFailed = "failed"
	// ReplayUnavailable: the history could not be fetched or read, so
	// nothing was replayed (Error says why).
	ReplayUnavailable = "unavailable"
)

// HistoryReplay is what replaying one workflow execution's recorded
// history found.
type HistoryReplay struct {
	// WorkflowID and RunID name the execution (a run's ID is its
	// WorkflowID; RunID is Temporal's ID of one execution of it).
	WorkflowID   string `json:"workflow_id,omitempty"`
	RunID        string `json:"run_id,omitempty"`
	WorkflowType string `json:"workflow_type,omitempty"`
	// File is where the history was read from, when it was.
	File string `json:"file,omitempty"`
	// Events is how many events the history has.
	Events int    `json:"events,omitempty"`
	Result string `json:"result"`
	// Divergence is where the code decided differently, for a
	// nondeterministic result.
	Divergence *Divergence `json:"divergence,omitempty"`
	// Error says why a replay failed or a history was unavailable.
	Error string `json:"error,omitempty"`
}

// Failed says whether the replay found a problem (a divergence or another
// failure); an unavailable history is not counted as one.
func (r HistoryReplay) Failed() bool {
	return r.Result == ReplayNondeterministic || r.Result == ReplayFailed
}

// Divergence is where the code left the recorded history: the event, what
// the history has there and what the code did instead.
type Divergence struct {
	// EventID and EventType are the history's event where the code went
	// another way (EventID 0 when it could not be told).
	EventID   int64  `json:"event_id"`
	EventType string `json:"event_type,omitempty"`
	// History is what the history recorded there ("activity RunStep",
	// "a timer of 1h0m0s"); Code what the code did instead ("scheduled
	// activity Announce", "made no command").
	History string `json:"history,omitempty"`
	Code    string `json:"code,omitempty"`
	// SDK is the Temporal SDK's own message.
	SDK string `json:"sdk"`
}

// Explain says in one sentence where and how the code diverged.
func (d Divergence) Explain() string {
	if d.EventID == 0 {
		if d.Code != "" {
			return "the code " + d.Code + ", which the history does not have"
		}
		return "the code decides differently from the history (see the SDK's message)"
	}
	what := d.EventType
	switch {
	case what == "":
		what = d.History
	case d.History != "":
		what += " (" + d.History + ")"
	}
	where := fmt.Sprintf("at event %d the history has %s", d.EventID, what)
	if d.Code == "" {
		return where + ", which the code does not match"
	}
	return where + ", but the code " + d.Code
}

// replayAttempts bounds the replays of a history that the SDK's deadlock
// detector stopped: on a loaded machine a workflow task can take over its
// second without any deadlock.
const replayAttempts = 3

// ReplayHistory replays a recorded history against the workflow code that
// register registers (RegisterWorkflowTypes, and the server's), as a
// worker of this build would when it takes the workflow up.
func ReplayHistory(h *historypb.History, register func(worker.WorkflowRegistry)) HistoryReplay {
	rep := describeHistory(h)
	if err := checkHistory(h); err != nil {
		rep.Result, rep.Error = ReplayUnavailable, err.Error()
		return rep
	}
	if len(h.GetEvents()) < 3 {
		// Started, and its first workflow task not taken yet: the code
		// has decided nothing there is to check.
		rep.Result = ReplayOK
		return rep
	}
	var err error
	var rec *callRecorder
	for range replayAttempts {
		rec = &callRecorder{}
		err = replayOnce(h, register, rec, rep.WorkflowID, rep.RunID)
		if err == nil || !strings.Contains(err.Error(), "TMPRL1101") {
			break
		}
	}
	switch {
	case err == nil:
		rep.Result = ReplayOK
	case strings.Contains(err.Error(), "TMPRL1100"):
		rep.Result = ReplayNondeterministic
		d := diverge(h.GetEvents(), rec.recorded(), err.Error())
		rep.Divergence = &d
	default:
		rep.Result, rep.Error = ReplayFailed, err.Error()
	}
	return rep
}

var discardLogger = log.NewStructuredLogger(slog.New(slog.DiscardHandler))

// replayOnce replays h once, noting the code's commands in rec.
func replayOnce(h *historypb.History, register func(worker.WorkflowRegistry), rec *callRecorder, workflowID, runID string) (err error) {
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
		Interceptors: []interceptor.WorkerInterceptor{rec},
	})
	if err != nil {
		return err
	}
	register(r)
	defer func() {
		// The SDK's replayer trusts the history it is given; one read
		// from a file may hold anything.
		if p := recover(); p != nil {
			err = fmt.Errorf("the replay panicked: %v", p)
		}
	}()
	return r.ReplayWorkflowHistoryWithOptions(discardLogger, h, worker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: workflowID, RunID: runID},
	})
}

// describeHistory names the execution a history is of, from its first
// event.
func describeHistory(h *historypb.History) HistoryReplay {
	rep := HistoryReplay{Events: len(h.GetEvents())}
	if len(h.GetEvents()) == 0 {
		return rep
	}
	a := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
	rep.WorkflowID = a.GetWorkflowId()
	rep.RunID = a.GetOriginalExecutionRunId()
	rep.WorkflowType = a.GetWorkflowType().GetName()
	return rep
}

// checkHistory refuses what is not a workflow history.
func checkHistory(h *historypb.History) error {
	events := h.GetEvents()
	if len(events) == 0 {
		return errors.New("not a workflow history: it has no events")
	}
	if events[0].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED || events[0].GetWorkflowExecutionStartedEventAttributes() == nil {
		return fmt.Errorf("not a workflow history: its first event is %s, not WorkflowExecutionStarted", events[0].GetEventType())
	}
	return nil
}

// FetchHistory reads the whole history of a workflow execution: runID's,
// or the latest execution's when runID is empty.
func FetchHistory(ctx context.Context, c client.Client, workflowID, runID string) (*historypb.History, error) {
	var events []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("fetching the history of %q: %w", workflowID, err)
		}
		events = append(events, ev)
	}
	return &historypb.History{Events: events}, nil
}

// codeCall is a command the workflow code asked for during a replay.
type codeCall struct {
	// task is the WorkflowTaskStarted event of the workflow task that
	// asked for it: the history records its command after that task's
	// WorkflowTaskCompleted.
	task int64
	kind string
	// name is the activity's or child workflow's type, or the signal's
	// name; compared for those kinds only.
	name string
	// what says it for people: "scheduled activity RunStep".
	what string
}

// The kinds of commands compared, in the code and in the history.
const (
	callActivity = "activity"
	callTimer    = "timer"
	callChild    = "child workflow"
	callSignal   = "signal"
	callCancel   = "cancel"
	callUpsert   = "search attributes"
	callMemo     = "memo"
	callEnd      = "end"
)

// callRecorder notes the commands the workflow code asks for: activities,
// timers, child workflows, signals and cancellations of other workflows,
// search attributes and memo, and its end. Markers (GetVersion, which
// makes no command where the history has no marker, SideEffect), the
// search attribute GetVersion sets and the cancellation of its own
// activities and timers are not seen here; a divergence in those is told
// by the SDK's message alone.
type callRecorder struct {
	interceptor.WorkerInterceptorBase
	mu    sync.Mutex
	calls []codeCall
}

func (r *callRecorder) recorded() []codeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// add notes a command asked for under ctx.
func (r *callRecorder) add(ctx workflow.Context, kind, name, what string) {
	// A command asked for under a cancelled context is dropped before it
	// is sent: the history never has it.
	if ctx.Err() != nil {
		return
	}
	r.note(ctx, kind, name, what)
}

func (r *callRecorder) note(ctx workflow.Context, kind, name, what string) {
	task := int64(workflow.GetInfo(ctx).GetCurrentHistoryLength())
	r.mu.Lock()
	r.calls = append(r.calls, codeCall{task: task, kind: kind, name: name, what: what})
	r.mu.Unlock()
}

// InterceptWorkflow implements interceptor.WorkerInterceptor.
func (r *callRecorder) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &recordingInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, rec: r}
}

type recordingInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	rec *callRecorder
}

func (i *recordingInbound) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&recordingOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, rec: i.rec})
}

func (i *recordingInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	res, err := i.Next.ExecuteWorkflow(ctx, in)
	var what string
	switch {
	case err == nil:
		what = "completed the workflow"
	case workflow.IsContinueAsNewError(err):
		what = "continued the workflow as new"
	case temporal.IsCanceledError(err):
		what = "ended the workflow cancelled"
	default:
		what = "failed the workflow: " + firstLine(err.Error())
	}
	// The end is noted whatever the context: a cancelled workflow ends
	// too.
	i.rec.note(ctx, callEnd, "", what)
	return res, err
}

type recordingOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	rec *callRecorder
}

func (o *recordingOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	o.rec.add(ctx, callActivity, activityType, "scheduled activity "+activityType)
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

func (o *recordingOutbound) ExecuteChildWorkflow(ctx workflow.Context, childWorkflowType string, args ...any) workflow.ChildWorkflowFuture {
	o.rec.add(ctx, callChild, childWorkflowType, "started child workflow "+childWorkflowType)
	return o.Next.ExecuteChildWorkflow(ctx, childWorkflowType, args...)
}

// NewTimer and NewTimerWithOptions see every timer: Sleep, AwaitWithTimeout
// and the SDK's own helpers make theirs with workflow.NewTimerWithOptions,
// which comes through here again.
func (o *recordingOutbound) NewTimer(ctx workflow.Context, d time.Duration) workflow.Future {
	o.timer(ctx, d)
	return o.Next.NewTimer(ctx, d)
}

func (o *recordingOutbound) NewTimerWithOptions(ctx workflow.Context, d time.Duration, options workflow.TimerOptions) workflow.Future {
	o.timer(ctx, d)
	return o.Next.NewTimerWithOptions(ctx, d, options)
}

func (o *recordingOutbound) timer(ctx workflow.Context, d time.Duration) {
	// A timer of no time is ready at once, without a command.
	if d > 0 {
		o.rec.add(ctx, callTimer, "", "started a timer of "+d.String())
	}
}

func (o *recordingOutbound) SignalExternalWorkflow(ctx workflow.Context, workflowID, runID, signalName string, arg any) workflow.Future {
	o.rec.add(ctx, callSignal, signalName, fmt.Sprintf("sent signal %q to %s", signalName, workflowID))
	return o.Next.SignalExternalWorkflow(ctx, workflowID, runID, signalName, arg)
}

func (o *recordingOutbound) UpsertSearchAttributes(ctx workflow.Context, attributes map[string]any) error {
	//workflowcheck:ignore sortedStrings sorts the keys it collects
	o.upserted(ctx, sortedStrings(attributes))
	return o.Next.UpsertSearchAttributes(ctx, attributes)
}

func (o *recordingOutbound) UpsertTypedSearchAttributes(ctx workflow.Context, attributes ...temporal.SearchAttributeUpdate) error {
	names := map[string]bool{}
	//workflowcheck:ignore the names are collected into a map, then sorted
	for k := range temporal.NewSearchAttributes(attributes...).GetUntypedValues() {
		names[k.GetName()] = true
	}
	//workflowcheck:ignore sortedStrings sorts the keys it collects
	o.upserted(ctx, sortedStrings(names))
	return o.Next.UpsertTypedSearchAttributes(ctx, attributes...)
}

// upserted notes search attributes set, whatever the context: setting
// them is not cancelled.
func (o *recordingOutbound) upserted(ctx workflow.Context, keys []string) {
	o.rec.note(ctx, callUpsert, "", "set search attributes "+strings.Join(keys, ", "))
}

func (o *recordingOutbound) UpsertMemo(ctx workflow.Context, memo map[string]any) error {
	//workflowcheck:ignore sortedStrings sorts the keys it collects
	o.rec.note(ctx, callMemo, "", "set memo "+strings.Join(sortedStrings(memo), ", "))
	return o.Next.UpsertMemo(ctx, memo)
}

func (o *recordingOutbound) RequestCancelExternalWorkflow(ctx workflow.Context, workflowID, runID string) workflow.Future {
	o.rec.add(ctx, callCancel, "", "asked to cancel "+workflowID)
	return o.Next.RequestCancelExternalWorkflow(ctx, workflowID, runID)
}

// historyCommand is an event of the history that a command of the code
// made, of a kind callRecorder sees.
type historyCommand struct {
	event *historypb.HistoryEvent
	kind  string
	name  string
}

// commandKind is the kind of a history event as callRecorder would see the
// command that made it, and its name; "" for events it would not see.
func commandKind(e *historypb.HistoryEvent) (kind, name string) {
	switch e.GetEventType() {
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
		return callActivity, e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
	case enumspb.EVENT_TYPE_TIMER_STARTED:
		return callTimer, ""
	case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
		return callChild, e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowType().GetName()
	case enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
		return callSignal, e.GetSignalExternalWorkflowExecutionInitiatedEventAttributes().GetSignalName()
	case enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
		return callCancel, ""
	case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
		// GetVersion sets TemporalChangeVersion beside its marker.
		if _, ok := e.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields()[changeVersionAttr]; ok {
			return "", ""
		}
		return callUpsert, ""
	case enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
		return callMemo, ""
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
		return callEnd, ""
	}
	return "", ""
}

// changeVersionAttr is the search attribute GetVersion keeps the changes
// of an execution in.
const changeVersionAttr = "TemporalChangeVersion"

// sameCommand says whether the code's call made the history's event, as
// the SDK compares them: activities by type (the last part of its name),
// child workflows by type, signals by name, the rest by kind.
func sameCommand(h historyCommand, c codeCall) bool {
	if h.kind != c.kind {
		return false
	}
	switch h.kind {
	case callActivity, callChild, callSignal:
		return lastPart(h.name) == lastPart(c.name)
	}
	return true
}

func lastPart(name string) string {
	if i := strings.LastIndex(name, "."); i >= 0 && i < len(name)-1 {
		return name[i+1:]
	}
	return name
}

// diverge finds where the code's calls leave the history's commands. The
// SDK's message names an event near where it stopped (at); the workflow
// tasks the code ran up to there are compared command by command, in
// order, and the first that differs is the divergence. When none does
// (the difference is in a marker or a cancellation), the SDK's event is.
func diverge(events []*historypb.HistoryEvent, calls []codeCall, sdk string) Divergence {
	msg := parseSDKMessage(sdk)
	at := msg.locate(events)

	// The workflow tasks the history completed, in order, with the
	// commands each made; the code ran each of them before the SDK read
	// the events after it.
	var tasks []int64
	completedAt := map[int64]int64{}
	made := map[int64][]historyCommand{}
	var task int64
	for _, e := range events {
		if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			task = e.GetWorkflowTaskCompletedEventAttributes().GetStartedEventId()
			tasks = append(tasks, task)
			completedAt[task] = e.GetEventId()
			continue
		}
		if kind, name := commandKind(e); kind != "" && task != 0 {
			made[task] = append(made[task], historyCommand{event: e, kind: kind, name: name})
		}
	}
	calledIn := map[int64][]codeCall{}
	var lastCalled int64
	for _, c := range calls {
		calledIn[c.task] = append(calledIn[c.task], c)
		lastCalled = max(lastCalled, c.task)
	}
	// The tasks whose commands the SDK checked: those completed before
	// the event it stopped at, or, when its message names none, those the
	// code was seen in (or the first).
	checked := func(t int64) bool {
		switch {
		case at > 0:
			return completedAt[t] < at
		case lastCalled > 0:
			return t <= lastCalled
		}
		return len(tasks) > 0 && t == tasks[0]
	}
	for _, t := range tasks {
		if !checked(t) {
			break
		}
		h, c := made[t], calledIn[t]
		for i := range max(len(h), len(c)) {
			switch {
			case i >= len(c):
				return Divergence{EventID: h[i].event.GetEventId(), EventType: h[i].event.GetEventType().String(), History: eventText(h[i].event),
					Code: "made no such command in that workflow task", SDK: sdk}
			case i >= len(h):
				return Divergence{EventID: completedAt[t], EventType: enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED.String(),
					History: "no further command of that workflow task", Code: c[i].what, SDK: sdk}
			case !sameCommand(h[i], c[i]):
				return Divergence{EventID: h[i].event.GetEventId(), EventType: h[i].event.GetEventType().String(), History: eventText(h[i].event),
					Code: c[i].what, SDK: sdk}
			}
		}
	}
	d := Divergence{EventID: at, SDK: sdk, Code: msg.codeText()}
	if e := eventByID(events, at); e != nil {
		d.EventType, d.History = e.GetEventType().String(), eventText(e)
	} else if at > 0 {
		d.History = "nothing: it ends before that event"
	}
	return d
}

func eventByID(events []*historypb.HistoryEvent, id int64) *historypb.HistoryEvent {
	if id <= 0 {
		return nil
	}
	// Event IDs count from 1 without gaps; search in case a history
	// does not.
	if i := int(id - 1); i < len(events) && events[i].GetEventId() == id {
		return events[i]
	}
	for _, e := range events {
		if e.GetEventId() == id {
			return e
		}
	}
	return nil
}

// eventText says what an event records, for people.
func eventText(e *historypb.HistoryEvent) string {
	switch e.GetEventType() {
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
		return "activity " + e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
	case enumspb.EVENT_TYPE_TIMER_STARTED:
		return "a timer of " + e.GetTimerStartedEventAttributes().GetStartToFireTimeout().AsDuration().String()
	case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
		return "child workflow " + e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowType().GetName()
	case enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
		a := e.GetSignalExternalWorkflowExecutionInitiatedEventAttributes()
		return fmt.Sprintf("signal %q to %s", a.GetSignalName(), a.GetWorkflowExecution().GetWorkflowId())
	case enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
		return "cancelling " + e.GetRequestCancelExternalWorkflowExecutionInitiatedEventAttributes().GetWorkflowExecution().GetWorkflowId()
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
		return "the workflow's completion"
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
		return "the workflow's failure"
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
		return "the workflow's cancellation"
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
		return "the workflow continuing as new"
	case enumspb.EVENT_TYPE_MARKER_RECORDED:
		a := e.GetMarkerRecordedEventAttributes()
		s := "marker " + a.GetMarkerName()
		var change string
		if p := a.GetDetails()["change-id"]; p != nil && converter.GetDefaultDataConverter().FromPayloads(p, &change) == nil && change != "" {
			s += fmt.Sprintf(" of change %q", change)
		}
		return s
	case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
		var keys []string
		for k := range e.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields() {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return "search attributes " + strings.Join(keys, ", ")
	case enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
		return "memo " + strings.Join(slices.Sorted(maps.Keys(e.GetWorkflowPropertiesModifiedEventAttributes().GetUpsertedMemo().GetFields())), ", ")
	}
	return ""
}

// firstLine is the first line of an error, at most 200 bytes of it.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// sdkMessage is what the SDK's nondeterminism message says: the event it
// could not match (its type and attributes, or the ID of the command it
// expected there) and the command the code made instead, when it says.
//
// The SDK words it in one of these ways (go.temporal.io/sdk internal,
// TMPRL1100):
//
//	During replay, a matching Timer command was expected in history event position 6. ...
//	nondeterministic workflow: missing replay command for ActivityTaskScheduled: (ActivityId:7, ...)
//	nondeterministic workflow: extra replay command for ScheduleActivityTask: (ActivityId:7, ...)
//	nondeterministic workflow: history event is ActivityTaskScheduled: (...), replay command is ScheduleActivityTask: (...)
//	lookup failed for scheduledEventID to activityID: scheduleEventID: 7, activityID: 7
type sdkMessage struct {
	// eventType and eventAttrs describe the history's event.
	eventType, eventAttrs string
	// commandType and commandAttrs describe the code's command.
	commandType, commandAttrs string
	// expected is the kind of command (Activity, Timer...) expected at
	// position, the ID of the command the SDK looked for.
	expected, position string
	// eventID is an event the message names by ID.
	eventID int64
	// missing says the code did not make the command the history has.
	missing bool
}

func parseSDKMessage(s string) sdkMessage {
	var m sdkMessage
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if _, rest, ok := strings.Cut(s, "a matching "); ok {
		kind, rest, _ := strings.Cut(rest, " command was expected in history event position ")
		pos, _, _ := strings.Cut(rest, ". ")
		m.expected, m.position, m.missing = kind, strings.TrimSuffix(pos, "."), true
		return m
	}
	if _, rest, ok := strings.Cut(s, "missing replay command for "); ok {
		m.eventType, m.eventAttrs = splitTyped(rest)
		m.missing = true
		return m
	}
	if _, rest, ok := strings.Cut(s, "extra replay command for "); ok {
		m.commandType, m.commandAttrs = splitTyped(rest)
		return m
	}
	if _, rest, ok := strings.Cut(s, "history event is "); ok {
		event, command, _ := strings.Cut(rest, ", replay command is ")
		m.eventType, m.eventAttrs = splitTyped(event)
		m.commandType, m.commandAttrs = splitTyped(command)
		return m
	}
	if _, rest, ok := strings.Cut(s, "for the event: "); ok {
		m.eventType, m.eventAttrs = splitTyped(rest)
		return m
	}
	for _, key := range []string{"scheduleEventID", "scheduledEventID", "event ID", "eventID"} {
		if v := attr(s, key); v != "" {
			if id, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				m.eventID = id
				m.missing = true
				return m
			}
		}
	}
	return m
}

// splitTyped splits "ActivityTaskScheduled: (ActivityId:7, ...)" into the
// type and the attributes.
func splitTyped(s string) (typ, attrs string) {
	typ, attrs, _ = strings.Cut(strings.TrimSpace(s), ": ")
	return typ, attrs
}

// attr is the value of key in the SDK's rendering of attributes,
// "(Key:value, Other:(Name:x))": up to the next comma or parenthesis.
func attr(s, key string) string {
	for i := 0; ; {
		j := strings.Index(s[i:], key+":")
		if j < 0 {
			return ""
		}
		j += i
		// A whole key: not the end of a longer one (TimerId in
		// StartedTimerId).
		if j > 0 && isIdentByte(s[j-1]) {
			i = j + len(key)
			continue
		}
		v := s[j+len(key)+1:]
		if end := strings.IndexAny(v, ",)"); end >= 0 {
			v = v[:end]
		}
		return strings.TrimSpace(v)
	}
}

func isIdentByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// locate finds the event the message names; 0 when it names none the
// history has, or the ID a command of the code would have had.
func (m sdkMessage) locate(events []*historypb.HistoryEvent) int64 {
	find := func(typ enumspb.EventType, id func(*historypb.HistoryEvent) string, want string) int64 {
		for _, e := range events {
			if e.GetEventType() == typ && (want == "" || id(e) == want) {
				return e.GetEventId()
			}
		}
		return 0
	}
	activityID := func(e *historypb.HistoryEvent) string {
		return e.GetActivityTaskScheduledEventAttributes().GetActivityId()
	}
	timerID := func(e *historypb.HistoryEvent) string { return e.GetTimerStartedEventAttributes().GetTimerId() }
	childID := func(e *historypb.HistoryEvent) string {
		return e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowId()
	}
	switch {
	case m.eventID > 0:
		return m.eventID
	case m.position != "":
		var id int64
		switch m.expected {
		case "Activity":
			id = find(enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, activityID, m.position)
		case "Timer":
			id = find(enumspb.EVENT_TYPE_TIMER_STARTED, timerID, m.position)
		case "ChildWorkflow":
			id = find(enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED, childID, m.position)
		}
		if id == 0 {
			id, _ = strconv.ParseInt(m.position, 10, 64)
		}
		return id
	case m.eventType != "":
		typ, err := enumspb.EventTypeFromString(m.eventType)
		if err != nil {
			return 0
		}
		if v := attr(m.eventAttrs, "EventId"); v != "" {
			id, _ := strconv.ParseInt(v, 10, 64)
			return id
		}
		switch typ {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			return find(typ, activityID, attr(m.eventAttrs, "ActivityId"))
		case enumspb.EVENT_TYPE_TIMER_STARTED:
			return find(typ, timerID, attr(m.eventAttrs, "TimerId"))
		case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			return find(typ, childID, attr(m.eventAttrs, "WorkflowId"))
		}
		return find(typ, nil, "")
	case m.commandType != "":
		// An extra command: its ID is the event it would have made.
		for _, key := range []string{"ActivityId", "TimerId"} {
			if id, err := strconv.ParseInt(attr(m.commandAttrs, key), 10, 64); err == nil {
				return id
			}
		}
	}
	return 0
}

// codeText says what the code did, as far as the message tells.
func (m sdkMessage) codeText() string {
	switch {
	case m.commandType != "":
		switch m.commandType {
		case "ScheduleActivityTask":
			return "scheduled activity " + lastPart(attr(m.commandAttrs, "ActivityType:(Name"))
		case "StartTimer":
			return "started a timer"
		case "StartChildWorkflowExecution":
			return "started child workflow " + attr(m.commandAttrs, "WorkflowType:(Name")
		case "RecordMarker":
			return "recorded marker " + attr(m.commandAttrs, "MarkerName")
		}
		return "made command " + m.commandType
	case m.missing:
		return "made no such command"
	}
	return ""
}
