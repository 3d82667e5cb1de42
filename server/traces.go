package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/engine"
)

// Traces.
//
// With OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// set, the server exports a trace per run: a span per execution of the
// run, a span per stage under it and a span per step under its stage. The
// server exports them, not the runners: it is the one process every run
// passes through, local `sluice run` included (the background server is
// started with the command's environment).
//
// The server looks for runs through Temporal's visibility (runs started
// by webhooks, git hooks, the API, schedules, `sluice run` and retries
// alike) and starts a Trace workflow per execution on a queue of its own
// (TraceQueue), polled only by servers that export traces. The workflow
// is one long activity, like Report's: it reads the run's status every
// few seconds and exports each stage and step once it has ended, with the
// start and end the workflow recorded, and the run's span when the run
// has ended. What it has exported travels in its heartbeats, so a server
// that dies is replaced by the next attempt, which goes on from there; and
// because every ID is derived from the run (engine.TraceID) and the
// span's place in it, a span exported twice is the same span. No
// OpenTelemetry call is made in workflow code.

// TraceWorkflowName is the Trace workflow's registered name.
const TraceWorkflowName = "Trace"

// TraceQueue is the task queue of the Trace workflows: only servers that
// export traces poll it, so that a server without the OpenTelemetry
// environment never takes a run's trace.
const TraceQueue = "sluice-traces"

// TraceInput names the execution of a run whose trace to export.
type TraceInput struct {
	RunID string `json:"run_id"`
	// Execution is the Temporal run ID of the execution: a retry is a new
	// execution, with spans of its own in the run's trace.
	Execution string `json:"execution"`
}

// TraceWorkflowID is the ID of the Trace workflow of one execution of a
// run.
func TraceWorkflowID(runID, execution string) string {
	return "trace-" + runID + "-" + execution
}

// Trace exports one execution of a run as spans. It is a workflow of its
// own beside the run, so that an OTLP collector that is down only delays
// the spans.
func Trace(ctx workflow.Context, in TraceInput) error {
	ctx = workflow.WithActivityOptions(ctx, traceActivity)
	var t *Tracer
	return workflow.ExecuteActivity(ctx, t.ExportRun, in).Get(ctx, nil)
}

var traceActivity = workflow.ActivityOptions{
	// A run may wait days for an approval.
	StartToCloseTimeout: 14 * 24 * time.Hour,
	// An export retries for up to traceExportTimeout between heartbeats.
	HeartbeatTimeout: time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: []string{errNotFound},
	},
}

// traceExportTimeout bounds one export, retries by the exporter included.
const traceExportTimeout = 30 * time.Second

// The span attributes. Every span has the run's (run ID, pipeline,
// repository, ref, SHA); stage and step spans those of their own.
const (
	attrRunID      = attribute.Key("sluice.run_id")
	attrExecution  = attribute.Key("sluice.execution")
	attrPipeline   = attribute.Key("sluice.pipeline")
	attrRepository = attribute.Key("sluice.repository")
	attrRef        = attribute.Key("sluice.ref")
	attrSHA        = attribute.Key("sluice.sha")
	attrStage      = attribute.Key("sluice.stage")
	attrStep       = attribute.Key("sluice.step")
	attrStepKind   = attribute.Key("sluice.step_kind")
	attrAttempt    = attribute.Key("sluice.attempt")
	attrRunner     = attribute.Key("sluice.runner")
	attrResult     = attribute.Key("sluice.result")
	attrReason     = attribute.Key("sluice.reason")
	attrResumed    = attribute.Key("sluice.resumed_from")
	attrDryRun     = attribute.Key("sluice.dry_run")
)

// TracesWanted reports whether the OpenTelemetry environment asks for
// traces: an OTLP endpoint is set, and neither OTEL_SDK_DISABLED nor
// OTEL_TRACES_EXPORTER=none turns them off.
func tracesWanted(getenv func(string) string) bool {
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return false
	}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	return !strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none")
}

