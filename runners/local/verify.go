package local

import (
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/verify"
)

// withVerify registers the verify executor. It needs nothing from the
// stack: each check reaches the step's Prometheus over HTTP, and the
// engine's workflow waits between checks (engine.VerifyChecker).
func withVerify(execs steps.Registry) {
	execs[plan.KindVerify] = verify.Executor{}
}
