package dsl

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// LocalGit reads the git context of the repository holding dir, as a push
// of its current branch would have it. Outside a repository it returns an
// empty context and no error: pipelines can be checked anywhere.
// changedKnown reports whether ChangedFiles holds the files of HEAD's commit.
func LocalGit(dir string) (g plan.Git, changedKnown bool, err error) {
	g.Event = "push"
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return g, false, nil
	}
	if err != nil {
		return g, false, fmt.Errorf("opening the git repository at %q: %w", dir, err)
	}
	head, err := repo.Head()
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return g, false, nil // no commits yet
	}
	if err != nil {
		return g, false, fmt.Errorf("reading HEAD: %w", err)
	}
	g.SHA = head.Hash().String()
	g.ShortSHA = g.SHA[:7]
	if head.Name().IsBranch() {
		g.Branch = head.Name().Short()
		g.Ref = head.Name().String()
	}
	if tags, err := repo.Tags(); err == nil {
		var names []string
		_ = tags.ForEach(func(r *plumbing.Reference) error {
			h := r.Hash()
			if t, err := repo.TagObject(h); err == nil {
				h = t.Target
			}
			if h == head.Hash() {
				names = append(names, r.Name().Short())
			}
			return nil
		})
		sort.Strings(names)
		if len(names) > 0 && g.Branch == "" {
			g.Tag = names[0]
		}
	}
	if cfg, err := repo.Config(); err == nil {
		if r, ok := cfg.Remotes["origin"]; ok && len(r.URLs) > 0 {
			g.Repo = repoSlug(r.URLs[0])
		}
		g.Actor = cfg.User.Name
	}
	if g.Actor == "" {
		g.Actor = os.Getenv("USER")
	}
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		return g, false, fmt.Errorf("reading commit %s: %w", g.ShortSHA, err)
	}
	files, err := changedFiles(commit)
	if err != nil {
		return g, false, nil
	}
	g.ChangedFiles = files
	return g, true, nil
}

// ChangedBetween lists the files a branch at head changed since it left
// base (their merge base), in the repository holding dir: the files of a
// pull request.
func ChangedBetween(dir, base, head string) ([]string, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("opening the git repository at %q: %w", dir, err)
	}
	commits := make([]*object.Commit, 2)
	for i, rev := range []string{base, head} {
		h, err := repo.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			return nil, fmt.Errorf("resolving %q: %w", rev, err)
		}
		if commits[i], err = repo.CommitObject(*h); err != nil {
			return nil, fmt.Errorf("reading commit %q: %w", rev, err)
		}
	}
	// Like a pull request, compare with where the branch left base, so
	// that what changed on base since does not count.
	if mb, err := commits[0].MergeBase(commits[1]); err == nil && len(mb) > 0 {
		commits[0] = mb[0]
	}
	trees := make([]*object.Tree, 2)
	for i, c := range commits {
		var err error
		if trees[i], err = c.Tree(); err != nil {
			return nil, fmt.Errorf("reading the tree of %s: %w", c.Hash, err)
		}
	}
	return diffNames(trees[0], trees[1])
}

func changedFiles(c *object.Commit) ([]string, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	var parent *object.Tree
	if c.NumParents() > 0 {
		p, err := c.Parent(0)
		if err != nil {
			return nil, err
		}
		if parent, err = p.Tree(); err != nil {
			return nil, err
		}
	}
	return diffNames(parent, tree)
}

func diffNames(a, b *object.Tree) ([]string, error) {
	changes, err := object.DiffTree(a, b)
	if err != nil {
		return nil, fmt.Errorf("comparing trees: %w", err)
	}
	seen := map[string]bool{}
	files := []string{}
	for _, ch := range changes {
		for _, n := range []string{ch.From.Name, ch.To.Name} {
			if n != "" && !seen[n] {
				seen[n] = true
				files = append(files, n)
			}
		}
	}
	sort.Strings(files)
	return files, nil
}

// repoSlug turns a remote URL into owner/name.
func repoSlug(url string) string {
	u := strings.TrimSuffix(strings.TrimSuffix(url, "/"), ".git")
	if i := strings.LastIndex(u, ":"); i >= 0 && !strings.Contains(u, "://") {
		u = u[i+1:]
	}
	dir, name := path.Split(u)
	owner := path.Base(strings.TrimSuffix(dir, "/"))
	if owner == "." || owner == "/" || owner == "" {
		return name
	}
	return owner + "/" + name
}

// RepoRoot returns the top directory of the git repository holding dir,
// and whether there is one; without one it returns dir's parent for a
// .sluice directory, and dir otherwise.
func RepoRoot(dir string) (string, bool) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err == nil {
		if wt, err := repo.Worktree(); err == nil {
			return wt.Filesystem.Root(), true
		}
	}
	if filepath.Base(dir) == DefaultDir {
		return filepath.Dir(dir), false
	}
	return dir, false
}
