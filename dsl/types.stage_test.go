package dsl

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// A stage with a dagger step runs only on runners labelled dagger: the
// label joins whatever runs_on says, once.
func TestKindLabelsRouteStages(t *testing.T) {
	src := writePipeline(t, `
pipeline "p" {}
stage "build" {
  step "run" "b" { command = ["true"] }
}
stage "smoke" {
  runs_on = ["linux"]
  step "run" "prep" { command = ["true"] }
  step "dagger" "check" {
    module   = "./ci"
    function = "check"
  }
  step "dagger" "again" {
    module   = "./ci"
    function = "check"
  }
}
stage "named" {
  runs_on = ["dagger"]
  step "dagger" "n" {
    module   = "./ci"
    function = "check"
  }
}
`)
	p, diags := Compile(src, Options{Git: plan.Git{Event: "manual"}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := map[string][]string{"build": nil, "smoke": {"linux", "dagger"}, "named": {"dagger"}}
	for id, labels := range want {
		s, ok := p.Stage(id)
		if !ok {
			t.Fatalf("no stage %q", id)
		}
		if !slices.Equal(s.RunsOn, labels) {
			t.Errorf("stage %q runs_on = %q, want %q", id, s.RunsOn, labels)
		}
	}
}

// A stage's artifacts reach the plan; a pattern that leaves the workspace
// or is no glob is a diagnostic that says how to write one.
func TestStageArtifacts(t *testing.T) {
	src := writePipeline(t, `
pipeline "p" {}
stage "build" {
  artifacts = ["bin/*", "dist/**/*.tar.gz"]
  step "run" "b" { command = ["true"] }
}
`)
	p, diags := Compile(src, Options{Git: plan.Git{Event: "manual"}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, _ := p.Stage("build")
	if !slices.Equal(s.Artifacts, []string{"bin/*", "dist/**/*.tar.gz"}) {
		t.Errorf("artifacts = %q", s.Artifacts)
	}
	for _, tc := range []struct{ pattern, want string }{
		{"/etc/passwd", "not a path relative to the workspace"},
		{"../other/*", "not a path relative to the workspace"},
	} {
		src := writePipeline(t, `
pipeline "p" {}
stage "build" {
  artifacts = ["`+tc.pattern+`"]
  step "run" "b" { command = ["true"] }
}
`)
		_, diags := Compile(src, Options{Git: plan.Git{Event: "manual"}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.want) {
			t.Errorf("artifacts = [%q]: diagnostics %v, want one saying %q", tc.pattern, diags, tc.want)
		}
	}
}
