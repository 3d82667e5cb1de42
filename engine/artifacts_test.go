package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/runners/artifacts"
	"github.com/sluice-ci/sluice/runners/registry"
	"github.com/sluice-ci/sluice/steps"
	hostrun "github.com/sluice-ci/sluice/steps/run"
)

// startHostRunner starts a runner that runs run steps on the host, in
// workspaces of its own, with the given labels and artifact store.
func startHostRunner(t *testing.T, c client.Client, name string, labels []string, store ArtifactStore, workflows bool) string {
	t.Helper()
	dir := t.TempDir()
	startTestRunner(t, c, RunnerOptions{
		Name:   name,
		Labels: labels,
		Activities: &Activities{
			Workspaces: TempWorkspaces{Dir: dir},
			Executors:  steps.Registry{plan.KindRun: &hostrun.Executor{}},
		},
		Artifacts: store,
		Workflows: workflows,
	})
	return dir
}

func script(name, body string, outputs ...string) plan.Step {
	return plan.Step{Name: name, Kind: plan.KindRun, Run: &plan.RunStep{Script: plan.Lit(body), Outputs: outputs}}
}

func TestServerArtifacts(t *testing.T) {
	c := testClient(t)
	reg, err := registry.Serve(registry.ServeOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)

	for _, tc := range []struct {
		name   string
		store  artifacts.Store
		prefix string
	}{
		// Runners on one machine may share a directory; runners anywhere
		// share the run's registry.
		{"directory", artifacts.Store{Dir: t.TempDir()}, ""},
		{"registry", artifacts.Store{Registry: reg.Host}, reg.Host + "/sluice/artifacts@sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prefix == "" {
				tc.prefix = tc.store.Dir + string(filepath.Separator)
			}
			// Two runners, each with its own workspaces: a stage on "b"
			// sees a file a stage on "a" wrote only through artifacts.
			// Labels of their own: a stopped runner's long poll on a shared
			// queue could take a task and hold it until it times out.
			a, bl := "art-a-"+tc.name, "art-b-"+tc.name
			wsA := startHostRunner(t, c, "artifacts-a-"+tc.name, []string{a}, tc.store, true)
			wsB := startHostRunner(t, c, "artifacts-b-"+tc.name, []string{bl}, tc.store, false)
			on := func(s plan.Stage, label string) plan.Stage { s.RunsOn = []string{label}; return s }
			build := on(stage("build", nil, script("compile", `mkdir -p out/sub
echo built-on-a > out/bin.txt
echo deep > out/sub/deep.txt
echo not-an-artifact > notes.txt`)), a)
			build.Artifacts = []string{"out/**"}
			p := testPlan("artifacts",
				build,
				on(stage("test", needs("build"), script("check", `echo "got=$(cat out/bin.txt)" >> "$SLUICE_OUTPUT"
if [ -e notes.txt ]; then echo "notes.txt was handed on"; exit 1; fi`, "got")), bl),
				// package needs build only through test.
				on(stage("package", needs("test"), script("pack", `echo "deep=$(cat out/sub/deep.txt)" >> "$SLUICE_OUTPUT"`, "deep")), bl),
				// lint needs nothing: it runs after build (one stage at a
				// time) and still does not get build's files.
				on(stage("lint", needs(), script("look", `if [ -e out/bin.txt ]; then echo seen=yes; else echo seen=no; fi >> "$SLUICE_OUTPUT"`, "seen")), bl),
			)
			p.MaxParallel = 1
			ctx := testCtx(t)
			runID, err := Start(ctx, c, p, StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st := waitDone(t, c, runID)
			if st.State != StateSucceeded {
				t.Fatalf("run %s: %s\n%+v", st.State, st.Error, st.Stages)
			}
			b := stageOf(t, st, "build")
			if b.Artifacts == nil || b.Artifacts.Files != 2 || !strings.HasPrefix(b.Artifacts.Ref, tc.prefix) {
				t.Errorf("build's artifacts: %+v, want 2 files at %s...", b.Artifacts, tc.prefix)
			}
			if got := stageOf(t, st, "test").Steps[0].Outputs["got"]; got != "built-on-a" {
				t.Errorf("test read out/bin.txt as %q", got)
			}
			if got := stageOf(t, st, "package").Steps[0].Outputs["deep"]; got != "deep" {
				t.Errorf("package (needing build through test) read out/sub/deep.txt as %q", got)
			}
			if got := stageOf(t, st, "lint").Steps[0].Outputs["seen"]; got != "no" {
				t.Errorf("lint, which does not need build, saw its files: seen=%q", got)
			}
			if wsA == wsB {
				t.Fatal("the runners share workspaces")
			}

			// A pattern that matches nothing fails the stage, and says which.
			broken := on(stage("build", nil, script("compile", "mkdir -p out && echo x > out/bin.txt")), a)
			broken.Artifacts = []string{"out/**", "dist/*.zip"}
			p = testPlan("artifacts-missing", broken, on(stage("test", needs("build"), script("check", "true")), bl))
			runID, err = Start(ctx, c, p, StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st = waitDone(t, c, runID)
			if st.State != StateFailed {
				t.Fatalf("run with a pattern matching nothing: %s", st.State)
			}
			wantStage(t, st, "build", StateFailed, `storing artifacts: storing the artifacts of stage build on runner "artifacts-a-`+tc.name+`": artifacts "dist/*.zip" matched no file in the workspace`)
			wantStage(t, st, "test", StateSkipped, "needs build which failed")
		})
	}
}

func TestServerArtifactsKeptByRetry(t *testing.T) {
	c := testClient(t)
	store := artifacts.Store{Dir: t.TempDir()}
	startHostRunner(t, c, "artifacts-retry-a", []string{"art-retry-a"}, store, true)
	startHostRunner(t, c, "artifacts-retry-b", []string{"art-retry-b"}, store, false)
	runs := filepath.Join(t.TempDir(), "build-runs")
	build := stage("build", nil, script("compile", `echo run >> `+runs+`
mkdir -p out && echo built > out/bin.txt`))
	build.Artifacts, build.RunsOn = []string{"out"}, []string{"art-retry-a"}
	// test fails the first time, after reading the file.
	marker := filepath.Join(t.TempDir(), "failed-once")
	test := stage("test", needs("build"), script("use", `echo "got=$(cat out/bin.txt)" >> "$SLUICE_OUTPUT"
if [ ! -e `+marker+` ]; then touch `+marker+`; exit 1; fi`, "got"))
	test.RunsOn = []string{"art-retry-b"}
	ctx := testCtx(t)
	runID, err := Start(ctx, c, testPlan("artifacts-retry", build, test), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, c, runID); st.State != StateFailed {
		t.Fatalf("first attempt: %s", st.State)
	}
	if err := Retry(ctx, c, runID, "test"); err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, c, runID)
	if st.State != StateSucceeded {
		t.Fatalf("retried run: %s %s", st.State, st.Error)
	}
	b := stageOf(t, st, "build")
	if !b.Steps[0].Resumed || b.Artifacts == nil || b.Artifacts.Files != 1 {
		t.Errorf("build after the retry: resumed %v, artifacts %+v", b.Steps[0].Resumed, b.Artifacts)
	}
	if got := stageOf(t, st, "test").Steps[0].Outputs["got"]; got != "built" {
		t.Errorf("the retried test read out/bin.txt as %q", got)
	}
	if b, _ := os.ReadFile(runs); string(b) != "run\n" {
		t.Errorf("build ran %q times", b)
	}
}
