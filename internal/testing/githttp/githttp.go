// Package githttp serves git repositories over git's smart HTTP for tests,
// behind basic authentication, as GitHub serves a private repository.
package githttp

import (
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// Backend is git's own smart HTTP server, part of Debian's git package.
const Backend = "/usr/lib/git-core/git-http-backend"

// Serve serves the bare repositories under root (root/acme/web.git at
// URL/acme/web.git) with git http-backend to the requests whose basic
// authentication allow accepts; any other is refused with 401 and a
// challenge. Over TLS git trusts the server through GIT_SSL_CAINFO, set
// for the test. The server stops when the test ends; Serve returns its
// URL.
func Serve(t testing.TB, root string, overTLS bool, allow func(user, password string) bool) string {
	t.Helper()
	if _, err := os.Stat(Backend); err != nil {
		t.Fatalf("git http-backend, part of Debian's git package (make deps), is missing: %v", err)
	}
	git := &cgi.Handler{Path: Backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		if !allow(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "Invalid username or token.", http.StatusUnauthorized)
			return
		}
		git.ServeHTTP(w, r)
	})
	var srv *httptest.Server
	if overTLS {
		srv = httptest.NewTLSServer(h)
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("GIT_SSL_CAINFO", ca)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv.URL
}
