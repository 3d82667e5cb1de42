package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine/logstore"
	"github.com/sluice-ci/sluice/steps"
)

// Workspaces prepares and releases the directory the steps of a stage share
// on a runner. The real implementation checks the repository out at the
// run's commit; TempWorkspaces gives an empty directory.
type Workspaces interface {
	Prepare(ctx context.Context, req WorkspaceRequest) (dir string, err error)
	Release(ctx context.Context, req WorkspaceRequest, dir string) error
}

// WorkspaceRequest says which stage of which run a workspace is for.
type WorkspaceRequest struct {
	RunID    string
	Pipeline string
	StageID  string
	Git      plan.Git
	// Source is where the run's code is, when the run says so.
	Source *Source
}

// SecretResolver finds the value of a secret on the runner. Values never
// leave the runner except inside the step that uses them.
type SecretResolver interface {
	Resolve(ctx context.Context, s plan.Secret) (string, error)
}

// LogSink stores step logs outside workflow history. The file store in
// package engine/logstore satisfies it.
type LogSink interface {
	Writer(run, stage, step string) (io.WriteCloser, error)
}

// Activities are what a runner hosts: preparing a workspace, running a step
// in it and releasing it. The workflow calls them through a nil *Activities;
// a runner registers a filled-in one (see RegisterActivities).
type Activities struct {
	// Runner is the runner's name and Queue its own task queue; PrepareWorkspace
	// returns them so that the rest of the stage comes back here.
	Runner string
	Queue  string

	Workspaces Workspaces
	Executors  steps.Registry
	// Secrets resolves secrets; nil means HostSecrets{}.
	Secrets SecretResolver
	// Logs receives step logs (a logstore.Store fits); nil discards them.
	Logs LogSink
	// Heartbeats sends the heartbeats that record a batch's progress
	// (see RunSteps) and waits for the server to store them; NewRunner
	// gives it the runner's client. Nil sends them through the SDK, which
	// may hold them back.
	Heartbeats HeartbeatRecorder
	// HeartbeatInterval is how often a running activity heartbeats; zero
	// means every second (the worker throttles what reaches the server).
	HeartbeatInterval time.Duration

	// Pool counts the stages the runner holds (RunnerOptions.MaxStages);
	// NewRunner fills it in.
	Pool *StagePool
	// StateDir is where the runner notes the step activities it runs, so
	// that started again after a crash it fails them at once (see
	// inflight.go); empty notes nothing.
	StateDir string
	// Abort, when closed, cancels every running step (their processes get
	// SIGTERM, then SIGKILL after the grace period) and fails their
	// activities with RunnerStoppedError, so that their stages start again
	// on another runner: the second SIGTERM of a draining runner.
	Abort <-chan struct{}

	// StepDone, when set, learns of each step the runner ran: its kind,
	// how long its executor took and how it ended (err nil: it
	// succeeded), for the runner's metrics.
	StepDone func(ctx context.Context, kind string, took time.Duration, err error)

	// artifacts is RunnerOptions.Artifacts.
	artifacts ArtifactStore
}

// PrepareWorkspace takes a stage on this runner: it prepares the stage's
// workspace and returns the runner's own queue for the stage's steps.
func (a *Activities) PrepareWorkspace(ctx context.Context, in PrepareInput) (PrepareResult, error) {
	ctx, stop := a.heartbeat(ctx)
	defer stop()
	res, err := a.prepare(ctx, in)
	if err == nil && a.Pool != nil {
		// The stage is this runner's until it is released.
		a.Pool.Hold(stageKey(in.RunID, in.StageID))
	}
	return res, err
}

// prepare makes a stage's workspace.
func (a *Activities) prepare(ctx context.Context, in PrepareInput) (PrepareResult, error) {
	if a.Workspaces == nil {
		return PrepareResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("runner %q has no workspace provider", a.Runner), "NoWorkspaces", nil)
	}
	dir, err := a.Workspaces.Prepare(ctx, WorkspaceRequest{RunID: in.RunID, Pipeline: in.Pipeline, StageID: in.StageID, Git: in.Git, Source: in.Source})
	if err != nil {
		return PrepareResult{}, fmt.Errorf("preparing workspace for stage %q on runner %q: %w", in.StageID, a.Runner, err)
	}
	return PrepareResult{Runner: a.Runner, Queue: a.Queue, Workspace: dir}, nil
}

