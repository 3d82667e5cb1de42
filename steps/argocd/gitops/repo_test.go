package gitops

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/sluice-ci/sluice/steps/argocd/gitops/gitrepo"
)

const kustFile = "apps/api/kustomization.yaml"

const kustomization = `# the API in production
resources:
  - deployment.yaml
images:
  - name: registry.example.com/api
    newTag: "1.0" # set by Sluice
`

func options(t *testing.T, remote *gitrepo.Remote, image string) Options {
	t.Helper()
	img, err := ParseImage(image)
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Repo: remote.Path, Branch: "main", File: kustFile,
		Target: Target{Format: FormatKustomize}, Image: img,
		Message: "deploy api: " + image,
		Author:  object.Signature{Name: "Sluice", Email: "sluice@example.com"},
	}
}

func TestCommitPushesTheImage(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{kustFile: kustomization})
	seed := remote.Head()
	res, err := Commit(context.Background(), options(t, remote, "registry.example.com/api:1.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Revision != remote.Head() || res.Revision == seed {
		t.Fatalf("result %+v; remote head %s, seed %s", res, remote.Head(), seed)
	}
	if res.Previous != "registry.example.com/api:1.0" {
		t.Errorf("previous = %q", res.Previous)
	}
	if got, want := remote.File(kustFile), strings.Replace(kustomization, `"1.0"`, `"1.1"`, 1); got != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	if got := remote.Author(res.Revision); got != "Sluice <sluice@example.com>" {
		t.Errorf("author %q", got)
	}
	msg := remote.Message(res.Revision)
	for _, want := range []string{"deploy api: registry.example.com/api:1.1", "Sluice-Image: registry.example.com/api:1.1", "Sluice-Previous-Image: registry.example.com/api:1.0"} {
		if !strings.Contains(msg, want) {
			t.Errorf("commit message %q lacks %q", msg, want)
		}
	}
}

func TestCommitIsSafeToRetry(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{kustFile: kustomization})
	o := options(t, remote, "registry.example.com/api:1.1")
	first, err := Commit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The activity is retried after its push landed (its worker died
	// before reporting, say): no second commit, the same outputs.
	again, err := Commit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed || again.Revision != first.Revision || len(remote.Log()) != 2 {
		t.Errorf("retry made a change: %+v after %+v; log %q", again, first, remote.Log())
	}
	if again.Previous != first.Previous {
		t.Errorf("retry says the previous image was %q, the first attempt %q", again.Previous, first.Previous)
	}
}

func TestCommitNoChangeNoCommit(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{kustFile: kustomization})
	seed := remote.Head()
	res, err := Commit(context.Background(), options(t, remote, "registry.example.com/api:1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.Revision != seed || remote.Head() != seed {
		t.Errorf("result %+v, head %s, seed %s", res, remote.Head(), seed)
	}
	if res.Previous != "registry.example.com/api:1.0" {
		t.Errorf("previous = %q", res.Previous)
	}
}

func TestCommitRetriesAfterAConcurrentPush(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{kustFile: kustomization})
	var attempts []int
	beforePush = func(attempt int) {
		attempts = append(attempts, attempt)
		if attempt == 1 {
			remote.Push("colleague: scale up", map[string]string{"apps/api/replicas.yaml": "replicas: 3\n"})
		}
	}
	t.Cleanup(func() { beforePush = nil })
	var log bytes.Buffer
	o := options(t, remote, "registry.example.com/api:1.1")
	o.Log = &log
	res, err := Commit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 2 {
		t.Errorf("attempts %v, want [1 2]", attempts)
	}
	if res.Revision != remote.Head() || len(remote.Log()) != 3 {
		t.Errorf("result %+v; log %q", res, remote.Log())
	}
	if remote.File("apps/api/replicas.yaml") != "replicas: 3\n" || !strings.Contains(remote.File(kustFile), `newTag: "1.1"`) {
		t.Errorf("the colleague's change or ours is lost:\n%s", remote.File(kustFile))
	}
	if !strings.Contains(log.String(), "trying again") {
		t.Errorf("log does not say it tried again: %s", log.String())
	}
}

func TestCommitGivesUpAfterAttempts(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{kustFile: kustomization})
	n := 0
	beforePush = func(int) {
		n++
		remote.Push("busy colleague", map[string]string{"n.txt": strings.Repeat("x", n)})
	}
	t.Cleanup(func() { beforePush = nil })
	o := options(t, remote, "registry.example.com/api:1.1")
	o.Attempts = 2
	_, err := Commit(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "another push landed first 2 times") {
		t.Fatalf("err = %v", err)
	}
}

func TestCommitDryRunPushesNothing(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{kustFile: kustomization})
	seed := remote.Head()
	o := options(t, remote, "registry.example.com/api:1.1")
	o.DryRun = true
	res, err := Commit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Revision != "" || remote.Head() != seed {
		t.Errorf("result %+v; head %s, seed %s", res, remote.Head(), seed)
	}
	if !strings.Contains(res.Diff, `-    newTag: "1.0" # set by Sluice`) || !strings.Contains(res.Diff, `+    newTag: "1.1" # set by Sluice`) {
		t.Errorf("diff:\n%s", res.Diff)
	}
}

func TestCommitErrors(t *testing.T) {
	remote := gitrepo.New(t, map[string]string{kustFile: kustomization})
	cases := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no branch", func(o *Options) { o.Branch = "prod" }, `has no branch "prod"`},
		{"no file", func(o *Options) { o.File = "apps/web/kustomization.yaml" }, `file "apps/web/kustomization.yaml" is not on branch "main"`},
		{"file outside", func(o *Options) { o.File = "../x.yaml" }, "not a path inside the repository"},
		{"no repository", func(o *Options) { o.Repo = t.TempDir() + "/missing.git" }, "cloning"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := options(t, remote, "registry.example.com/api:1.1")
			c.edit(&o)
			_, err := Commit(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}
