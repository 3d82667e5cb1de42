package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/testing/githttp"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

// privateGitHub is a private repository on GitHub's host: the fake's
// repository served by git's smart HTTP over TLS (githttp), which takes
// only a current installation token of the fake GitHub, one that allow
// accepts, as the password of x-access-token.
type privateGitHub struct {
	host, root       string
	fetches, refused atomic.Int32
	gh               *githubfake.Server
	allowScope       func(repos []string, perms map[string]string) bool
}

func newPrivateGitHub(t *testing.T, allowScope func(repos []string, perms map[string]string) bool) *privateGitHub {
	p := &privateGitHub{root: t.TempDir(), allowScope: allowScope}
	p.host = githttp.Serve(t, p.root, true, func(user, pass string) bool {
		p.fetches.Add(1)
		inst, repos, perms, ok := p.gh.TokenScope(pass)
		if !ok || user != "x-access-token" || inst != installation || !p.allowScope(repos, perms) {
			p.refused.Add(1)
			return false
		}
		return true
	})
	return p
}

// push commits a pipeline that reads a file of the repository, exports the
// repository to the git host and delivers the push, whose clone_url is
// there: the ID of the run it started.
func (p *privateGitHub) push(t *testing.T, e *env, id string) string {
	t.Helper()
	head := e.commit("", map[string]string{
		".sluice/private.hcl": "pipeline \"private\" {\n  on \"push\" { branches = [\"main\"] }\n}\n\nstage \"read\" {\n  step \"run\" \"cat\" { command = [\"cat\", \"secret-sauce.txt\"] }\n}\n",
		"secret-sauce.txt":    "only for the repository's readers (" + id + ")\n",
	})
	e.gh.SetBranch(repo, "main", head)
	if err := e.gh.ExportGit(repo, filepath.Join(p.root, repo+".git")); err != nil {
		t.Fatal(err)
	}
	body := fixture(t, "push/with-new-branch.payload.json", func(m map[string]any) {
		m["ref"], m["before"], m["after"] = "refs/heads/main", strings.Repeat("0", 40), head
		m["created"], m["deleted"], m["forced"] = true, false, false
		m["head_commit"] = map[string]any{"id": head, "message": id}
		m["repository"].(map[string]any)["clone_url"] = p.host + "/" + repo + ".git"
	})
	if code, out := e.deliver("push", id, body); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, out)
	}
	res := e.result(id)
	if len(res.Runs) != 1 {
		t.Fatalf("the push started %+v", res)
	}
	return res.Runs[0].RunID
}

// succeeded waits for run and fails the test unless it succeeded.
func (p *privateGitHub) succeeded(t *testing.T, e *env, run string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := engine.Wait(ctx, e.client, run)
	if err != nil || st.State != engine.StateSucceeded {
		t.Fatalf("the run of the private repository: %s, %v (%s); %d requests to its git host, %d refused", st.State, err, st.Error, p.fetches.Load(), p.refused.Load())
	}
	if p.fetches.Load() == 0 {
		t.Fatal("the runner never fetched from the repository's host")
	}
}

// readOnlyHelloWorld accepts the tokens that may read the contents of
// Hello-World and nothing else.
func readOnlyHelloWorld(repos []string, perms map[string]string) bool {
	return slices.Equal(repos, []string{"Hello-World"}) && len(perms) == 1 && perms["contents"] == "read"
}

// A private repository on GitHub, checked out by the server's own runner
// with a read-only installation token of the App's and nothing configured
// on the runner.
func TestPrivateRepositoryCheckout(t *testing.T) {
	p := newPrivateGitHub(t, readOnlyHelloWorld)
	e := startWith(t, func(c *server.Config) {
		c.NoRunner = false
		c.GitHub.WebURL = p.host // GitHub's host, where its repositories are cloned from
	})
	p.gh = e.gh
	run := p.push(t, e, "private-1")
	p.succeeded(t, e, run)
	rc, err := e.srv.Stack().Logs.Open(run, "read", "cat")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); !strings.Contains(string(b), "only for the repository's readers") {
		t.Errorf("the step's log: %q", b)
	}
}

