package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Options says which workspace to prepare and what to put in it.
type Options struct {
	// Root holds every workspace of the runner, for example
	// $SLUICE_HOME/workspaces.
	Root string
	// Run and Stage name the workspace; a stage ID may hold any
	// character (a matrix instance is `test[go=1.22]`).
	Run, Stage string
	// Repo is a local git repository, or any directory inside its
	// working tree. In Dirty mode it may be any directory.
	Repo string
	// SHA is the commit to check out, in full or abbreviated; empty means
	// the repository's HEAD. In Dirty mode it is the commit the
	// workspace's own .git points at, so that `git status` and `git
	// describe` in a step show the changes against it.
	SHA string
	// Dirty copies the working tree as it is instead of checking out a
	// commit: tracked files as they are on disk, and untracked files that
	// .gitignore does not exclude. A directory that is not a repository
	// is copied whole.
	Dirty bool
	// Reuse returns an existing workspace of the same run and stage as it
	// is instead of recreating it.
	Reuse bool
}

// Dir returns where the workspace of a run's stage lives, so that callers
// can find it again (to remove it, or to reuse it for a later step)
// without preparing it. Run and stage names are escaped into single path
// elements.
func Dir(root, run, stage string) (string, error) {
	if root == "" {
		return "", errors.New("no workspace root given")
	}
	if run == "" || stage == "" {
		return "", fmt.Errorf("naming a workspace: run and stage must both be set (got run %q, stage %q)", run, stage)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("workspace root %q: %w", root, err)
	}
	return filepath.Join(root, escapeName(run), escapeName(stage)), nil
}

var hexSHA = regexp.MustCompile(`^[0-9a-fA-F]{4,64}$`)

// Prepare creates the workspace for opts.Run and opts.Stage and returns its
// absolute path. The workspace is built beside its final place and renamed
// into it, so it is either complete or absent. Preparing the same
// workspace again recreates it from scratch, unless opts.Reuse is set: a
// runner that restarts after a crash then finds the workspace as the
// stage's completed steps left it. Concurrent calls for the same workspace
// wait for each other.
func Prepare(ctx context.Context, opts Options) (string, error) {
	dir, err := Dir(opts.Root, opts.Run, opts.Stage)
	if err != nil {
		return "", err
	}
	if opts.Repo == "" {
		return "", errors.New("preparing a workspace: no repository given")
	}
	if opts.SHA != "" && !hexSHA.MatchString(opts.SHA) {
		return "", fmt.Errorf("preparing a workspace: %q is not a commit SHA", opts.SHA)
	}
	repo, err := filepath.Abs(opts.Repo)
	if err != nil {
		return "", fmt.Errorf("repository %q: %w", opts.Repo, err)
	}
	if fi, err := os.Stat(repo); err != nil {
		return "", fmt.Errorf("repository: %w", err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("repository %q is not a directory", opts.Repo)
	}

	parent, name := filepath.Split(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("creating workspace: %w", err)
	}
	unlock, err := lock(ctx, filepath.Join(parent, "."+name+".lock"))
	if err != nil {
		return "", fmt.Errorf("locking workspace %s: %w", dir, err)
	}
	defer unlock()

	if opts.Reuse {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir, nil
		}
	}

	// Under the lock, a temporary directory of this workspace is left over
	// from an attempt that crashed.
	stale, _ := filepath.Glob(filepath.Join(parent, "."+name+".tmp-*"))
	for _, s := range stale {
		if err := removeAll(s); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp(parent, "."+name+".tmp-")
	if err != nil {
		return "", fmt.Errorf("creating workspace: %w", err)
	}
	done := false
	defer func() {
		if !done {
			removeAll(tmp)
		}
	}()

	if opts.Dirty {
		// Root itself may lie inside the directory being copied.
		err = copyWorkingTree(ctx, repo, opts.SHA, tmp, filepath.Dir(filepath.Dir(dir)))
	} else {
		err = checkout(ctx, repo, opts.SHA, tmp)
	}
	if err != nil {
		return "", err
	}
	if err := removeAll(dir); err != nil {
		return "", err
	}
	// The steps a journal of the old workspace holds did not run in this one.
	if err := os.Remove(Journal(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("creating workspace: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("creating workspace: %w", err)
	}
	done = true
	return dir, nil
}

// Journal names the file beside the workspace dir (as Dir gives it) where
// the engine records the steps finished in it (engine.StepJournals). It
// lives and goes with the workspace: Prepare removes it when it makes the
// workspace anew, and Remove with the workspace.
func Journal(dir string) string {
	parent, name := filepath.Split(filepath.Clean(dir))
	return filepath.Join(parent, "."+name+".journal")
}

// Remove deletes a workspace made by Prepare, with its lock file, and the
// run's directory once its last workspace is gone. A missing workspace is
// not an error, so removing twice is safe. Remove must not run while the
// same workspace is being prepared.
func Remove(dir string) error {
	if dir == "" {
		return errors.New("removing workspace: no directory given")
	}
	dir = filepath.Clean(dir)
	if err := removeAll(dir); err != nil {
		return err
	}
	parent, name := filepath.Split(dir)
	for _, f := range []string{Journal(dir), filepath.Join(parent, "."+name+".lock")} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing workspace: %w", err)
		}
	}
	_ = os.Remove(parent) // fails, as it should, while other stages' workspaces are there
	return nil
}

// removeAll deletes a directory tree. Steps can leave directories without
// write permission (Go's module cache is one), which os.RemoveAll alone
// cannot empty, so they are made writable first.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing workspace: %w", err)
	}
	return nil
}

// escapeName turns a run or stage name into one path element: every byte
// outside [A-Za-z0-9_.-], and a leading dot, is written as %XX, so that
// different names never share a directory and none is "." or "..". The
// engine's log store names its files the same way.
func escapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' && i > 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
