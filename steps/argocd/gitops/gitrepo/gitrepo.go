// Package gitrepo makes real git repositories for tests of GitOps
// commits: a bare repository as the remote, seeded with files, and ways
// to read it back or push to it from the side, with the git CLI.
package gitrepo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Remote is a bare repository with a branch main.
type Remote struct {
	t    testing.TB
	Path string
}

// New makes a bare repository whose branch main holds files (path →
// content) in one commit.
func New(t testing.TB, files map[string]string) *Remote {
	t.Helper()
	dir := t.TempDir()
	r := &Remote{t: t, Path: filepath.Join(dir, "deploy.git")}
	run(t, dir, "git", "init", "--quiet", "--bare", "--initial-branch=main", r.Path)
	r.Push("seed", files)
	return r
}

// Push commits files to main from another clone, as a colleague would.
func (r *Remote) Push(message string, files map[string]string) {
	r.t.Helper()
	work := r.t.TempDir()
	run(r.t, work, "git", "clone", "--quiet", r.Path, ".")
	run(r.t, work, "git", "checkout", "--quiet", "-B", "main")
	for p, c := range files {
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	run(r.t, work, "git", "add", "-A")
	run(r.t, work, "git", "commit", "--quiet", "-m", message)
	run(r.t, work, "git", "push", "--quiet", "origin", "main")
}

// Head is the commit at main.
func (r *Remote) Head() string {
	r.t.Helper()
	return run(r.t, r.Path, "git", "rev-parse", "main")
}

// File is a file's content at main.
func (r *Remote) File(path string) string {
	r.t.Helper()
	return run(r.t, r.Path, "git", "show", "main:"+path) + "\n"
}

// Log is the subjects and trailers of main's commits, newest first, one
// "%H %s" line per commit.
func (r *Remote) Log() []string {
	r.t.Helper()
	return strings.Split(run(r.t, r.Path, "git", "log", "--format=%H %s", "main"), "\n")
}

// Message is the full message of a commit.
func (r *Remote) Message(rev string) string {
	r.t.Helper()
	return run(r.t, r.Path, "git", "log", "-1", "--format=%B", rev)
}

// Author is "name <email>" of a commit.
func (r *Remote) Author(rev string) string {
	r.t.Helper()
	return run(r.t, r.Path, "git", "log", "-1", "--format=%an <%ae>", rev)
}

func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Colleague", "GIT_AUTHOR_EMAIL=colleague@example.com",
		"GIT_COMMITTER_NAME=Colleague", "GIT_COMMITTER_EMAIL=colleague@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimRight(string(out), "\n")
}