// ReleaseWorkspace cleans up after a stage.
func (a *Activities) ReleaseWorkspace(ctx context.Context, in ReleaseInput) error {
	if a.Pool != nil {
		defer a.Pool.Release(stageKey(in.RunID, in.StageID))
	}
	if a.Workspaces == nil {
		return nil
	}
	if err := a.Workspaces.Release(ctx, WorkspaceRequest{RunID: in.RunID, StageID: in.StageID, Git: in.Git}, in.Workspace); err != nil {
		return fmt.Errorf("releasing workspace of stage %q: %w", in.StageID, err)
	}
	return nil
}

// RunStep runs one step with the executor for its kind. It resolves the
// step's secrets here on the runner, masks them in the log, in the error and
// in the outputs, and heartbeats while the executor runs so that a lost
// runner is noticed and a cancelled run reaches the executor's context.
func (a *Activities) RunStep(ctx context.Context, in StepInput) (StepResult, error) {
	ctx, stop := a.heartbeat(ctx)
	defer stop()
	defer a.busy(in.RunID, in.StageID)()
	defer a.noteRunning(ctx, in.Step.Name)()
	ctx, aborted := a.abortable(ctx)
	res, err := a.runStep(ctx, in)
	if aborted() {
		return res, a.stopped(in.Step.Name)
	}
	return res, err
}

// RunnerStoppedError is the type of an activity's failure when its runner
// was stopped (a second SIGTERM) while it ran: the workflow takes the
// runner for lost and gives the stage to another one.
const RunnerStoppedError = "RunnerStopped"

// abortable derives a context that Abort cancels; aborted says whether it
// did.
func (a *Activities) abortable(ctx context.Context) (context.Context, func() bool) {
	if a.Abort == nil {
		return ctx, func() bool { return false }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-a.Abort:
			cancel(errAborted)
		case <-ctx.Done():
		}
	}()
	return ctx, func() bool { return errors.Is(context.Cause(ctx), errAborted) }
}

var errAborted = errors.New("the runner was stopped")

func (a *Activities) stopped(step string) error {
	return temporal.NewApplicationError(fmt.Sprintf("runner %q was stopped while it ran step %q", a.Runner, step), RunnerStoppedError)
}

// busy records, until the returned func is called, that a stage the
// runner holds is at work: the pool does not count it stale.
func (a *Activities) busy(run, stage string) (done func()) {
	if a.Pool == nil {
		return func() {}
	}
	key := stageKey(run, stage)
	a.Pool.Touch(key)
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-stop:
				a.Pool.Touch(key)
				return
			case <-t.C:
				a.Pool.Touch(key)
			}
		}
	}()
	return func() { close(stop) }
}

// runStep runs one step; the caller heartbeats.
func (a *Activities) runStep(ctx context.Context, in StepInput) (StepResult, error) {
	exec, ok := a.Executors[in.Step.Kind]
	if !ok {
		kinds := slices.Sorted(maps.Keys(a.Executors))
		return StepResult{}, stepFailure(fmt.Sprintf("runner %q cannot run %q steps: it runs %s steps. Route the stage to a runner that can with runs_on, or run this step kind on a runner that has its executor", a.Runner, in.Step.Kind, strings.Join(kinds, ", ")), "UnknownKind")
	}

	dry := dryRun(in.Env)
	secrets, unresolved, err := a.resolveSecrets(ctx, in, dry)
	if err != nil {
		return StepResult{}, stepFailure(err.Error(), "Secret")
	}
	values := secretValues(secrets)
	subst := func(t plan.Template) (plan.Template, error) {
		if t.IsLiteral() {
			return t, nil
		}
		s, err := t.Resolve(func(r plan.Ref) (string, error) {
			if r.Secret == "" {
				return "", fmt.Errorf("step output %s was not substituted", r)
			}
			return secrets[r.Secret], nil
		})
		return plan.Lit(s), err
	}
	step, err := plan.MapTemplates(in.Step, subst)
	if err != nil {
		return StepResult{}, stepFailure(fmt.Sprintf("resolving step %q: %v", in.Step.Name, err), "Resolve")
	}
	env, err := plan.MapTemplates(in.Env, subst)
	if err != nil {
		return StepResult{}, stepFailure(fmt.Sprintf("resolving env of step %q: %v", in.Step.Name, err), "Resolve")
	}

	req := steps.Request{
		RunID:     in.RunID,
		StageID:   in.StageID,
		Step:      step,
		Workspace: in.Workspace,
		Env: map[string]string{
			"CI":               "true",
			"SLUICE":           "true",
			"SLUICE_RUN_ID":    in.RunID,
			"SLUICE_PIPELINE":  in.Pipeline,
			"SLUICE_STAGE":     in.StageID,
			"SLUICE_STEP":      in.Step.Name,
			"SLUICE_WORKSPACE": in.Workspace,
			"SLUICE_SHA":       in.Git.SHA,
			"SLUICE_REF":       in.Git.Ref,
		},
		Git:    in.Git,
		DryRun: dry,
	}
	for k, v := range env {
		req.Env[k] = v.Literal()
	}

	logw := io.WriteCloser(nopCloser{io.Discard})
	if a.Logs != nil {
		if logw, err = a.Logs.Writer(in.RunID, in.StageID, in.Step.Name); err != nil {
			return StepResult{}, fmt.Errorf("opening log of step %q: %w", in.Step.Name, err)
		}
	}
	masked := logstore.NewMasker(logw, values)
	req.Log = masked
	if in.Attempt > 1 {
		fmt.Fprintf(masked, "sluice: attempt %d of step %q on runner %q\n", in.Attempt, in.Step.Name, a.Runner)
	}
	for _, u := range unresolved {
		if u.withheld {
			fmt.Fprintf(masked, "sluice: secret %q is empty for this step: %v\n", u.name, u.err)
		} else {
			fmt.Fprintf(masked, "sluice: dry run: secret %q is empty for this step: %v\n", u.name, u.err)
		}
	}

	began := time.Now()
	res, err := exec.Execute(ctx, req)
	if a.StepDone != nil {
		a.StepDone(ctx, in.Step.Kind, time.Since(began), err)
	}
	if cerr := errors.Join(masked.Close(), logw.Close()); cerr != nil && err == nil {
		err = fmt.Errorf("closing log of step %q: %w", in.Step.Name, cerr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return StepResult{}, ctx.Err()
		}
		// The outputs of a failed step (its exit_code, at least) travel in
		// the failure, for the steps after one that may fail.
		return StepResult{}, temporal.NewApplicationErrorWithOptions(maskString(err.Error(), values), "StepFailed",
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{maskedResult(res, values)}})
	}
	return maskedResult(res, values), nil
}

