package engine

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// The pipelines of the replay tests run "run" steps whose command drives
// fakeExec (ok, fail...), so that a recorded run is a real run of the
// workflow.

const replayBase = `
pipeline "web" {}

stage "build" {
  step "run" "compile" {
    command = ["ok", "version=1.2.3", "commit=abc"]
    outputs = ["version", "commit"]
  }
}

stage "test" {
  step "run" "unit" {
    command = ["ok", "v=${step.compile.version}"]
  }
  step "run" "race" {
    command = ["ok"]
  }
}

stage "deploy" {
  when = git.branch == "main"
  step "run" "ship" {
    command = ["ok", "image=web:${step.compile.version}"]
  }
}
`

var replayGit = plan.Git{SHA: "0123456789abcdef0123456789abcdef01234567", Ref: "refs/heads/main", Branch: "main", Event: "push", Repo: "acme/web"}

// compileAt compiles one pipeline file for the event g.
func compileAt(t *testing.T, src string, g plan.Git) plan.Plan {
	t.Helper()
	dir := filepath.Join(t.TempDir(), ".sluice")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	files, diags := dsl.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, diags := dsl.Compile(files, dsl.Options{Git: g})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return *p
}

// record runs p on the test workflow environment, as a run would record
// it.
func record(t *testing.T, p plan.Plan, callbacks ...func(h *harness)) RunStatus {
	t.Helper()
	h := newHarness(t)
	for _, f := range callbacks {
		f(h)
	}
	return h.run(t, RunInput{Plan: p})
}

