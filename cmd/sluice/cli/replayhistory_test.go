package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/testing/replaytest"
	"github.com/sluice-ci/sluice/server"
)

// mainChanged is the sluice-changed command of the scripts: this build
// with its Pipeline workflow changed as a careless edit would change it
// (changedWorkflows), which sluice replay must catch.
func mainChanged() int {
	e := &env{stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ(), getwd: os.Getwd, workflows: changedWorkflows}
	return mainEnv(context.Background(), e, os.Args[1:])
}

// changedWorkflows registers this build's workflows, but for a Pipeline
// that, once it has set the run's status, schedules an activity its runs
// did not, without workflow.GetVersion.
func changedWorkflows(r worker.WorkflowRegistry) {
	server.RegisterAllWorkflows(replaytest.Replacing(r, engine.WorkflowName, announcingPipeline))
}

func announcingPipeline(ctx workflow.Context, in engine.RunInput) (engine.RunStatus, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, engine.AttrStatus.ValueSet(string(engine.StateRunning))); err != nil {
		return engine.RunStatus{}, err
	}
	ao := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	if err := workflow.ExecuteActivity(ao, "AnnounceRun", in.Plan.Pipeline).Get(ctx, nil); err != nil {
		return engine.RunStatus{}, err
	}
	return engine.Pipeline(ctx, in)
}

func TestParseSince(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7d", 7 * 24 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"1w", 0, false},
		{"0d", 0, false},
		{"-2h", 0, false},
		{"d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSince(%q) = %v, %v; want %v (ok %t)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestReplayProgress: a long list says how far it is at every tenth, a
// short one says nothing.
func TestReplayProgress(t *testing.T) {
	var b strings.Builder
	p := newReplayProgress(&b, 40)
	for range 40 {
		p.done()
	}
	p.end()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 10 || lines[0] != "Replayed 4 of 40 (10%)" || lines[9] != "Replayed 40 of 40 (100%)" {
		t.Errorf("progress of 40:\n%s", b.String())
	}
	b.Reset()
	p = newReplayProgress(&b, progressFrom-1)
	for range progressFrom - 1 {
		p.done()
	}
	p.end()
	if b.Len() != 0 {
		t.Errorf("progress of %d: %q, want none", progressFrom-1, b.String())
	}
}

// TestReplayRecordedHistories replays engine/testdata's histories as make
// replay-check does, several at a time, and with a changed Pipeline.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "engine", "testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no histories in engine/testdata: %v", err)
	}
	code, stdout, stderr := sluiceMain(append([]string{"replay", "--parallel", "4", "--history"}, files...)...)
	if want := fmt.Sprintf("\n%d replayed, 0 failed.\n", len(files)); code != 0 || !strings.HasSuffix(stdout, want) {
		t.Errorf("replay --history: exit %d, want 0 and %q\n%s%s", code, want, stdout, stderr)
	}

	var out strings.Builder
	e := &env{stdout: &out, stderr: io.Discard, environ: os.Environ(), getwd: os.Getwd, workflows: changedWorkflows}
	code = mainEnv(context.Background(), e, append([]string{"replay", "--parallel", "4", "--history", "-o", "json"}, files...))
	var rep historyReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("replay -o json: %v\n%s", err, out.String())
	}
	if code != 1 || rep.Summary.Replayed != len(files) || rep.Summary.Failed != len(files) || len(rep.Executions) != len(files) {
		t.Fatalf("replay against a changed Pipeline: exit %d, %+v", code, rep.Summary)
	}
	for i, x := range rep.Executions {
		if x.File != files[i] || x.Result != engine.ReplayNondeterministic || x.Divergence == nil || x.Divergence.Code != "scheduled activity AnnounceRun" {
			t.Errorf("%s: %+v %+v", files[i], x, x.Divergence)
		}
	}
}