// newTraceExporter makes the OTLP exporter the environment describes:
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL picks gRPC or HTTP (default
// http/protobuf, as the specification says); the exporters read the
// endpoint, headers, timeout, compression and TLS settings themselves.
func newTraceExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	proto, name := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if proto == "" {
		proto, name = getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch proto {
	case "grpc":
		return otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("%s=%q is not supported; use grpc or http/protobuf", name, proto)
	}
}

// traces is the server's part in exporting traces: the exporter, the
// worker of TraceQueue and the loop that finds runs.
type traces struct {
	exporter sdktrace.SpanExporter
	worker   worker.Worker
	stop     context.CancelFunc
	done     chan struct{}
}

// startTraces sets up trace export when the environment asks for it; nil
// when it does not.
func startTraces(ctx context.Context, c client.Client, home string, log *slog.Logger) (*traces, error) {
	if !tracesWanted(os.Getenv) {
		return nil, nil
	}
	exp, err := newTraceExporter(ctx, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("setting up trace export: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "sluice")),
		// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
		resource.WithFromEnv(),
	)
	if err != nil {
		log.Warn("reading the trace resource from the environment", "error", err)
	}
	t := &traces{exporter: exp, done: make(chan struct{})}
	t.worker = worker.New(c, TraceQueue, worker.Options{Identity: "sluice-server/traces"})
	registerTraceWorkflows(t.worker)
	t.worker.RegisterActivity(&Tracer{Client: c, Exporter: exp, Resource: res, Log: log})
	if err := t.worker.Start(); err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("starting the trace worker: %w", err)
	}
	loopCtx, stop := context.WithCancel(context.Background())
	t.stop = stop
	f := &runFinder{client: c, file: filepath.Join(home, "server", "traces-since"), log: log, every: 2 * time.Second}
	go func() {
		defer close(t.done)
		f.loop(loopCtx)
	}()
	return t, nil
}

// close stops finding runs and the worker (the Trace workflows go on in
// the next server that exports traces), then the exporter.
func (t *traces) close() {
	if t == nil {
		return
	}
	t.stop()
	<-t.done
	t.worker.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.exporter.Shutdown(ctx)
}

// runFinder starts a Trace workflow for every execution of a run that is
// running or has ended since it last looked. Where it got to is kept in
// file, so that runs that end while no server looks are exported when one
// is back; a server that never exported traces starts from now.
type runFinder struct {
	client client.Client
	file   string
	log    *slog.Logger
	every  time.Duration
	// started are the executions whose Trace workflow has been started,
	// among those the last look listed.
	started map[TraceInput]bool
}

// traceLag is how far back each look goes again: visibility is
// eventually consistent, and a run that ended a moment ago may be listed
// late.
const traceLag = time.Minute

func (f *runFinder) loop(ctx context.Context) {
	since := time.Now()
	if b, err := os.ReadFile(f.file); err == nil {
		if t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b))); err == nil {
			since = t
		}
	}
	for {
		began := time.Now()
		if err := f.look(ctx, since); err != nil {
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("looking for runs to trace", "error", err)
		} else {
			since = began.Add(-traceLag)
			_ = os.MkdirAll(filepath.Dir(f.file), 0o755)
			_ = os.WriteFile(f.file, []byte(since.UTC().Format(time.RFC3339Nano)+"\n"), 0o644)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.every):
		}
	}
}

// look starts the Trace workflows of the executions running or ended
// since.
func (f *runFinder) look(ctx context.Context, since time.Time) error {
	q := fmt.Sprintf("WorkflowType = '%s' AND (ExecutionStatus = 'Running' OR CloseTime >= '%s')",
		engine.WorkflowName, since.UTC().Format(time.RFC3339Nano))
	listed := map[TraceInput]bool{}
	var failed []error
	var token []byte
	for {
		resp, err := f.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return fmt.Errorf("listing runs (%s): %w", q, err)
		}
		for _, e := range resp.GetExecutions() {
			in := TraceInput{RunID: e.GetExecution().GetWorkflowId(), Execution: e.GetExecution().GetRunId()}
			if f.started[in] {
				listed[in] = true
				continue
			}
			if err := startTrace(ctx, f.client, in); err != nil {
				failed = append(failed, fmt.Errorf("starting the trace of run %q: %w", in.RunID, err))
				continue
			}
			listed[in] = true
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	f.started = listed
	// A run whose trace did not start is looked for again: the next look
	// goes back as far as this one.
	return errors.Join(failed...)
}

// startTrace starts the Trace workflow of an execution, unless it has
// been started before.
func startTrace(ctx context.Context, c client.Client, in TraceInput) error {
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       TraceWorkflowID(in.RunID, in.Execution),
		TaskQueue:                                TraceQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("trace %s", in.RunID),
	}, TraceWorkflowName, in)
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &dup) {
		return nil
	}
	return err
}

