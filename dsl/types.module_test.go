package dsl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/sluice-ci/sluice/dsl/plan"
)

func TestParseModuleSource(t *testing.T) {
	tests := []struct {
		name, in string
		want     moduleSource
		err      string
	}{
		{"local", "./ci/go", moduleSource{local: "ci/go"}, ""},
		{"parent", "../ci//go/", moduleSource{local: "../ci/go"}, ""},
		{"git with directory", "git::https://github.com/acme/ci-modules.git//go?ref=v1.4.0", moduleSource{url: "https://github.com/acme/ci-modules.git", subdir: "go", ref: "v1.4.0"}, ""},
		{"git top", "git::https://github.com/acme/ci-modules.git?ref=main", moduleSource{url: "https://github.com/acme/ci-modules.git", ref: "main"}, ""},
		{"git file", "git::file:///srv/git/mods.git//ci/go?ref=0123456789abcdef0123456789abcdef01234567", moduleSource{url: "file:///srv/git/mods.git", subdir: "ci/go", ref: "0123456789abcdef0123456789abcdef01234567"}, ""},
		{"ssh", "git::ssh://git@github.com/acme/m.git?ref=v1", moduleSource{url: "ssh://git@github.com/acme/m.git", ref: "v1"}, ""},
		{"bare path", "ci/go", moduleSource{}, "is not a module source"},
		{"absolute", "/srv/ci", moduleSource{}, "is not a module source"},
		{"no ref", "git::https://github.com/acme/m.git//go", moduleSource{}, "names no ref"},
		{"other parameter", "git::https://github.com/acme/m.git?ref=v1&depth=1", moduleSource{}, `parameter "depth"`},
		{"bad ref", "git::https://github.com/acme/m.git?ref=v1..2", moduleSource{}, "is not a tag, branch or full commit SHA"},
		{"escaping directory", "git::https://github.com/acme/m.git//../x?ref=v1", moduleSource{}, "not a directory inside the repository"},
		{"scp form", "git::git@github.com:acme/m.git?ref=v1", moduleSource{}, "not the URL of a git repository"},
		{"password", "git::https://bot:hunter2@github.com/acme/m.git?ref=v1", moduleSource{}, "holds a password"},
		{"backslash", `.\ci\go`, moduleSource{}, "is not a module source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseModuleSource(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseModuleSource(%q) = %+v, %v; want an error mentioning %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseModuleSource(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzModuleSource(f *testing.F) {
	for _, s := range []string{"./ci/go", "git::https://h/r.git//d?ref=v1", "git::file:///x//y?ref=main", "git::a://?ref=", "../.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := parseModuleSource(s)
		if err != nil {
			return
		}
		if src.isGit() && (src.ref == "" || strings.Contains(src.subdir, "..")) {
			t.Fatalf("parseModuleSource(%q) = %+v", s, src)
		}
	})
}

// gitCmd runs git in dir with a fixed identity and no user configuration.
func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// moduleRepo is a bare repository of modules, written through a work tree.
type moduleRepo struct {
	work, bare string
}

func newModuleRepo(t *testing.T) *moduleRepo {
	t.Helper()
	dir := t.TempDir()
	r := &moduleRepo{work: filepath.Join(dir, "work"), bare: filepath.Join(dir, "mods.git")}
	gitCmd(t, dir, "init", "-q", "--bare", "-b", "main", r.bare)
	gitCmd(t, dir, "init", "-q", "-b", "main", r.work)
	gitCmd(t, r.work, "remote", "add", "origin", r.bare)
	return r
}

func (r *moduleRepo) url() string { return "file://" + filepath.ToSlash(r.bare) }

// commit writes files, commits and pushes them, and returns the commit.
func (r *moduleRepo) commit(t *testing.T, files map[string]string) string {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(r.work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitCmd(t, r.work, "add", "-A")
	gitCmd(t, r.work, "commit", "-q", "-m", "modules")
	gitCmd(t, r.work, "push", "-q", "origin", "main")
	return gitCmd(t, r.work, "rev-parse", "HEAD")
}

// tag points an annotated tag at HEAD, moving it if it exists.
func (r *moduleRepo) tag(t *testing.T, name string) {
	t.Helper()
	gitCmd(t, r.work, "tag", "-f", "-a", "-m", name, name)
	gitCmd(t, r.work, "push", "-q", "-f", "origin", "refs/tags/"+name)
}

const goModule = `
variable "go_version" {
  type = string
}

stage "test" {
  step "run" "unit" {
    image   = "golang:${var.go_version}"
    command = ["go", "test", "./..."]
    outputs = ["coverage"]
  }
}

output "coverage" {
  value = step.unit.coverage
}
`

// writeRepo writes the files of a repository and returns its .sluice.
func writeRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, text := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, DefaultDir)
}

