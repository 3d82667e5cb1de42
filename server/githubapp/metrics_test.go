package githubapp

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct{ name, path, want string }{
		{"token", "/app/installations/12/access_tokens", "/app/installations/{installation_id}/access_tokens"},
		{"create check", "/repos/acme/web/check-runs", "/repos/{owner}/{repo}/check-runs"},
		{"update check", "/repos/acme/web/check-runs/991", "/repos/{owner}/{repo}/check-runs/{check_run_id}"},
		{"checks of a ref", "/repos/acme/web/commits/0123abc/check-runs", "/repos/{owner}/{repo}/commits/{ref}/check-runs"},
		{"pulls of a commit", "/repos/acme/web/commits/0123abc/pulls", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"},
		{"commit of a branch with a slash", "/repos/acme/web/commits/feature/login", "/repos/{owner}/{repo}/commits/{ref}"},
		{"status", "/repos/acme/web/statuses/0123abc", "/repos/{owner}/{repo}/statuses/{sha}"},
		{"comment", "/repos/acme/web/issues/7/comments", "/repos/{owner}/{repo}/issues/{issue_number}/comments"},
		{"pull files", "/repos/acme/web/pulls/7/files", "/repos/{owner}/{repo}/pulls/{pull_number}/files"},
		{"pull", "/repos/acme/web/pulls/7", "/repos/{owner}/{repo}/pulls/{pull_number}"},
		{"tree", "/repos/acme/web/git/trees/0123abc", "/repos/{owner}/{repo}/git/trees/{tree_sha}"},
		{"blob", "/repos/acme/web/git/blobs/0123abc", "/repos/{owner}/{repo}/git/blobs/{file_sha}"},
		{"compare", "/repos/acme/web/compare/abc...def", "/repos/{owner}/{repo}/compare/{basehead}"},
		{"permission", "/repos/acme/web/collaborators/octocat/permission", "/repos/{owner}/{repo}/collaborators/{username}/permission"},
		{"team", "/orgs/acme/teams/sre/memberships/octocat", "/orgs/{org}/teams/{team_slug}/memberships/{username}"},
		{"enterprise server", "/api/v3/repos/acme/web/check-runs/5", "/repos/{owner}/{repo}/check-runs/{check_run_id}"},
		{"trailing slash", "/repos/acme/web/pulls/7/", "/repos/{owner}/{repo}/pulls/{pull_number}"},
		{"unknown", "/repos/acme/web/issues", "other"},
		{"elsewhere", "/meta", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Endpoint(tc.path); got != tc.want {
				t.Errorf("Endpoint(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// calls collects what an App observes.
type calls struct {
	mu   sync.Mutex
	seen []Call
}

func (c *calls) observe(call Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, call)
}

func (c *calls) all() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.seen...)
}

// Every request the client makes is observed once, under an endpoint of
// the table (never "other"), with the installation whose token it
// carried and what GitHub said is left of its rate limit.
func TestObserveRequests(t *testing.T) {
	f := githubfake.New(t)
	f.AddRepo(repo, 7)
	var seen calls
	app := &App{ID: f.AppID, PrivateKey: f.PrivateKey, BaseURL: f.URL(), Observe: seen.observe}
	c, err := app.Installation(7)
	if err != nil {
		t.Fatal(err)
	}
	base := f.Commit(repo, "", pipelineCommit)
	head := f.Commit(repo, base, map[string]string{"main.go": "package main // changed\n"})
	if _, err := c.PipelineFiles(ctx, repo, head); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Changed(ctx, repo, base, head, false); err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "web", HeadSHA: head})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateCheckRun(ctx, repo, id, CheckRun{Status: "in_progress"}); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateStatus(ctx, repo, head, Status{State: "pending", Context: "sluice/web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CommitMessage(ctx, repo, head); err != nil {
		t.Fatal(err)
	}

	got := seen.all()
	if n := len(f.Requests()); n != len(got) {
		t.Errorf("the fake answered %d requests, %d were observed", n, len(got))
	}
	byEndpoint := map[string]int{}
	for _, call := range got {
		byEndpoint[call.Method+" "+call.Endpoint]++
		if call.Endpoint == "other" {
			t.Errorf("a request of the client has no endpoint: %+v", call)
		}
		if call.Status != http.StatusOK && call.Status != http.StatusCreated {
			t.Errorf("status %d: %+v", call.Status, call)
		}
		switch {
		case call.Endpoint == endpointToken && call.Installation != 0:
			t.Errorf("the token request is the App's own, not installation %d's", call.Installation)
		case call.Endpoint != endpointToken && call.Installation != 7:
			t.Errorf("a request of installation 7 is observed as installation %d's: %+v", call.Installation, call)
		}
		if call.Endpoint != endpointToken && (call.Remaining != 4999 || call.Resource != "core") {
			t.Errorf("rate limit of %s: %d %q, want 4999 core", call.Endpoint, call.Remaining, call.Resource)
		}
	}
	for _, want := range []string{
		"POST " + endpointToken,
		"GET /repos/{owner}/{repo}/git/trees/{tree_sha}",
		"GET /repos/{owner}/{repo}/compare/{basehead}",
		"POST /repos/{owner}/{repo}/check-runs",
		"PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}",
		"POST /repos/{owner}/{repo}/statuses/{sha}",
		"GET /repos/{owner}/{repo}/commits/{ref}",
	} {
		if byEndpoint[want] == 0 {
			t.Errorf("no %s observed; observed %v", want, byEndpoint)
		}
	}
	if byEndpoint["POST "+endpointToken] != 1 {
		t.Errorf("the installation token was minted %d times, want once", byEndpoint["POST "+endpointToken])
	}

	// A refused request is observed with GitHub's status; one that got
	// no answer with none.
	before := len(seen.all())
	if _, err := c.PipelineFiles(ctx, "acme/missing", head); err == nil {
		t.Fatal("files of a missing repository: no error")
	}
	refused := seen.all()[before:]
	if len(refused) == 0 || refused[len(refused)-1].Status != http.StatusNotFound {
		t.Errorf("a request for a missing repository: %+v", refused)
	}
	down := &App{ID: f.AppID, PrivateKey: f.PrivateKey, BaseURL: f.URL(), Observe: seen.observe,
		HTTP: &http.Client{Transport: failing{}}}
	dc, err := down.Installation(7)
	if err != nil {
		t.Fatal(err)
	}
	before = len(seen.all())
	if _, err := dc.PipelineFiles(ctx, repo, head); err == nil {
		t.Fatal("a GitHub that cannot be reached: no error")
	}
	unanswered := seen.all()[before:]
	if len(unanswered) != 1 || unanswered[0].Status != 0 || unanswered[0].Endpoint != endpointToken || unanswered[0].Remaining != -1 {
		t.Errorf("a request with no answer: %+v", unanswered)
	}
}

// failing is a network that answers nothing.
type failing struct{}

func (failing) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return nil, errors.New("connection refused: " + strings.TrimPrefix(req.URL.Host, "127.0.0.1"))
}
