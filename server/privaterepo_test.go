package server_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/testing/githttp"
	"github.com/sluice-ci/sluice/server"
)

// A private repository on GitHub, checked out by the server's own runner
// with the App's installation token and nothing configured on the runner:
// the repository is served by git's smart HTTP over TLS, as GitHub's
// host, and takes only a current installation token of the fake GitHub as
// the password of x-access-token.
func TestPrivateRepositoryCheckout(t *testing.T) {
	root := t.TempDir()
	var fetches, refused atomic.Int32
	var gh interface {
		TokenInstallation(string) (int64, bool)
	}
	host := githttp.Serve(t, root, true, func(user, pass string) bool {
		fetches.Add(1)
		inst, ok := gh.TokenInstallation(pass)
		if !ok || user != "x-access-token" || inst != installation {
			refused.Add(1)
			return false
		}
		return true
	})

	e := startWith(t, func(c *server.Config) {
		c.NoRunner = false
		c.GitHub.WebURL = host // GitHub's host, where its repositories are cloned from
	})
	gh = e.gh
	head := e.commit("", map[string]string{
		".sluice/private.hcl": "pipeline \"private\" {\n  on \"push\" { branches = [\"main\"] }\n}\n\nstage \"read\" {\n  step \"run\" \"cat\" { command = [\"cat\", \"secret-sauce.txt\"] }\n}\n",
		"secret-sauce.txt":    "only for the repository's readers\n",
	})
	e.gh.SetBranch(repo, "main", head)
	if err := e.gh.ExportGit(repo, filepath.Join(root, repo+".git")); err != nil {
		t.Fatal(err)
	}
	body := fixture(t, "push/with-new-branch.payload.json", func(m map[string]any) {
		m["ref"], m["before"], m["after"] = "refs/heads/main", strings.Repeat("0", 40), head
		m["created"], m["deleted"], m["forced"] = true, false, false
		m["head_commit"] = map[string]any{"id": head, "message": "private"}
		m["repository"].(map[string]any)["clone_url"] = host + "/" + repo + ".git"
	})
	if code, out := e.deliver("push", "private-1", body); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, out)
	}
	res := e.result("private-1")
	if len(res.Runs) != 1 {
		t.Fatalf("the push started %+v", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := engine.Wait(ctx, e.client, res.Runs[0].RunID)
	if err != nil || st.State != engine.StateSucceeded {
		t.Fatalf("the run of the private repository: %s, %v (%s); %d requests to its git host, %d refused", st.State, err, st.Error, fetches.Load(), refused.Load())
	}
	if fetches.Load() == 0 {
		t.Fatal("the runner never fetched from the repository's host")
	}
	rc, err := e.srv.Stack().Logs.Open(res.Runs[0].RunID, "read", "cat")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); !strings.Contains(string(b), "only for the repository's readers") {
		t.Errorf("the step's log: %q", b)
	}
}