// replay records a run of before and replays it against after.
func replayRun(t *testing.T, before, after string, assumeFailure bool) *ReplayReport {
	t.Helper()
	old := compileAt(t, before, replayGit)
	rep, err := ReplayPipeline(ReplayInput{Recorded: old, Status: record(t, old), Plan: compileAt(t, after, replayGit), AssumeFailure: assumeFailure})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func reportStage(t *testing.T, rep *ReplayReport, id string) ReplayStage {
	t.Helper()
	for _, s := range rep.Stages {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no stage %q in the report", id)
	return ReplayStage{}
}

func reportStep(t *testing.T, s ReplayStage, name string) ReplayStep {
	t.Helper()
	for _, st := range s.Steps {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no step %q in stage %s of the report", name, s.ID)
	return ReplayStep{}
}

func TestReplayUnchanged(t *testing.T) {
	rep := replayRun(t, replayBase, replayBase, false)
	if rep.Changed {
		t.Errorf("an unchanged pipeline replays with changes: %+v", rep.Summary)
	}
	for _, s := range rep.Stages {
		if s.Change != ChangeUnchanged {
			t.Errorf("stage %s: %s", s.ID, s.Change)
		}
		for _, st := range s.Steps {
			if st.Change != ChangeUnchanged || st.After.Result != ResultRecorded {
				t.Errorf("step %s/%s: %s, result %q (%s)", s.ID, st.Name, st.Change, st.After.Result, st.After.Why)
			}
		}
	}
	if rep.Run.After.State != StateSucceeded || rep.Summary != (ReplaySummary{}) {
		t.Errorf("run %+v, summary %+v", rep.Run, rep.Summary)
	}
}

func TestReplayWhenSkipsStage(t *testing.T) {
	after := strings.Replace(replayBase, `when = git.branch == "main"`, `when = git.tag != ""`, 1)
	rep := replayRun(t, replayBase, after, false)
	d := reportStage(t, rep, "deploy")
	if d.Change != ChangeChanged || d.Before.State != StateSucceeded || d.After.State != StateSkipped {
		t.Fatalf("deploy: %s, %+v -> %+v", d.Change, d.Before, d.After)
	}
	if want := `when is false: git.tag != ""`; d.After.Skip != want || d.After.Reason != want || d.Before.Skip != "" {
		t.Errorf("deploy skip %q (reason %q), before %q", d.After.Skip, d.After.Reason, d.Before.Skip)
	}
	ship := reportStep(t, d, "ship")
	if ship.Change != ChangeChanged || ship.After.State != StateSkipped || ship.After.Result != "" || ship.Inputs != nil {
		t.Errorf("ship %+v after %+v", ship, ship.After)
	}
	if s := rep.Summary; s.StagesChanged != 1 || s.StepsChanged != 1 || s.Assumed != 0 || s.InputsChanged != 0 {
		t.Errorf("summary %+v", s)
	}
	for _, id := range []string{"build", "test"} {
		if s := reportStage(t, rep, id); s.Change != ChangeUnchanged {
			t.Errorf("stage %s: %s", id, s.Change)
		}
	}

	// And back: a stage the recorded run skipped now runs, with inputs
	// resolved from the recorded outputs; it has no recorded result.
	rep = replayRun(t, after, replayBase, false)
	d = reportStage(t, rep, "deploy")
	ship = reportStep(t, d, "ship")
	if d.After.State != StateSucceeded || ship.After.Result != ResultAssumed || ship.After.Why != whyNotRun || len(ship.Inputs) != 0 {
		t.Errorf("deploy %+v, ship %+v %+v", d.After, ship, ship.After)
	}
}

func TestReplayNewStage(t *testing.T) {
	after := replayBase + `
stage "lint" {
  needs = [stage.build]
  step "run" "vet" {
    command = ["ok", "report=clean"]
    outputs = ["report"]
  }
}

stage "publish" {
  needs = [stage.lint]
  step "run" "docs" {
    command = ["ok", "${step.vet.report}"]
  }
}
`
	rep := replayRun(t, replayBase, after, false)
	lint := reportStage(t, rep, "lint")
	if lint.Change != ChangeAdded || lint.Before != nil || lint.After.State != StateSucceeded || !slices.Equal(lint.After.Needs, []string{"build"}) {
		t.Fatalf("lint %+v after %+v", lint, lint.After)
	}
	vet := reportStep(t, lint, "vet")
	if vet.Change != ChangeAdded || vet.After.Result != ResultAssumed || vet.After.Why != whyNew || vet.After.Outputs != nil {
		t.Errorf("vet %+v after %+v", vet, vet.After)
	}
	// Outputs of an assumed step are not known: the step after it
	// receives the reference.
	if docs := reportStep(t, reportStage(t, rep, "publish"), "docs"); docs.After.Result != ResultAssumed || docs.After.State != StateSucceeded {
		t.Errorf("docs %+v", docs.After)
	}
	if s := rep.Summary; s.StagesAdded != 2 || s.StepsAdded != 2 || s.Assumed != 2 || s.StagesChanged != 0 || !rep.Changed {
		t.Errorf("summary %+v", s)
	}
	if got := stageIDs(rep); !slices.Equal(got, []string{"build", "test", "deploy", "lint", "publish"}) {
		t.Errorf("stages %q", got)
	}

	// Assumed to fail, the new stage fails the run, and the stage that
	// needs it is skipped as the workflow skips it.
	rep = replayRun(t, replayBase, after, true)
	lint = reportStage(t, rep, "lint")
	if lint.After.State != StateFailed || !strings.Contains(lint.After.Reason, "step vet failed: assumed to fail: a new step") {
		t.Errorf("lint %+v", lint.After)
	}
	if p := reportStage(t, rep, "publish"); p.After.State != StateSkipped || p.After.Reason != "needs lint which failed" {
		t.Errorf("publish %+v", p.After)
	}
	if rep.Run.After.State != StateFailed || rep.Run.Before.State != StateSucceeded || rep.Assume != "failure" {
		t.Errorf("run %+v, assume %q", rep.Run, rep.Assume)
	}
}

func stageIDs(rep *ReplayReport) []string {
	var ids []string
	for _, s := range rep.Stages {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestReplayRenamedStep(t *testing.T) {
	after := strings.Replace(replayBase, `step "run" "unit"`, `step "run" "tests"`, 1)
	rep := replayRun(t, replayBase, after, false)
	test := reportStage(t, rep, "test")
	var names, changes []string
	for _, st := range test.Steps {
		names, changes = append(names, st.Name), append(changes, st.Change)
	}
	if !slices.Equal(names, []string{"unit", "tests", "race"}) || !slices.Equal(changes, []string{ChangeRemoved, ChangeAdded, ChangeUnchanged}) {
		t.Fatalf("steps %q, changes %q", names, changes)
	}
	unit, tests := test.Steps[0], test.Steps[1]
	if unit.After != nil || unit.Before.State != StateSucceeded {
		t.Errorf("unit %+v", unit)
	}
	if tests.Before != nil || tests.After.Result != ResultAssumed || tests.After.Why != whyNew {
		t.Errorf("tests %+v", tests.After)
	}
	if s := rep.Summary; s.StepsAdded != 1 || s.StepsRemoved != 1 || s.StagesChanged != 1 {
		t.Errorf("summary %+v", s)
	}
}

func TestReplayOutputUsedDifferently(t *testing.T) {
	// unit now receives the commit where it received the version.
	after := strings.Replace(replayBase, `"v=${step.compile.version}"`, `"v=${step.compile.commit}"`, 1)
	rep := replayRun(t, replayBase, after, false)
	unit := reportStep(t, reportStage(t, rep, "test"), "unit")
	want := []ReplayValue{{Path: "run.command", Before: ptr(`["ok","v=1.2.3"]`), After: ptr(`["ok","v=abc"]`)}}
	if diff := cmp.Diff(want, unit.Inputs); diff != "" {
		t.Errorf("unit inputs (-want +got):\n%s", diff)
	}
	if unit.Change != ChangeChanged || unit.After.Result != ResultAssumed || unit.After.Why != whyInputs {
		t.Errorf("unit %+v", unit.After)
	}
	if race := reportStep(t, reportStage(t, rep, "test"), "race"); race.Change != ChangeUnchanged || race.After.Result != ResultRecorded {
		t.Errorf("race %+v", race.After)
	}
	if s := rep.Summary; s.InputsChanged != 1 || s.Assumed != 1 {
		t.Errorf("summary %+v", s)
	}

	// A step that produces outputs with other inputs is assumed: the steps
	// that use its outputs receive them unknown, and are assumed too.
	after = strings.Replace(replayBase, `"commit=abc"]`, `"commit=abc", "extra"]`, 1)
	rep = replayRun(t, replayBase, after, false)
	unit = reportStep(t, reportStage(t, rep, "test"), "unit")
	want = []ReplayValue{{Path: "run.command", Before: ptr(`["ok","v=1.2.3"]`), After: ptr(`["ok","v=${step.compile.version}"]`)}}
	if diff := cmp.Diff(want, unit.Inputs); diff != "" {
		t.Errorf("unit inputs (-want +got):\n%s", diff)
	}
	ship := reportStep(t, reportStage(t, rep, "deploy"), "ship")
	if ship.After.Result != ResultAssumed || len(ship.Inputs) != 1 {
		t.Errorf("ship %+v %+v", ship, ship.After)
	}
	if s := rep.Summary; s.InputsChanged != 3 || s.Assumed != 3 {
		t.Errorf("summary %+v", s)
	}

	// An output the recorded step does not have fails the step that uses
	// it, as the workflow would.
	declared := strings.Replace(replayBase, `outputs = ["version", "commit"]`, `outputs = ["version", "commit", "missing"]`, 1)
	after = strings.Replace(declared, `"v=${step.compile.version}"`, `"v=${step.compile.missing}"`, 1)
	rep = replayRun(t, declared, after, false)
	test := reportStage(t, rep, "test")
	if test.After.State != StateFailed || !strings.Contains(test.After.Reason, `step "compile" has no output "missing"`) {
		t.Errorf("test %+v", test.After)
	}
}

func ptr(s string) *string { return &s }

func TestReplayApprovals(t *testing.T) {
	gated := strings.Replace(replayBase, `when = git.branch == "main"`, "when = git.branch == \"main\"\n  approval { approvers = [\"team:sre\"] }", 1)
	old := compileAt(t, gated, replayGit)
	approve := func(h *harness) {
		h.env.RegisterDelayedCallback(func() {
			h.env.SignalWorkflow(SignalApprove, Decision{Stage: "deploy", By: "ann"})
		}, time.Minute)
	}
	approved := record(t, old, approve)
	if approved.State != StateSucceeded {
		t.Fatalf("recorded run %s", approved.State)
	}
	// The recorded decision stands; a new approval is assumed approved.
	second := gated + `
stage "prod" {
  needs = [stage.deploy]
  approval { approvers = ["team:sre"] }
  step "run" "promote" {
    command = ["ok"]
  }
}
`
	rep, err := ReplayPipeline(ReplayInput{Recorded: old, Status: approved, Plan: compileAt(t, second, replayGit)})
	if err != nil {
		t.Fatal(err)
	}
	d := reportStage(t, rep, "deploy")
	if a := d.After.Approval; a == nil || !a.Asked || a.Decision != DecisionApproved || a.By != "ann" || a.Result != ResultRecorded || d.Change != ChangeUnchanged {
		t.Errorf("deploy %s approval %+v", d.Change, d.After.Approval)
	}
	p := reportStage(t, rep, "prod")
	if a := p.After.Approval; a == nil || !a.Asked || a.By != ReplayApprover || a.Result != ResultAssumed || p.After.State != StateSucceeded {
		t.Errorf("prod %+v approval %+v", p.After, p.After.Approval)
	}
	if s := rep.Summary; s.ApprovalsAsked != 2 || s.NewApprovals != 1 {
		t.Errorf("summary %+v", s)
	}

	// A rejection stands too: it fails the stage, as it did.
	rejected := record(t, old, func(h *harness) {
		h.env.RegisterDelayedCallback(func() {
			h.env.SignalWorkflow(SignalReject, Decision{Stage: "deploy", By: "bob", Reason: "not today"})
		}, time.Minute)
	})
	rep, err = ReplayPipeline(ReplayInput{Recorded: old, Status: rejected, Plan: compileAt(t, second, replayGit)})
	if err != nil {
		t.Fatal(err)
	}
	if d := reportStage(t, rep, "deploy"); d.After.State != StateFailed || d.After.Reason != "rejected by bob: not today" {
		t.Errorf("deploy %+v", d.After)
	}
	if p := reportStage(t, rep, "prod"); p.After.State != StateSkipped || p.After.Approval.Asked {
		t.Errorf("prod %+v", p.After)
	}

	// An approval removed is asked no more.
	rep, err = ReplayPipeline(ReplayInput{Recorded: old, Status: approved, Plan: compileAt(t, replayBase, replayGit)})
	if err != nil {
		t.Fatal(err)
	}
	if d := reportStage(t, rep, "deploy"); d.Change != ChangeChanged || d.After.Approval != nil || d.Before.Approval == nil || !d.Before.Approval.Asked {
		t.Errorf("deploy %s: %+v -> %+v", d.Change, d.Before.Approval, d.After.Approval)
	}
}

// TestReplayAgreesWithWorkflow runs a changed pipeline for real and
// replays the run of the old one against it: where the replay's
// assumptions hold (new and changed steps succeed), every stage and step
// ends as it really does.
func TestReplayAgreesWithWorkflow(t *testing.T) {
	before := `
pipeline "web" {}

stage "build" {
  step "run" "compile" {
    command = ["ok", "version=1.2.3"]
    outputs = ["version"]
  }
  step "run" "flaky" {
    continue_on_error = true
    command = ["fail", "flaky"]
  }
}

stage "test" {
  step "run" "unit" {
    command = ["ok", "v=${step.compile.version}"]
  }
}

stage "docs" {
  when = git.tag != ""
  step "run" "site" {
    command = ["ok"]
  }
}

stage "deploy" {
  needs = [stage.test]
  step "run" "ship" {
    command = ["ok"]
  }
}
`
	after := strings.NewReplacer(
		`when = git.tag != ""`, `when = git.branch == "main"`,
		`command = ["ok", "v=${step.compile.version}"]`, `command = ["fail", "v=${step.compile.version}"]`,
	).Replace(before) + `
stage "notify" {
  needs = [stage.deploy]
  step "run" "mail" {
    command = ["ok"]
  }
}
`
	old := compileAt(t, before, replayGit)
	changed := compileAt(t, after, replayGit)
	real := record(t, changed)
	// The changed step fails for real: assumed to fail, as it does, the
	// replay agrees with the run.
	rep, err := ReplayPipeline(ReplayInput{Recorded: old, Status: record(t, old), Plan: changed, AssumeFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	// Only the failure's message is the fake's where the replay assumes.
	failed := "step unit failed: "
	if rep.Run.After.State != real.State || !strings.HasPrefix(rep.Run.After.Error, "stage test failed: "+failed) {
		t.Errorf("run: replay %+v, real %s %q", rep.Run.After, real.State, real.Error)
	}
	for _, s := range real.Stages {
		rs := reportStage(t, rep, s.ID)
		if s.ID == "test" && strings.HasPrefix(s.Reason, failed) && strings.HasPrefix(rs.After.Reason, failed) {
			s.Reason = rs.After.Reason
		}
		if rs.After.State != s.State || rs.After.Reason != s.Reason {
			t.Errorf("stage %s: replay %s %q, real %s %q", s.ID, rs.After.State, rs.After.Reason, s.State, s.Reason)
		}
		for _, st := range s.Steps {
			if rst := reportStep(t, rs, st.Name); rst.After.State != st.State {
				t.Errorf("step %s/%s: replay %s, real %s", s.ID, st.Name, rst.After.State, st.State)
			}
		}
	}
}

// TestReplayReportJSON pins the JSON of a report (sluice replay -o json):
// go test ./engine -run TestReplayReportJSON -update rewrites it.
func TestReplayReportJSON(t *testing.T) {
	after := strings.NewReplacer(
		`when = git.branch == "main"`, `when = git.tag != ""`,
		`step "run" "race"`, `step "run" "race2"`,
		`"v=${step.compile.version}"`, `"v=${step.compile.commit}"`,
	).Replace(replayBase) + `
stage "lint" {
  needs = [stage.build]
  step "run" "vet" {
    command = ["ok"]
  }
}
`
	rep := replayRun(t, replayBase, after, false)
	// The digests change with the plan's encoding, which is not what this
	// test pins.
	rep.Digests = ReplayDigests{Before: "sha256:before", After: "sha256:after"}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	golden := filepath.Join("testdata", "replay", "report.json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(b)); diff != "" {
		t.Errorf("report JSON (-want +got):\n%s", diff)
	}
	var back ReplayReport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("the report does not decode: %v", err)
	}
}

func TestMergeOrder(t *testing.T) {
	for _, tt := range []struct {
		name                string
		before, after, want []string
	}{
		{"same", []string{"a", "b"}, []string{"a", "b"}, []string{"a", "b"}},
		{"renamed", []string{"a", "b", "c"}, []string{"a", "x", "c"}, []string{"a", "b", "x", "c"}},
		{"removed last", []string{"a", "b"}, []string{"a"}, []string{"a", "b"}},
		{"added first", []string{"a"}, []string{"x", "a"}, []string{"x", "a"}},
		{"moved", []string{"a", "b", "c"}, []string{"c", "a", "b"}, []string{"c", "a", "b"}},
		{"all new", []string{"a"}, []string{"x"}, []string{"a", "x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeOrder(tt.before, tt.after); !slices.Equal(got, tt.want) {
				t.Errorf("mergeOrder(%q, %q) = %q, want %q", tt.before, tt.after, got, tt.want)
			}
		})
	}
}