// A private repository checked out by a runner on another host, with a
// runner's token: the server gives it an installation token that may read
// that one repository's contents and nothing else
// (POST /api/v1/git-credentials), which the git host checks. A user's
// token gets none, nor does a repository the App is not on, nor a host
// other than GitHub's.
func TestPrivateRepositoryOnAnotherHost(t *testing.T) {
	p := newPrivateGitHub(t, readOnlyHelloWorld)
	e := startWith(t, func(c *server.Config) {
		c.GitHub.WebURL = p.host
	})
	p.gh = e.gh
	tokens, err := server.OpenTokens(server.TokensFile(e.home))
	if err != nil {
		t.Fatal(err)
	}
	runnerTok, err := tokens.CreateRunner("far-private")
	if err != nil {
		t.Fatal(err)
	}
	userTok := token(t, e.home, "alice")

	ask := func(tok, repository, url string) (int, server.GitCredentials, string) {
		body, _ := json.Marshal(server.GitCredentialsRequest{Repository: repository, URL: url})
		resp, b := e.authed("POST", "/api/v1/git-credentials", tok, bytes.NewReader(body))
		var c server.GitCredentials
		_ = json.Unmarshal(b, &c)
		return resp.StatusCode, c, string(b)
	}
	// (The installation of the repository is learnt from the first push.)
	run := p.push(t, e, "private-far-1")
	cloneURL := p.host + "/" + repo + ".git"
	for _, tt := range []struct {
		name, tok, repo, url string
		status               int
		says                 string
	}{
		{"a user's token", userTok, repo, cloneURL, http.StatusForbidden, "git credentials are for runners"},
		{"no token", "sluice_nothing", repo, cloneURL, http.StatusUnauthorized, "runner's API token"},
		{"a repository the App is not on", runnerTok, "acme/elsewhere", cloneURL, http.StatusNotFound, "not installed on"},
		{"another host", runnerTok, repo, "https://example.com/" + repo + ".git", http.StatusBadRequest, "GitHub's host"},
	} {
		if code, c, body := ask(tt.tok, tt.repo, tt.url); code != tt.status || c.Password != "" || !strings.Contains(body, tt.says) {
			t.Errorf("%s: %d %s; want %d saying %q", tt.name, code, body, tt.status, tt.says)
		}
	}
	code, c, body := ask(runnerTok, repo, cloneURL)
	if code != http.StatusOK || c.Username != "x-access-token" || c.Password == "" || time.Until(c.ExpiresAt) < 30*time.Minute {
		t.Fatalf("a runner's token: %d %s", code, body)
	}
	if _, repos, perms, ok := e.gh.TokenScope(c.Password); !ok || !readOnlyHelloWorld(repos, perms) {
		t.Errorf("the token given may do %v on %v; want contents:read on Hello-World only", perms, repos)
	}

	// A runner's token is for runners: the rest of the API refuses it,
	// and the web view takes it for no one; its logs endpoint takes it.
	if resp, b := e.authed("GET", "/api/v1/runs", runnerTok, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "ships step logs and asks for git credentials only") {
		t.Errorf("a runner's token listing runs: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.authed("GET", "/api/v1/logs/"+run+"/read/cat", runnerTok, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a runner's token on the logs endpoint: %d", resp.StatusCode)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", e.url+"/runs", nil)
	req.Header.Set("Authorization", "Bearer "+runnerTok)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("a runner's token on the web view: %d to %q; want the sign-in redirect", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The runner on another host: the run of the push above checks out.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stack, err := local.Start(ctx, local.Options{
		Home: filepath.Join(t.TempDir(), "runner-home"), TemporalAddress: ts.GetFrontendHostPort(), Namespace: ts.GetDefaultNamespace(),
		Runner: &local.RunnerOptions{Name: "far-private", NoWorkflows: true, GitCredentials: server.RunnerGitCredentials(e.url, runnerTok, nil)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	p.succeeded(t, e, run)
}
