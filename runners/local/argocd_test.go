package local

import (
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/argocd"
)

func TestWithArgoCDReadsTheRunnersServer(t *testing.T) {
	t.Setenv("ARGOCD_SERVER", "argocd.example.com")
	t.Setenv("ARGOCD_AUTH_TOKEN", "tok")
	execs := steps.Registry{}
	withArgoCD(execs)
	e, ok := execs[plan.KindArgoCD].(*argocd.Executor)
	if !ok || e.Server != "argocd.example.com" || e.Token != "tok" {
		t.Fatalf("registered %#v", execs[plan.KindArgoCD])
	}
}
