package local

import "github.com/sluice-ci/sluice/steps"

// withDelivery registers the executors of the delivery steps: scan,
// release, argocd and verify. None needs anything from the stack, and each
// reports as a dry run the side effects this machine has nothing
// configured for (no Harbor, no GitHub credentials, no Argo CD server), so
// that `sluice run` of a pipeline that releases and deploys works on a
// laptop: see docs/dsl.md, "Dry runs".
func withDelivery(execs steps.Registry) {
	withScan(execs)
	withRelease(execs)
	withArgoCD(execs)
	withVerify(execs)
}
