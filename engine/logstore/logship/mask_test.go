package logship

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/steps"
)

var _ engine.LogSink = (*Sink)(nil)

// leaky prints the secret it is given, cut across writes, and fails.
type leaky struct{}

func (leaky) Execute(_ context.Context, req steps.Request) (steps.Result, error) {
	tok := req.Env["TOKEN"]
	for _, s := range []string{"using ", tok[:5], tok[5:] + "\n", strings.Repeat("x", 70<<10), tok + "\n"} {
		if _, err := req.Log.Write([]byte(s)); err != nil {
			return steps.Result{}, err
		}
	}
	return steps.Result{}, nil
}

// A secret a step prints never leaves the runner: the activities mask it
// before the sink, and neither a request nor the server's log holds it.
func TestSecretsStayOnTheRunner(t *testing.T) {
	const secret = "hunter2-but-longer"
	t.Setenv("SLUICE_TEST_SHIP_TOKEN", secret)
	srv := newServer(t)
	srv.start()
	spool := t.TempDir()
	sink := newSink(t, srv, spool)
	acts := &engine.Activities{
		Runner:    "far-away",
		Executors: steps.Registry{"leaky": leaky{}},
		Logs:      sink,
	}
	in := engine.StepInput{
		RunID: key.Run, StageID: key.Stage, Pipeline: "web",
		Step:    plan.Step{Name: key.Step, Kind: "leaky"},
		Env:     map[string]plan.Template{"TOKEN": {Parts: []plan.Part{{Ref: &plan.Ref{Secret: "tok"}}}}},
		Secrets: []plan.Secret{{Name: "tok", Env: "SLUICE_TEST_SHIP_TOKEN"}},
	}
	if _, err := acts.RunStep(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// RunStep closed the log, which waited for the server.
	log := srv.log(key)
	want := "using ***\n" + strings.Repeat("x", 70<<10) + "***\n"
	if log != want {
		t.Errorf("the server's log is not the masked output (%d bytes, want %d): %.40q", len(log), len(want), log)
	}
	posts := srv.posts()
	if len(posts) < 2 {
		t.Errorf("%d requests; the log should have gone in two chunks at least", len(posts))
	}
	for i, p := range posts {
		if bytes.Contains(p.body, []byte(secret)) || bytes.Contains(p.body, []byte(secret[:5])) {
			t.Errorf("request %d carries the secret, or part of it", i)
		}
	}
}
