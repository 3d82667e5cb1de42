package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v62/github"
)

// client builds a GitHub client for the target's server and credentials.
func (e *Executor) client(t *target) (*github.Client, error) {
	hc := &http.Client{}
	if e.HTTP != nil {
		c := *e.HTTP
		hc = &c
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	var itr *ghinstallation.Transport
	if t.app != nil {
		var err error
		itr, err = ghinstallation.New(base, t.app.id, t.app.installation, t.app.key)
		if err != nil {
			// The library's message names the parse error, never the key.
			return nil, fmt.Errorf("private_key of GitHub App %d is not usable (%v); give the PEM private key GitHub generated for the app, from -----BEGIN RSA PRIVATE KEY----- to the END line", t.app.id, err)
		}
		hc.Transport = itr
	}
	c := github.NewClient(hc)
	if t.app == nil {
		c = c.WithAuthToken(t.token)
	}
	c.UserAgent = "sluice"
	switch {
	case t.web != "":
		var err error
		if c, err = c.WithEnterpriseURLs(t.web, t.web); err != nil {
			return nil, fmt.Errorf("github_url %q: %w", t.web, err)
		}
	case e.apiURL != "":
		var err error
		if c.BaseURL, err = c.BaseURL.Parse(e.apiURL); err != nil {
			return nil, err
		}
	}
	if itr != nil {
		itr.BaseURL = strings.TrimSuffix(c.BaseURL.String(), "/")
	}
	return c, nil
}

// api is one release step's conversation with GitHub.
type api struct {
	e   *Executor
	c   *github.Client
	t   *target
	log io.Writer
}

// release makes sure the tag and the release exist, trying again after
// failures that may pass. Each attempt reads what exists before it
// creates anything, so an attempt finishes what an earlier one started.
func (a *api) release(ctx context.Context) (*github.RepositoryRelease, error) {
	attempts := a.e.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	backoff := a.e.Backoff
	if backoff <= 0 {
		backoff = DefaultBackoff
	}
	for n := 1; ; n++ {
		rel, err := a.attempt(ctx)
		if err == nil {
			return rel, nil
		}
		var p *passing
		if !errors.As(err, &p) {
			return nil, err
		}
		if n >= attempts {
			return nil, fmt.Errorf("%w; gave up after %d attempts", p.err, attempts)
		}
		wait := p.wait
		if wait == 0 {
			wait = backoff << (n - 1)
		}
		fmt.Fprintf(a.log, "sluice: %v; trying again in %s (attempt %d of %d)\n", p.err, wait.Round(time.Millisecond), n+1, attempts)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w; the step ended while waiting to try again", p.err)
		case <-time.After(wait):
		}
	}
}

func (a *api) attempt(ctx context.Context) (*github.RepositoryRelease, error) {
	if err := a.ensureTag(ctx); err != nil {
		return nil, err
	}
	rel, found, err := a.findRelease(ctx)
	if err != nil {
		return nil, err
	}
	if found {
		fmt.Fprintf(a.log, "sluice: release %s already exists (%s), for tag %s; not creating another\n", describe(rel), rel.GetHTMLURL(), a.t.tag)
		return rel, nil
	}
	return a.createRelease(ctx)
}

// call runs one request with the per-request deadline and turns its error
// into one that says what was being done.
func (a *api) call(ctx context.Context, what string, f func(context.Context) (*github.Response, error)) error {
	timeout := a.e.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := f(rctx)
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && rctx.Err() != nil {
		return &passing{err: fmt.Errorf("%s: GitHub %s did not answer within %s", what, a.t.server(), timeout)}
	}
	return a.explain(ctx, what, err)
}

// tagCommit reads the tag and returns the commit it points at, following
// an annotated tag to its commit.
func (a *api) tagCommit(ctx context.Context) (sha string, found bool, err error) {
	t := a.t
	var ref *github.Reference
	err = a.call(ctx, fmt.Sprintf("reading tag %s of %s", t.tag, t.slug()), func(ctx context.Context) (*github.Response, error) {
		var resp *github.Response
		var err error
		ref, resp, err = a.c.Git.GetRef(ctx, t.owner, t.repo, "tags/"+t.tag)
		return resp, err
	})
	if errors.Is(err, errNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	obj := ref.GetObject()
	// An annotated tag points at a tag object, which points at the
	// commit (or, rarely, at another tag).
	for depth := 0; obj.GetType() == "tag" && depth < 5; depth++ {
		var tag *github.Tag
		err = a.call(ctx, fmt.Sprintf("reading annotated tag %s of %s", t.tag, t.slug()), func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			tag, resp, err = a.c.Git.GetTag(ctx, t.owner, t.repo, obj.GetSHA())
			return resp, err
		})
		if err != nil {
			return "", false, err
		}
		obj = tag.GetObject()
	}
	if obj.GetType() != "commit" {
		return "", false, fmt.Errorf("tag %s of %s points at a %s (%s), not at a commit; delete the tag (git push --delete origin %s) or choose another tag",
			t.tag, t.slug(), obj.GetType(), obj.GetSHA(), t.tag)
	}
	return strings.ToLower(obj.GetSHA()), true, nil
}

