package workspace

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git http-backend, part of Debian's git package (make deps), is missing: %v", err)
	}
	// The repository, bare, under the server's root.
	src := t.TempDir()
	run(t, src, "init", "-q", "-b", "main")
	write(t, filepath.Join(src, "f"), "private\n")
	run(t, src, "add", ".")
	run(t, src, "commit", "-qm", "one")
	sha := run(t, src, "rev-parse", "HEAD")
	root := t.TempDir()
	run(t, root, "clone", "-q", "--bare", src, filepath.Join(root, "acme", "web.git"))

	const token = "ghs_private-clone-token"
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	git := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
			http.Error(w, "Authentication failed", http.StatusUnauthorized)
			return
		}
		git.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := srv.URL + "/acme/web.git"
	mirrors := t.TempDir()

	_, err := Mirror(context.Background(), mirrors, url, sha)
	if err == nil || !strings.Contains(err.Error(), "could not read Username") {
		t.Fatalf("fetching without credentials: %v; want git's failure to authenticate, at once", err)
	}

	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "http."+srv.URL+"/.extraHeader")
	t.Setenv("GIT_CONFIG_VALUE_0", "Authorization: "+want)
	dir, err := Mirror(context.Background(), mirrors, url, sha)
	if err != nil {
		t.Fatalf("fetching with the runner's credentials: %v", err)
	}
	if got := run(t, dir, "cat-file", "-p", sha+":f"); got != "private" {
		t.Errorf("the mirrored commit's file: %q", got)
	}
	// The token is in no file of the mirror.
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
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
