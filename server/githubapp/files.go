package githubapp

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/google/go-github/v62/github"

	"github.com/sluice-ci/sluice/dsl"
)

// pipelineFile matches the paths of pipeline files: .sluice/*.hcl in any
// directory.
var pipelineFile = regexp.MustCompile(`(^|/)\.sluice/[^/]+\.hcl$`)

// PipelineFiles returns the pipeline files of commit sha in repo
// ("owner/name"): every file whose path matches (^|/)\.sluice/[^/]+\.hcl$,
// keyed by path. It reads the commit's tree with one recursive request and
// then one blob request per file whose blob SHA is not in the App's blob
// cache.
//
// GitHub cuts a recursive tree at 100,000 entries or 7 MB and marks it
// truncated. Then PipelineFiles falls back to reading the root tree
// without recursion and the .sluice directory found there, so in such a
// huge repository only the root's .sluice/*.hcl are found, not those of
// subdirectories.
//
// A file larger than dsl.MaxFileSize, or a pipeline path that is not a
// regular file (a symbolic link, a submodule), is an error naming it.
func (c *Client) PipelineFiles(ctx context.Context, repo, sha string) (map[string][]byte, error) {
	owner, name, err := split(repo)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("the tree of commit %s in %s", sha, repo)
	tree, _, err := c.gh.Git.GetTree(ctx, owner, name, sha, true)
	if err != nil {
		return nil, classify(err, what)
	}
	var entries []*github.TreeEntry
	if !tree.GetTruncated() {
		for _, e := range tree.Entries {
			if pipelineFile.MatchString(e.GetPath()) && e.GetType() != "tree" {
				entries = append(entries, e)
			}
		}
	} else {
		root, _, err := c.gh.Git.GetTree(ctx, owner, name, sha, false)
		if err != nil {
			return nil, classify(err, what)
		}
		for _, d := range root.Entries {
			if d.GetPath() != ".sluice" || d.GetType() != "tree" {
				continue
			}
			sub, _, err := c.gh.Git.GetTree(ctx, owner, name, d.GetSHA(), false)
			if err != nil {
				return nil, classify(err, fmt.Sprintf("the .sluice directory of commit %s in %s", sha, repo))
			}
			for _, e := range sub.Entries {
				p := ".sluice/" + e.GetPath()
				if pipelineFile.MatchString(p) && e.GetType() != "tree" {
					e.Path = github.String(p)
					entries = append(entries, e)
				}
			}
		}
	}
	files := map[string][]byte{}
	for _, e := range entries {
		p := e.GetPath()
		if e.GetType() != "blob" || (e.GetMode() != "100644" && e.GetMode() != "100755") {
			return nil, fmt.Errorf("pipeline file %s in %s at %s is not a regular file (git mode %s, type %s)", p, repo, sha, e.GetMode(), e.GetType())
		}
		if e.GetSize() > dsl.MaxFileSize {
			return nil, tooLarge(p, repo, sha, e.GetSize())
		}
		content, err := c.blob(ctx, owner, name, e.GetSHA(), p)
		if err != nil {
			return nil, err
		}
		if len(content) > dsl.MaxFileSize {
			return nil, tooLarge(p, repo, sha, len(content))
		}
		files[p] = content
	}
	return files, nil
}

func tooLarge(file, repo, sha string, size int) error {
	return fmt.Errorf("pipeline file %s in %s at %s is %d bytes; a pipeline file may be at most %d bytes (%d MiB)", file, repo, sha, size, dsl.MaxFileSize, dsl.MaxFileSize>>20)
}

// blob returns a blob's content, from the cache or from GitHub, checked
// against its SHA.
func (c *Client) blob(ctx context.Context, owner, name, sha, file string) ([]byte, error) {
	if b, ok := c.blobs.get(sha); ok {
		return b, nil
	}
	what := fmt.Sprintf("blob %s (%s) in %s/%s", sha, file, owner, name)
	blob, _, err := c.gh.Git.GetBlob(ctx, owner, name, sha)
	if err != nil {
		return nil, classify(err, what)
	}
	if enc := blob.GetEncoding(); enc != "base64" {
		return nil, fmt.Errorf("%s: GitHub sent it in encoding %q, not base64", what, enc)
	}
	content, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(blob.GetContent(), "\n", ""))
	if err != nil {
		return nil, fmt.Errorf("%s: decoding its base64 content: %v", what, err)
	}
	if got := gitBlobSHA(content); got != sha {
		return nil, fmt.Errorf("%s: its content has blob SHA %s", what, got)
	}
	c.blobs.put(sha, content)
	return content, nil
}

func gitBlobSHA(content []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(content))
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// GitHub's caps on changed-file lists: a comparison lists at most 300
// files (with no sign that it cut), a pull request at most 3,000.
const (
	CompareFileCap = 300
	PullFileCap    = 3000
)

var zeroSHA = regexp.MustCompile(`^0+$`)

