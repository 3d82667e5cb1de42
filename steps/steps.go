// Package steps defines how a runner executes one step of a plan. Each step
// kind has its own sub-package implementing Executor; the engine's
// activities look the executor up by kind.
package steps

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

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
	// Tests sums up the JUnit XML reports a run step declares (its junit
	// attribute), read when the step ended, whether it succeeded or not;
	// nil when it declares none.
	Tests *TestReport
}

// The limits of a TestReport: the counts are always exact, but it lists at
// most MaxTestFailures failures, keeps at most MaxTestDetails bytes of each
// failure's details and MaxTestMessage of its message, and drops details,
// then failures, once its failures hold MaxTestReportText bytes of text.
// A report travels through workflow history and the run's status, which
// are small.
const (
	MaxTestFailures   = 200
	MaxTestMessage    = 1 << 10
	MaxTestDetails    = 4 << 10
	MaxTestReportText = 64 << 10
)

// TestReport is what a step's test reports say: how many tests ran,
// failed (a failure or an error) and were skipped, and which failed.
type TestReport struct {
	Total   int `json:"total"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Failures are the failed tests in the order of the reports, at most
	// MaxTestFailures of them.
	Failures []TestFailure `json:"failures,omitempty"`
}

// Passed is how many tests neither failed nor were skipped.
func (r *TestReport) Passed() int { return r.Total - r.Failed - r.Skipped }

// Summary says what the report counts: "120 passed, 2 failed, 3 skipped".
func (r *TestReport) Summary() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", r.Passed(), r.Failed, r.Skipped)
}

// TestFailure is one failed test.
type TestFailure struct {
	// Suite is the test's class name (a Go package, a Java class, a Python
	// module), or the name of its suite when it has none.
	Suite string `json:"suite,omitempty"`
	Name  string `json:"name"`
	// File and Line say where the test failed: File is a slash-separated
	// path relative to the workspace, of a file that is there; empty when
	// neither the report nor the failure's text points at one.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Message is the failure's message, or the first line of its text.
	Message string `json:"message,omitempty"`
	// Details is the failure's text (an assertion, a stack trace), cut
	// to MaxTestDetails bytes.
	Details string `json:"details,omitempty"`
}

// String says in one line where the test failed and why:
// "calc/calc_test.go:14: example.com/calc.TestDiv: Div(1, 0) = 0, want an
// error", with the first line of the message.
func (f TestFailure) String() string {
	var b strings.Builder
	if f.File != "" {
		b.WriteString(f.File)
		if f.Line > 0 {
			b.WriteString(":" + strconv.Itoa(f.Line))
		}
		b.WriteString(": ")
	}
	if f.Suite != "" {
		b.WriteString(f.Suite + ".")
	}
	b.WriteString(f.Name)
	if msg, _, _ := strings.Cut(strings.TrimSpace(f.Message), "\n"); msg != "" {
		b.WriteString(": " + strings.TrimSpace(msg))
	}
	return b.String()
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
