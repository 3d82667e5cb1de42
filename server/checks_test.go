package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"

	"github.com/sluice-ci/sluice/server/githubapp"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

// writerFor is a checkWriter on a fake GitHub's repository.
func writerFor(t *testing.T) (*checkWriter, *githubfake.Server, string) {
	t.Helper()
	gh := githubfake.New(t)
	gh.AddRepo("acme/web", 3)
	sha := gh.Commit("acme/web", "", map[string]string{"README.md": "hi"})
	app := &githubapp.App{ID: gh.AppID, PrivateKey: gh.PrivateKey, BaseURL: gh.URL()}
	c, err := app.Installation(3)
	if err != nil {
		t.Fatal(err)
	}
	st := &reportState{Checks: map[string]int64{}, Sent: map[string]string{}, Annotated: map[string]int{}}
	return &checkWriter{gh: c, limits: &WriteLimits{}, installation: 3, repo: "acme/web", sha: sha, state: st, heartbeat: func() {}}, gh, sha
}

// 120 annotations reach GitHub in three requests of at most 50, and a
// second write of the same check sends none again.
func TestAnnotationsInBatches(t *testing.T) {
	w, gh, sha := writerFor(t)
	var notes []githubapp.Annotation
	for i := range 120 {
		notes = append(notes, githubapp.Annotation{Path: "pkg/a_test.go", StartLine: i + 1, Level: "failure", Title: fmt.Sprintf("TestA/%d", i), Message: "want 1, got 2"})
	}
	c := checkWant{Key: "stage:test", Digest: "completed/failure", Annotations: notes, Run: githubapp.CheckRun{
		Name: "web / test", HeadSHA: sha, ExternalID: "r@e/stage:test", Status: "completed", Conclusion: "failure",
		Title: "failed", Summary: "120 tests failed",
	}}
	ctx := context.Background()
	if err := w.write(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := w.write(ctx, c); err != nil {
		t.Fatal(err)
	}
	runs := gh.CheckRuns("acme/web")
	if len(runs) != 1 || len(runs[0].Annotations) != 120 || runs[0].Writes != 3 {
		t.Fatalf("GitHub has %d checks; the first with %d annotations in %d writes, want 120 in 3", len(runs), len(runs[0].Annotations), runs[0].Writes)
	}
	if runs[0].Annotations[119].StartLine != 120 || runs[0].Summary != "120 tests failed" {
		t.Errorf("the last annotation is %+v, the summary %q", runs[0].Annotations[119], runs[0].Summary)
	}
}

// A report that resumes after a crash with state older than what it wrote
// (its last heartbeat lost) reads the check from GitHub: a check already
// as it should be is not written again and its annotations are not sent
// twice (GitHub appends them); what is left to send still goes.
func TestResumedWriterReadsGitHub(t *testing.T) {
	w, gh, sha := writerFor(t)
	var notes []githubapp.Annotation
	for i := range 70 {
		notes = append(notes, githubapp.Annotation{Path: "pkg/a_test.go", StartLine: i + 1, Level: "failure", Title: fmt.Sprintf("TestA/%d", i), Message: "want 1, got 2"})
	}
	want := func(n int) checkWant {
		return checkWant{Key: "stage:test", Digest: "completed/failure", Annotations: notes[:n], Run: githubapp.CheckRun{
			Name: "web / test", HeadSHA: sha, ExternalID: "r@e/stage:test", Status: "completed", Conclusion: "failure",
			Title: "failed", Summary: "tests failed",
		}}
	}
	ctx := context.Background()
	if err := w.write(ctx, want(60)); err != nil {
		t.Fatal(err)
	}
	// The next attempt, with the state of before any write.
	fresh := func() *checkWriter {
		r := *w
		r.state = &reportState{Checks: map[string]int64{}, Sent: map[string]string{}, Annotated: map[string]int{}}
		r.resumed, r.checked = true, nil
		return &r
	}
	if err := fresh().write(ctx, want(60)); err != nil {
		t.Fatal(err)
	}
	runs := gh.CheckRuns("acme/web")
	if len(runs) != 1 || runs[0].Writes != 2 || len(runs[0].Annotations) != 60 {
		t.Fatalf("after a resumed attempt: %d checks, %d writes, %d annotations; want 1 check, the 2 writes of the first attempt, 60 annotations", len(runs), runs[0].Writes, len(runs[0].Annotations))
	}
	// Ten more annotations since: only those are sent.
	if err := fresh().write(ctx, want(70)); err != nil {
		t.Fatal(err)
	}
	runs = gh.CheckRuns("acme/web")
	if runs[0].Writes != 3 || len(runs[0].Annotations) != 70 || runs[0].Annotations[69].StartLine != 70 {
		t.Errorf("after ten more: %d writes, %d annotations; want 3 and 70", runs[0].Writes, len(runs[0].Annotations))
	}
}

// A 66,000-character summary is cut at GitHub's 65,535 characters (runes,
// not bytes) with a marker, and GitHub takes it.
func TestSummaryCut(t *testing.T) {
	w, gh, sha := writerFor(t)
	long := strings.Repeat("é", 66000)
	c := checkWant{Key: "run", Digest: "completed/failure", Run: githubapp.CheckRun{
		Name: "web", HeadSHA: sha, ExternalID: "r@e/run", Status: "completed", Conclusion: "failure",
		Title: "failed", Summary: cutRunes(long, maxCheckOutput), Text: cutRunes(long, maxCheckOutput),
	}}
	if err := w.write(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	got := gh.CheckRuns("acme/web")[0]
	if n := utf8.RuneCountInString(got.Summary); n != maxCheckOutput || !strings.HasSuffix(got.Summary, cutMarker) {
		t.Errorf("the summary has %d characters, want %d ending with the marker", n, maxCheckOutput)
	}
	if cutRunes("short", maxCheckOutput) != "short" {
		t.Error("a short text was cut")
	}
}

// A check whose ID was lost (the server died before recording it) is
// found again by its external_id, not created twice.
func TestLostCheckIDFound(t *testing.T) {
	w, gh, sha := writerFor(t)
	c := checkWant{Key: "stage:build", Digest: "in_progress/", Run: githubapp.CheckRun{
		Name: "web / build", HeadSHA: sha, ExternalID: "r@e/stage:build", Status: "in_progress", Title: "running", Summary: "s",
	}}
	if err := w.write(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	w2, _, _ := writerFor(t)
	w2.gh, w2.sha, w2.resumed = w.gh, sha, true
	c.Digest, c.Run.Status, c.Run.Conclusion = "completed/success", "completed", "success"
	if err := w2.write(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	runs := gh.CheckRuns("acme/web")
	if len(runs) != 1 || runs[0].Conclusion != "success" {
		t.Errorf("checks %+v, want the one check completed", runs)
	}
}

func TestExternalID(t *testing.T) {
	id := ExternalID("web-0123", "0190-abcd", "approval:deploy")
	if run, key, ok := ParseExternalID(id); !ok || run != "web-0123" || key != "approval:deploy" {
		t.Errorf("ParseExternalID(%q) = %q %q %v", id, run, key, ok)
	}
	if n, ok := parseGateID(gateID(7, "abc", "web")); !ok || n != 7 {
		t.Errorf("gate ID of #7 parses as %d %v", n, ok)
	}
	if _, _, ok := ParseExternalID("something-else"); ok {
		t.Error("an external_id of another tool parsed")
	}
}

// The GitHub writes of examples/go-service's tag run, counted by the fake:
// its plan for a tag, every stage seen queued, running and done (the most
// a reporter that polls can see), the deploy's approval asked and given.
func TestWritesPerRunGoService(t *testing.T) {
	files := map[string][]byte{}
	matches, _ := filepath.Glob(filepath.Join("..", "examples", "go-service", ".sluice", "*.hcl"))
	for _, f := range matches {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files[".sluice/"+filepath.Base(f)] = b
	}
	w, gh, sha := writerFor(t)
	g := plan.Git{Event: "tag", Ref: "refs/tags/v1.4.0", Tag: "v1.4.0", SHA: sha, ShortSHA: sha[:7], Repo: "acme/web", Actor: "octocat"}
	p, diags, err := CompileFiles(files, "", g, false, nil, nil)
	if err != nil || diags != "" {
		t.Fatalf("compiling go-service for a tag: %v\n%s", err, diags)
	}
	st := engine.RunStatus{RunRef: engine.RunRef{RunID: "go-service-1", Pipeline: p.Pipeline}, State: engine.StatePending}
	for _, ps := range p.Stages {
		ss := engine.StageStatus{ID: ps.ID, Name: ps.Name, State: engine.StatePending}
		for _, step := range ps.Steps {
			ss.Steps = append(ss.Steps, engine.StepStatus{Name: step.Name, Kind: step.Kind, State: engine.StatePending})
		}
		st.Stages = append(st.Stages, ss)
	}
	ctx := context.Background()
	report := func() {
		v := &reportView{in: ReportInput{RunID: "go-service-1", Execution: "e1", PublicURL: "https://ci.example.com"}, plan: p, st: st}
		for _, c := range v.checks() {
			if err := w.write(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	report()
	st.State = engine.StateRunning
	now := time.Now()
	for i, ps := range p.Stages {
		ss := &st.Stages[i]
		if ps.Skip != "" {
			ss.State = engine.StateSkipped
			report()
			continue
		}
		if ps.Approval != nil {
			ss.State, ss.Approval = engine.StateWaitingApproval, &engine.ApprovalStatus{Requested: now}
			report()
			ss.Approval.Decision, ss.Approval.By, ss.Approval.Decided = engine.DecisionApproved, "alice", now
		}
		ss.State, ss.Start = engine.StateRunning, now
		report()
		for j := range ss.Steps {
			ss.Steps[j].State = engine.StateRunning
			report() // a step's progress writes nothing
			ss.Steps[j].State = engine.StateSucceeded
		}
		ss.State, ss.End = engine.StateSucceeded, now
		report()
	}
	st.State, st.End = engine.StateSucceeded, now
	report()
	writes := 0
	for _, c := range gh.CheckRuns("acme/web") {
		writes += c.Writes
	}
	stages, gates := len(p.Stages), 0
	for _, ps := range p.Stages {
		if ps.Approval != nil && ps.Skip == "" {
			gates++
		}
	}
	goal := 3*stages + 2
	t.Logf("examples/go-service tag run: %d stages, %d approval; %d GitHub writes (goal ≤ %d, 3 per stage plus 2)", stages, gates, writes, goal)
	if writes > goal {
		t.Errorf("%d writes for %d stages and %d approvals, over the goal of %d", writes, stages, gates, goal)
	}
}

func TestCheckName(t *testing.T) {
	ps := plan.Stage{ID: "test[go=1.26,os=linux]", Name: "test", MatrixKeys: []string{"go", "os"}, Matrix: map[string]string{"go": "1.26", "os": "linux"}}
	if got := checkName("web", ps); got != "web / test (1.26, linux)" {
		t.Errorf("checkName = %q", got)
	}
	if got := checkName("web", plan.Stage{ID: "build", Name: "build"}); got != "web / build" {
		t.Errorf("checkName = %q", got)
	}
}