// Changed returns the files a push from before to after changed, from
// GitHub's comparison of the two commits (which covers every commit in
// between), sorted; a renamed file is listed under both its names.
//
// complete false means the list may lack files, and the caller must treat
// the push as changing everything: when before is all zeros (a new branch:
// nothing to compare with), forced is true (history was rewritten), the
// comparison lists exactly 300 files (GitHub's cap, which it does not
// flag), or after is not ahead of before (diverged or behind). In the
// first two cases Changed asks GitHub nothing and returns no files.
func (c *Client) Changed(ctx context.Context, repo, before, after string, forced bool) (files []string, complete bool, err error) {
	owner, name, err := split(repo)
	if err != nil {
		return nil, false, err
	}
	if zeroSHA.MatchString(after) || after == "" {
		return nil, false, fmt.Errorf("push to %s: after is %q, not a commit (a deleted branch changes no files)", repo, after)
	}
	if zeroSHA.MatchString(before) || before == "" || forced {
		return nil, false, nil
	}
	cmp, _, err := c.gh.Repositories.CompareCommits(ctx, owner, name, before, after, nil)
	if err != nil {
		return nil, false, classify(err, fmt.Sprintf("the comparison of %s...%s in %s", before, after, repo))
	}
	seen := map[string]bool{}
	for _, f := range cmp.Files {
		for _, p := range []string{f.GetFilename(), f.GetPreviousFilename()} {
			if p != "" && !seen[p] {
				seen[p] = true
				files = append(files, p)
			}
		}
	}
	sort.Strings(files)
	status := cmp.GetStatus()
	complete = len(cmp.Files) < CompareFileCap && (status == "ahead" || status == "identical")
	return files, complete, nil
}

// PullFiles returns the files pull request number of repo changes (a
// renamed file under both names), reading every page, 100 files a page.
// GitHub lists at most 3,000 files, so complete is false when it listed
// 3,000.
func (c *Client) PullFiles(ctx context.Context, repo string, number int) (files []string, complete bool, err error) {
	owner, name, err := split(repo)
	if err != nil {
		return nil, false, err
	}
	count := 0
	seen := map[string]bool{}
	opts := &github.ListOptions{PerPage: 100, Page: 1}
	for page := 0; page < PullFileCap/100+1; page++ {
		list, resp, err := c.gh.PullRequests.ListFiles(ctx, owner, name, number, opts)
		if err != nil {
			return nil, false, classify(err, fmt.Sprintf("the files of pull request %s#%d", repo, number))
		}
		count += len(list)
		for _, f := range list {
			for _, p := range []string{f.GetFilename(), f.GetPreviousFilename()} {
				if p != "" && !seen[p] {
					seen[p] = true
					files = append(files, p)
				}
			}
		}
		if resp.NextPage == 0 || count >= PullFileCap {
			break
		}
		opts.Page = resp.NextPage
	}
	sort.Strings(files)
	return files, count < PullFileCap, nil
}

// TeamMember says whether login is an active member of team (its slug) in
// org. A pending invitation is not membership.
func (c *Client) TeamMember(ctx context.Context, org, team, login string) (bool, error) {
	m, _, err := c.gh.Teams.GetTeamMembershipBySlug(ctx, org, team, login)
	if err != nil {
		err = classify(err, fmt.Sprintf("membership of %s in team %s/%s", login, org, team))
		if _, ok := err.(*NotFoundError); ok {
			return false, nil // GitHub's answer for "not a member"
		}
		return false, err
	}
	return m.GetState() == "active", nil
}

// PullsForCommit returns the numbers of the open pull requests of repo
// whose head is commit sha, ascending: how a re-run of a fork's check
// suite, whose pull_requests list is empty, finds its pull request.
func (c *Client) PullsForCommit(ctx context.Context, repo, sha string) ([]int, error) {
	owner, name, err := split(repo)
	if err != nil {
		return nil, err
	}
	var numbers []int
	opts := &github.ListOptions{PerPage: 100, Page: 1}
	for {
		pulls, resp, err := c.gh.PullRequests.ListPullRequestsWithCommit(ctx, owner, name, sha, opts)
		if err != nil {
			return nil, classify(err, fmt.Sprintf("the pull requests of commit %s in %s", sha, repo))
		}
		for _, p := range pulls {
			if p.GetState() == "open" && p.GetHead().GetSHA() == sha {
				numbers = append(numbers, p.GetNumber())
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	sort.Ints(numbers)
	return numbers, nil
}

// Head returns the SHA of the commit ref (a branch name or a SHA) names
// in repo.
func (c *Client) Head(ctx context.Context, repo, ref string) (string, error) {
	owner, name, err := split(repo)
	if err != nil {
		return "", err
	}
	// The list of commits takes the ref as a query parameter, where a
	// branch may hold slashes (release/1.x), which a path segment of the
	// single-commit endpoint may not.
	commits, _, err := c.gh.Repositories.ListCommits(ctx, owner, name, &github.CommitsListOptions{SHA: ref, ListOptions: github.ListOptions{PerPage: 1}})
	if err != nil {
		return "", classify(err, fmt.Sprintf("commit %s in %s", ref, repo))
	}
	if len(commits) == 0 {
		return "", &NotFoundError{What: fmt.Sprintf("commit %s in %s", ref, repo)}
	}
	return commits[0].GetSHA(), nil
}

// Permission returns login's permission on repo: admin, write, read or
// none (GitHub's coarse levels; maintain reads as write, triage as read).
func (c *Client) Permission(ctx context.Context, repo, login string) (string, error) {
	owner, name, err := split(repo)
	if err != nil {
		return "", err
	}
	p, _, err := c.gh.Repositories.GetPermissionLevel(ctx, owner, name, login)
	if err != nil {
		return "", classify(err, fmt.Sprintf("the permission of %s on %s", login, repo))
	}
	return p.GetPermission(), nil
}

// CommitMessage returns the message of commit sha of repo: what [skip ci]
// is read from for a pull request, whose event does not carry it.
func (c *Client) CommitMessage(ctx context.Context, repo, sha string) (string, error) {
	owner, name, err := split(repo)
	if err != nil {
		return "", err
	}
	commit, _, err := c.gh.Repositories.GetCommit(ctx, owner, name, sha, &github.ListOptions{PerPage: 1})
	if err != nil {
		return "", classify(err, fmt.Sprintf("commit %s in %s", sha, repo))
	}
	return commit.GetCommit().GetMessage(), nil
}
