package gitops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// Options says which image goes into which file of which repository.
type Options struct {
	// Repo is the repository's URL, or the path of a local repository.
	Repo   string
	Branch string
	// File is the path of the file in the repository.
	File   string
	Target Target
	Image  Image
	// Token authenticates https pushes, as x-access-token:<token> (what
	// GitHub, GitLab and Gitea accept for tokens).
	Token string
	// Message is the commit message; Commit appends its trailers.
	Message string
	// Author signs the commit; its When is set at commit time.
	Author object.Signature
	// DryRun computes the change without committing or pushing it.
	DryRun bool
	// Attempts bounds how often a push that lost a race with another push
	// is tried again on top of it; 0 means 5.
	Attempts int
	Log      io.Writer
}

// Result is what Commit did.
type Result struct {
	// Revision is the commit of the branch that holds the image: the one
	// pushed, or the branch's head when the file already held the image.
	// Empty in a dry run that would have committed.
	Revision string
	// Previous is the image the file held before (empty when none).
	Previous string
	// Changed says whether a commit was (or, in a dry run, would be) made.
	Changed bool
	// Diff shows the change of the file, for logs.
	Diff string
}

// Trailers of Sluice's commits. A retried step finds the file already
// at its image; the trailers of the commit at the head tell it which
// image that commit replaced.
const (
	trailerImage    = "Sluice-Image: "
	trailerPrevious = "Sluice-Previous-Image: "
)

// beforePush, when set by tests, runs between the commit and its push.
var beforePush func(attempt int)

// Commit writes the image into the file on the branch and pushes it. When
// another push lands between its clone and its push, it starts again on
// top of that push, up to Attempts times. It is safe to retry: a file that
// already holds the image gets no commit.
func Commit(ctx context.Context, o Options) (Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Branch == "" {
		o.Branch = "main"
	}
	if !filepath.IsLocal(filepath.FromSlash(o.File)) {
		return Result{}, fmt.Errorf("file %q is not a path inside the repository; write it relative to the repository's root", o.File)
	}
	attempts := o.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	for attempt := 1; ; attempt++ {
		res, raced, err := o.try(ctx, attempt)
		if !raced {
			return res, err
		}
		if attempt >= attempts {
			return Result{}, fmt.Errorf("pushing to branch %q of %s: another push landed first %d times in a row; run the step again", o.Branch, redact(o.Repo), attempts)
		}
		fmt.Fprintf(o.Log, "sluice: branch %s of %s moved while committing; trying again on top of it\n", o.Branch, redact(o.Repo))
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// try clones, edits, commits and pushes once. raced says the push lost to
// another one.
func (o Options) try(ctx context.Context, attempt int) (res Result, raced bool, err error) {
	dir, err := os.MkdirTemp("", "sluice-gitops-")
	if err != nil {
		return Result{}, false, err
	}
	defer os.RemoveAll(dir)
	where := fmt.Sprintf("branch %q of %s", o.Branch, redact(o.Repo))
	branch := plumbing.NewBranchReferenceName(o.Branch)
	auth := o.auth()
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
		URL: o.Repo, Auth: auth, ReferenceName: branch, SingleBranch: true, Depth: 1, Tags: git.NoTags,
	})
	if err != nil {
		return Result{}, false, cloneError(err, o, where)
	}
	head, err := repo.Head()
	if err != nil {
		return Result{}, false, fmt.Errorf("reading the head of %s: %w", where, err)
	}
	res.Revision = head.Hash().String()

	path := filepath.Join(dir, filepath.FromSlash(o.File))
	content, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && o.Target.Format == FormatArgoCDSource:
		// Argo CD reads no overrides from a missing file: it is made.
	case err != nil:
		return Result{}, false, fmt.Errorf("file %q is not on %s: add it, or set file to the path of the file that holds the image", o.File, where)
	}
	out, previous, err := Edit(content, o.Target, o.Image)
	if err != nil {
		return Result{}, false, fmt.Errorf("editing %s on %s: %w", o.File, where, err)
	}
	res.Previous = previous
	if string(out) == string(content) && content != nil {
		// Already there: maybe this step's own commit, pushed before a
		// retry. Its trailers know the image it replaced.
		if c, err := repo.CommitObject(head.Hash()); err == nil && trailer(c.Message, trailerImage) == o.Image.String() {
			res.Previous = trailer(c.Message, trailerPrevious)
		}
		fmt.Fprintf(o.Log, "sluice: %s on %s already holds %s; nothing to commit\n", o.File, where, o.Image)
		return res, false, nil
	}
	res.Changed = true
	res.Diff = diff(o.File, string(content), string(out))
	if o.DryRun {
		res.Revision = ""
		return res, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Result{}, false, err
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return Result{}, false, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return Result{}, false, err
	}
	if _, err := wt.Add(filepath.ToSlash(o.File)); err != nil {
		return Result{}, false, fmt.Errorf("staging %s: %w", o.File, err)
	}
	author := o.Author
	author.When = time.Now()
	msg := strings.TrimRight(o.Message, "\n") + "\n\n" + trailerImage + o.Image.String() + "\n"
	if previous != "" {
		msg += trailerPrevious + previous + "\n"
	}
	hash, err := wt.Commit(msg, &git.CommitOptions{Author: &author, Committer: &author})
	if err != nil {
		return Result{}, false, fmt.Errorf("committing %s: %w", o.File, err)
	}
	if beforePush != nil {
		beforePush(attempt)
	}
	spec := config.RefSpec(branch.String() + ":" + branch.String())
	err = repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: auth})
	if err != nil {
		// A push that lost a race fails in several ways (non-fast-forward,
		// a rejected ref, an unknown parent in a shallow clone): the
		// branch's head on the remote tells.
		if moved, lerr := remoteMoved(ctx, repo, branch, head.Hash(), auth); lerr == nil && moved {
			return Result{}, true, nil
		}
		return Result{}, false, pushError(err, o, where)
	}
	res.Revision = hash.String()
	return res, false, nil
}

