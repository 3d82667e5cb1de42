package workspace

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The fast way to a workspace: its .git is written here, sharing the
// source's objects through objects/info/alternates as `git clone --shared`
// does, with the source's branches as origin's and its tags, and HEAD
// detached at the commit; one `git read-tree` then fills the index and the
// files. It is one git process where clone and checkout are two (with
// clone the slower: it copies templates and spawns a transport): about
// 4 ms instead of 30 on a small repository, the larger part of a stage's
// pickup. Anything it does not understand (a reference format other than
// files, a repository it cannot find the objects of) is left to the clone.

// errNotShareable says the fast way does not apply; the caller clones.
var errNotShareable = errors.New("repository not shareable directly")

// gitDirs finds the git directory of repo (a directory in a working tree,
// or a bare repository) and the common directory holding its objects and
// refs.
func gitDirs(repo string) (gitDir, common string, err error) {
	// The working tree's top: the nearest directory with a .git.
	for dir := repo; ; {
		if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
			repo = dir
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	dotgit := filepath.Join(repo, ".git")
	fi, err := os.Stat(dotgit)
	switch {
	case err == nil && fi.IsDir():
		gitDir = dotgit
	case err == nil:
		// A linked worktree or a submodule: "gitdir: PATH".
		b, err := os.ReadFile(dotgit)
		if err != nil {
			return "", "", err
		}
		p, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
		if !ok {
			return "", "", errNotShareable
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(repo, p)
		}
		gitDir = p
	default:
		// A bare repository.
		if _, err := os.Stat(filepath.Join(repo, "objects")); err != nil {
			return "", "", errNotShareable
		}
		gitDir = repo
	}
	common = gitDir
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		c := strings.TrimSpace(string(b))
		if !filepath.IsAbs(c) {
			c = filepath.Join(gitDir, c)
		}
		common = c
	}
	return gitDir, common, nil
}

// sourceRefs reads the branches and tags of the common directory common:
// packed-refs, then loose refs, which win.
func sourceRefs(common string) (heads, tags map[string]string, err error) {
	cfg, err := os.ReadFile(filepath.Join(common, "config"))
	if err != nil {
		return nil, nil, errNotShareable
	}
	// Reftable, or another extension this code does not know.
	if bytes.Contains(bytes.ToLower(cfg), []byte("refstorage")) || bytes.Contains(cfg, []byte("objectformat")) {
		return nil, nil, errNotShareable
	}
	heads, tags = map[string]string{}, map[string]string{}
	put := func(name, sha string) {
		if b, ok := strings.CutPrefix(name, "refs/heads/"); ok {
			heads[b] = sha
		} else if strings.HasPrefix(name, "refs/tags/") {
			tags[name] = sha
		}
	}
	if f, err := os.Open(filepath.Join(common, "packed-refs")); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "^") {
				continue // the header, and peeled tags: git peels again
			}
			sha, name, ok := strings.Cut(line, " ")
			if !ok || len(sha) != 40 {
				f.Close()
				return nil, nil, errNotShareable
			}
			put(name, sha)
		}
		f.Close()
		if sc.Err() != nil {
			return nil, nil, errNotShareable
		}
	}
	for _, dir := range []string{"refs/heads", "refs/tags"} {
		root := filepath.Join(common, dir)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && path == root {
					return fs.SkipDir
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sha := strings.TrimSpace(string(b))
			if len(sha) != 40 {
				return errNotShareable // a symbolic ref: leave it to clone
			}
			rel, _ := filepath.Rel(common, path)
			put(filepath.ToSlash(rel), sha)
			return nil
		})
		if err != nil {
			return nil, nil, errNotShareable
		}
	}
	return heads, tags, nil
}

// shareCheckout makes dir (empty) a repository sharing repo's objects and
// checks sha (a full SHA) out in it, detached.
func shareCheckout(ctx context.Context, repo, sha, dir string) error {
	src, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	_, common, err := gitDirs(src)
	if err != nil {
		return err
	}
	objects := filepath.Join(common, "objects")
	if fi, err := os.Stat(objects); err != nil || !fi.IsDir() {
		return errNotShareable
	}
	heads, tags, err := sourceRefs(common)
	if err != nil {
		return err
	}
	var packed strings.Builder
	// Not "peeled": git then peels tags itself, as a loose annotated tag
	// copied here has no peeled line.
	packed.WriteString("# pack-refs with: sorted \n")
	names := make([]string, 0, len(heads)+len(tags))
	refs := map[string]string{}
	for b, s := range heads {
		refs["refs/remotes/origin/"+b] = s
	}
	for n, s := range tags {
		refs[n] = s
	}
	for n := range refs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&packed, "%s %s\n", refs[n], n)
	}
	g := filepath.Join(dir, ".git")
	files := []struct{ name, text string }{
		{"HEAD", sha + "\n"},
		{"config", "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n" +
			"[remote \"origin\"]\n\turl = " + src + "\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"},
		{"objects/info/alternates", objects + "\n"},
		{"packed-refs", packed.String()},
	}
	for _, d := range []string{"objects/info", "objects/pack", "refs/heads", "refs/tags", "refs/remotes/origin", "info"} {
		if err := os.MkdirAll(filepath.Join(g, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(g, f.name), []byte(f.text), 0o644); err != nil {
			return err
		}
	}
	_, err = git(ctx, dir, "read-tree", "--reset", "-u", sha)
	return err
}
