package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/steps/dagger/daggertest"
)

const daggerPipeline = `
pipeline "smoke" {}

stage "build" {
  step "run" "name" {
    script  = "echo who=sluice >> $SLUICE_OUTPUT"
    outputs = ["who"]
  }
}

stage "smoke" {
  step "dagger" "greet" {
    module   = "./ci"
    function = "hello"
    args     = { name = step.name.who }
  }
}
`

// A stage with a dagger step waits on a runner that reaches no Dagger
// engine, and says why; a runner that reaches one takes it.
func TestDaggerStageRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Temporal server")
	}
	// This machine reaches no engine: no session, no dagger CLI.
	for _, k := range []string{"DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", "_EXPERIMENTAL_DAGGER_CLI_BIN"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("PATH", "/usr/bin:/bin")
	if _, err := os.Stat("/usr/bin/dagger"); err == nil {
		t.Fatal("this test needs a PATH without the dagger CLI")
	}

	repo := t.TempDir()
	for name, body := range map[string]string{".sluice/p.hcl": daggerPipeline, "ci/dagger.json": `{"name": "greeter"}`} {
		if err := os.MkdirAll(filepath.Join(repo, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, diags := dsl.Load(filepath.Join(repo, ".sluice"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, diags := dsl.Compile(src, dsl.Options{Git: plan.Git{Event: "manual", SHA: strings.Repeat("0", 40)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}

	srv := temporaltest.NewServer(temporaltest.WithT(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func(name string) *Stack {
		s, err := Start(ctx, Options{
			Home:            t.TempDir(),
			TemporalAddress: srv.GetFrontendHostPort(),
			Namespace:       srv.GetDefaultNamespace(),
			Runner:          &RunnerOptions{Name: name, Repo: repo, Dirty: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}

	plain := start("plain")
	msgs := plain.Unplaced(p)
	if len(msgs) != 1 || !strings.Contains(msgs[0], `Stage "smoke" needs a runner labelled dagger`) || !strings.Contains(msgs[0], "reaches no Dagger engine") {
		t.Errorf("Unplaced = %q, want one message about stage smoke and the Dagger engine", msgs)
	}
	runID, err := engine.Start(ctx, plain.Client, *p, engine.StartOptions{Source: &engine.Source{Path: repo, Dirty: true}})
	if err != nil {
		t.Fatal(err)
	}
	st := waitFor(t, ctx, plain.Client, runID, func(st engine.RunStatus) bool {
		return st.Stages[0].State == engine.StateSucceeded && strings.Contains(st.Stages[1].Reason, "waiting")
	})
	if r := st.Stages[1].Reason; r != "waiting: no runner with labels [dagger] is online" {
		t.Errorf("stage smoke waits with reason %q, want that no runner with labels [dagger] is online", r)
	}
	// The runner without an engine never takes the stage.
	time.Sleep(2 * time.Second)
	if st, _ := engine.Status(ctx, plain.Client, runID); st.Stages[1].Runner != "" || st.Stages[1].State.Done() {
		t.Fatalf("stage smoke was taken without a Dagger engine: %+v", st.Stages[1])
	}

	// A runner that reaches an engine session takes it.
	daggertest.New(t)
	withEngine := start("with-engine")
	if msgs := withEngine.Unplaced(p); len(msgs) != 0 {
		t.Errorf("Unplaced on the runner with an engine = %q", msgs)
	}
	st = waitFor(t, ctx, plain.Client, runID, func(st engine.RunStatus) bool { return st.State.Done() })
	smoke := st.Stages[1]
	if st.State != engine.StateSucceeded || smoke.Runner != "with-engine" {
		t.Fatalf("run %s, stage smoke %s on runner %q: %+v", st.State, smoke.State, smoke.Runner, smoke)
	}
	if got := smoke.Steps[0].Outputs["output"]; got != "Hello, sluice!" {
		t.Errorf("output of the dagger step = %q, want %q", got, "Hello, sluice!")
	}
}

func waitFor(t *testing.T, ctx context.Context, c client.Client, runID string, done func(engine.RunStatus) bool) engine.RunStatus {
	t.Helper()
	for {
		st, err := engine.Status(ctx, c, runID)
		if err == nil && len(st.Stages) == 2 && done(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for run %s: %v; last status %+v", runID, ctx.Err(), st)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