func (o Options) auth() transport.AuthMethod {
	if o.Token == "" || !strings.HasPrefix(o.Repo, "http") {
		return nil
	}
	return &githttp.BasicAuth{Username: "x-access-token", Password: o.Token}
}

func remoteMoved(ctx context.Context, repo *git.Repository, branch plumbing.ReferenceName, base plumbing.Hash, auth transport.AuthMethod) (bool, error) {
	r, err := repo.Remote("origin")
	if err != nil {
		return false, err
	}
	refs, err := r.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return false, err
	}
	for _, ref := range refs {
		if ref.Name() == branch {
			return ref.Hash() != base, nil
		}
	}
	return false, nil
}

func cloneError(err error, o Options, where string) error {
	switch {
	case errors.Is(err, plumbing.ErrReferenceNotFound), errors.Is(err, git.NoMatchingRefSpecError{}):
		return fmt.Errorf("cloning %s: the repository has no branch %q; create it, or set branch in the gitops block", where, o.Branch)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("cloning %s: the repository refused the credentials; give the gitops block a token that may read and push to it (token = secret.<name>): %w", where, err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("cloning %s: no repository there; check repo in the gitops block", where)
	}
	return fmt.Errorf("cloning %s: %w", where, err)
}

func pushError(err error, o Options, where string) error {
	if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
		return fmt.Errorf("pushing to %s: the repository refused the push; give the gitops block a token that may push to branch %q: %w", where, o.Branch, err)
	}
	return fmt.Errorf("pushing to %s: %w", where, err)
}

// trailer returns the value of the last line of msg starting with key.
func trailer(msg, key string) string {
	v := ""
	for _, l := range strings.Split(msg, "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			v = strings.TrimSpace(rest)
		}
	}
	return v
}

// redact drops credentials written into a URL.
func redact(repo string) string {
	if u, err := url.Parse(repo); err == nil && u.User != nil {
		return u.Redacted()
	}
	return repo
}

// diff shows the lines that changed between a and b, with the lines
// around them.
func diff(name, a, b string) string {
	al, bl := strings.SplitAfter(a, "\n"), strings.SplitAfter(b, "\n")
	pre := 0
	for pre < len(al) && pre < len(bl) && al[pre] == bl[pre] {
		pre++
	}
	suf := 0
	for suf < len(al)-pre && suf < len(bl)-pre && al[len(al)-1-suf] == bl[len(bl)-1-suf] {
		suf++
	}
	var s strings.Builder
	fmt.Fprintf(&s, "--- a/%s\n+++ b/%s\n", name, name)
	from := max(0, pre-2)
	for _, l := range al[from:pre] {
		s.WriteString(" " + strings.TrimSuffix(l, "\n") + "\n")
	}
	for _, l := range al[pre : len(al)-suf] {
		s.WriteString("-" + strings.TrimSuffix(l, "\n") + "\n")
	}
	for _, l := range bl[pre : len(bl)-suf] {
		s.WriteString("+" + strings.TrimSuffix(l, "\n") + "\n")
	}
	for _, l := range al[len(al)-suf : min(len(al), len(al)-suf+2)] {
		if l != "" {
			s.WriteString(" " + strings.TrimSuffix(l, "\n") + "\n")
		}
	}
	return s.String()
}
