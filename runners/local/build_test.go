package local

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/internal/testing/buildtest"
	"github.com/sluice-ci/sluice/runners/buildkitd"
	"github.com/sluice-ci/sluice/runners/registry"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/run"
)

func TestStartBuildStartsRegistryAndBuildkitd(t *testing.T) {
	root, err := buildtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(buildkitd.EnvBinary, buildtest.Binary(root))
	s := &Stack{home: t.TempDir()}
	var out bytes.Buffer
	err = s.startBuild(context.Background(), BuildOptions{Out: &out})
	defer s.Build.close()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := registry.Ping(ctx, s.Build.Registry); err != nil {
		t.Errorf("the registry at %s: %v", s.Build.Registry, err)
	}
	if err := buildkitd.Ping(ctx, s.Build.BuildKit.Address()); err != nil {
		t.Errorf("buildkitd at %s: %v", s.Build.BuildKit.Address(), err)
	}
	for _, want := range []string{"registry: serving " + s.Build.Registry, "buildkitd: started (pid ", s.Build.BuildKit.Address()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the stack did not say %q:\n%s", want, out.String())
		}
	}
}

func TestNeedsBuild(t *testing.T) {
	run := func(image string) plan.Step {
		r := &plan.RunStep{Command: []plan.Template{plan.Lit("true")}}
		if image != "" {
			r.Image = plan.Lit(image)
		}
		return plan.Step{Name: "s", Kind: plan.KindRun, Run: r}
	}
	for _, tc := range []struct {
		name  string
		steps []plan.Step
		skip  string
		want  bool
	}{
		{name: "host run steps", steps: []plan.Step{run("")}, want: false},
		{name: "run step in a container", steps: []plan.Step{run(""), run("busybox:local")}, want: true},
		{name: "image step", steps: []plan.Step{{Name: "i", Kind: plan.KindImage, Image: &plan.ImageStep{}}}, want: true},
		{name: "image step in a skipped stage", steps: []plan.Step{{Name: "i", Kind: plan.KindImage, Image: &plan.ImageStep{}}}, skip: "when is false", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &plan.Plan{Stages: []plan.Stage{{ID: "a", Steps: tc.steps, Skip: tc.skip}}}
			if got := NeedsBuild(p); got != tc.want {
				t.Errorf("NeedsBuild = %v, want %v", got, tc.want)
			}
		})
	}
}

// sluice dev stays up without buildkitd: it says why, host steps run, and
// the steps that need BuildKit fail with that reason.
func TestOptionalBuildWithoutBuildkitd(t *testing.T) {
	t.Setenv(buildkitd.EnvBinary, filepath.Join(t.TempDir(), "no-buildkitd"))
	t.Setenv("PATH", t.TempDir())
	s := &Stack{home: t.TempDir()}
	var out bytes.Buffer
	err := s.startBuild(context.Background(), BuildOptions{Out: &out, Optional: true})
	defer s.Build.close()
	if err != nil {
		t.Fatalf("an optional BuildKit that cannot start failed the stack: %v", err)
	}
	if !strings.Contains(out.String(), "buildkitd: not available") {
		t.Errorf("the stack did not say buildkitd is missing:\n%s", out.String())
	}
	if got := s.Build.BuildKitAddress(); got != "unavailable" {
		t.Errorf("BuildKitAddress = %q, want unavailable", got)
	}
	execs := steps.Registry{}
	s.Build.register(execs)
	img := plan.Step{Name: "app", Kind: plan.KindImage, Image: &plan.ImageStep{}}
	_, err = execs[plan.KindImage].Execute(context.Background(), steps.Request{Step: img})
	if err == nil || !strings.Contains(err.Error(), `step "app" needs buildkitd`) {
		t.Errorf("an image step without buildkitd: got %v", err)
	}

	// Without Optional, the same failure stops the stack.
	s2 := &Stack{home: t.TempDir()}
	err = s2.startBuild(context.Background(), BuildOptions{Out: io.Discard})
	defer s2.Build.close()
	if err == nil {
		t.Fatal("a required BuildKit that cannot start did not fail the stack")
	}
}

// TestRunnerWithoutBuildTakesBuildSteps: a runner started without BuildKit
// (sluice run of host steps) has executors for image steps and run steps
// in containers all the same, which bring BuildKit up when a step first
// needs it; when it cannot come up, the step says why, and the next one
// tries again.
func TestRunnerWithoutBuildTakesBuildSteps(t *testing.T) {
	t.Setenv(buildkitd.EnvBinary, filepath.Join(t.TempDir(), "no-buildkitd"))
	t.Setenv("PATH", t.TempDir())
	t.Setenv(buildkitd.EnvAddress, "")
	s := &Stack{home: t.TempDir()}
	execs := steps.Registry{}
	s.lazy.register(s, execs)
	defer func() { s.Build.close() }()
	img := plan.Step{Name: "app", Kind: plan.KindImage, Image: &plan.ImageStep{}}
	for range 2 {
		_, err := execs[plan.KindImage].Execute(context.Background(), steps.Request{Step: img})
		if err == nil || !strings.Contains(err.Error(), `step "app" needs buildkitd: this runner started without BuildKit and could not bring it up`) {
			t.Fatalf("an image step on a runner without BuildKit, where none can start: got %v", err)
		}
		if s.Build != nil {
			t.Fatal("a build that could not come up was kept")
		}
	}
	if _, ok := execs[plan.KindRun].(*run.Executor); !ok {
		t.Fatalf("run steps: %T", execs[plan.KindRun])
	}
}
