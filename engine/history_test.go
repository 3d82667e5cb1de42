package engine

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/sluice-ci/sluice/dsl/plan"
)

var update = flag.Bool("update", false, "record the workflow histories in testdata/ from runs on a real server")

// historyShapes are the pipelines whose histories are recorded and
// replayed: each exercises a different part of the workflow.
var historyShapes = []struct {
	name string
	plan func() plan.Plan
	// drive acts on the run while it runs (approvals).
	drive func(t *testing.T, runID string)
	want  State
}{
	{
		name: "linear",
		plan: func() plan.Plan {
			p := testPlan("linear",
				stage("build", nil, step("image", "ok", "digest=sha256:1"), step("tag", "ok", tmpl("tag=", out("image", "digest")))),
				stage("test", needs("build"), step("unit", "ok")),
				stage("release", needs("test"), step("publish", "ok", tmpl("ref=", out("tag", "tag")))),
			)
			p.Timeout = plan.Duration(time.Hour)
			return p
		},
		want: StateSucceeded,
	},
	{
		name: "fanout",
		plan: func() plan.Plan {
			var stages []plan.Stage
			stages = append(stages, stage("build", nil, step("image", "ok", "digest=sha256:2")))
			var ids []string
			for _, v := range []string{"1.22", "1.23", "1.24"} {
				s := stage("test[go="+v+"]", needs("build"), step("unit", "ok", tmpl("img=", out("image", "digest"))))
				s.Matrix, s.MatrixKeys = map[string]string{"go": v}, []string{"go"}
				stages = append(stages, s)
				ids = append(ids, s.ID)
			}
			stages = append(stages, stage("merge", ids, step("report", "ok")))
			skipped := stage("docs", nil, step("publish", "ok"))
			skipped.Skip = "when is false"
			stages = append(stages, skipped)
			p := testPlan("fanout", stages...)
			p.MaxParallel = 2
			return p
		},
		want: StateSucceeded,
	},
	{
		name: "approval_retry",
		plan: func() plan.Plan {
			flaky := step("migrate", "flaky", "1")
			flaky.Retry = &plan.Retry{Attempts: 2, Backoff: plan.Duration(100 * time.Millisecond)}
			lint := step("lint", "fail", "style")
			lint.ContinueOnError = true
			p := testPlan("approval_retry",
				stage("build", nil, lint, step("image", "ok", "digest=sha256:3")),
				stage("deploy", needs("build"), flaky, step("ship", "ok")),
				stage("verify", needs("deploy"), step("check", "fail", "error rate too high")),
				stage("notify", needs("verify"), step("mail", "ok")),
			)
			p.Stages[1].Approval = &plan.Approval{Approvers: []string{"team:sre"}, Timeout: plan.Duration(time.Hour)}
			return p
		},
		drive: func(t *testing.T, runID string) {
			c := testClient(t)
			waitFor(t, c, runID, "deploy to wait for approval", stageState("deploy", StateWaitingApproval))
			if err := Approve(testCtx(t), c, runID, "deploy", "ann", "go"); err != nil {
				t.Fatal(err)
			}
		},
		want: StateFailed,
	},
	{
		name: "artifacts",
		plan: func() plan.Plan {
			build := stage("build", nil, step("compile", "write", "out/bin.txt", "built"))
			build.Artifacts = []string{"out/**"}
			return testPlan("artifacts",
				build,
				stage("test", needs("build"), step("check", "read", "out/bin.txt")),
				stage("package", needs("test"), step("pack", "read", "out/bin.txt")),
			)
		},
		want: StateSucceeded,
	},
}

// TestRecordHistories runs each shape on a real server and writes its
// history to testdata/<name>.json. It runs only with -update.
func TestRecordHistories(t *testing.T) {
	if !*update {
		t.Skip("run with -update to record histories")
	}
	c := testClient(t)
	startRunner(t, c, "history-runner")
	for _, shape := range historyShapes {
		t.Run(shape.name, func(t *testing.T) {
			ctx := testCtx(t)
			runID, err := Start(ctx, c, shape.plan(), StartOptions{RunID: "history-" + shape.name + "-" + NewRunID("")})
			if err != nil {
				t.Fatal(err)
			}
			if shape.drive != nil {
				shape.drive(t, runID)
			}
			if st := waitDone(t, c, runID); st.State != shape.want {
				t.Fatalf("run ended %s (%s), want %s", st.State, st.Error, shape.want)
			}
			recordHistory(t, c, runID, shape.name)
		})
	}
}

// recordHistory writes a run's history to testdata/<name>.json, which
// TestReplay replays.
func recordHistory(t *testing.T, c client.Client, runID, name string) {
	t.Helper()
	ctx := testCtx(t)
	var events []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(ctx, runID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(&historypb.History{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", name+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReplay replays every recorded history against the current workflow
// code. A failure means a change broke determinism: put it behind
// workflow.GetVersion.
func TestReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < len(historyShapes) {
		t.Fatalf("found %d histories in testdata, want at least %d; record them with -update", len(files), len(historyShapes))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			RegisterWorkflowTypes(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(quietLogger(), f); err != nil {
				t.Fatal(err)
			}
		})
	}
}
