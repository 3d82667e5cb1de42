package server

import (
	"context"
	"net/url"
	"strings"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/server/githubapp"
)

// moduleOptions says how the pipelines of an event get their modules. Git
// sources are fetched into the server's cache (Triggers.Modules) at the
// commits of the lock file the event's commit holds. Local sources are
// read from the event's repository at the commit its pipeline files came
// from, fetched the same way, since only .sluice/*.hcl were read. With a
// GitHub App, fetches of HTTPS repositories on the event's GitHub host
// authenticate with the installation's token (gitHubCredentials), so
// private module repositories the installation can read work.
func (t *Triggers) moduleOptions(ctx context.Context, gh *githubapp.Client, ref RepoRef, sha, dir string) dsl.ModuleOptions {
	cache := t.Modules
	if cache == "" {
		cache, _ = dsl.DefaultModuleCache()
	}
	f := &dsl.GitFetcher{Dir: cache}
	if gh != nil {
		f.Credentials = gitHubCredentials(gh.GitToken, ref.URL)
	}
	return dsl.ModuleOptions{
		Fetcher:    f,
		Context:    ctx,
		Repository: &dsl.RepositoryAt{URL: ref.URL, Commit: sha, Path: dir},
	}
}

// gitHubCredentials gives an installation token to git fetches over HTTPS
// from the host of the event's repository (github.com, or the GitHub
// Enterprise Server), as the password of the user x-access-token, and no
// credentials to any other host: a module source elsewhere never sees the
// token.
func gitHubCredentials(token func(context.Context) (string, error), cloneURL string) func(context.Context, string) (string, string, error) {
	host := httpsHost(cloneURL)
	return func(ctx context.Context, u string) (string, string, error) {
		if host == "" || httpsHost(u) != host {
			return "", "", nil
		}
		tok, err := token(ctx)
		if err != nil {
			return "", "", err
		}
		return "x-access-token", tok, nil
	}
}

// runnerGitCredentials gives the server's own runner, for fetching a
// run's repository that the GitHub App is installed on from GitHub's host
// over HTTPS (github.com, or the Enterprise Server of web_url,
// SLUICE_GITHUB_WEB_URL), a fresh installation token that may read that
// repository's contents and nothing else, as runners on other hosts get
// one (apiGitCredentials): a private repository's runs check out with
// nothing configured on the runner, and the token a fetch's environment
// holds cannot write checks or read other repositories.
func (s *Server) runnerGitCredentials(ctx context.Context, repo, u string) (string, string, error) {
	if s.app == nil {
		return "", "", nil
	}
	id, ok := s.installations.get(repo)
	if !ok {
		return "", "", nil
	}
	if host := httpsHost(s.githubWeb()); host == "" || httpsHost(u) != host {
		return "", "", nil
	}
	tok, _, err := s.app.RepoReadToken(ctx, id, repo)
	if err != nil {
		return "", "", err
	}
	return "x-access-token", tok, nil
}

// httpsHost is the host of an HTTPS URL, "" for any other URL.
func httpsHost(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" {
		return ""
	}
	return strings.ToLower(u.Host)
}
