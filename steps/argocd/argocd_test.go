package argocd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/argocd/argocdtest"
	"github.com/sluice-ci/sluice/steps/argocd/gitops/gitrepo"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

const kustomization = `# Production. Sluice sets the image; the rest is ours.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

namespace: web
resources:
  - deployment.yaml

images:
  - name: registry.example.com/web # the API
    digest: ` + digestA + `
`

// deploy is a deploy of image to app, committing to file of remote.
type deploy struct {
	remote *gitrepo.Remote
	file   string
	format string
	key    string
	app    string
	image  string
	server string
	token  string
	wait   string
	dryRun bool
}

func (d deploy) request(log *bytes.Buffer) steps.Request {
	if d.app == "" {
		d.app = "web"
	}
	if d.wait == "" {
		d.wait = "healthy"
	}
	return steps.Request{
		RunID: "run-1", StageID: "deploy", Log: log, DryRun: d.dryRun,
		Env: map[string]string{"GIT_AUTHOR_NAME": "Deploy Bot", "GIT_AUTHOR_EMAIL": "bot@example.com"},
		Step: plan.Step{Name: "prod", Kind: plan.KindArgoCD, ArgoCD: &plan.ArgoCDStep{
			App: plan.Lit(d.app), Image: plan.Lit(d.image), Wait: d.wait,
			Server: plan.Lit(d.server), Token: plan.Lit(d.token),
			GitOps: &plan.GitOps{Repo: plan.Lit(d.remote.Path), File: d.file, Branch: "main", Format: d.format, Key: d.key},
		}},
	}
}

func run(t *testing.T, e *Executor, d deploy) (steps.Result, string, error) {
	t.Helper()
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.Execute(ctx, d.request(&log))
	return res, log.String(), err
}

var fast = &Executor{PollInterval: 5 * time.Millisecond}

func TestDeploySyncsAndWaitsForHealthy(t *testing.T) {
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {SyncPolls: 2, HealthPolls: 3}}})
	remote := gitrepo.New(t, map[string]string{"apps/web/kustomization.yaml": kustomization})
	res, log, err := run(t, fast, deploy{remote: remote, file: "apps/web/kustomization.yaml", format: "kustomize",
		image: "registry.example.com/web@" + digestB, server: argo.URL, token: argo.Token})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	want := map[string]string{"revision": remote.Head(), "image": "registry.example.com/web@" + digestB, "previous_image": "registry.example.com/web@" + digestA}
	for k, v := range want {
		if res.Outputs[k] != v {
			t.Errorf("output %s = %q, want %q", k, res.Outputs[k], v)
		}
	}
	if got, want := remote.File("apps/web/kustomization.yaml"), strings.Replace(kustomization, digestA, digestB, 1); got != want {
		t.Errorf("the file lost its layout:\n%s\nwant:\n%s", got, want)
	}
	if got := remote.Author(remote.Head()); got != "Deploy Bot <bot@example.com>" {
		t.Errorf("author %q", got)
	}
	if !strings.HasPrefix(remote.Message(remote.Head()), "deploy web: registry.example.com/web@"+digestB+" (sluice run run-1)") {
		t.Errorf("message %q", remote.Message(remote.Head()))
	}
	if s := argo.Syncs(); len(s) != 1 || s[0].Revision != remote.Head() {
		t.Errorf("syncs %v, want one to %s", s, remote.Head())
	}
	// Two reads while the sync runs, three while the app progresses, one
	// that sees it healthy.
	if argo.Gets() != 6 {
		t.Errorf("read the application %d times, want 6", argo.Gets())
	}
	if !strings.Contains(log, "synced and healthy") {
		t.Errorf("log:\n%s", log)
	}
}

func TestDeployByTagIntoKustomize(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{"kustomization.yaml": kustomization})
	res, log, err := run(t, fast, deploy{remote: remote, file: "kustomization.yaml", format: "kustomize", image: "registry.example.com/web:1.4.0"})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	// The digest gives way to the tag, in its place.
	if got, want := remote.File("kustomization.yaml"), strings.Replace(kustomization, "digest: "+digestA, "newTag: 1.4.0", 1); got != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	if res.Outputs["previous_image"] != "registry.example.com/web@"+digestA || res.DryRun != "sync" {
		t.Errorf("outputs %v, dry run %q (want sync)", res.Outputs, res.DryRun)
	}
	if !strings.Contains(log, "dry run: would sync web and wait for healthy (no Argo CD server configured") {
		t.Errorf("log does not report the sync it would make:\n%s", log)
	}
}

