package examples

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// TestExamples compiles every example for the events it is written for and
// checks what a reader of the example would expect to run.
func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob("*/.sluice")
	if err != nil || len(dirs) < 3 {
		t.Fatalf("want at least the hello, go-service and monorepo examples; found %v (%v)", dirs, err)
	}
	main := plan.Git{SHA: "0123456789abcdef0123456789abcdef01234567", Branch: "main", Ref: "refs/heads/main", Event: "push", Repo: "sluice-ci/sluice"}
	tag := main
	tag.Event, tag.Branch, tag.Tag, tag.Ref = "tag", "", "v1.0.0", "refs/tags/v1.0.0"
	manual := main
	manual.Event = "manual"
	events := map[string]plan.Git{"push": main, "tag": tag, "manual": manual}
	for _, dir := range dirs {
		for name, g := range events {
			t.Run(filepath.Dir(dir)+"/"+name, func(t *testing.T) {
				src, diags := dsl.Load(dir)
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				p, diags := dsl.Compile(src, dsl.Options{Git: g})
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				if len(p.Stages) == 0 || p.Digest == "" {
					t.Fatalf("empty plan for %s", name)
				}
			})
		}
	}
}

// TestGoServiceStages pins what the go-service example promises: build to
// monitor, with the release stages only on a tag, and the monitor stage
// only when a Prometheus is given.
func TestGoServiceStages(t *testing.T) {
	src, diags := dsl.Load("go-service/.sluice")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct {
		name string
		git  plan.Git
		vars map[string]string
		runs []string
	}{
		{"push to main", plan.Git{Event: "push", Branch: "main"}, nil, []string{"build", "test[flags=-cover]", "test[flags=-shuffle=on]"}},
		{"manual", plan.Git{Event: "manual", Branch: "main"}, nil, []string{"build", "test[flags=-cover]", "test[flags=-shuffle=on]"}},
		{"tag", plan.Git{Event: "tag", Tag: "v1.0.0"}, nil, []string{"build", "test[flags=-cover]", "test[flags=-shuffle=on]", "release", "deploy"}},
		{"tag with a Prometheus", plan.Git{Event: "tag", Tag: "v1.0.0"}, map[string]string{"prometheus": "http://127.0.0.1:9090"}, []string{"build", "test[flags=-cover]", "test[flags=-shuffle=on]", "release", "deploy", "monitor"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := dsl.Compile(src, dsl.Options{Git: tt.git, Vars: tt.vars})
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if runs := stagesThatRun(p); !slices.Equal(runs, tt.runs) {
				t.Fatalf("stages that run = %v; want %v", runs, tt.runs)
			}
		})
	}
	for _, f := range []string{"go-service/Dockerfile", "go-service/main.go", "go-service/main_test.go"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the go-service example needs %s: %v", f, err)
		}
	}
}

// TestMonorepoPaths checks that the monorepo example runs only what a
// change touches.
func TestMonorepoPaths(t *testing.T) {
	src, diags := dsl.Load("monorepo/.sluice")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct {
		name    string
		changed []string
		matched bool
		runs    []string
	}{
		{"api change", []string{"services/api/main.go"}, true, []string{"lint", "test[service=api,go=1.25]", "test[service=api,go=1.26]", "build-api"}},
		{"shared library", []string{"libs/shared/shared.go"}, true, []string{"lint", "test[service=api,go=1.25]", "test[service=api,go=1.26]", "test[service=web,go=1.26]", "build-api", "build-web"}},
		{"docs only", []string{"services/api/README.md"}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := dsl.Compile(src, dsl.Options{Git: plan.Git{Event: "push", Branch: "main", ChangedFiles: tt.changed}, ChangedFilesKnown: true})
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if p.Trigger.Matched != tt.matched {
				t.Fatalf("trigger matched = %v (%s); want %v", p.Trigger.Matched, p.Trigger.Reason, tt.matched)
			}
			if runs := stagesThatRun(p); !slices.Equal(runs, tt.runs) {
				t.Fatalf("stages that run = %v; want %v", runs, tt.runs)
			}
		})
	}
}

func stagesThatRun(p *plan.Plan) []string {
	var runs []string
	for _, s := range p.Stages {
		if s.Skip == "" {
			runs = append(runs, s.ID)
		}
	}
	return runs
}