// ensureTag creates the tag at the commit unless it is there already.
func (a *api) ensureTag(ctx context.Context) error {
	t := a.t
	sha, found, err := a.tagCommit(ctx)
	if err != nil {
		return err
	}
	if found {
		if sha != t.commit {
			return a.conflict(sha)
		}
		fmt.Fprintf(a.log, "sluice: tag %s of %s is already at %s\n", t.tag, t.slug(), t.commit)
		return nil
	}
	err = a.call(ctx, fmt.Sprintf("creating tag %s of %s at %s", t.tag, t.slug(), t.commit), func(ctx context.Context) (*github.Response, error) {
		_, resp, err := a.c.Git.CreateRef(ctx, t.owner, t.repo, &github.Reference{
			Ref:    github.String("refs/tags/" + t.tag),
			Object: &github.GitObject{SHA: github.String(t.commit)},
		})
		return resp, err
	})
	var er *github.ErrorResponse
	switch {
	case err == nil:
		fmt.Fprintf(a.log, "sluice: created tag %s of %s at %s\n", t.tag, t.slug(), t.commit)
		return nil
	case status(err) == http.StatusUnprocessableEntity && errors.As(err, &er) && strings.Contains(strings.ToLower(er.Message), "already exists"):
		// Another attempt, or another run, created it meanwhile.
		sha, found, rerr := a.tagCommit(ctx)
		switch {
		case rerr != nil:
			return rerr
		case !found:
			return &passing{err: fmt.Errorf("creating tag %s of %s: GitHub says it exists, but it cannot be read yet", t.tag, t.slug())}
		case sha != t.commit:
			return a.conflict(sha)
		}
		fmt.Fprintf(a.log, "sluice: tag %s of %s is already at %s\n", t.tag, t.slug(), t.commit)
		return nil
	case status(err) == http.StatusUnprocessableEntity && errors.As(err, &er) && strings.Contains(strings.ToLower(er.Message), "object does not exist"):
		return fmt.Errorf("creating tag %s of %s: commit %s is not in the repository; push it to GitHub before the release step runs", t.tag, t.slug(), t.commit)
	}
	return err
}

func (a *api) conflict(sha string) error {
	t := a.t
	return fmt.Errorf("tag %s of %s already exists at commit %s, not at this run's commit %s, so no release was created; delete the tag (git push --delete origin %s) if it is wrong, or choose another tag",
		t.tag, t.slug(), sha, t.commit, t.tag)
}

// findRelease looks for the tag's release. A draft is not found by tag,
// so the repository's releases are listed for it.
func (a *api) findRelease(ctx context.Context) (*github.RepositoryRelease, bool, error) {
	t := a.t
	var rel *github.RepositoryRelease
	err := a.call(ctx, fmt.Sprintf("reading the release of tag %s of %s", t.tag, t.slug()), func(ctx context.Context) (*github.Response, error) {
		var resp *github.Response
		var err error
		rel, resp, err = a.c.Repositories.GetReleaseByTag(ctx, t.owner, t.repo, t.tag)
		return resp, err
	})
	if err == nil {
		return rel, true, nil
	}
	if !errors.Is(err, errNotFound) {
		return nil, false, err
	}
	opts := &github.ListOptions{PerPage: 100}
	for {
		var rels []*github.RepositoryRelease
		var next int
		err := a.call(ctx, fmt.Sprintf("listing the releases of %s", t.slug()), func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			rels, resp, err = a.c.Repositories.ListReleases(ctx, t.owner, t.repo, opts)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, false, err
		}
		for _, r := range rels {
			if r.GetTagName() == t.tag {
				return r, true, nil
			}
		}
		if next == 0 {
			return nil, false, nil
		}
		opts.Page = next
	}
}

func (a *api) createRelease(ctx context.Context) (*github.RepositoryRelease, error) {
	t := a.t
	in := &github.RepositoryRelease{
		TagName:         github.String(t.tag),
		TargetCommitish: github.String(t.commit),
		Draft:           github.Bool(t.draft),
		Prerelease:      github.Bool(t.prerelease),
	}
	if t.name != "" {
		in.Name = github.String(t.name)
	}
	if t.generate {
		in.GenerateReleaseNotes = github.Bool(true)
	} else {
		in.Body = github.String(t.notes)
	}
	var rel *github.RepositoryRelease
	err := a.call(ctx, fmt.Sprintf("creating the release of tag %s of %s", t.tag, t.slug()), func(ctx context.Context) (*github.Response, error) {
		var resp *github.Response
		var err error
		rel, resp, err = a.c.Repositories.CreateRelease(ctx, t.owner, t.repo, in)
		return resp, err
	})
	var er *github.ErrorResponse
	switch {
	case err == nil:
		fmt.Fprintf(a.log, "sluice: created release %s: %s\n", describe(rel), rel.GetHTMLURL())
		return rel, nil
	case status(err) == http.StatusUnprocessableEntity && errors.As(err, &er) && alreadyExists(er):
		// A release made meanwhile, by a lost response's request or by
		// another run.
		rel, found, ferr := a.findRelease(ctx)
		if ferr != nil {
			return nil, ferr
		}
		if !found {
			return nil, &passing{err: fmt.Errorf("creating the release of tag %s of %s: GitHub says it exists, but it cannot be read yet", t.tag, t.slug())}
		}
		fmt.Fprintf(a.log, "sluice: release %s already exists (%s), for tag %s; not creating another\n", describe(rel), rel.GetHTMLURL(), t.tag)
		return rel, nil
	}
	return nil, err
}

func alreadyExists(er *github.ErrorResponse) bool {
	for _, e := range er.Errors {
		if e.Code == "already_exists" {
			return true
		}
	}
	return false
}

// describe names a release for the log.
func describe(r *github.RepositoryRelease) string {
	s := fmt.Sprintf("%q", r.GetName())
	if r.GetName() == "" {
		s = r.GetTagName()
	}
	var marks []string
	if r.GetDraft() {
		marks = append(marks, "draft")
	}
	if r.GetPrerelease() {
		marks = append(marks, "pre-release")
	}
	if len(marks) > 0 {
		s += " (" + strings.Join(marks, ", ") + ")"
	}
	return s
}
