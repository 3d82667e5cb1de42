package githubapp

import (
	"strings"
	"testing"
)

// TestGitToken checks that the token for git is the installation's, minted
// once and shared with API calls.
func TestGitToken(t *testing.T) {
	f, _, c := setup(t)
	tok, err := c.GitToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "ghs_") {
		t.Errorf("GitToken = %q, want an installation token", tok)
	}
	sha := f.Commit(repo, "", pipelineCommit)
	if _, err := c.PipelineFiles(ctx, repo, sha); err != nil {
		t.Fatal(err)
	}
	again, err := c.GitToken(ctx)
	if err != nil || again != tok {
		t.Errorf("second GitToken = %q, %v; want the same token", again, err)
	}
	if n := f.Count("POST", "/app/installations/7/access_tokens"); n != 1 {
		t.Errorf("%d token requests, want 1 shared by git and the API", n)
	}
}
