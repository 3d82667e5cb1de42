package server

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// modGit runs git in dir with a fixed identity.
func modGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// bareRepo makes a bare repository holding files, tagged v1, and returns
// its file URL and commit.
func bareRepo(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	work, bare := filepath.Join(dir, "work"), filepath.Join(dir, "repo.git")
	modGit(t, dir, "init", "-q", "--bare", "-b", "main", bare)
	modGit(t, dir, "init", "-q", "-b", "main", work)
	for name, text := range files {
		p := filepath.Join(work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modGit(t, work, "add", "-A")
	modGit(t, work, "commit", "-q", "-m", "files")
	modGit(t, work, "tag", "v1")
	modGit(t, work, "push", "-q", bare, "main", "v1")
	return "file://" + filepath.ToSlash(bare), modGit(t, work, "rev-parse", "HEAD")
}

// TestEventModules compiles an event's pipeline the way Trigger does: the
// server has only the .sluice/*.hcl files of the commit; a local module is
// read from the event's repository at that commit, and a git module at the
// commit the lock file holds.
func TestEventModules(t *testing.T) {
	modsURL, modsSHA := bareRepo(t, map[string]string{"lint/lint.hcl": `
stage "vet" {
  step "run" "vet" {
    command = ["go", "vet", "./..."]
  }
}
`})
	pipeline := `pipeline "api" {}

module "go" {
  source = "../../../ci/go"
  inputs = { version = "1.26" }
}

module "shared" {
  source = "git::` + modsURL + `//lint?ref=v1"
}
`
	lock := `git "` + modsURL + `" "v1" {
  commit = "` + modsSHA + `"
}
`
	appURL, appSHA := bareRepo(t, map[string]string{
		"services/api/.sluice/api.hcl":              pipeline,
		"services/api/.sluice/modules.lock.hcl":     lock,
		"ci/go/go.hcl":                              "variable \"version\" {}\n\nstage \"test\" {\n  step \"run\" \"unit\" {\n    image   = \"golang:${var.version}\"\n    command = [\"go\", \"test\", \"./...\"]\n  }\n}\n",
		"services/api/.sluice/notes.txt":            "not read",
		"services/api/.sluice/sub/ignored.hcl":      "not a pipeline file",
		"services/web/.sluice/unrelated-module.hcl": "# another project",
	})
	files := map[string][]byte{ // what PipelineFiles gives
		"services/api/.sluice/api.hcl":          []byte(pipeline),
		"services/api/.sluice/modules.lock.hcl": []byte(lock),
	}
	tr := &Triggers{Modules: t.TempDir()}
	g := plan.Git{Event: "push", Branch: "main", Ref: "refs/heads/main", SHA: appSHA, ShortSHA: appSHA[:7], Repo: "acme/app"}
	mo := tr.moduleOptions(context.Background(), nil, RepoRef{Name: "acme/app", URL: appURL}, appSHA, "services/api")
	p, diags, err := compileFiles(files, "services/api", dsl.Options{Git: g, Modules: mo})
	if err != nil || diags != "" {
		t.Fatalf("compiling: %v\n%s", err, diags)
	}
	var ids, sources []string
	for _, s := range p.Stages {
		ids = append(ids, s.ID)
		sources = append(sources, s.Source)
	}
	if got := strings.Join(ids, " "); got != "go.test shared.vet" {
		t.Errorf("stages = %s, want go.test shared.vet", got)
	}
	// Sources are relative to .sluice: the local module's file, the git
	// module's block.
	if got := strings.Join(sources, " "); got != "../../../ci/go/go.hcl:3 api.hcl:8" {
		t.Errorf("sources = %s", got)
	}
	if entries, _ := os.ReadDir(tr.Modules); len(entries) != 2 {
		t.Errorf("the module cache holds %d repositories, want the app's and the module's", len(entries))
	}

	// Without the lock file the git module is refused, with what to do.
	delete(files, "services/api/.sluice/modules.lock.hcl")
	_, diags, err = compileFiles(files, "services/api", dsl.Options{Git: g, Modules: mo})
	if err != nil || !strings.Contains(diags, "services/api/.sluice/api.hcl:9:12: error: Module source not locked") {
		t.Errorf("compiling without the lock: %v\n%s", err, diags)
	}
}

// TestGitHubCredentials checks that the installation token goes only to
// HTTPS fetches from the event's GitHub host.
func TestGitHubCredentials(t *testing.T) {
	calls := 0
	token := func(context.Context) (string, error) {
		calls++
		return "ghs_secret", nil
	}
	creds := gitHubCredentials(token, "https://github.com/acme/app.git")
	tests := []struct {
		url, user, pass string
	}{
		{"https://github.com/acme/ci-modules.git", "x-access-token", "ghs_secret"},
		{"https://GitHub.com/other/private.git", "x-access-token", "ghs_secret"},
		{"https://gitlab.com/acme/ci-modules.git", "", ""},
		{"http://github.com/acme/ci-modules.git", "", ""},
		{"ssh://git@github.com/acme/ci-modules.git", "", ""},
		{"https://github.com.evil.example/acme/x.git", "", ""},
	}
	for _, tt := range tests {
		user, pass, err := creds(context.Background(), tt.url)
		if err != nil || user != tt.user || pass != tt.pass {
			t.Errorf("credentials for %s = %q, %q, %v; want %q, %q", tt.url, user, pass, err, tt.user, tt.pass)
		}
	}
	if calls != 2 {
		t.Errorf("the token was asked for %d times, want 2", calls)
	}
	failing := gitHubCredentials(func(context.Context) (string, error) { return "", errors.New("no token") }, "https://github.com/acme/app.git")
	if _, _, err := failing(context.Background(), "https://github.com/acme/m.git"); err == nil {
		t.Error("a token that cannot be minted gave no error")
	}
}

// TestModuleDiagnosticAnnotations checks that a diagnostic in a git
// module's file, which is in the module cache and not the repository,
// gives no annotation, while one in the repository does.
func TestModuleDiagnosticAnnotations(t *testing.T) {
	diags := `/home/sluice/modules/3f2a/0123/go/go.hcl:4:5: error: Unsupported argument
  | in stage "test"
4 |     comand = ["go"]
  |     ^^^^^^
    An argument named "comand" is not expected here. Did you mean "command"?

    In module "go" called at .sluice/web.hcl:3.

.sluice/web.hcl:8:3: error: Reference to undeclared local value
8 |   x = local.y
  |       ^^^^^^^
    There is no local value named "y".
`
	a := diagnosticAnnotations(diags)
	if len(a) != 1 || a[0].Path != ".sluice/web.hcl" || strings.Contains(a[0].Message, "comand") {
		t.Errorf("annotations = %+v, want only the repository's", a)
	}
}
