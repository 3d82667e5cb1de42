package githubapp

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Call is one request the App made to GitHub, as its metrics see it:
// App.Observe learns of each.
type Call struct {
	// Endpoint is the request's path as a template of GitHub's REST API
	// ("/repos/{owner}/{repo}/check-runs/{check_run_id}"), or "other" for
	// a path this client does not call: never a repository, a commit or
	// an ID, so that it can be a metric's label.
	Endpoint string
	Method   string
	// Status is the response's status code; 0 when none came (a network
	// error, a timeout).
	Status int
	// Installation is the installation whose token the request carried;
	// 0 for the App's own requests (with its JWT: installation tokens).
	Installation int64
	// Remaining is X-RateLimit-Remaining, what is left of the rate limit
	// that Resource (X-RateLimit-Resource: core, search, graphql...)
	// names, for the App or the installation; -1 when the response does
	// not say.
	Remaining int
	Resource  string
	Took      time.Duration
}

// observed is the transport under every request of the App: it tells
// Observe of each.
type observed struct {
	base    http.RoundTripper
	observe func(Call)
}

func (o observed) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := o.base.RoundTrip(req)
	c := Call{Endpoint: Endpoint(req.URL.Path), Method: req.Method, Remaining: -1, Took: time.Since(start)}
	if c.Endpoint != endpointToken {
		c.Installation, _ = req.Context().Value(installationKey{}).(int64)
	}
	if err == nil {
		c.Status = resp.StatusCode
		if n, perr := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining")); perr == nil {
			c.Remaining = n
			c.Resource = resp.Header.Get("X-RateLimit-Resource")
		}
	}
	o.observe(c)
	return resp, err
}

// installationKey marks a request's context with the installation whose
// client made it (see tagged).
type installationKey struct{}

// tagged marks each request of an installation's client with the
// installation, for observed, which sees it only after ghinstallation
// added the token.
type tagged struct {
	base         http.RoundTripper
	installation int64
}

func (t tagged) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(req.WithContext(context.WithValue(req.Context(), installationKey{}, t.installation)))
}

const endpointToken = "/app/installations/{installation_id}/access_tokens"

// endpoints are the paths this client calls, most specific first, as
// GitHub's REST API description names them.
var endpoints = []struct {
	re       *regexp.Regexp
	template string
}{
	{regexp.MustCompile(`/app/installations/[^/]+/access_tokens$`), endpointToken},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/check-runs$`), "/repos/{owner}/{repo}/check-runs"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/check-runs/[^/]+$`), "/repos/{owner}/{repo}/check-runs/{check_run_id}"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/commits/.+/check-runs$`), "/repos/{owner}/{repo}/commits/{ref}/check-runs"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/commits/[^/]+/pulls$`), "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/commits/.+$`), "/repos/{owner}/{repo}/commits/{ref}"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/statuses/[^/]+$`), "/repos/{owner}/{repo}/statuses/{sha}"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/issues/[^/]+/comments$`), "/repos/{owner}/{repo}/issues/{issue_number}/comments"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/pulls/[^/]+/files$`), "/repos/{owner}/{repo}/pulls/{pull_number}/files"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/pulls/[^/]+$`), "/repos/{owner}/{repo}/pulls/{pull_number}"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/git/trees/[^/]+$`), "/repos/{owner}/{repo}/git/trees/{tree_sha}"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/git/blobs/[^/]+$`), "/repos/{owner}/{repo}/git/blobs/{file_sha}"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/compare/.+$`), "/repos/{owner}/{repo}/compare/{basehead}"},
	{regexp.MustCompile(`/repos/[^/]+/[^/]+/collaborators/[^/]+/permission$`), "/repos/{owner}/{repo}/collaborators/{username}/permission"},
	{regexp.MustCompile(`/orgs/[^/]+/teams/[^/]+/memberships/[^/]+$`), "/orgs/{org}/teams/{team_slug}/memberships/{username}"},
}

// Endpoint names the REST API endpoint of a request's path (which may
// begin with the API root of a GitHub Enterprise Server, /api/v3), or
// "other".
func Endpoint(path string) string {
	path = strings.TrimSuffix(path, "/")
	for _, e := range endpoints {
		if e.re.MatchString(path) {
			return e.template
		}
	}
	return "other"
}