func TestDeployIntoHelmValues(t *testing.T) {
	const values = `replicaCount: 2
image:
  repository: registry.example.com/web
  tag: "1.3.0" # the release
  pullPolicy: IfNotPresent
`
	cases := []struct {
		name, key, image, want, previous string
	}{
		{"map by tag", "image", "registry.example.com/web:1.4.0", strings.Replace(values, `"1.3.0"`, `"1.4.0"`, 1), "registry.example.com/web:1.3.0"},
		{"map by digest", "image", "registry.example.com/web@" + digestB, strings.Replace(values, `tag: "1.3.0"`, `digest: "`+digestB+`"`, 1), "registry.example.com/web:1.3.0"},
		{"tag key", "image.tag", "registry.example.com/web:1.4.0", strings.Replace(values, `"1.3.0"`, `"1.4.0"`, 1), "registry.example.com/web:1.3.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			remote := gitrepo.New(t, map[string]string{"chart/values-prod.yaml": values})
			res, log, err := run(t, fast, deploy{remote: remote, file: "chart/values-prod.yaml", format: "helm", key: c.key, image: c.image})
			if err != nil {
				t.Fatalf("%v\n%s", err, log)
			}
			if got := remote.File("chart/values-prod.yaml"); got != c.want {
				t.Errorf("file:\n%s\nwant:\n%s", got, c.want)
			}
			if res.Outputs["previous_image"] != c.previous {
				t.Errorf("previous_image %q, want %q", res.Outputs["previous_image"], c.previous)
			}
		})
	}
}

func TestDeployIntoArgoCDSourceFile(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{"apps/web/kustomization.yaml": kustomization})
	file := "apps/web/.argocd-source-web.yaml"
	d := deploy{remote: remote, file: file, format: "argocd-source", image: "registry.example.com/web:1.4.0"}
	// The first deploy makes the file, as Argo CD reads no overrides
	// without one.
	if _, log, err := run(t, fast, d); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if got, want := remote.File(file), "kustomize:\n  images:\n  - registry.example.com/web:1.4.0\n"; got != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	d.image = "registry.example.com/web@" + digestB
	res, log, err := run(t, fast, d)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if got, want := remote.File(file), "kustomize:\n  images:\n  - registry.example.com/web@"+digestB+"\n"; got != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	if res.Outputs["previous_image"] != "registry.example.com/web:1.4.0" {
		t.Errorf("outputs %v", res.Outputs)
	}
}

func TestDeployFailsOnDegraded(t *testing.T) {
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {SyncPolls: 1, HealthPolls: 1, Degraded: []argocdtest.Resource{
		{Kind: "Deployment", Namespace: "web", Name: "api", Health: "Degraded", Message: `Deployment "api" exceeded its progress deadline`},
		{Kind: "Service", Namespace: "web", Name: "api", Health: "Healthy"},
	}}}})
	remote := gitrepo.New(t, map[string]string{"kustomization.yaml": kustomization})
	_, log, err := run(t, fast, deploy{remote: remote, file: "kustomization.yaml", format: "kustomize",
		image: "registry.example.com/web@" + digestB, server: argo.URL, token: argo.Token})
	if err == nil {
		t.Fatalf("a degraded application passed\n%s", log)
	}
	msg := err.Error()
	if !strings.Contains(msg, "web is Degraded") || !strings.Contains(msg, `Deployment web/api: Degraded (Deployment "api" exceeded its progress deadline)`) || strings.Contains(msg, "Service") {
		t.Errorf("error does not name the degraded resources (and only them): %v", err)
	}
}

func TestDeployWaitsOutAnotherOperation(t *testing.T) {
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {Busy: 2}}})
	remote := gitrepo.New(t, map[string]string{"kustomization.yaml": kustomization})
	_, log, err := run(t, fast, deploy{remote: remote, file: "kustomization.yaml", format: "kustomize",
		image: "registry.example.com/web@" + digestB, server: argo.URL, token: argo.Token, wait: "synced"})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if s := argo.Syncs(); len(s) != 1 || s[0].Revision != remote.Head() {
		t.Errorf("syncs %v", s)
	}
	if !strings.Contains(log, "operation in progress") {
		t.Errorf("log:\n%s", log)
	}
}

