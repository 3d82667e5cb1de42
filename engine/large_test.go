package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// Large runs (issue 11). Temporal's default limits per workflow execution:
// a history of at most 51,200 events or 50 MB (it warns at 10,240 events
// and 10 MB), payloads of at most 2 MB, at most 2,000 pending activities.
// These tests run large runs on a real server (a matrix of as many
// instances as a stage may have, 1,000 stages as a DAG and with nothing
// between them, outputs too large for one payload) and hold each to half
// of each limit; docs/benchmarks.md records the figures ("Large runs
// (issue 11)").
const (
	halfHistoryEvents     = 51200 / 2
	halfHistoryBytes      = 50 << 20 / 2
	halfPayloadBytes      = 2 << 20 / 2
	halfPendingActivities = 2000 / 2
)

// largeFigures are the sizes of one run's workflow execution.
type largeFigures struct {
	events, historyBytes int64
	// input is the size of the workflow's input (the plan); result of its
	// result (the final RunStatus); status of the status query's answer.
	input, result, status int
	// largestEvent is the size of the largest event of the history.
	largestEvent int
	// peakPending is the most activities scheduled and not yet closed at
	// once.
	peakPending int
	activities  int
	took        time.Duration
	// taskTimeout is the run's workflow task timeout.
	taskTimeout time.Duration
	// history is the whole history, for replaying.
	history *historypb.History
}

func (f largeFigures) String() string {
	return fmt.Sprintf("%d events, %d bytes of history (%.1f KB per event), largest event %d bytes, input %d bytes, result %d bytes, status query %d bytes, %d activities (at most %d pending at once), %s",
		f.events, f.historyBytes, float64(f.historyBytes)/float64(f.events)/1024, f.largestEvent, f.input, f.result, f.status, f.activities, f.peakPending, f.took.Round(10*time.Millisecond))
}

// check holds the figures to half of Temporal's limits.
func (f largeFigures) check(t testing.TB) {
	t.Helper()
	for _, c := range []struct {
		what      string
		got, half int64
	}{
		{"history events", f.events, halfHistoryEvents},
		{"history bytes", f.historyBytes, halfHistoryBytes},
		{"the largest event", int64(f.largestEvent), halfPayloadBytes},
		{"the workflow's input", int64(f.input), halfPayloadBytes},
		{"the workflow's result", int64(f.result), halfPayloadBytes},
		{"the status query's answer", int64(f.status), halfPayloadBytes},
		{"pending activities", int64(f.peakPending), halfPendingActivities},
	} {
		if c.got >= c.half {
			t.Errorf("%s: %d, not under half of Temporal's limit (%d)", c.what, c.got, c.half)
		}
	}
}

// measureRun waits for a run to end and measures its execution.
func measureRun(t testing.TB, ctx context.Context, c client.Client, runID string, started time.Time) (RunStatus, largeFigures) {
	t.Helper()
	var f largeFigures
	if err := c.GetWorkflow(ctx, runID, "").Get(ctx, nil); err != nil {
		t.Logf("run %s: %v", runID, err)
	}
	f.took = time.Since(started)
	desc, err := c.DescribeWorkflowExecution(ctx, runID, "")
	if err != nil {
		t.Fatal(err)
	}
	info := desc.GetWorkflowExecutionInfo()
	f.events, f.historyBytes = info.GetHistoryLength(), info.GetHistorySizeBytes()
	f.taskTimeout = desc.GetExecutionConfig().GetDefaultWorkflowTaskTimeout().AsDuration()

	pending := 0
	f.history = &historypb.History{}
	it := c.GetWorkflowHistory(ctx, runID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		f.history.Events = append(f.history.Events, ev)
		f.largestEvent = max(f.largestEvent, proto.Size(ev))
		switch a := ev.GetAttributes().(type) {
		case *historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes:
			f.input = proto.Size(a.WorkflowExecutionStartedEventAttributes.GetInput())
		case *historypb.HistoryEvent_WorkflowExecutionCompletedEventAttributes:
			f.result = proto.Size(a.WorkflowExecutionCompletedEventAttributes.GetResult())
		case *historypb.HistoryEvent_WorkflowExecutionFailedEventAttributes:
			f.result = proto.Size(a.WorkflowExecutionFailedEventAttributes.GetFailure())
		case *historypb.HistoryEvent_ActivityTaskScheduledEventAttributes:
			f.activities++
			pending++
			f.peakPending = max(f.peakPending, pending)
		case *historypb.HistoryEvent_ActivityTaskCompletedEventAttributes,
			*historypb.HistoryEvent_ActivityTaskFailedEventAttributes,
			*historypb.HistoryEvent_ActivityTaskTimedOutEventAttributes,
			*historypb.HistoryEvent_ActivityTaskCanceledEventAttributes:
			pending--
		}
	}

	v, err := c.QueryWorkflow(ctx, runID, "", QueryStatus)
	if err != nil {
		t.Fatal(err)
	}
	var raw json.RawMessage
	if err := v.Get(&raw); err != nil {
		t.Fatal(err)
	}
	f.status = len(raw)
	var st RunStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st, f
}