// compileModules loads and compiles a pipeline with module options.
func compileModules(t *testing.T, dir string, mo ModuleOptions) (*plan.Plan, *Sources, hcl.Diagnostics) {
	t.Helper()
	src, diags := Load(dir)
	if diags.HasErrors() {
		t.Fatalf("loading %s: %v", dir, diags)
	}
	p, diags := Compile(src, Options{Git: defaultTestGit(), Modules: mo})
	return p, src, diags
}

// render renders diagnostics on one line each, so that tests can look for
// text that wrapping would break at a place that depends on the length of
// temporary paths.
func render(src *Sources, diags hcl.Diagnostics) string {
	var buf bytes.Buffer
	_ = WriteDiagnostics(&buf, src, diags, 100000, false)
	return buf.String()
}

func stageIDs(p *plan.Plan) []string {
	var ids []string
	for _, s := range p.Stages {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestGitModule compiles a pipeline whose module comes from a bare
// repository at a tag: validate locks the tag's commit, later compiles use
// the lock, and a moved tag is refused.
func TestGitModule(t *testing.T) {
	repo := newModuleRepo(t)
	first := repo.commit(t, map[string]string{"go/module.hcl": goModule})
	repo.tag(t, "v1.0.0")
	dir := writeRepo(t, map[string]string{".sluice/web.hcl": `pipeline "web" {}

module "go" {
  source = "git::` + repo.url() + `//go?ref=v1.0.0"
  inputs = { go_version = "1.26" }
}

stage "report" {
  step "run" "report" {
    command = ["echo", module.go.output.coverage]
  }
}
`})
	cache := t.TempDir()
	fetcher := &GitFetcher{Dir: cache}

	// Without a lock file, plan refuses the source.
	_, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: fetcher})
	if out := render(src, diags); !strings.Contains(out, "Module source not locked") || !strings.Contains(out, "Run sluice validate") {
		t.Fatalf("compiling without a lock:\n%s", out)
	}

	// validate resolves the tag and writes the lock.
	p, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: fetcher, Lock: LockCheck})
	if diags.HasErrors() {
		t.Fatalf("validate: %s", render(src, diags))
	}
	if got := strings.Join(stageIDs(p), " "); got != "go.test report" {
		t.Errorf("stages = %s, want go.test report", got)
	}
	if s := p.Stages[0]; s.Source != "web.hcl:3" || s.Steps[0].Name != "go.unit" || s.Steps[0].Run.Image.Literal() != "golang:1.26" {
		t.Errorf("module stage = %+v; want its source at the module block, step go.unit, image golang:1.26", s)
	}
	if cmd := p.Stages[1].Steps[0].Run.Command[1]; cmd.IsLiteral() || cmd.Parts[0].Ref.Step != "go.unit" {
		t.Errorf("module output = %+v, want a reference to go.unit's coverage", cmd)
	}
	if p.Stages[1].Needs[0] != "go.test" {
		t.Errorf("report needs %v, want go.test (written after the module)", p.Stages[1].Needs)
	}
	lockFile, changed, err := src.WriteModuleLock()
	if err != nil || !changed {
		t.Fatalf("WriteModuleLock = %s, %v, %v", lockFile, changed, err)
	}
	lock, _ := os.ReadFile(lockFile)
	if want := `git "` + repo.url() + `" "v1.0.0" {` + "\n  commit = \"" + first + `"`; !strings.Contains(string(lock), want) {
		t.Fatalf("lock file:\n%s\nwant it to hold\n%s", lock, want)
	}
	if _, changed, _ := src.WriteModuleLock(); changed {
		t.Error("writing the same lock again changed the file")
	}

	// A compile with the lock and an empty cache fetches the locked commit.
	p2, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: &GitFetcher{Dir: t.TempDir()}})
	if diags.HasErrors() || p2.Digest != p.Digest {
		t.Fatalf("compiling with the lock: %s (digest %s, want %s)", render(src, diags), p2.Digest, p.Digest)
	}

	// The tag moves to another commit.
	second := repo.commit(t, map[string]string{"go/module.hcl": strings.Replace(goModule, `"./..."`, `"./cmd/..."`, 1)})
	repo.tag(t, "v1.0.0")
	for _, mode := range []LockMode{LockRead, LockCheck} {
		_, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: &GitFetcher{Dir: t.TempDir()}, Lock: mode})
		out := render(src, diags)
		for _, want := range []string{"Module ref moved", "is commit " + first, "now names " + second, "--update-modules"} {
			if !strings.Contains(out, want) {
				t.Errorf("lock mode %d after the tag moved: no %q in\n%s", mode, want, out)
			}
		}
	}
	// A cache that holds the locked commit goes on using it, offline.
	if p3, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: fetcher}); diags.HasErrors() || p3.Digest != p.Digest {
		t.Errorf("compiling from the cache after the tag moved: %s", render(src, diags))
	}
	// --update-modules takes the new commit.
	p4, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: fetcher, Lock: LockUpdate})
	if diags.HasErrors() {
		t.Fatalf("updating: %s", render(src, diags))
	}
	if got := p4.Stages[0].Steps[0].Run.Command[2].Literal(); got != "./cmd/..." {
		t.Errorf("after the update the module runs %q, want the new commit's ./cmd/...", got)
	}
	if _, changed, err := src.WriteModuleLock(); err != nil || !changed {
		t.Fatalf("WriteModuleLock after the update: %v, %v", changed, err)
	}
	if lock, _ := os.ReadFile(lockFile); !strings.Contains(string(lock), second) {
		t.Errorf("lock file after the update:\n%s\nwant commit %s", lock, second)
	}
}

