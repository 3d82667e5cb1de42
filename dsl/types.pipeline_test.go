package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
)

const triggerPipeline = `
pipeline "web" {
  on "push" {
    branches        = ["main", "release/**"]
    branches_ignore = ["release/old/*"]
    paths           = ["services/api/**", "go.mod"]
    paths_ignore    = ["**/*.md"]
  }
  on "pull_request" {
    branches = ["main"]
  }
  on "tag" {
    pattern = ["v*", "api-*"]
  }
  on "schedule" {
    cron = "0 3 * * 1-5"
  }
  on "manual" {
    input "environment" {
      options  = ["staging", "production"]
      required = true
    }
  }
}
stage "s" {
  step "run" "x" {
    command = ["echo", pipeline.inputs.environment]
  }
}
`

func writePipeline(t *testing.T, text string) *Sources {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	src, diags := Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return src
}

func TestTriggers(t *testing.T) {
	src := writePipeline(t, triggerPipeline)
	push := func(branch string, changed ...string) Options {
		return Options{Git: plan.Git{Event: "push", Branch: branch, Ref: "refs/heads/" + branch, ChangedFiles: changed}, ChangedFilesKnown: changed != nil}
	}
	tests := []struct {
		name    string
		opts    Options
		matched bool
		reason  string
	}{
		{"push to main with a matching file", push("main", "services/api/main.go"), true, `"services/api/main.go" matches the path filters`},
		{"push to a release branch", push("release/1.x/hotfix", "go.mod"), true, "matches"},
		{"push to an ignored branch", push("release/old/x", "go.mod"), false, `matches branches_ignore`},
		{"push to another branch", push("feature", "go.mod"), false, `branch "feature" does not match branches "main" and "release/**"`},
		{"push changing only docs", push("main", "services/api/README.md"), false, "no changed file matches the path filters (1 changed)"},
		{"push changing files elsewhere", push("main", "web/index.html"), false, "no changed file matches"},
		{"push with unknown changed files", push("main"), true, "path filters not checked"},
		{"pull request into main", Options{Git: plan.Git{Event: "pull_request", BaseRef: "main", PullRequest: 7}}, true, `target branch "main" matches`},
		{"pull request into develop", Options{Git: plan.Git{Event: "pull_request", BaseRef: "develop"}}, false, `target branch "develop" does not match`},
		{"tag v1.2.0", Options{Git: plan.Git{Event: "tag", Tag: "v1.2.0"}}, true, `tag "v1.2.0" matches`},
		{"tag api-3", Options{Git: plan.Git{Event: "tag", Tag: "api-3"}}, true, `matches`},
		{"tag 1.0", Options{Git: plan.Git{Event: "tag", Tag: "1.0"}}, false, `tag "1.0" does not match pattern "v*" and "api-*"`},
		{"schedule", Options{Git: plan.Git{Event: "schedule", Branch: "main"}}, true, `scheduled "0 3 * * 1-5"`},
		{"manual", Options{Git: plan.Git{Event: "manual"}, Inputs: map[string]string{"environment": "staging"}}, true, "started by hand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := Compile(src, tt.opts)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if p.Trigger.Matched != tt.matched || !strings.Contains(p.Trigger.Reason, tt.reason) {
				t.Errorf("trigger = %v %q; want %v and a reason containing %q", p.Trigger.Matched, p.Trigger.Reason, tt.matched, tt.reason)
			}
			for _, s := range p.Stages {
				if skipped := s.Skip != ""; skipped == tt.matched {
					t.Errorf("stage %s skip = %q, but the trigger matched = %v", s.ID, s.Skip, tt.matched)
				}
			}
		})
	}
}

func TestManualInputs(t *testing.T) {
	src := writePipeline(t, triggerPipeline)
	tests := []struct {
		name   string
		inputs map[string]string
		want   string // a diagnostic detail, or "" for success
	}{
		{"given", map[string]string{"environment": "production"}, ""},
		{"missing required", nil, `A manual run needs the input "environment"`},
		{"not an option", map[string]string{"environment": "prod"}, `must be one of "staging" and "production"; got "prod"`},
		{"undeclared", map[string]string{"environment": "staging", "enviroment": "x"}, `Did you mean "environment"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := Compile(src, Options{Git: plan.Git{Event: "manual"}, Inputs: tt.inputs})
			if tt.want == "" {
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				if got := p.Stages[0].Steps[0].Run.Command[1].Literal(); got != tt.inputs["environment"] {
					t.Errorf("pipeline.inputs.environment = %q; want %q", got, tt.inputs["environment"])
				}
				return
			}
			if !diags.HasErrors() || !strings.Contains(diags.Error(), tt.want) {
				t.Errorf("diagnostics = %v; want one containing %q", diags, tt.want)
			}
		})
	}
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"main", "main", true},
		{"main", "mainline", false},
		{"release/*", "release/1.x", true},
		{"release/*", "release/1.x/hotfix", false},
		{"release/**", "release/1.x/hotfix", true},
		{"**/*.go", "main.go", true},
		{"**/*.go", "cmd/a/b.go", true},
		{"**/*.go", "cmd/a/b.gox", false},
		{"services/**", "services/api/main.go", true},
		{"services/**", "servicesx/api", false},
		{"v?.*", "v1.2", true},
		{"v?.*", "v/.2", false},
		{"*", "", true},
		{"", "a", false},
	}
	for _, tt := range tests {
		if got := matchGlob(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v; want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

// pipeline.dry_run is true in the plan of a dry run only, so that a stage
// that cannot work without what a dry run does not do (an image pushed)
// skips itself, and says why; a misspelling is a diagnostic that names it.
func TestPipelineDryRun(t *testing.T) {
	src := writePipeline(t, `
pipeline "web" {
  on "push" {}
}
stage "build" {
  step "run" "x" { command = ["echo", "dry run: ${pipeline.dry_run}"] }
}
stage "try" {
  needs = [stage.build]
  when  = !pipeline.dry_run
  step "run" "y" { command = ["true"] }
}
`)
	for _, dry := range []bool{false, true} {
		p, diags := Compile(src, Options{Git: plan.Git{Event: "push", Branch: "main"}, DryRun: dry})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		want := map[bool]string{false: "dry run: false", true: "dry run: true"}[dry]
		if got := p.Stages[0].Steps[0].Run.Command[1].Literal(); got != want {
			t.Errorf("dry run %v: the build step echoes %q; want %q", dry, got, want)
		}
		skip := p.Stages[1].Skip
		if dry && skip != "when is false: !pipeline.dry_run" || !dry && skip != "" {
			t.Errorf("dry run %v: stage try skip = %q", dry, skip)
		}
	}
	bad := writePipeline(t, `
pipeline "web" {
  on "push" {}
}
stage "try" {
  when = !pipeline.dryrun
  step "run" "x" { command = ["true"] }
}
`)
	_, diags := Compile(bad, Options{Git: plan.Git{Event: "push", Branch: "main"}})
	if !diags.HasErrors() || !strings.Contains(diags.Error(), `p.hcl:6,19-26`) || !strings.Contains(diags.Error(), `Did you mean "dry_run"?`) {
		t.Errorf("diagnostics = %v; want one at p.hcl:6,19-26 suggesting dry_run", diags)
	}
}
