package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// gitEnvDrop lists the variables that would point git at another
// repository than the one named on its command line: a runner started
// from a git hook, or a test, may have them set.
var gitEnvDrop = []string{
	"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
	"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
	"GIT_PREFIX", "GIT_QUARANTINE_PATH",
}

// git runs git in dir and returns its standard output. A failure carries
// git's own message, which is usually the clearest explanation.
func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return gitEnv(ctx, dir, nil, args...)
}

// gitEnv is git with more environment, which wins over the process's.
func gitEnv(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !contains(gitEnvDrop, name) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GIT_TERMINAL_PROMPT=0")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("git is needed to prepare workspaces but is not installed: %w", err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("git %s: %w", args[0], ctx.Err())
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return nil, fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return nil, fmt.Errorf("git %s: %s", strings.Join(args, " "), msg)
	}
	return stdout.Bytes(), nil
}

func gitLine(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := git(ctx, dir, args...)
	return strings.TrimSpace(string(out)), err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// repository describes the git repository holding a directory.
type repository struct {
	// source is what to clone: the top of the working tree, or the git
	// directory of a bare repository.
	source string
	// top is the top of the working tree; empty for a bare repository.
	top string
}

// errNotRepository is returned by openRepository for a directory outside
// any git repository.
var errNotRepository = errors.New("not a git repository")

func openRepository(ctx context.Context, dir string) (repository, error) {
	// One git for the usual case, a working tree; it fails elsewhere
	// (--show-toplevel needs a working tree), and the questions are then
	// asked one by one.
	if out, err := git(ctx, dir, "rev-parse", "--absolute-git-dir", "--is-inside-work-tree", "--show-toplevel"); err == nil {
		if l := strings.Split(strings.TrimSpace(string(out)), "\n"); len(l) == 3 && l[1] == "true" {
			return repository{source: l[2], top: l[2]}, nil
		}
	}
	gitDir, err := gitLine(ctx, dir, "rev-parse", "--absolute-git-dir")
	if err != nil {
		if _, lookErr := exec.LookPath("git"); lookErr != nil || ctx.Err() != nil {
			return repository{}, err
		}
		return repository{}, fmt.Errorf("%q: %w", dir, errNotRepository)
	}
	inside, err := gitLine(ctx, dir, "rev-parse", "--is-inside-work-tree")
	if err != nil {
		return repository{}, err
	}
	if inside != "true" {
		return repository{source: gitDir}, nil
	}
	top, err := gitLine(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return repository{}, err
	}
	return repository{source: top, top: top}, nil
}

// resolve returns the full SHA of a commit, HEAD when sha is empty. A
// repository without commits gets the error a user can act on.
func (r repository) resolve(ctx context.Context, sha string) (string, error) {
	rev := "HEAD"
	if sha != "" {
		rev = sha
	}
	full, err := gitLine(ctx, r.source, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err == nil {
		return full, nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	refs, refErr := gitLine(ctx, r.source, "for-each-ref", "--count=1")
	if refErr == nil && refs == "" {
		return "", fmt.Errorf("repository %q has no commits; commit first or use --dirty", r.source)
	}
	if sha == "" {
		return "", fmt.Errorf("repository %q has no HEAD commit (is HEAD on a branch without commits?); check out a commit or use --dirty", r.source)
	}
	return "", fmt.Errorf("commit %q is not in repository %q; fetch it first", sha, r.source)
}

// clone makes dir a repository that shares r's objects, without checking
// anything out. Sharing (git clone --shared) costs no copying, whatever the
// size of the history; the workspace lives no longer than a run, during
// which the runner does not prune its repositories.
func (r repository) clone(ctx context.Context, dir string) error {
	_, err := git(ctx, dir, "clone", "--quiet", "--shared", "--no-checkout", "--", r.source, dir)
	return err
}

// checkout fills dir with the files of one commit of the repository at repo,
// with a .git of its own whose HEAD is detached at that commit.
func checkout(ctx context.Context, repo, sha, dir string) error {
	// A full SHA, as runs give, needs no resolving: the workspace is made
	// at once, sharing the repository's objects (shareCheckout: one git),
	// else cloned and checked out (two), and only when that fails are the
	// repository and the commit looked at, for the error a user can act
	// on.
	if len(sha) == 40 || len(sha) == 64 {
		if err := shareCheckout(ctx, repo, sha, dir); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := emptyDir(dir); err != nil {
			return err
		}
		if err := (repository{source: repo}).clone(ctx, dir); err == nil {
			if _, err := git(ctx, dir, "checkout", "--quiet", "--detach", sha); err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := emptyDir(dir); err != nil {
			return err
		}
	}
	r, err := openRepository(ctx, repo)
	if errors.Is(err, errNotRepository) {
		return fmt.Errorf("%q is not in a git repository; run in a repository or use --dirty to copy the directory as it is", repo)
	}
	if err != nil {
		return err
	}
	full, err := r.resolve(ctx, sha)
	if err != nil {
		return err
	}
	if err := r.clone(ctx, dir); err != nil {
		return fmt.Errorf("preparing workspace: %w", err)
	}
	if _, err := git(ctx, dir, "checkout", "--quiet", "--detach", full); err != nil {
		return fmt.Errorf("checking out %s: %w", full, err)
	}
	return nil
}

// emptyDir removes what a failed attempt left in dir, keeping dir.
func emptyDir(dir string) error {
	if err := removeAll(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("creating workspace: %w", err)
	}
	return nil
}