// TestGitModuleCallsLocal checks that a git module may call a directory of
// its own repository, and that the lock records every git source, nested
// ones too.
func TestGitModuleCallsLocal(t *testing.T) {
	repo := newModuleRepo(t)
	repo.commit(t, map[string]string{
		"go/module.hcl": `
module "lint" {
  source = "../lint"
}
stage "test" {
  step "run" "unit" {
    command = ["go", "test", "./..."]
  }
}
`,
		"lint/lint.hcl": `
stage "vet" {
  step "run" "vet" {
    command = ["go", "vet", "./..."]
  }
}
module "escape" {
  source = "../../.."
}
`,
	})
	repo.tag(t, "v2")
	dir := writeRepo(t, map[string]string{".sluice/web.hcl": `pipeline "web" {}

module "go" {
  source = "git::` + repo.url() + `//go?ref=v2"
}
`})
	_, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: &GitFetcher{Dir: t.TempDir()}, Lock: LockCheck})
	out := render(src, diags)
	if !strings.Contains(out, "Module outside the repository") || !strings.Contains(out, `In module "escape" called at`) && !strings.Contains(out, `In module "lint" called at`) {
		t.Fatalf("a module leaving the module repository:\n%s", out)
	}
	// Without the escape, the nested stages come first, as written.
	repo.commit(t, map[string]string{"lint/lint.hcl": `
stage "vet" {
  step "run" "vet" {
    command = ["go", "vet", "./..."]
  }
}
`})
	repo.tag(t, "v2")
	p, src, diags := compileModules(t, dir, ModuleOptions{Fetcher: &GitFetcher{Dir: t.TempDir()}, Lock: LockUpdate})
	if diags.HasErrors() {
		t.Fatal(render(src, diags))
	}
	if got := strings.Join(stageIDs(p), " "); got != "go.lint.vet go.test" {
		t.Errorf("stages = %s, want go.lint.vet go.test", got)
	}
	if s := p.Stages[0]; s.Source != "web.hcl:3" || s.Steps[0].Name != "go.lint.vet" {
		t.Errorf("nested stage = %+v", s)
	}
	if got := p.Stages[1].Needs; len(got) != 1 || got[0] != "go.lint.vet" {
		t.Errorf("go.test needs %v, want the nested module's stage written before it", got)
	}
}

