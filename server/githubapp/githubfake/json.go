package githubfake

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
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
		"owner": s.user(rp.owner), "private": true, "html_url": html, "description": nil, "fork": false, "url": api,
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
	api := fmt.Sprintf("%s/pulls/%d", s.repoURL(rp), p.number)
	html := fmt.Sprintf("%s/pull/%d", htmlRepoURL(rp), p.number)
	issue := fmt.Sprintf("%s/issues/%d", s.repoURL(rp), p.number)
	state := "open"
	var closed any
	if !p.open {
		state, closed = "closed", stamp(rp.updated)
	}
	branch := fmt.Sprintf("pr-%d", p.number)
	baseSHA := rp.branches[rp.defaultBranch]
	if baseSHA == "" {
		baseSHA = p.head
	}
	author := "octocat"
	link := func(href string) map[string]string { return map[string]string{"href": href} }
	return map[string]any{
		"url": api, "id": p.id, "node_id": nodeID("PR", fmt.Sprint(p.id)), "html_url": html,
		"diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": issue,
		"commits_url": api + "/commits", "review_comments_url": api + "/comments",
		"review_comment_url": s.repoURL(rp) + "/pulls/comments{/number}", "comments_url": issue + "/comments",
		"statuses_url": s.repoURL(rp) + "/statuses/" + p.head,
		"number":       p.number, "state": state, "locked": false, "title": fmt.Sprintf("Pull request %d", p.number),
		"user": s.user(author), "body": nil, "labels": []any{}, "milestone": nil,
		"created_at": stamp(rp.createdAt), "updated_at": stamp(rp.updated), "closed_at": closed, "merged_at": nil,
		"merge_commit_sha": nil, "assignee": nil, "assignees": []any{}, "requested_reviewers": []any{}, "requested_teams": []any{},
		"head": map[string]any{"label": author + ":" + branch, "ref": branch, "sha": p.head, "user": s.user(author), "repo": s.repositoryJSON(rp)},
		"base": map[string]any{"label": rp.owner + ":" + rp.defaultBranch, "ref": rp.defaultBranch, "sha": baseSHA, "user": s.user(rp.owner), "repo": s.repositoryJSON(rp)},
		"_links": map[string]any{
			"self": link(api), "html": link(html), "issue": link(issue), "comments": link(issue + "/comments"),
			"review_comments": link(api + "/comments"), "review_comment": link(s.repoURL(rp) + "/pulls/comments{/number}"),
			"commits": link(api + "/commits"), "statuses": link(s.repoURL(rp) + "/statuses/" + p.head),
		},
		"author_association": "CONTRIBUTOR", "auto_merge": nil, "draft": false,
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
