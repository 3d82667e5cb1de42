package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/cmd/sluice/cli"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server"
)

const dryPipeline = `pipeline "dry" {
  on "manual" {}
}

stage "build" {
  step "run" "mode" {
    command = ["sh", "-c", "echo SLUICE_DRY_RUN=$SLUICE_DRY_RUN dry_run=${pipeline.dry_run}"]
  }
}

# What needs an image a dry run does not push skips itself in one.
stage "smoke" {
  needs = [stage.build]
  when  = !pipeline.dry_run
  step "run" "try" {
    command = ["true"]
  }
}
`

// sluice run --server --dry-run starts a dry run on the server, through
// the API's dry_run: its plan has pipeline.dry_run true (the stage that
// would not work in one is skipped, and says why), its steps see
// SLUICE_DRY_RUN, and the run says it is a dry run. A flag the server
// cannot honour is refused before anything starts, rather than starting
// a run other than the one asked for.
func TestRemoteDryRun(t *testing.T) {
	dir := t.TempDir()
	repoDir := gitProject(t, dir, "dry.hcl", []byte(dryPipeline))
	e := startWith(t, func(c *server.Config) {
		c.NoRunner = false
		c.Repositories = []server.Repository{{Name: "dry", URL: repoDir}}
	})
	t.Setenv("SLUICE_TOKEN", token(t, e.home, "alice"))
	t.Setenv("SLUICE_SERVER", "")
	t.Setenv("SLUICE_HOME", filepath.Join(dir, "cli-home"))
	sluice := func(args ...string) (int, string, string) {
		var stdout, stderr syncBuffer
		code := cli.Main(append([]string{"run", "--server", e.url, "--repo", "dry", "--ref", "main", "--progress", "plain"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	for _, args := range [][]string{{"--var", "x=1"}, {"--dry-run", "--dirty", "--event", "tag"}} {
		code, out, errOut := sluice(args...)
		if code != 2 || !strings.Contains(errOut, "cannot apply there") || !strings.Contains(errOut, args[len(args)-2]) || out != "" {
			t.Errorf("sluice run --server %v: exit %d, stdout %q, stderr %q; want exit 2 naming the flag", args, code, out, errOut)
		}
	}
	// (Other tests' runs share the Temporal server: only this repository's.)
	if runs, err := engine.List(context.Background(), e.client, fmt.Sprintf("%s = 'dry'", engine.AttrRepo.GetName())); err != nil || len(runs) != 0 {
		t.Fatalf("refused commands started runs: %+v %v", runs, err)
	}

	code, out, errOut := sluice("--dry-run")
	if code != 0 {
		t.Fatalf("sluice run --server --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	m := regexp.MustCompile(`(?m)^Dry run (\S+) of pipeline dry started on `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no dry run started:\n%s", out)
	}
	for _, want := range []string{
		"build/mode | SLUICE_DRY_RUN=true dry_run=true\n",
		"when is false: !pipeline.dry_run",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run's output has no %q:\n%s", want, out)
		}
	}
	st, err := engine.Status(context.Background(), e.client, m[1])
	if err != nil {
		t.Fatal(err)
	}
	smoke, _ := st.Stage("smoke")
	if !st.DryRun || st.State != engine.StateSucceeded || smoke.State != engine.StateSkipped {
		t.Errorf("the run: dry run %v, %s, smoke %s; want a dry run that succeeded with smoke skipped", st.DryRun, st.State, smoke.State)
	}

	// --pipeline picks one of the repository's pipelines; one it does not
	// have starts nothing. Without --server it is refused.
	if code, out, errOut := sluice("--dry-run", "--pipeline", "nosuch"); code != 1 || !strings.Contains(errOut, "Nothing to run") || strings.Contains(out, "started") {
		t.Errorf("--pipeline nosuch: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := sluice("--dry-run", "--pipeline", "dry"); code != 0 || !strings.Contains(out, "Dry run ") {
		t.Errorf("--pipeline dry: exit %d\n%s%s", code, out, errOut)
	}
	var stdout, stderr syncBuffer
	if code := cli.Main([]string{"run", "--pipeline", "dry"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--pipeline picks one of a server repository's pipelines") {
		t.Errorf("--pipeline without --server: exit %d\n%s", code, stderr.String())
	}

	// Without --dry-run the same command runs everything, for real.
	code, out, errOut = sluice()
	if code != 0 || !strings.Contains(out, "build/mode | SLUICE_DRY_RUN= dry_run=false\n") || strings.Contains(out, "when is false") {
		t.Errorf("sluice run --server: exit %d\n%s%s", code, out, errOut)
	}
}
