package engine

import (
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// Dry runs. A run started with RunInput.DryRun asks every step for no side
// effect outside its runner's workspace (steps.Request.DryRun): executors
// that push, scan, tag, release, deploy or sync log what they would do.
// The workflow carries the request to the runner in the step's own
// environment, EnvDryRun=true, set after the pipeline's, stage's and
// step's env: every activity that runs a step (RunStep, RunSteps, the
// verify checks, a rollback) gets it the same way, and run and container
// steps can read it to skip side effects of their own, as `act` users test
// $ACT. The runner reads nothing else: a step whose env sets
// SLUICE_DRY_RUN = "true" is a dry run in any run.
//
// In a dry run an approval gate does not wait (nothing it guards is done;
// the status records the stage as approved by the dry run), a verify step
// checks its query once instead of being watched, and a secret the runner
// cannot resolve is given to the step as an empty value, with a line in
// the step's log, so that a dry run needs no credentials.

// EnvDryRun is the environment variable that makes a step a dry run.
const EnvDryRun = "SLUICE_DRY_RUN"

// DryRunApprover is who approves a stage in a dry run.
const DryRunApprover = "sluice --dry-run"

// dryRunApproval records the approval a dry run gives itself.
func dryRunApproval(a *ApprovalStatus, now time.Time) {
	a.Decision, a.By, a.Decided = DecisionApproved, DryRunApprover, now
	a.Reason = "a dry run changes nothing, so it does not wait for approval"
}

// dryRun says whether a step's environment asks for a dry run.
func dryRun(env map[string]plan.Template) bool {
	t, ok := env[EnvDryRun]
	return ok && t.IsLiteral() && t.Literal() == "true"
}
