package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// copyWorkingTree fills dir with the files of repo as they are on disk. In
// a git working tree those are the files git knows of or would add
// (git ls-files --cached --others --exclude-standard), so ignored build
// output and dependencies stay behind; when the repository has a commit,
// dir also gets a .git sharing its objects, with HEAD detached at sha (or
// the repository's HEAD) and the index matching HEAD, so that git in a step
// sees the uncommitted changes as changes. Anything else is copied whole.
// Nothing under skip (the workspaces' root) is copied.
func copyWorkingTree(ctx context.Context, repo, sha, dir, skip string) error {
	r, err := openRepository(ctx, repo)
	if errors.Is(err, errNotRepository) {
		return copyTree(ctx, repo, dir, skip)
	}
	if err != nil {
		return err
	}
	if r.top == "" {
		return fmt.Errorf("repository %q is bare: it has no working tree to copy", repo)
	}
	head, err := r.resolve(ctx, sha)
	if err != nil && sha != "" {
		return err
	}
	hasCommit := err == nil
	if hasCommit {
		if err := r.clone(ctx, dir); err != nil {
			return fmt.Errorf("preparing workspace: %w", err)
		}
		if _, err := git(ctx, dir, "update-ref", "--no-deref", "HEAD", head); err != nil {
			return fmt.Errorf("preparing workspace: %w", err)
		}
	}
	out, err := git(ctx, r.top, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return fmt.Errorf("listing files of %q: %w", r.top, err)
	}
	seen := map[string]bool{}
	for _, rel := range bytes.Split(out, []byte{0}) {
		name := string(rel)
		if name == "" || seen[name] {
			continue // a conflicted file is listed once per stage
		}
		seen[name] = true
		if !filepath.IsLocal(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		src := filepath.Join(r.top, name)
		if within(src, skip) {
			continue
		}
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted but not yet committed: absent, as on disk
		}
		if err != nil {
			return fmt.Errorf("copying working tree: %w", err)
		}
		dst := filepath.Join(dir, name)
		if fi.IsDir() {
			// A submodule: its files as they are, without its .git.
			if err := copyTree(ctx, src, dst, skip); err != nil {
				return err
			}
			continue
		}
		if err := copyEntry(src, dst, fi); err != nil {
			return err
		}
	}
	if hasCommit {
		// The index was left empty by the clone; make it match HEAD so
		// that `git status` shows only the real changes.
		if _, err := git(ctx, dir, "reset", "--quiet"); err != nil {
			return fmt.Errorf("preparing workspace: %w", err)
		}
	}
	return nil
}

// copyTree copies the directory src to dst whole, leaving out .git
// directories and files and anything under skip.
func copyTree(ctx context.Context, src, dst, skip string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("copying %q: %w", src, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if within(p, skip) || d.Name() == ".git" && p != src {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("copying %q: %w", src, err)
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("copying %q: %w", src, err)
		}
		return copyEntry(p, target, fi)
	})
}

// copyEntry copies one file or symbolic link, keeping its permission bits.
// Other kinds of file (sockets, pipes, devices) are left out.
func copyEntry(src, dst string, fi fs.FileInfo) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copying %q: %w", src, err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("copying %q: %w", src, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("copying %q: %w", src, err)
		}
		return nil
	case !fi.Mode().IsRegular():
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %q: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("copying %q: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %q: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying %q: %w", src, err)
	}
	// The umask may have removed bits the original has.
	return os.Chmod(dst, fi.Mode().Perm())
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}
