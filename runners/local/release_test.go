package local

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// TestReleaseWithoutGitHub: on a machine with no GitHub credentials, the
// local runner's release step says what it would do and succeeds.
func TestReleaseWithoutGitHub(t *testing.T) {
	t.Setenv("GITHUB_TOKEN", "")
	t.Setenv("SLUICE_GITHUB_URL", "")
	execs := steps.Registry{}
	withRelease(execs)
	e, ok := execs[plan.KindRelease]
	if !ok {
		t.Fatal("no release executor registered")
	}
	var log bytes.Buffer
	sha := strings.Repeat("ab", 20)
	res, err := e.Execute(context.Background(), steps.Request{
		Step: plan.Step{Name: "gh", Kind: plan.KindRelease, Release: &plan.ReleaseStep{Tag: plan.Lit("v1.2.0"), Notes: plan.Lit("generate")}},
		Git:  plan.Git{SHA: sha, Repo: "acme/go-service"},
		Log:  &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "dry run: would tag acme/go-service v1.2.0 at " + sha; !strings.HasPrefix(log.String(), want) {
		t.Errorf("log = %q, want it to start with %q", log.String(), want)
	}
	if res.Outputs["tag"] != "v1.2.0" {
		t.Errorf("outputs = %v", res.Outputs)
	}
}
