package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/runners/buildkitd"
	"github.com/sluice-ci/sluice/runners/registry"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/buildkit"
	"github.com/sluice-ci/sluice/steps/container"
	"github.com/sluice-ci/sluice/steps/image"
	"github.com/sluice-ci/sluice/steps/run"
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
	// RegistryPort is the port to serve the home's registry on, when this
	// process serves it, if it is free; 0 means the registry's default.
	RegistryPort int
	// Out receives the addresses and what happens to buildkitd.
	Out io.Writer
	// Optional keeps the stack up without BuildKit when buildkitd cannot
	// be found or started (sluice dev): the reason is printed, host steps
	// run, and image steps and run steps in containers fail with it.
	Optional bool
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
	// missing is why BuildKit is not there, when it was optional.
	missing error
	// conn is the one connection to buildkitd that the image and
	// container executors share.
	conn *buildkit.Conn
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
	reg, err := registry.Start(ctx, registry.Options{Home: s.home, Address: o.Registry, Port: o.RegistryPort})
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
	if err != nil && o.Optional {
		b.BuildKit, b.missing = nil, err
		fmt.Fprintf(out, "buildkitd: not available, so image steps and run steps with an image will fail here: %v\n", err)
		return nil
	}
	return err
}

// BuildKitAddress is where the stack's buildkitd listens, or why there is
// none.
func (b *Build) BuildKitAddress() string {
	if b.BuildKit == nil {
		return "unavailable"
	}
	return b.BuildKit.Address()
}

// register gives execs the executors of image steps and of run steps in
// containers, over one shared connection to buildkitd; run steps without
// an image stay on the host.
func (b *Build) register(execs steps.Registry) {
	if b.BuildKit == nil {
		execs[plan.KindImage] = unavailable{b.missing}
		execs[plan.KindRun] = &run.Executor{Container: unavailable{b.missing}}
		return
	}
	b.conn = &buildkit.Conn{Addr: b.BuildKit.Address()}
	execs[plan.KindImage] = supervised{d: b.BuildKit, next: &image.Executor{BuildKit: b.conn}}
	execs[plan.KindRun] = &run.Executor{Container: supervised{d: b.BuildKit, next: &container.Executor{BuildKit: b.conn, Helper: container.FindHelper()}}}
}

// supervised runs a step that needs buildkitd: it waits for the daemon to
// answer first (a daemon that died is being started again, and a borrowed
// one that is gone is replaced), and a step that fails because the daemon
// died under it says so, with the end of the daemon's log. The step's
// connection is dropped by the executor when it breaks, so the step's
// next attempt dials the new daemon.
type supervised struct {
	d    *buildkitd.Daemon
	next steps.Executor
}

func (s supervised) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	if err := s.d.Ready(ctx); err != nil {
		return steps.Result{}, fmt.Errorf("step %q needs buildkitd: %w", req.Step.Name, err)
	}
	start := time.Now()
	res, err := s.next.Execute(ctx, req)
	if err != nil && ctx.Err() == nil {
		err = s.d.Explain(start, err)
	}
	return res, err
}

// unavailable refuses the steps that need the buildkitd the stack could
// not bring up, with the reason.
type unavailable struct{ reason error }

func (u unavailable) Execute(_ context.Context, req steps.Request) (steps.Result, error) {
	return steps.Result{}, fmt.Errorf("step %q needs buildkitd, which this runner could not start: %w", req.Step.Name, u.reason)
}

// closeBuild stops what this process started.
func (b *Build) close() {
	if b == nil {
		return
	}
	if b.conn != nil {
		b.conn.Close()
	}
	if b.BuildKit != nil {
		b.BuildKit.Close()
	}
	b.reg.Close()
}

// lazyBuild gives a runner started without BuildKit the executors of image
// steps and of run steps in containers all the same: the first such step
// brings up the home's registry and buildkitd (as sluice run would, from
// BUILDKIT_HOST and SLUICE_REGISTRY), so that no local runner takes a
// stage it cannot run. A step that cannot have BuildKit fails with the
// reason, and the next one tries again.
type lazyBuild struct {
	mu        sync.Mutex
	s         *Stack
	image     steps.Executor
	container steps.Executor
}

func (l *lazyBuild) register(s *Stack, execs steps.Registry) {
	l.s = s
	execs[plan.KindImage] = lazyExecutor{l, false}
	execs[plan.KindRun] = &run.Executor{Container: lazyExecutor{l, true}}
}

// executors brings the build up once.
func (l *lazyBuild) executors(ctx context.Context) (image, container steps.Executor, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.image == nil {
		if l.s.Build == nil {
			if err := l.s.startBuild(ctx, *BuildFromEnv(io.Discard)); err != nil {
				l.s.Build.close()
				l.s.Build = nil
				return nil, nil, fmt.Errorf("this runner started without BuildKit and could not bring it up: %w", err)
			}
		}
		execs := steps.Registry{}
		l.s.Build.register(execs)
		l.image, l.container = execs[plan.KindImage], execs[plan.KindRun].(*run.Executor).Container
	}
	return l.image, l.container, nil
}

type lazyExecutor struct {
	l         *lazyBuild
	container bool
}

func (x lazyExecutor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	image, container, err := x.l.executors(ctx)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q needs buildkitd: %w", req.Step.Name, err)
	}
	if x.container {
		return container.Execute(ctx, req)
	}
	return image.Execute(ctx, req)
}
