package local

import (
	"os"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/argocd"
)

// withArgoCD registers the argocd executor. Steps that name no Argo CD
// server use the one ARGOCD_SERVER and ARGOCD_AUTH_TOKEN name, as the
// argocd CLI does; without one, a step makes its GitOps commit for real
// and reports the sync it would have asked for.
func withArgoCD(execs steps.Registry) {
	execs[plan.KindArgoCD] = &argocd.Executor{
		Server: os.Getenv("ARGOCD_SERVER"),
		Token:  os.Getenv("ARGOCD_AUTH_TOKEN"),
	}
}
