package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/argocd"
	"github.com/sluice-ci/sluice/steps/argocd/argocdtest"
	"github.com/sluice-ci/sluice/steps/argocd/gitops/gitrepo"
	"github.com/sluice-ci/sluice/steps/verify"
	"github.com/sluice-ci/sluice/steps/verify/promtest"
)

// webKustomization is the GitOps file before the deploy: web runs 1.0.
const webKustomization = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:
  - deployment.yaml

images:
  - name: registry.local/web # the API
    newTag: "1.0"
`

// TestVerifyRollsBackThroughArgoCD runs a deploy and a watch whose error
// rate rises, with the real argocd executor committing to a real bare
// GitOps repository and syncing a fake Argo CD checked against Argo CD's
// API description: the rollback is a commit of the previous image and a
// sync of that commit.
func TestVerifyRollsBackThroughArgoCD(t *testing.T) {
	c := testClient(t)
	prom := promtest.Start(t)
	prom.Target.SetErrorRate(0.01)
	prom.WaitFor(t, promtest.ErrorRateQuery, func(v float64) bool { return v < 0.015 }, 30*time.Second)

	const file = "apps/web/kustomization.yaml"
	remote := gitrepo.New(t, map[string]string{file: webKustomization})
	seed := remote.Head()
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {SyncPolls: 1, HealthPolls: 2}}})
	logs := newMemLogs()
	startTestRunner(t, c, RunnerOptions{
		Name: "verify-argocd-runner",
		Activities: &Activities{
			Workspaces: TempWorkspaces{Dir: t.TempDir()},
			Executors: steps.Registry{
				plan.KindRun:    newFakeExec(),
				plan.KindVerify: verify.Executor{},
				// The runner's Argo CD: the token stays out of the plan,
				// and so out of the run's history.
				plan.KindArgoCD: &argocd.Executor{Server: argo.URL, Token: argo.Token, PollInterval: 20 * time.Millisecond},
			},
			Logs: logs,
		},
		Workflows: true,
	})

	below := 0.05
	ship := plan.Step{Name: "ship", Kind: plan.KindArgoCD, ArgoCD: &plan.ArgoCDStep{
		App: plan.Lit("web"), Image: plan.Lit("registry.local/web:2.0"), Wait: "healthy",
		GitOps: &plan.GitOps{Repo: plan.Lit(remote.Path), File: file, Branch: "main", Format: "kustomize"},
	}}
	watch := plan.Step{Name: "errors", Kind: plan.KindVerify, Verify: &plan.VerifyStep{
		Prometheus: plan.Lit(prom.URL), Query: plan.Lit(promtest.ErrorRateQuery), Below: &below,
		For: plan.Duration(15 * time.Second), Interval: plan.Duration(time.Second), OnFailure: "rollback",
	}}
	p := testPlan("verify-argocd", stage("deploy", nil, ship), stage("monitor", needs("deploy"), watch))

	runID, err := Start(testCtx(t), c, p, StartOptions{RunID: "verify-argocd-" + NewRunID("")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, runID, "the watch's first value", func(st RunStatus) bool {
		vs := verifyStep(t, st)
		return vs.State == StateRunning && vs.Outputs["value"] != ""
	})
	// The deploy is in: 2.0 at the branch head, synced.
	deployed := remote.Head()
	if got := remote.File(file); got != strings.Replace(webKustomization, `newTag: "1.0"`, `newTag: "2.0"`, 1) {
		t.Fatalf("after the deploy the kustomization reads:\n%s", got)
	}
	if s := argo.Syncs(); len(s) != 1 || s[0] != (argocdtest.Sync{App: "web", Revision: deployed}) {
		t.Fatalf("syncs after the deploy %v; want one of web to %s", s, deployed)
	}

	prom.Target.SetErrorRate(0.5)
	st := waitDone(t, c, runID)
	vs := verifyStep(t, st)
	if st.State != StateFailed || vs.State != StateFailed {
		t.Fatalf("run %s, verify step %s (%s); want both failed\n%s", st.State, vs.State, vs.Error, logs.get("deploy/ship"))
	}
	for _, want := range []string{"crossed its bound", `rolled back step "ship" (stage deploy) to registry.local/web:1.0`} {
		if !strings.Contains(vs.Error, want) {
			t.Errorf("verify step error %q; want %q", vs.Error, want)
		}
	}

	// The rollback is a commit on top of the deploy that puts 1.0 back,
	// byte for byte, and Argo CD was asked to sync that commit.
	if got := remote.File(file); got != webKustomization {
		t.Errorf("after the rollback the kustomization reads:\n%s\nwant it back at web:1.0:\n%s", got, webKustomization)
	}
	rolledBack := remote.Head()
	commits := remote.Log()
	if len(commits) != 3 || !strings.HasPrefix(commits[1], deployed+" ") || !strings.HasPrefix(commits[2], seed+" ") {
		t.Fatalf("commits on main %q; want the rollback, the deploy %s and the seed %s", commits, deployed, seed)
	}
	if !strings.HasPrefix(commits[1], deployed+" deploy web: registry.local/web:2.0") {
		t.Errorf("deploy commit %q", commits[1])
	}
	if !strings.HasPrefix(commits[0], rolledBack+" roll back web to registry.local/web:1.0") {
		t.Errorf("rollback commit %q", commits[0])
	}
	if s := argo.Syncs(); len(s) != 2 || s[1] != (argocdtest.Sync{App: "web", Revision: rolledBack}) {
		t.Errorf("syncs %v; want the deploy's, then one of web to the rollback commit %s", s, rolledBack)
	}
	if log := logs.get("deploy/ship"); !strings.Contains(log, `rolling back step "ship" to registry.local/web:1.0`) {
		t.Errorf("the deploy's log does not show the rollback:\n%s", log)
	}
	for _, key := range []string{"deploy/ship", "monitor/errors"} {
		if strings.Contains(logs.get(key), argo.Token) {
			t.Errorf("the Argo CD token is in the log of %s", key)
		}
	}
}
