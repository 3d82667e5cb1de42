package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Steps work in the directory that holds .sluice: the repository's top,
// or the project's subdirectory, and a directory outside a repository is
// its own project.
func TestProject(t *testing.T) {
	repo := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	sub := filepath.Join(repo, "examples", "svc")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	plain := t.TempDir()
	for _, tc := range []struct {
		name, path, repo, sub string
	}{
		{"repository top", repo, repo, ""},
		{"project in a subdirectory", sub, repo, filepath.Join("examples", "svc")},
		{"not a repository", plain, plain, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, s := project(tc.path)
			if r != tc.repo || s != tc.sub {
				t.Errorf("project(%q) = %q, %q; want %q, %q", tc.path, r, s, tc.repo, tc.sub)
			}
		})
	}
}
