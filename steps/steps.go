// Package steps defines how a runner executes one step of a plan. Each step
// kind has its own sub-package implementing Executor; the engine's
// activities look the executor up by kind.
package steps

import (
	"context"
	"fmt"
	"io"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// Request is everything an executor needs to run one step. By the time an
// executor sees it, every Template in Step is literal: step outputs were
// substituted by the workflow and secrets by the runner.
type Request struct {
	RunID   string
	StageID string
	Step    plan.Step
	// Workspace is the directory the steps of a stage share; it holds the
	// repository at the commit being run.
	Workspace string
	// Env is the merged environment of pipeline, stage and step, resolved.
	Env map[string]string
	Git plan.Git
	// Log receives the step's output. Secret values are masked by the writer.
	Log io.Writer
	// DryRun asks for no side effect outside the runner's workspace: an
	// executor that would change a remote system (push, scan, tag, release,
	// deploy, sync) logs exactly what it would do, prefixed "dry run:", and
	// returns the outputs it can know without doing it (empty otherwise).
	// `sluice run --dry-run` sets it for every step.
	DryRun bool
}

// Result is what a finished step hands to the steps after it.
type Result struct {
	Outputs map[string]string
	// DryRun names, in a few words, the side effects the step only
	// reported ("push", "scan", "tag and release", "sync"), in a dry run or
	// because nothing is configured to make them; empty when the step made
	// every side effect it has. The run's summary shows it.
	DryRun string
}

// Executor runs one kind of step. It returns an error when the step failed;
// a failure the user can act on says what happened and what to do.
type Executor interface {
	Execute(ctx context.Context, req Request) (Result, error)
}

// Registry maps step kinds to their executors.
type Registry map[string]Executor

// Begin checks that an executor of kind was given a step of its kind that
// carries its configuration cfg (req.Step.Image for an image executor, and
// so on), and returns cfg and the log to write to: req.Log, or a writer
// that drops everything when the request has none.
func Begin[T any](req Request, kind string, cfg *T) (*T, io.Writer, error) {
	if req.Step.Kind != kind || cfg == nil {
		return nil, nil, fmt.Errorf("%s executor given step %q of kind %q", kind, req.Step.Name, req.Step.Kind)
	}
	if req.Log == nil {
		return cfg, io.Discard, nil
	}
	return cfg, req.Log, nil
}