// TestModuleFromRepository compiles as the server does: only the files of
// .sluice are on the disk, and a local module is read from the repository
// at the event's commit.
func TestModuleFromRepository(t *testing.T) {
	repo := newModuleRepo(t)
	pipeline := `pipeline "web" {}

module "go" {
  source = "../../ci/go"
  inputs = { go_version = 3 }
}
`
	sha := repo.commit(t, map[string]string{
		"app/.sluice/web.hcl":  pipeline,
		"ci/go/module.hcl":     goModule,
		"app/.sluice/notes.md": "not a pipeline file",
	})
	dir := writeRepo(t, map[string]string{"app/.sluice/web.hcl": pipeline})
	dir = filepath.Join(filepath.Dir(dir), "app", DefaultDir)
	src, diags := Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	root := filepath.Dir(dir)
	p, diags := Compile(src, Options{Git: defaultTestGit(), Root: root, Modules: ModuleOptions{
		Fetcher:    &GitFetcher{Dir: t.TempDir()},
		Repository: &RepositoryAt{URL: repo.url(), Commit: sha, Path: "app"},
	}})
	if diags.HasErrors() {
		t.Fatal(render(src, diags))
	}
	s := p.Stages[0]
	if s.ID != "go.test" || s.Source != "../../ci/go/module.hcl:6" || s.Steps[0].Run.Image.Literal() != "golang:3" {
		t.Errorf("stage = %s from %s, image %v", s.ID, s.Source, s.Steps[0].Run.Image)
	}
}

// TestModuleDiagnosticsSayWhere checks that a diagnostic inside a module
// names the module's file:line and the block that calls it, through every
// level of nesting.
func TestModuleDiagnosticsSayWhere(t *testing.T) {
	dir := writeRepo(t, map[string]string{
		".sluice/web.hcl": "pipeline \"web\" {}\n\nmodule \"outer\" {\n  source = \"../ci/outer\"\n}\n",
		"ci/outer/m.hcl":  "module \"inner\" {\n  source = \"../inner\"\n}\n",
		"ci/inner/m.hcl":  "stage \"s\" {\n  step \"run\" \"r\" {\n    comand = [\"x\"]\n  }\n}\n",
	})
	_, src, diags := compileModules(t, dir, ModuleOptions{})
	out := render(src, diags)
	root := filepath.Dir(dir)
	for _, want := range []string{
		filepath.Join(root, "ci/inner/m.hcl") + ":3:5: error: Unsupported argument",
		`In module "inner" called at ` + filepath.Join(root, "ci/outer/m.hcl") + `:1, from module "outer" called at ` + filepath.Join(dir, "web.hcl") + ":3.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// TestGitFetcherCredentials checks that credentials go only over HTTPS.
func TestGitFetcherCredentials(t *testing.T) {
	var asked []string
	f := &GitFetcher{Credentials: func(_ context.Context, url string) (string, string, error) {
		asked = append(asked, url)
		return "x-access-token", "tok", nil
	}}
	for _, url := range []string{"https://github.com/acme/m.git", "http://github.com/acme/m.git", "file:///srv/m.git", "ssh://git@github.com/acme/m.git"} {
		auth, err := f.auth(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := auth != nil, strings.HasPrefix(url, "https://"); got != want {
			t.Errorf("credentials for %s: %v, want %v", url, got, want)
		}
	}
	if len(asked) != 1 {
		t.Errorf("credentials asked for %v, want only the https URL", asked)
	}
}

// TestModuleDepth checks the bound on modules calling modules.
func TestModuleDepth(t *testing.T) {
	files := map[string]string{".sluice/web.hcl": "pipeline \"web\" {}\nmodule \"m\" {\n  source = \"../m1\"\n}\n"}
	for i := 1; i <= MaxModuleDepth+1; i++ {
		files[fmt.Sprintf("m%d/m.hcl", i)] = fmt.Sprintf("module \"m\" {\n  source = \"../m%d\"\n}\n", i+1)
	}
	files[fmt.Sprintf("m%d/m.hcl", MaxModuleDepth+2)] = "stage \"s\" {\n  step \"run\" \"r\" {\n    command = [\"true\"]\n  }\n}\n"
	_, src, diags := compileModules(t, writeRepo(t, files), ModuleOptions{})
	out := render(src, diags)
	if !strings.Contains(out, "Modules nested too deeply") || strings.Count(out, "error:") != 1 {
		t.Errorf("modules nested %d deep:\n%s", MaxModuleDepth+2, out)
	}
}
