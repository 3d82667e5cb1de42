package dsl

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// A run step's junit reports reach the plan as written: paths and globs
// relative to its working directory, where a .. may climb out of the
// working directory but not out of the workspace.
func TestRunJUnit(t *testing.T) {
	src := writePipeline(t, `
pipeline "p" {}
stage "test" {
  step "run" "unit" {
    command = ["go", "test", "./..."]
    junit   = ["report.xml", "build/test-results/**/*.xml"]
  }
  step "run" "api" {
    working_dir = "services/api"
    script      = "npm test"
    junit       = ["../../reports/api-*.xml"]
  }
}
`)
	p, diags := Compile(src, Options{Git: plan.Git{Event: "manual"}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, _ := p.Stage("test")
	if got, want := s.Steps[0].Run.JUnit, []string{"report.xml", "build/test-results/**/*.xml"}; !slices.Equal(got, want) {
		t.Errorf("unit: junit = %q, want %q", got, want)
	}
	if got, want := s.Steps[1].Run.JUnit, []string{"../../reports/api-*.xml"}; !slices.Equal(got, want) {
		t.Errorf("api: junit = %q, want %q", got, want)
	}
}

// A junit pattern that leaves the workspace is a diagnostic at the
// pattern itself, which names the step and says how to write one.
func TestRunJUnitOutsideWorkspace(t *testing.T) {
	for _, tc := range []struct {
		attrs   string
		pattern string
		line    int
		column  int
	}{
		{`junit = ["../x.xml"]`, "../x.xml", 6, 14},
		{`junit = ["ok.xml", "/tmp/x.xml"]`, "/tmp/x.xml", 6, 24},
		{"working_dir = \"a/b\"\n    junit = [\"../../../x.xml\"]", "../../../x.xml", 7, 14},
		{`junit = [""]`, "", 6, 14},
	} {
		src := writePipeline(t, `
pipeline "p" {}
stage "test" {
  step "run" "unit" {
    command = ["go", "test", "./..."]
    `+tc.attrs+`
  }
}
`)
		_, diags := Compile(src, Options{Git: plan.Git{Event: "manual"}})
		if len(diags) != 1 || diags[0].Summary != "Invalid junit pattern" {
			t.Errorf("%s: diagnostics %v, want one Invalid junit pattern", tc.attrs, diags)
			continue
		}
		d := diags[0]
		if want := `"` + tc.pattern + `" is not a path inside the workspace`; !strings.Contains(d.Detail, want) || !strings.Contains(d.Detail, `run step "unit"`) {
			t.Errorf("%s: detail %q, want it to say %q and name the step", tc.attrs, d.Detail, want)
		}
		if d.Subject == nil || d.Subject.Start.Line != tc.line || d.Subject.Start.Column != tc.column {
			t.Errorf("%s: diagnostic at %v, want line %d column %d", tc.attrs, d.Subject, tc.line, tc.column)
		}
	}
}
