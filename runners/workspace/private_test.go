package workspace

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/testing/githttp"
)

// A private repository over HTTPS, as GitHub serves one: git's smart HTTP
// (git http-backend) behind basic authentication. A runner fetches it with
// the credentials of its own git configuration (docs/runners.md,
// "Private repositories"): here a token as an http.extraHeader given in
// the runner's environment (GIT_CONFIG_COUNT), which never reaches a
// command line; without it the fetch fails at once, saying why, rather
// than waiting for a password.
func TestMirrorPrivateRepository(t *testing.T) {
	hermeticGit(t)
	url, sha, token := privateGitServer(t, false)
	mirrors := t.TempDir()

	_, err := Mirror(context.Background(), mirrors, url, sha)
	if err == nil || !strings.Contains(err.Error(), "could not read Username") {
		t.Fatalf("fetching without credentials: %v; want git's failure to authenticate, at once", err)
	}
	// Credentials given to MirrorWith go only over TLS: not to this
	// http:// URL.
	asked := false
	if _, err := MirrorWith(context.Background(), mirrors, url, sha, func(context.Context, string) (string, string, error) {
		asked = true
		return "x-access-token", token, nil
	}); err == nil || asked {
		t.Fatalf("credentials were asked for (%v) or worked (%v) over plain HTTP", asked, err)
	}

	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "http."+strings.TrimSuffix(url, "/acme/web.git")+"/.extraHeader")
	t.Setenv("GIT_CONFIG_VALUE_0", "Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token)))
	dir, err := Mirror(context.Background(), mirrors, url, sha)
	if err != nil {
		t.Fatalf("fetching with the runner's credentials: %v", err)
	}
	checkMirror(t, dir, sha, token)
}

// MirrorWith fetches a private repository over HTTPS with the credentials
// it is given (the server's GitHub App installation token, for its own
// runner), and the runner's own git configuration still applies beside
// them.
func TestMirrorWithCredentials(t *testing.T) {
	hermeticGit(t)
	url, sha, token := privateGitServer(t, true)
	// The runner's own configuration has an entry already: the
	// credentials come after it, and both apply.
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "core.askPass")
	t.Setenv("GIT_CONFIG_VALUE_0", "false")
	mirrors := t.TempDir()
	var askedFor string
	dir, err := MirrorWith(context.Background(), mirrors, url, sha, func(_ context.Context, u string) (string, string, error) {
		askedFor = u
		return "x-access-token", token, nil
	})
	if err != nil {
		t.Fatalf("fetching with credentials: %v", err)
	}
	if askedFor != url {
		t.Errorf("credentials asked for %q, want %q", askedFor, url)
	}
	checkMirror(t, dir, sha, token)

	// Wrong credentials fail, saying so.
	_, err = MirrorWith(context.Background(), t.TempDir(), url, sha, func(context.Context, string) (string, string, error) {
		return "x-access-token", "ghs_wrong", nil
	})
	if err == nil || !strings.Contains(err.Error(), "could not read Username") {
		t.Errorf("fetching with a wrong token: %v", err)
	}
}

// privateGitServer serves a repository with one commit at URL/acme/web.git,
// to x-access-token and the token it returns only (githttp.Serve).
func privateGitServer(t *testing.T, overTLS bool) (url, sha, token string) {
	t.Helper()
	src := t.TempDir()
	run(t, src, "init", "-q", "-b", "main")
	write(t, filepath.Join(src, "f"), "private\n")
	run(t, src, "add", ".")
	run(t, src, "commit", "-qm", "one")
	sha = run(t, src, "rev-parse", "HEAD")
	root := t.TempDir()
	run(t, root, "clone", "-q", "--bare", src, filepath.Join(root, "acme", "web.git"))
	token = "ghs_private-clone-token"
	base := githttp.Serve(t, root, overTLS, func(user, pass string) bool { return user == "x-access-token" && pass == token })
	return base + "/acme/web.git", sha, token
}

// checkMirror checks that the mirror has the commit, and the token in none
// of its files.
func checkMirror(t *testing.T, dir, sha, token string) {
	t.Helper()
	if got := run(t, dir, "cat-file", "-p", sha+":f"); got != "private" {
		t.Errorf("the mirrored commit's file: %q", got)
	}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), token) {
			t.Errorf("%s holds the token", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
