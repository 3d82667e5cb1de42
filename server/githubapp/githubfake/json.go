package githubfake

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"
)

// The JSON objects of GitHub's API, as the fake serves them.

func (s *Server) repoURL(rp *repo) string {
	return s.srv.URL + "/repos/" + rp.owner + "/" + rp.name
}

func htmlRepoURL(rp *repo) string { return "https://github.com/" + rp.owner + "/" + rp.name }

func nodeID(kind, s string) string {
	return base64.RawStdEncoding.EncodeToString([]byte(kind + ":" + s))
}

// base64Lines encodes as GitHub's blobs API does: base64 in lines of 60
// characters, each ending with a newline.
func base64Lines(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(enc) > 60 {
		out.WriteString(enc[:60] + "\n")
		enc = enc[60:]
	}
	out.WriteString(enc + "\n")
	return out.String()
}

func userID(login string) int64 {
	h := fnv.New32a()
	h.Write([]byte(login))
	return int64(h.Sum32()%9000000) + 1000
}

// user is a simple-user.
func (s *Server) user(login string) map[string]any {
	api := s.srv.URL + "/users/" + login
	kind := "User"
	if strings.HasSuffix(login, "[bot]") {
		kind = "Bot"
	}
	return map[string]any{
		"login": login, "id": userID(login), "node_id": nodeID("U", login),
		"avatar_url":  fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", userID(login)),
		"gravatar_id": "", "url": api, "html_url": "https://github.com/" + login,
		"followers_url": api + "/followers", "following_url": api + "/following{/other_user}",
		"gists_url": api + "/gists{/gist_id}", "starred_url": api + "/starred{/owner}{/repo}",
		"subscriptions_url": api + "/subscriptions", "organizations_url": api + "/orgs",
		"repos_url": api + "/repos", "events_url": api + "/events{/privacy}",
		"received_events_url": api + "/received_events", "type": kind, "site_admin": false,
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// commitJSON is a commit; withFiles adds stats and the files changed from
// the first parent.
func (s *Server) commitJSON(rp *repo, c *commit, withFiles bool) map[string]any {
	api := s.repoURL(rp)
	gitUser := map[string]any{"name": "Sluice Test", "email": "test@sluice.invalid", "date": stamp(c.when)}
	parents := []map[string]any{}
	for _, p := range c.parents {
		parents = append(parents, map[string]any{"sha": p, "url": api + "/commits/" + p, "html_url": htmlRepoURL(rp) + "/commit/" + p})
	}
	out := map[string]any{
		"sha": c.sha, "node_id": nodeID("C", c.sha),
		"url": api + "/commits/" + c.sha, "html_url": htmlRepoURL(rp) + "/commit/" + c.sha,
		"comments_url": api + "/commits/" + c.sha + "/comments",
		"commit": map[string]any{
			"url": api + "/git/commits/" + c.sha, "author": gitUser, "committer": gitUser,
			"message": c.message, "comment_count": 0,
			"tree":         map[string]any{"sha": c.tree, "url": api + "/git/trees/" + c.tree},
			"verification": map[string]any{"verified": false, "reason": "unsigned", "payload": nil, "signature": nil, "verified_at": nil},
		},
		"author": nil, "committer": nil, "parents": parents,
	}
	if withFiles {
		var from map[string]string
		if len(c.parents) > 0 {
			from = rp.git.commits[c.parents[0]].files
		}
		files := rp.git.diff(from, c.files)
		add, del := 0, 0
		for _, f := range files {
			add += f.additions
			del += f.deletions
		}
		out["stats"] = map[string]int{"additions": add, "deletions": del, "total": add + del}
		out["files"] = s.diffEntries(rp, c.sha, files)
	}
	return out
}

func (s *Server) diffEntries(rp *repo, ref string, files []change) []map[string]any {
	out := make([]map[string]any, 0, len(files))
	for _, f := range files {
		out = append(out, s.diffEntry(rp, ref, f))
	}
	return out
}

// diffEntry is a diff-entry, a file of a comparison, commit or pull
// request at ref.
func (s *Server) diffEntry(rp *repo, ref string, f change) map[string]any {
	m := map[string]any{
		"sha": f.sha, "filename": f.path, "status": f.status,
		"additions": f.additions, "deletions": f.deletions, "changes": f.additions + f.deletions,
		"blob_url":     htmlRepoURL(rp) + "/blob/" + ref + "/" + f.path,
		"raw_url":      htmlRepoURL(rp) + "/raw/" + ref + "/" + f.path,
		"contents_url": s.repoURL(rp) + "/contents/" + f.path + "?ref=" + ref,
	}
	if f.previous != "" {
		m["previous_filename"] = f.previous
	}
	return m
}

// repositoryJSON is a repository.
func (s *Server) repositoryJSON(rp *repo) map[string]any {
	api := s.repoURL(rp)
	html := htmlRepoURL(rp)
	m := map[string]any{
		"id": rp.id, "node_id": nodeID("R", rp.owner+"/"+rp.name), "name": rp.name, "full_name": rp.owner + "/" + rp.name,
		"owner": s.user(rp.owner), "private": true, "html_url": html, "description": nil, "fork": rp.fork, "url": api,
		"homepage": nil, "language": "Go", "forks": 0, "forks_count": 0, "stargazers_count": 0, "watchers_count": 0,
		"watchers": 0, "size": 1, "default_branch": rp.defaultBranch, "open_issues": 0, "open_issues_count": 0,
		"has_issues": true, "has_projects": false, "has_wiki": false, "has_pages": false, "has_downloads": true,
		"archived": false, "disabled": false, "license": nil, "visibility": "private",
		"pushed_at": stamp(rp.updated), "created_at": stamp(rp.createdAt), "updated_at": stamp(rp.updated),
		"git_url": "git://github.com/" + rp.owner + "/" + rp.name + ".git", "ssh_url": "git@github.com:" + rp.owner + "/" + rp.name + ".git",
		"clone_url": html + ".git", "svn_url": html, "mirror_url": nil,
	}
	for k, v := range map[string]string{
		"archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}", "blobs_url": "/git/blobs{/sha}",
		"branches_url": "/branches{/branch}", "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
		"commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}", "contents_url": "/contents/{+path}",
		"contributors_url": "/contributors", "deployments_url": "/deployments", "downloads_url": "/downloads", "events_url": "/events",
		"forks_url": "/forks", "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}",
		"hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
		"issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}", "languages_url": "/languages",
		"merges_url": "/merges", "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
		"pulls_url": "/pulls{/number}", "releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
		"subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags", "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
	} {
		m[k] = api + v
	}
	return m
}

// pullJSON is a pull-request-simple.
func (s *Server) pullJSON(rp *repo, p *pull) map[string]any {
	return s.pullRequestJSON(rp, p, false)
}

// pullRequestJSON is a pull-request-simple, or with full a pull-request
// (what pulls/get answers), which adds the counts and merge state.
func (s *Server) pullRequestJSON(rp *repo, p *pull, full bool) map[string]any {
	api := fmt.Sprintf("%s/pulls/%d", s.repoURL(rp), p.number)
	html := fmt.Sprintf("%s/pull/%d", htmlRepoURL(rp), p.number)
	issue := fmt.Sprintf("%s/issues/%d", s.repoURL(rp), p.number)
	state := "open"
	var closed any
	if !p.open {
		state, closed = "closed", stamp(rp.updated)
	}
	author := "octocat"
	head := rp
	if p.headRepo != nil {
		head, author = p.headRepo, p.headRepo.owner
	}
	link := func(href string) map[string]string { return map[string]string{"href": href} }
	out := map[string]any{
		"url": api, "id": p.id, "node_id": nodeID("PR", fmt.Sprint(p.id)), "html_url": html,
		"diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": issue,
		"commits_url": api + "/commits", "review_comments_url": api + "/comments",
		"review_comment_url": s.repoURL(rp) + "/pulls/comments{/number}", "comments_url": issue + "/comments",
		"statuses_url": s.repoURL(rp) + "/statuses/" + p.head,
		"number":       p.number, "state": state, "locked": false, "title": fmt.Sprintf("Pull request %d", p.number),
		"user": s.user(author), "body": nil, "labels": []any{}, "milestone": nil,
		"created_at": stamp(rp.createdAt), "updated_at": stamp(rp.updated), "closed_at": closed, "merged_at": nil,
		"merge_commit_sha": nil, "assignee": nil, "assignees": []any{}, "requested_reviewers": []any{}, "requested_teams": []any{},
		"head": map[string]any{"label": head.owner + ":" + p.headRef, "ref": p.headRef, "sha": p.head, "user": s.user(head.owner), "repo": s.repositoryJSON(head)},
		"base": map[string]any{"label": rp.owner + ":" + p.baseRef, "ref": p.baseRef, "sha": p.baseSHA, "user": s.user(rp.owner), "repo": s.repositoryJSON(rp)},
		"_links": map[string]any{
			"self": link(api), "html": link(html), "issue": link(issue), "comments": link(issue + "/comments"),
			"review_comments": link(api + "/comments"), "review_comment": link(s.repoURL(rp) + "/pulls/comments{/number}"),
			"commits": link(api + "/commits"), "statuses": link(s.repoURL(rp) + "/statuses/" + p.head),
		},
		"author_association": "CONTRIBUTOR", "auto_merge": nil, "draft": false,
	}
	if full {
		n := len(p.files)
		out["merged"], out["mergeable"], out["rebaseable"], out["mergeable_state"], out["merged_by"] = false, p.open, p.open, "clean", nil
		out["comments"], out["review_comments"], out["commits"] = len(rp.comments[p.number]), 0, 1
		out["additions"], out["deletions"], out["changed_files"] = n, n, n
		out["maintainer_can_modify"] = p.headRepo != nil && p.open
		if !p.open {
			out["mergeable"], out["rebaseable"], out["mergeable_state"] = nil, nil, "unknown"
		}
	}
	return out
}

// The App as GitHub shows it in check runs and comments.
const (
	appSlug  = "sluice"
	appOwner = "sluice-ci"
)

// botLogin is the login of an App's bot user, which authors what its
// installations write.
func botLogin(slug string) string { return slug + "[bot]" }

// slugOf is the slug of App id: the fake's own App is "sluice", any
// other "app-<id>".
func (s *Server) slugOf(id int64) string {
	if id == s.AppID {
		return appSlug
	}
	return fmt.Sprintf("app-%d", id)
}

// integrationJSON is an integration: App id.
func (s *Server) integrationJSON(id int64) map[string]any {
	slug := s.slugOf(id)
	return map[string]any{
		"id": id, "slug": slug, "node_id": nodeID("A", fmt.Sprint(id)), "client_id": fmt.Sprintf("Iv1.%016x", id),
		"owner": s.user(appOwner), "name": slug, "description": nil,
		"external_url": "https://" + slug + ".invalid/", "html_url": "https://github.com/apps/" + slug,
		"created_at": stamp(fakeEpoch), "updated_at": stamp(fakeEpoch),
		"permissions": DefaultPermissions,
		"events":      []string{"check_run", "check_suite", "pull_request", "push"},
	}
}

func stampOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return stamp(t)
}

func stringOrNil(v string, set bool) any {
	if !set {
		return nil
	}
	return v
}

// checkRunJSON is a check-run. Its pull_requests are the open pull
// requests of the repository itself whose head is the run's commit
// (GitHub lists none from forks).
func (s *Server) checkRunJSON(rp *repo, cr *checkRun) map[string]any {
	api := fmt.Sprintf("%s/check-runs/%d", s.repoURL(rp), cr.id)
	details := cr.detailsURL
	if details == "" {
		details = "https://" + s.slugOf(cr.app) + ".invalid/"
	}
	pulls := []map[string]any{}
	var numbers []int
	for n, p := range rp.pulls {
		if p.open && p.head == cr.headSHA && p.headRepo == nil {
			numbers = append(numbers, n)
		}
	}
	sort.Ints(numbers)
	mini := func(id int64, url, name string) map[string]any {
		return map[string]any{"id": id, "url": url, "name": name}
	}
	for _, n := range numbers {
		p := rp.pulls[n]
		pulls = append(pulls, map[string]any{
			"id": p.id, "number": n, "url": fmt.Sprintf("%s/pulls/%d", s.repoURL(rp), n),
			"head": map[string]any{"ref": p.headRef, "sha": p.head, "repo": mini(rp.id, s.repoURL(rp), rp.name)},
			"base": map[string]any{"ref": p.baseRef, "sha": p.baseSHA, "repo": mini(rp.id, s.repoURL(rp), rp.name)},
		})
	}
	var conclusion any
	if cr.conclusion != "" {
		conclusion = cr.conclusion
	}
	return map[string]any{
		"id": cr.id, "node_id": nodeID("CR", fmt.Sprint(cr.id)), "head_sha": cr.headSHA, "external_id": cr.externalID,
		"url": api, "html_url": fmt.Sprintf("%s/runs/%d", htmlRepoURL(rp), cr.id), "details_url": details,
		"status": cr.status, "conclusion": conclusion,
		"started_at": stampOrNil(cr.startedAt), "completed_at": stampOrNil(cr.completedAt),
		"output": map[string]any{
			"title": stringOrNil(cr.title, cr.hasOutput), "summary": stringOrNil(cr.summary, cr.hasOutput),
			"text": stringOrNil(cr.text, cr.hasText), "annotations_count": len(cr.annotations),
			"annotations_url": api + "/annotations",
		},
		"name": cr.name, "check_suite": map[string]any{"id": cr.suite}, "app": s.integrationJSON(cr.app),
		"pull_requests": pulls,
	}
}

// statusJSON is a status.
func (s *Server) statusJSON(rp *repo, st *commitStatus) map[string]any {
	bot := s.user(botLogin(appSlug))
	return map[string]any{
		"url": s.repoURL(rp) + "/statuses/" + st.sha, "avatar_url": bot["avatar_url"],
		"id": st.id, "node_id": nodeID("SC", fmt.Sprint(st.id)), "state": st.state,
		"description": stringOrNil(st.description, st.description != ""), "target_url": stringOrNil(st.targetURL, st.targetURL != ""),
		"context": st.context, "created_at": stamp(st.created), "updated_at": stamp(st.created), "creator": bot,
	}
}

// commentJSON is an issue-comment.
func (s *Server) commentJSON(rp *repo, number int, c *comment) map[string]any {
	html := fmt.Sprintf("%s/issues/%d#issuecomment-%d", htmlRepoURL(rp), number, c.id)
	if rp.pulls[number] != nil {
		html = fmt.Sprintf("%s/pull/%d#issuecomment-%d", htmlRepoURL(rp), number, c.id)
	}
	return map[string]any{
		"id": c.id, "node_id": nodeID("IC", fmt.Sprint(c.id)), "url": fmt.Sprintf("%s/issues/comments/%d", s.repoURL(rp), c.id),
		"html_url": html, "issue_url": fmt.Sprintf("%s/issues/%d", s.repoURL(rp), number),
		"body": c.body, "user": s.user(botLogin(appSlug)), "created_at": stamp(c.created), "updated_at": stamp(c.created),
		"author_association": "NONE", "performed_via_github_app": s.integrationJSON(s.AppID),
	}
}

// verifyRS256 checks a JWT's RS256 signature and returns its claims.
func verifyRS256(tok string, key *rsa.PublicKey) ([]byte, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("A JSON web token could not be decoded")
	}
	head, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	claims, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	var h struct{ Alg string }
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(head, &h) != nil {
		return nil, fmt.Errorf("A JSON web token could not be decoded")
	}
	if h.Alg != "RS256" {
		return nil, fmt.Errorf("'Algorithm' must be RS256, not %q", h.Alg)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return nil, fmt.Errorf("A JSON web token could not be decoded")
	}
	return claims, nil
}
