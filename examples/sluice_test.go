package examples

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// root is the repository's root, where Sluice's own pipeline lives.
const root = ".."

// TestSluicePipeline pins what .sluice/sluice.hcl, the pipeline that builds
// Sluice (make image), promises: it compiles without a diagnostic, checks,
// tests, builds and tries the image on a push, a pull request and a manual
// run, also releases on a tag, and in a dry run does not try what it did
// not push.
func TestSluicePipeline(t *testing.T) {
	src, diags := dsl.Load(filepath.Join(root, ".sluice"))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	main := plan.Git{SHA: "0123456789abcdef0123456789abcdef01234567", Branch: "main", Ref: "refs/heads/main", Event: "push", Repo: "sluice-ci/sluice"}
	pr := main
	pr.Event, pr.Branch, pr.Ref, pr.BaseRef, pr.PullRequest = "pull_request", "feature", "refs/pull/7/head", "main", 7
	manual := main
	manual.Event = "manual"
	tag := main
	tag.Event, tag.Branch, tag.Tag, tag.Ref = "tag", "", "v1.0.0", "refs/tags/v1.0.0"
	tests := []struct {
		name    string
		git     plan.Git
		dryRun  bool
		runs    []string
		version string
	}{
		{"push to main", main, false, []string{"test", "build", "try"}, "0.0.0-0123456"},
		{"pull request", pr, false, []string{"test", "build", "try"}, "0.0.0-0123456"},
		{"manual", manual, false, []string{"test", "build", "try"}, "0.0.0-0123456"},
		{"tag", tag, false, []string{"test", "build", "try", "release"}, "v1.0.0"},
		// A dry run pushes no image for try to pull.
		{"dry run of a tag", tag, true, []string{"test", "build"}, "v1.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := dsl.Compile(src, dsl.Options{Git: tt.git, DryRun: tt.dryRun})
			if len(diags) > 0 {
				t.Fatal(diags)
			}
			if !p.Trigger.Matched {
				t.Fatalf("the %s does not start the pipeline: %s", tt.git.Event, p.Trigger.Reason)
			}
			if runs := stagesThatRun(p); !slices.Equal(runs, tt.runs) {
				t.Fatalf("stages that run = %v; want %v", runs, tt.runs)
			}
			img := findStep(t, p, "sluice").Image
			if img == nil || len(img.Tags) != 1 || img.Tags[0].Literal() != "localhost:5000/sluice/sluice:"+tt.version || !img.Push {
				t.Fatalf("image step = %+v; want localhost:5000/sluice/sluice:%s, pushed", img, tt.version)
			}
			if _, err := os.Stat(filepath.Join(root, img.Context, img.Dockerfile)); err != nil {
				t.Errorf("the image step's Dockerfile: %v", err)
			}
		})
	}
}

// TestSluicePipelineTests checks that every package the pipeline's test
// stage names exists and has tests, so that a package moved or renamed
// does not silently leave the stage.
func TestSluicePipelineTests(t *testing.T) {
	src, diags := dsl.Load(filepath.Join(root, ".sluice"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, diags := dsl.Compile(src, dsl.Options{Git: plan.Git{Event: "push", Branch: "main"}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	unit := findStep(t, p, "unit").Run
	if unit == nil || !strings.HasSuffix(unit.Image.Literal(), "/golang:local") {
		t.Fatalf("the unit step = %+v; want a run step in golang:local", unit)
	}
	var pkgs []string
	for _, arg := range unit.Command {
		if a := arg.Literal(); strings.HasPrefix(a, "./") {
			pkgs = append(pkgs, a)
		}
	}
	if len(pkgs) < 10 {
		t.Fatalf("the unit step tests %v; want the packages that need no server", pkgs)
	}
	for _, pkg := range pkgs {
		dir := filepath.Join(root, strings.TrimSuffix(pkg, "/..."))
		tests, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
		if err != nil || len(tests) == 0 {
			t.Errorf("the test stage runs %s, which has no tests in %s", pkg, dir)
		}
	}
	for _, f := range []string{"deploy/image/prepare.sh", "deploy/image/Dockerfile.dockerignore"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the pipeline needs %s: %v", f, err)
		}
	}
}

func findStep(t *testing.T, p *plan.Plan, name string) plan.Step {
	t.Helper()
	for _, s := range p.Stages {
		for _, st := range s.Steps {
			if st.Name == name {
				return st
			}
		}
	}
	t.Fatalf("no step %q in the plan", name)
	return plan.Step{}
}
