package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/runners/buildkitd"
	"github.com/sluice-ci/sluice/runners/registry"
)

// BuildOptions brings BuildKit and a registry into the stack, for image
// steps and run steps in containers.
type BuildOptions struct {
	// BuildKitHost is a running buildkitd to use (BUILDKIT_HOST); empty
	// uses the home's or starts one.
	BuildKitHost string
	// Registry is an existing registry (host:port) to use
	// (SLUICE_REGISTRY); empty uses the home's or serves one.
	Registry string
	// Out receives the addresses and what happens to buildkitd.
	Out io.Writer
}

// Build is the BuildKit daemon and the registry a stack's runner uses.
type Build struct {
	// BuildKit is the daemon; its Address is what executors dial, and its
	// Ready and Explain serve each build.
	BuildKit *buildkitd.Daemon
	// Registry is the registry's host:port: where images are pushed and
	// base images pulled, over plain HTTP when it is on this machine.
	Registry string

	reg *registry.Registry
}

// NeedsBuild says whether running p needs BuildKit: it has an image step
// or a run step in a container, in a stage that is not skipped.
func NeedsBuild(p *plan.Plan) bool {
	for _, st := range p.Stages {
		if st.Skip != "" {
			continue
		}
		for _, s := range st.Steps {
			if s.Kind == plan.KindImage || (s.Kind == plan.KindRun && s.Run != nil && !s.Run.Image.IsZero()) {
				return true
			}
		}
	}
	return false
}

// BuildFromEnv reads the build settings from the environment: BUILDKIT_HOST
// and SLUICE_REGISTRY.
func BuildFromEnv(out io.Writer) *BuildOptions {
	return &BuildOptions{BuildKitHost: os.Getenv(buildkitd.EnvAddress), Registry: os.Getenv(registry.EnvAddress), Out: out}
}

// startBuild starts (or finds) the registry, then buildkitd, which is told
// that the registry speaks plain HTTP.
func (s *Stack) startBuild(ctx context.Context, o BuildOptions) error {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	reg, err := registry.Start(ctx, registry.Options{Home: s.home, Address: o.Registry})
	if err != nil {
		return err
	}
	b := &Build{Registry: reg.Host, reg: reg}
	s.Build = b
	switch {
	case o.Registry != "":
		fmt.Fprintf(out, "registry: using %s=%s\n", registry.EnvAddress, reg.Host)
	case reg.Serving:
		fmt.Fprintf(out, "registry: serving %s (storage in %s)\n", reg.Host, filepath.Join(s.home, "registry"))
	default:
		fmt.Fprintf(out, "registry: using %s, served by another sluice of %s\n", reg.Host, s.home)
	}
	b.BuildKit, err = buildkitd.Ensure(ctx, buildkitd.Options{Home: s.home, Address: o.BuildKitHost, Registries: []string{reg.Host}, Out: out})
	return err
}

// closeBuild stops what this process started.
func (b *Build) close() {
	if b == nil {
		return
	}
	if b.BuildKit != nil {
		b.BuildKit.Close()
	}
	b.reg.Close()
}