// maskedResult is a step's result with secret values masked in its outputs
// and its test report.
func maskedResult(res steps.Result, values []string) StepResult {
	out := StepResult{DryRun: res.DryRun, Tests: maskedTests(res.Tests, values)}
	for k, v := range res.Outputs {
		if out.Outputs == nil {
			out.Outputs = map[string]string{}
		}
		out.Outputs[k] = maskString(v, values)
	}
	return out
}

// maskedTests is a copy of a test report with secret values masked in
// every text of its failures: a test may well print the token it failed
// with.
func maskedTests(r *steps.TestReport, values []string) *TestReport {
	if r == nil {
		return nil
	}
	out := *r
	out.Failures = slices.Clone(r.Failures)
	for i := range out.Failures {
		f := &out.Failures[i]
		for _, s := range []*string{&f.Suite, &f.Name, &f.File, &f.Message, &f.Details} {
			*s = maskString(*s, values)
		}
	}
	return &out
}

// stepFailure is a failure of the step itself: the workflow decides about
// retries, so Temporal does not retry it.
func stepFailure(msg, typ string) error {
	return temporal.NewApplicationErrorWithOptions(msg, typ, temporal.ApplicationErrorOptions{NonRetryable: true})
}

// unresolvedSecret is a secret a step goes on without: one a dry run
// cannot resolve, or one the plan withholds.
type unresolvedSecret struct {
	name     string
	err      error
	withheld bool
}

// resolveSecrets resolves every secret the step refers to, by name. In a
// dry run a secret the runner cannot resolve is empty, and so is one the
// plan withholds (plan.Secret.Withheld); both are listed in unresolved for
// the step's log.
func (a *Activities) resolveSecrets(ctx context.Context, in StepInput, dry bool) (_ map[string]string, unresolved []unresolvedSecret, _ error) {
	var names []string
	collect := func(_ string, t plan.Template) {
		for _, r := range t.Refs() {
			if r.Secret != "" && !slices.Contains(names, r.Secret) {
				names = append(names, r.Secret)
			}
		}
	}
	plan.Templates(in.Step, collect)
	plan.Templates(in.Env, collect)
	res := a.Secrets
	if res == nil {
		res = HostSecrets{}
	}
	values := map[string]string{}
	for _, n := range names {
		i := slices.IndexFunc(in.Secrets, func(s plan.Secret) bool { return s.Name == n })
		if i < 0 {
			return nil, nil, fmt.Errorf("secret %q is not declared in the pipeline", n)
		}
		if why := in.Secrets[i].Withheld; why != "" {
			// The plan withholds it (a pull request from a fork): empty,
			// whatever the runner has.
			unresolved = append(unresolved, unresolvedSecret{n, errors.New(why), true})
			values[n] = ""
			continue
		}
		v, err := res.Resolve(ctx, in.Secrets[i])
		if err != nil && dry {
			unresolved = append(unresolved, unresolvedSecret{name: n, err: err})
		} else if err != nil {
			return nil, nil, fmt.Errorf("resolving secret %q on runner %q: %w", n, a.Runner, err)
		}
		values[n] = v
	}
	return values, unresolved, nil
}