func TestDeployArgoCDErrors(t *testing.T) {
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {}}})
	cases := []struct {
		name string
		d    deploy
		want string
	}{
		{"wrong token", deploy{app: "web", token: "stale"}, "refused the token (401"},
		{"unknown app", deploy{app: "api", token: argo.Token}, `has no application "api" (404`},
		{"no token", deploy{app: "web"}, "no token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			remote := gitrepo.New(t, map[string]string{"kustomization.yaml": kustomization})
			c.d.remote, c.d.file, c.d.format, c.d.image, c.d.server = remote, "kustomization.yaml", "kustomize", "registry.example.com/web:2.0", argo.URL
			_, log, err := run(t, fast, c.d)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to say %q\n%s", err, c.want, log)
			}
			if strings.Contains(log, argo.Token) || (err != nil && strings.Contains(err.Error(), argo.Token)) {
				t.Errorf("the token leaked")
			}
		})
	}
}

func TestDeployTimesOut(t *testing.T) {
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {HealthPolls: 1 << 20}}})
	remote := gitrepo.New(t, map[string]string{"kustomization.yaml": kustomization})
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d := deploy{remote: remote, file: "kustomization.yaml", format: "kustomize", image: "registry.example.com/web:2.0", server: argo.URL, token: argo.Token}
	_, err := fast.Execute(ctx, d.request(&log))
	if err == nil || !strings.Contains(err.Error(), "waiting for web to be Synced and Healthy") || !strings.Contains(err.Error(), "Progressing") {
		t.Errorf("err = %v", err)
	}
}

func TestRollbackRestoresThePreviousImage(t *testing.T) {
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {SyncPolls: 1, HealthPolls: 1}}})
	remote := gitrepo.New(t, map[string]string{"kustomization.yaml": kustomization})
	d := deploy{remote: remote, file: "kustomization.yaml", format: "kustomize", image: "registry.example.com/web@" + digestB, server: argo.URL, token: argo.Token}
	res, log, err := run(t, fast, d)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	var rlog bytes.Buffer
	back, err := fast.Rollback(context.Background(), d.request(&rlog), res.Outputs["previous_image"])
	if err != nil {
		t.Fatalf("%v\n%s", err, rlog.String())
	}
	if got := remote.File("kustomization.yaml"); got != kustomization {
		t.Errorf("the file is not as before the deploy:\n%s", got)
	}
	if back.Outputs["image"] != "registry.example.com/web@"+digestA || back.Outputs["revision"] != remote.Head() {
		t.Errorf("outputs %v", back.Outputs)
	}
	if !strings.HasPrefix(remote.Message(remote.Head()), "roll back web to registry.example.com/web@"+digestA) {
		t.Errorf("message %q", remote.Message(remote.Head()))
	}
	if s := argo.Syncs(); len(s) != 2 || s[1].Revision != remote.Head() {
		t.Errorf("syncs %v", s)
	}
	if _, err := fast.Rollback(context.Background(), d.request(&rlog), ""); err == nil || !strings.Contains(err.Error(), "nothing to roll back to") {
		t.Errorf("rollback without a previous image: %v", err)
	}
}

func TestDryRunPushesAndSyncsNothing(t *testing.T) {
	argo := argocdtest.New(t, argocdtest.Options{Apps: map[string]argocdtest.App{"web": {}}})
	remote := gitrepo.New(t, map[string]string{"kustomization.yaml": kustomization})
	seed := remote.Head()
	res, log, err := run(t, fast, deploy{remote: remote, file: "kustomization.yaml", format: "kustomize",
		image: "registry.example.com/web@" + digestB, server: argo.URL, token: argo.Token, dryRun: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if remote.Head() != seed || len(argo.Syncs()) != 0 || argo.Gets() != 0 {
		t.Errorf("a dry run changed something: head %s (seed %s), syncs %v", remote.Head(), seed, argo.Syncs())
	}
	if res.DryRun != "commit and sync" {
		t.Errorf("result's DryRun = %q, want %q", res.DryRun, "commit and sync")
	}
	for _, want := range []string{"-    digest: " + digestA, "+    digest: " + digestB, "dry run: would commit kustomization.yaml on branch main of", "dry run: would sync web on " + argo.URL + " and wait for healthy"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if res.Outputs["previous_image"] != "registry.example.com/web@"+digestA || res.Outputs["image"] != "registry.example.com/web@"+digestB {
		t.Errorf("outputs %v", res.Outputs)
	}
}
