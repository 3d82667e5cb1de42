package local

import (
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/scan"
)

// withScan registers the scan executor. It needs nothing from the stack:
// it reaches Harbor over HTTP with the step's or the runner's credentials,
// and reports a dry run when no Harbor is configured (the local registry
// is not one).
func withScan(execs steps.Registry) {
	execs[plan.KindScan] = &scan.Executor{}
}