// secretValues lists the values to mask, as the log masker does: values
// shorter than logstore.MinSecretLen protect nothing and are left alone.
func secretValues(m map[string]string) []string {
	var vs []string
	for _, v := range m {
		if len(v) >= logstore.MinSecretLen {
			vs = append(vs, v)
		}
	}
	// Longest first, so that a secret containing another is masked whole.
	slices.SortFunc(vs, func(a, b string) int { return len(b) - len(a) })
	return vs
}

// maskString replaces every secret value in s with logstore.Mask.
func maskString(s string, secrets []string) string {
	for _, v := range secrets {
		s = strings.ReplaceAll(s, v, logstore.Mask)
	}
	return s
}

// heartbeat records a heartbeat now and then until the returned func is
// called, and returns the context the activity goes on with: it ends when
// the server answers a heartbeat with a cancellation. Heartbeats carry no
// details: a retried step starts over.
//
// With a.Heartbeats (a runner's client), the heartbeats go straight to the
// server, each allowed half the heartbeat timeout: through the SDK, a
// heartbeat whose call outlasts the throttle interval (3 s) cancels the
// activity as if the server had, which a loaded frontend made happen to
// stages that were fine. A slow or failed call here only waits for the
// next; the server's heartbeat timeout still decides when a runner is
// lost.
func (a *Activities) heartbeat(ctx context.Context) (context.Context, func()) {
	every := a.HeartbeatInterval
	if every <= 0 {
		every = time.Second
	}
	if a.Heartbeats == nil || !activity.IsActivity(ctx) {
		return ctx, Heartbeat(ctx, every)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	token := activity.GetInfo(ctx).TaskToken
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(every, HeartbeatThrottle))
		defer t.Stop()
		for {
			call, end := context.WithTimeout(ctx, HeartbeatTimeout/2)
			err := a.Heartbeats.RecordActivityHeartbeat(call, token)
			end()
			var cancelled *temporal.CanceledError
			var gone *serviceerror.NotFound
			if errors.As(err, &cancelled) || errors.As(err, &gone) {
				// The run was cancelled, or the workflow gave the
				// activity up.
				cancel(err)
				return
			}
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return ctx, func() { close(done); wg.Wait(); cancel(nil) }
}

// Heartbeat records an activity's heartbeat at once and then every
// interval until the returned func is called, so that a worker that dies
// mid-activity is noticed within the activity's heartbeat timeout, not at
// the end of its start-to-close timeout. Outside an activity it does
// nothing.
func Heartbeat(ctx context.Context, every time.Duration) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		activity.RecordHeartbeat(ctx)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// HostSecrets resolves secrets from the runner's environment (Secret.Env)
// or from a file (Secret.File, trailing newline removed).
type HostSecrets struct {
	// LookupEnv defaults to os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Resolve implements SecretResolver.
func (h HostSecrets) Resolve(_ context.Context, s plan.Secret) (string, error) {
	if s.Env != "" {
		lookup := h.LookupEnv
		if lookup == nil {
			lookup = os.LookupEnv
		}
		if v, ok := lookup(s.Env); ok {
			return v, nil
		}
		if s.File == "" {
			return "", fmt.Errorf("environment variable %q is not set on this runner", s.Env)
		}
	}
	if s.File != "" {
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("reading secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", errors.New("the secret names neither an environment variable nor a file")
}

// TempWorkspaces gives each stage an empty directory under Dir (or the
// system's temporary directory) and removes it afterwards. It is the
// workspace of runners that need no checkout, and of tests.
type TempWorkspaces struct {
	Dir string
}

var unsafePath = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Prepare implements Workspaces.
func (w TempWorkspaces) Prepare(_ context.Context, req WorkspaceRequest) (string, error) {
	dir, err := os.MkdirTemp(w.Dir, "sluice-"+unsafePath.ReplaceAllString(req.RunID+"-"+req.StageID, "_")+"-")
	if err != nil {
		return "", fmt.Errorf("creating workspace: %w", err)
	}
	return dir, nil
}

// Release implements Workspaces.
func (w TempWorkspaces) Release(_ context.Context, _ WorkspaceRequest, dir string) error {
	if dir == "" || !strings.HasPrefix(filepath.Base(dir), "sluice-") {
		return fmt.Errorf("refusing to remove %q: not a workspace", dir)
	}
	return os.RemoveAll(dir)
}
