package dsl

import (
	"slices"
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
