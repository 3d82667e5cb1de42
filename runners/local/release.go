package local

import (
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/release"
)

// withRelease registers the release executor. It reads GITHUB_TOKEN and
// SLUICE_GITHUB_URL from this machine's environment when a step gives no
// credentials or server; with neither, a release step reports the tag and
// release it would create as a dry run, so that `sluice run` of a pipeline
// with a release stage works on a machine that has no GitHub set up.
func withRelease(execs steps.Registry) {
	execs[plan.KindRelease] = &release.Executor{}
}