// compileHCL compiles a pipeline written as one file.
func compileHCL(t testing.TB, src string) plan.Plan {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	files, diags := dsl.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, diags := dsl.Compile(files, dsl.Options{Git: plan.Git{
		SHA: "0123456789abcdef0123456789abcdef01234567", Branch: "main", Ref: "refs/heads/main",
		Event: "push", Repo: "acme/web",
	}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return *p
}

// matrix256 is a pipeline whose test stage has the most instances a
// matrix may have (dsl.MaxMatrix), two no-op steps each, between a build
// and a stage that needs every instance.
const matrix256 = `
pipeline "matrix256" {
  on "push" { branches = ["main"] }
}
stage "build" {
  step "run" "compile" {
    command = ["ok", "digest=sha256:feed"]
    outputs = ["digest"]
  }
}
stage "test" {
  matrix {
    a = range(16)
    b = range(16)
  }
  env = { CELL = "${matrix.a}-${matrix.b}" }
  step "run" "unit" {
    command = ["ok", "image=${step.compile.digest}"]
  }
  step "run" "report" {
    command = ["env", "CELL"]
  }
}
stage "summary" {
  step "run" "collect" {
    command = ["ok"]
  }
}
`

// thousandStages is a pipeline of 1,000 stages: 100 services of ten
// stages each. A service's build needs the build of the service before it
// in a binary tree (so builds fan out); its unit, lint, vet and
// integration stages need the build; package needs all four (a fan-in);
// scan, publish, deploy and smoke follow in a chain. Stages have one to
// three steps; outputs pass between steps of a stage and across stages.
func thousandStages() string {
	var b strings.Builder
	b.WriteString("pipeline \"large\" {\n  on \"push\" { branches = [\"main\"] }\n}\n")
	for i := range 100 {
		needs := "[]"
		if i > 0 {
			needs = fmt.Sprintf("[stage.build-%02d]", (i-1)/2)
		}
		fmt.Fprintf(&b, `stage "build-%02[1]d" {
  needs = %[2]s
  env = { SERVICE = "svc%02[1]d" }
  step "run" "fetch-%02[1]d" { command = ["ok"] }
  step "run" "compile-%02[1]d" {
    command = ["ok", "digest=sha256:%02[1]d"]
    outputs = ["digest"]
  }
  step "run" "sbom-%02[1]d" { command = ["ok", "of=${step.compile-%02[1]d.digest}"] }
}
`, i, needs)
		for _, s := range []string{"unit", "lint", "vet", "integration"} {
			fmt.Fprintf(&b, "stage \"%[2]s-%02[1]d\" {\n  needs = [stage.build-%02[1]d]\n  step \"run\" \"%[2]s-%02[1]d\" { command = [\"env\", \"SERVICE\"] }\n", i, s)
			if s == "unit" || s == "integration" {
				fmt.Fprintf(&b, "  step \"run\" \"%[2]s-report-%02[1]d\" { command = [\"ok\"] }\n", i, s)
			}
			b.WriteString("}\n")
		}
		fmt.Fprintf(&b, `stage "package-%02[1]d" {
  needs = [stage.unit-%02[1]d, stage.lint-%02[1]d, stage.vet-%02[1]d, stage.integration-%02[1]d]
  step "run" "package-%02[1]d" { command = ["ok", "image=${step.compile-%02[1]d.digest}"] }
  step "run" "sign-%02[1]d" { command = ["ok"] }
}
stage "scan-%02[1]d" {
  step "run" "scan-%02[1]d" { command = ["ok"] }
}
stage "publish-%02[1]d" {
  step "run" "publish-%02[1]d" { command = ["ok", "ref=registry.example.com/svc%02[1]d@sha256:%02[1]d"] }
}
stage "deploy-%02[1]d" {
  step "run" "deploy-%02[1]d" { command = ["ok"] }
}
stage "smoke-%02[1]d" {
  step "run" "smoke-%02[1]d" { command = ["ok"] }
  step "run" "smoke-report-%02[1]d" { command = ["ok"] }
}
`, i)
	}
	return b.String()
}

// replay replays a run's history against the workflow code, as a worker
// does after a crash or once the run left its cache, and says how long it
// took.
func replay(t testing.TB, h *historypb.History) time.Duration {
	t.Helper()
	r := worker.NewWorkflowReplayer()
	RegisterWorkflowTypes(r)
	start := time.Now()
	if err := r.ReplayWorkflowHistory(quietLogger(), h); err != nil {
		t.Fatalf("replaying the run's history: %v", err)
	}
	return time.Since(start)
}

func largeCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// runLarge starts p, waits for its end and measures it (logged as what),
// failing t unless it succeeded; every stage must have succeeded too.
func runLarge(t *testing.T, c client.Client, p plan.Plan, what string) (context.Context, string, RunStatus, largeFigures) {
	t.Helper()
	ctx := largeCtx(t)
	started := time.Now()
	runID, err := Start(ctx, c, p, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, f := measureRun(t, ctx, c, runID, started)
	t.Logf("%s: %s", what, f)
	if st.State != StateSucceeded {
		t.Fatalf("run %s: %s", st.State, st.Error)
	}
	for _, s := range st.Stages {
		if s.State != StateSucceeded {
			t.Errorf("stage %s: %s %s", s.ID, s.State, s.Reason)
		}
	}
	return ctx, runID, st, f
}

func TestLargeMatrix(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "large-matrix-runner")
	p := compileHCL(t, matrix256)
	if len(p.Stages) != 2+dsl.MaxMatrix {
		t.Fatalf("%d stages", len(p.Stages))
	}
	_, _, st, f := runLarge(t, c, p, "256-instance matrix")
	if cell := stageOf(t, st, "test[a=15,b=7]").Steps[1].Outputs["CELL"]; cell != "15-7" {
		t.Errorf("instance test[a=15,b=7] saw CELL=%q", cell)
	}
	if n := tr.exec.count("test[a=3,b=4]/unit"); n != 1 {
		t.Errorf("a matrix step ran %d times", n)
	}
	f.check(t)
	t.Logf("replayed in %s", replay(t, f.history).Round(time.Millisecond))
}

func TestLargePipeline(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "large-pipeline-runner")
	p := compileHCL(t, thousandStages())
	if len(p.Stages) != 1000 {
		t.Fatalf("%d stages", len(p.Stages))
	}
	ctx, runID, st, f := runLarge(t, c, p, "1,000 stages")
	steps := 0
	for _, s := range st.Stages {
		steps += len(s.Steps)
	}
	if steps != 1600 {
		t.Errorf("%d steps", steps)
	}
	if got := stageOf(t, st, "package-99").Steps[0].Outputs["image"]; got != "sha256:99" {
		t.Errorf("package-99 got image=%q", got)
	}
	f.check(t)
	// A worker that crashed, or evicted the run from its cache, replays
	// the history in one workflow task before it goes on: in well under
	// the task's timeout, which is longer for a large run.
	took := replay(t, f.history)
	t.Logf("replayed in %s", took.Round(time.Millisecond))
	if took > 5*time.Second || f.taskTimeout != LargeRunTaskTimeout {
		t.Errorf("replaying the history took %s; the workflow task timeout is %s", took, f.taskTimeout)
	}

	// A retry from the last step keeps every other step: its input
	// carries them, beside the plan.
	started := time.Now()
	if err := Retry(ctx, c, runID, "smoke-99/smoke-report-99"); err != nil {
		t.Fatal(err)
	}
	st, f = measureRun(t, ctx, c, runID, started)
	t.Logf("its retry from the last step: %s", f)
	if st.State != StateSucceeded || st.ResumedFrom != "smoke-99/smoke-report-99" {
		t.Fatalf("retried run %s (%s), from %q", st.State, st.Error, st.ResumedFrom)
	}
	if a, b := tr.exec.count("smoke-99/smoke-report-99"), tr.exec.count("build-42/fetch-42"); a != 2 || b != 1 {
		t.Errorf("after the retry the last step ran %d times, a kept one %d", a, b)
	}
	f.check(t)
}

// TestLargeFlat runs 1,000 stages that need nothing, so that all could
// run at once (the workflow's first task would schedule 1,000 activities):
// no more than MaxRunningStages do, so that no more activities are pending
// than that.
func TestLargeFlat(t *testing.T) {
	c := testClient(t)
	startRunner(t, c, "large-flat-runner")
	var stages []plan.Stage
	for i := range 1000 {
		stages = append(stages, stage(fmt.Sprintf("s%03d", i), nil, step(fmt.Sprintf("x%03d", i), "ok")))
	}
	_, _, _, f := runLarge(t, c, testPlan("flat", stages...), "1,000 independent stages")
	if f.peakPending != MaxRunningStages {
		t.Errorf("at most %d activities were pending at once, want %d (MaxRunningStages)", f.peakPending, MaxRunningStages)
	}
	f.check(t)
	t.Logf("replayed in %s", replay(t, f.history).Round(time.Millisecond))
}

// TestLargeOutputs runs on a real server a pipeline whose status, with
// every output, would pass Temporal's 2 MiB payload limit, at which the
// server fails the status query and terminates the run: the run ends with
// its status cut to fit, the steps get every output, and a retry runs
// again the steps whose outputs the status lost.
func TestLargeOutputs(t *testing.T) {
	c := testClient(t)
	tr := startRunner(t, c, "large-outputs-runner")
	var stages []plan.Stage
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("gen%d", i)
		stages = append(stages, stage(id, nil, step(fmt.Sprintf("fill%d", i), "fill", "blob", fmt.Sprint(200_000+i))))
		ids = append(ids, id)
	}
	stages = append(stages, stage("use", ids, step("measure", "size", "n", tmpl(out("fill11", "blob")))))
	ctx := largeCtx(t)
	started := time.Now()
	runID, err := Start(ctx, c, testPlan("large-outputs", stages...), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, f := measureRun(t, ctx, c, runID, started)
	t.Logf("12 outputs of 200 KB: %s", f)
	if st.State != StateSucceeded || st.Trimmed == "" {
		t.Fatalf("run %s (%s), trimmed %q", st.State, st.Error, st.Trimmed)
	}
	if got := stageOf(t, st, "use").Steps[0].Outputs["n"]; got != "200011" {
		t.Errorf("the step saw an output of %s bytes, want 200011", got)
	}
	f.check(t)
	if f.taskTimeout != 10*time.Second {
		t.Errorf("a run of 13 stages has a workflow task timeout of %s, want Temporal's default", f.taskTimeout)
	}
	final, err := Status(ctx, c, runID)
	if err != nil || final.Trimmed != st.Trimmed {
		t.Fatalf("status of the run that ended: %v, trimmed %q", err, final.Trimmed)
	}

	if err := Retry(ctx, c, runID, "use"); err != nil {
		t.Fatal(err)
	}
	st, _ = measureRun(t, ctx, c, runID, time.Now())
	if st.State != StateSucceeded {
		t.Fatalf("retried run %s: %s", st.State, st.Error)
	}
	for i, s := range final.Stages[:12] {
		want := 1
		if s.Steps[0].OutputsDropped {
			want = 2
		}
		if got := tr.exec.count(fmt.Sprintf("gen%d/fill%d", i, i)); got != want {
			t.Errorf("%s ran %d times, want %d (outputs dropped: %v)", s.ID, got, want, s.Steps[0].OutputsDropped)
		}
	}
	if got := stageOf(t, st, "use").Steps[0].Outputs["n"]; got != "200011" {
		t.Errorf("after the retry the step saw an output of %s bytes, want 200011", got)
	}
}

// unbatchedStages is the costliest shape of 1,000 stages of up to three
// steps for the history: every step has a retry block, so that each runs
// as an activity of its own between a PrepareWorkspace and a
// ReleaseWorkspace (five activities a stage, against one for a stage
// whose steps run as one batch). Each stage needs the stage (i-1)/3: a
// tree that fans out.
func unbatchedStages() string {
	var b strings.Builder
	b.WriteString("pipeline \"unbatched\" {\n  on \"push\" { branches = [\"main\"] }\n}\n")
	for i := range 1000 {
		needs := "[]"
		if i > 0 {
			needs = fmt.Sprintf("[stage.s%d]", (i-1)/3)
		}
		fmt.Fprintf(&b, "stage \"s%d\" {\n  needs = %s\n", i, needs)
		for k := range 3 {
			fmt.Fprintf(&b, "  step \"run\" \"st%d-%d\" {\n    command = [\"ok\"]\n    retry { attempts = 2 }\n  }\n", i, k)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// BenchmarkLargeRunUnbatched measures the history of unbatchedStages, too
// slow for a test (about a minute on two cores): figures in
// docs/benchmarks.md, "Large runs (issue 11)".
//
//	go test ./engine -run '^$' -bench LargeRunUnbatched -benchtime 1x -v
func BenchmarkLargeRunUnbatched(b *testing.B) {
	c := testClient(b)
	startRunner(b, c, "large-unbatched-runner")
	p := compileHCL(b, unbatchedStages())
	ctx := largeCtx(b)
	for b.Loop() {
		started := time.Now()
		runID, err := Start(ctx, c, p, StartOptions{})
		if err != nil {
			b.Fatal(err)
		}
		st, f := measureRun(b, ctx, c, runID, started)
		if st.State != StateSucceeded {
			b.Fatalf("run %s: %s", st.State, st.Error)
		}
		b.Logf("1,000 stages of 3 steps, none batched: %s", f)
		b.Logf("replayed in %s", replay(b, f.history).Round(time.Millisecond))
		f.check(b)
		b.ReportMetric(float64(f.events), "events")
		b.ReportMetric(float64(f.historyBytes), "history-bytes")
		b.ReportMetric(float64(f.result), "result-bytes")
		b.ReportMetric(float64(f.peakPending), "peak-pending")
	}
}