// Tracer is the activity that exports a run's spans.
type Tracer struct {
	Client   client.Client
	Exporter sdktrace.SpanExporter
	// Resource describes the server to the trace back end (service.name
	// and what OTEL_RESOURCE_ATTRIBUTES adds).
	Resource *resource.Resource
	// Poll is how often the run's status is read (default 2 s).
	Poll time.Duration
	Log  *slog.Logger
}

// traceState is what a trace has exported, in the activity's heartbeats.
type traceState struct {
	// Sent are the IDs of the spans exported, 8 bytes each.
	Sent []byte `json:"sent,omitempty"`
}

// ExportRun exports one execution of a run: each stage and step once it
// has ended, and the execution's own span when it has.
func (t *Tracer) ExportRun(ctx context.Context, in TraceInput) error {
	var state traceState
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &state)
	}
	sent := map[trace.SpanID]bool{}
	for b := state.Sent; len(b) >= 8; b = b[8:] {
		sent[trace.SpanID(b[:8])] = true
	}
	poll := t.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	for {
		st, ended, err := engine.ExecutionStatus(ctx, t.Client, in.RunID, in.Execution)
		if err != nil {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				return temporal.NewNonRetryableApplicationError(err.Error(), errNotFound, err)
			}
			return err
		}
		final := ended && st.State.Done()
		var todo []runSpan
		for _, s := range runSpans(in, st, final) {
			if !sent[s.id] {
				todo = append(todo, s)
			}
		}
		if len(todo) > 0 {
			if err := t.export(ctx, in.RunID, todo); err != nil {
				return fmt.Errorf("exporting the spans of run %q: %w", in.RunID, err)
			}
			for _, s := range todo {
				sent[s.id] = true
				state.Sent = append(state.Sent, s.id[:]...)
			}
		}
		activity.RecordHeartbeat(ctx, state)
		if final {
			if t.Log != nil {
				t.Log.Info("run traced", "run", in.RunID, "trace", engine.TraceID(in.RunID), "spans", len(sent))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// runSpan is a span to export, with the IDs it must have.
type runSpan struct {
	id, parent trace.SpanID
	name       string
	start, end time.Time
	attrs      []attribute.KeyValue
	// failed makes the span's status an error, with err as its
	// description.
	failed bool
	err    string
}

// runSpans are the spans of an execution that can be exported: those of
// the stages and steps that have ended, and at the end, the execution's
// and whatever was left open (with the execution's end). Stages and steps
// that never started (skipped, cancelled while waiting) have none; nor
// have the steps a retried run kept from the execution before it, whose
// spans that execution exported.
func runSpans(in TraceInput, st engine.RunStatus, final bool) []runSpan {
	runEnd := st.End
	if runEnd.IsZero() {
		// A terminated run recorded no end: its last stage's or step's.
		runEnd = st.Start
		for _, sg := range st.Stages {
			for _, t := range append([]time.Time{sg.End}, stepEnds(sg)...) {
				if t.After(runEnd) {
					runEnd = t
				}
			}
		}
	}
	common := []attribute.KeyValue{
		attrRunID.String(in.RunID),
		attrPipeline.String(st.Pipeline),
		attrRepository.String(st.Repo),
		attrRef.String(st.Ref),
		attrSHA.String(st.SHA),
	}
	with := func(more ...attribute.KeyValue) []attribute.KeyValue {
		return append(append(make([]attribute.KeyValue, 0, len(common)+len(more)), common...), more...)
	}
	runID := spanID(in.RunID, in.Execution)
	var out []runSpan
	for _, sg := range st.Stages {
		if sg.Start.IsZero() {
			continue
		}
		stageID := spanID(in.RunID, in.Execution, sg.ID)
		// A stage goes once it has ended; its steps that have ended go
		// before it.
		if final || sg.State.Done() && !sg.End.IsZero() {
			end := sg.End
			if end.IsZero() {
				end = runEnd
			}
			attrs := with(attrStage.String(sg.ID), attrRunner.String(sg.Runner), attrResult.String(string(sg.State)))
			if sg.Reason != "" {
				attrs = append(attrs, attrReason.String(sg.Reason))
			}
			out = append(out, runSpan{
				id: stageID, parent: runID,
				name: "stage " + sg.ID, start: sg.Start, end: end, attrs: attrs,
				failed: sg.State == engine.StateFailed, err: sg.Reason,
			})
		}
		for _, ss := range sg.Steps {
			if ss.Resumed || ss.Start.IsZero() || !final && (!ss.State.Done() || ss.End.IsZero()) {
				continue
			}
			end := ss.End
			if end.IsZero() {
				end = sg.End
			}
			if end.IsZero() {
				end = runEnd
			}
			attempt := max(ss.Attempt, 1)
			out = append(out, runSpan{
				id:     spanID(in.RunID, in.Execution, sg.ID, ss.Name, strconv.Itoa(attempt), strconv.Itoa(len(sg.Restarts))),
				parent: stageID,
				name:   "step " + ss.Name, start: ss.Start, end: end,
				attrs: with(attrStage.String(sg.ID), attrStep.String(ss.Name), attrStepKind.String(ss.Kind),
					attrAttempt.Int(attempt), attrRunner.String(sg.Runner), attrResult.String(string(ss.State))),
				failed: ss.State == engine.StateFailed, err: ss.Error,
			})
		}
	}
	if final {
		attrs := with(attrExecution.String(in.Execution), attrResult.String(string(st.State)))
		if st.ResumedFrom != "" {
			attrs = append(attrs, attrResumed.String(st.ResumedFrom))
		}
		if st.DryRun {
			attrs = append(attrs, attrDryRun.Bool(true))
		}
		out = append(out, runSpan{
			id: runID, name: "run " + st.Pipeline, start: st.Start, end: runEnd, attrs: attrs,
			failed: st.State == engine.StateFailed, err: st.Error,
		})
	}
	return out
}

func stepEnds(sg engine.StageStatus) []time.Time {
	out := make([]time.Time, len(sg.Steps))
	for i, ss := range sg.Steps {
		out[i] = ss.End
	}
	return out
}

// spanID derives a span's ID from where it is in its run: an execution,
// a stage of it, a step of the stage at an attempt after so many restarts
// of the stage on a new runner.
func spanID(parts ...string) trace.SpanID {
	h := sha256.New()
	h.Write([]byte("sluice span"))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	var id trace.SpanID
	copy(id[:], h.Sum(nil))
	if !id.IsValid() {
		id[7] = 1
	}
	return id
}

// export makes spans with the IDs and times given and hands them to the
// exporter, returning its error: a span is taken for exported only once
// the collector has it.
func (t *Tracer) export(ctx context.Context, runID string, spans []runSpan) error {
	tid := trace.TraceID(engine.TraceIDBytes(runID))
	col := &spanCollector{}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(fixedIDs{}),
		sdktrace.WithSpanProcessor(col),
	}
	if t.Resource != nil {
		opts = append(opts, sdktrace.WithResource(t.Resource))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer("github.com/sluice-ci/sluice/server")
	for _, s := range spans {
		sctx := context.WithValue(context.Background(), spanIDsKey{}, spanIDs{trace: tid, span: s.id})
		start := []trace.SpanStartOption{trace.WithTimestamp(s.start), trace.WithAttributes(s.attrs...)}
		if s.parent.IsValid() {
			sctx = trace.ContextWithRemoteSpanContext(sctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: s.parent, TraceFlags: trace.FlagsSampled, Remote: true,
			}))
		} else {
			start = append(start, trace.WithNewRoot())
		}
		_, span := tr.Start(sctx, s.name, start...)
		if s.failed {
			span.SetStatus(codes.Error, s.err)
		}
		span.End(trace.WithTimestamp(s.end))
	}
	ctx, cancel := context.WithTimeout(ctx, traceExportTimeout)
	defer cancel()
	return t.Exporter.ExportSpans(ctx, col.spans)
}

// spanIDsKey carries the IDs the next span must have to fixedIDs.
type spanIDsKey struct{}

type spanIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// fixedIDs gives a span the IDs its context carries: the SDK's only way
// to make a span with IDs of one's choosing.
type fixedIDs struct{}

func (fixedIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	ids := ctx.Value(spanIDsKey{}).(spanIDs)
	return ids.trace, ids.span
}

func (fixedIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	return ctx.Value(spanIDsKey{}).(spanIDs).span
}

// spanCollector keeps the spans that end, for one export.
type spanCollector struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (c *spanCollector) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (c *spanCollector) OnEnd(s sdktrace.ReadOnlySpan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, s)
}

func (c *spanCollector) Shutdown(context.Context) error   { return nil }
func (c *spanCollector) ForceFlush(context.Context) error { return nil }
