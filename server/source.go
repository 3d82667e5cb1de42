package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/runners/workspace"
)

// RepoRef names a repository for a Source: by name (owner/name on
// GitHub), its clone URL, and the GitHub App installation that reaches it.
type RepoRef struct {
	Name         string `json:"name"`
	URL          string `json:"url"`
	Installation int64  `json:"installation,omitempty"`
}

// Source reads a repository at a commit: its pipeline files and what an
// event changed. A list of changed files that may be incomplete comes back
// with complete false, which compiling reads as "everything changed".
type Source interface {
	PipelineFiles(ctx context.Context, r RepoRef, sha string) (map[string][]byte, error)
	Changed(ctx context.Context, r RepoRef, before, after string, forced bool) (files []string, complete bool, err error)
	PullFiles(ctx context.Context, r RepoRef, number int) (files []string, complete bool, err error)
}

// pipelineFile matches the files of a pipeline: .sluice/*.hcl at the top of
// the repository or of a project inside it.
var pipelineFile = regexp.MustCompile(`(^|/)\.sluice/[^/]+\.hcl$`)

var zeroSHA = regexp.MustCompile(`^0+$`)

// shaPattern is a full commit ID, SHA-1 or SHA-256.
var shaPattern = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// gitSource reads repositories with git, from mirrors the server keeps:
// the repositories of git push hooks.
type gitSource struct {
	mirrors string
}

func (g gitSource) mirror(ctx context.Context, r RepoRef, sha string) (string, error) {
	return workspace.Mirror(ctx, g.mirrors, r.URL, sha)
}

func (g gitSource) PipelineFiles(ctx context.Context, r RepoRef, sha string) (map[string][]byte, error) {
	dir, err := g.mirror(ctx, r, sha)
	if err != nil {
		return nil, err
	}
	out, err := gitOut(ctx, dir, "ls-tree", "-r", "-z", "--name-only", sha)
	if err != nil {
		return nil, fmt.Errorf("listing the files of %s at %s: %w", r.Name, sha, err)
	}
	files := map[string][]byte{}
	for _, name := range strings.Split(string(out), "\x00") {
		if !pipelineFile.MatchString(name) {
			continue
		}
		b, err := gitOut(ctx, dir, "cat-file", "blob", sha+":"+name)
		if err != nil {
			return nil, fmt.Errorf("reading %s of %s at %s: %w", name, r.Name, sha, err)
		}
		if len(b) > dsl.MaxFileSize {
			return nil, fmt.Errorf("%s of %s at %s is %d bytes; a pipeline file may be at most %d", name, r.Name, sha, len(b), dsl.MaxFileSize)
		}
		files[name] = b
	}
	return files, nil
}

func (g gitSource) Changed(ctx context.Context, r RepoRef, before, after string, forced bool) ([]string, bool, error) {
	if before == "" || zeroSHA.MatchString(before) || forced {
		return nil, false, nil
	}
	dir, err := g.mirror(ctx, r, after)
	if err != nil {
		return nil, false, err
	}
	// The old head may be gone from the repository (a forced push): then
	// nothing is known of what changed.
	if _, err := g.mirror(ctx, r, before); err != nil {
		return nil, false, nil
	}
	if _, err := gitOut(ctx, dir, "merge-base", "--is-ancestor", before, after); err != nil {
		return nil, false, nil
	}
	out, err := gitOut(ctx, dir, "diff", "--name-status", "-z", "-M", before, after)
	if err != nil {
		return nil, false, fmt.Errorf("listing what %s..%s of %s changed: %w", before, after, r.Name, err)
	}
	return nameStatusFiles(out), true, nil
}

// nameStatusFiles reads `git diff --name-status -z`: a rename lists both
// the old and the new name, as path filters should see both.
func nameStatusFiles(out []byte) []string {
	fields := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	var files []string
	for i := 0; i < len(fields); {
		st := fields[i]
		i++
		n := 1
		if strings.HasPrefix(st, "R") || strings.HasPrefix(st, "C") {
			n = 2
		}
		for k := 0; k < n && i < len(fields); k++ {
			files = append(files, fields[i])
			i++
		}
	}
	return files
}

func (g gitSource) PullFiles(context.Context, RepoRef, int) ([]string, bool, error) {
	return nil, false, errors.New("git repositories have no pull requests")
}

func gitOut(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out, nil
}
