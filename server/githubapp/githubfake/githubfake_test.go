package githubfake

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps the errors reported to it instead
// of failing the test: for tests that the fake does report violations.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// appJWT signs an App JWT with the fake App's key, as ghinstallation does.
func appJWT(t *testing.T, s *Server, iat, exp time.Time) string {
	t.Helper()
	block, _ := pem.Decode(s.PrivateKey)
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." +
		enc(map[string]any{"iat": iat.Unix(), "exp": exp.Unix(), "iss": fmt.Sprint(s.AppID)})
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func do(t *testing.T, s *Server, method, path, auth, body string, header map[string]string) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(s.URL(), "/")+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("User-Agent", "githubfake-test")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// installationToken mints a token for installation 7 with a raw request.
func installationToken(t *testing.T, s *Server) string {
	t.Helper()
	now := time.Now()
	status, out := do(t, s, "POST", "/app/installations/7/access_tokens", "Bearer "+appJWT(t, s, now.Add(-30*time.Second), now.Add(90*time.Second)), "{}", nil)
	if status != http.StatusCreated {
		t.Fatalf("minting a token: %d %v", status, out)
	}
	return out["token"].(string)
}

func TestBlobSHAIsGits(t *testing.T) {
	// `printf 'hello\n' | git hash-object --stdin`
	if got := BlobSHA([]byte("hello\n")); got != "ce013625030ba8dba906f756967f9e9ca394464a" {
		t.Fatalf("BlobSHA = %s", got)
	}
	if got := BlobSHA(nil); got != "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391" { // the empty blob
		t.Fatalf("BlobSHA(empty) = %s", got)
	}
}

// TestGitObjectsMatchGit builds the same commit with git itself and the
// fake: tree and commit SHAs must agree.
func TestGitObjectsMatchGit(t *testing.T) {
	files := map[string]string{
		".sluice/a.hcl":             "pipeline \"a\" {}\n",
		".sluice/b.hcl":             "pipeline \"b\" {}\n",
		"examples/x/.sluice/p.hcl":  "pipeline \"p\" {}\n",
		"examples/x.go":             "package x\n",
		"examples/x-y/z.txt":        "z\n", // sorts between examples/x.go and examples/x/
		"README.md":                 "# hi\n",
		"deep/a/b/c/d/e/f/file.txt": "",
	}
	s := New(t)
	s.AddRepo("acme/web", 7)
	sha := s.Commit("acme/web", "", files)

	dir := t.TempDir()
	git := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(nil, "init", "-q")
	for p, c := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644)
	}
	git(nil, "add", "-A")
	tree := git(nil, "write-tree")
	when := fmt.Sprint(fakeEpoch.Unix()) + " +0000"
	commit := git([]string{"GIT_AUTHOR_NAME=Sluice Test", "GIT_AUTHOR_EMAIL=test@sluice.invalid", "GIT_AUTHOR_DATE=" + when,
		"GIT_COMMITTER_NAME=Sluice Test", "GIT_COMMITTER_EMAIL=test@sluice.invalid", "GIT_COMMITTER_DATE=" + when},
		"commit-tree", tree, "-m", "commit 1")

	s.mu.Lock()
	c := s.repos["acme/web"].git.commits[sha]
	s.mu.Unlock()
	if c.tree != tree {
		t.Errorf("tree SHA = %s, git's is %s", c.tree, tree)
	}
	if sha != commit {
		t.Errorf("commit SHA = %s, git's is %s", sha, commit)
	}
	// The recursive listing is git's ls-tree -r -t order.
	want := strings.Fields(git(nil, "ls-tree", "-r", "-t", "--name-only", tree))
	tok := installationToken(t, s)
	status, out := do(t, s, "GET", "/repos/acme/web/git/trees/"+sha+"?recursive=1", "token "+tok, "", nil)
	if status != 200 {
		t.Fatalf("get tree: %d %v", status, out)
	}
	var got []string
	for _, e := range out["tree"].([]any) {
		got = append(got, e.(map[string]any)["path"].(string))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("recursive tree lists\n%v\ngit lists\n%v", got, want)
	}
}

// TestRejectsRequestsOutsideTheSpec shows that the validation works: a
// request GitHub's description does not accept is a violation, which
// fails the test through the fake's testing.TB.
func TestRejectsRequestsOutsideTheSpec(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		want                     string
	}{
		{name: "token request body of the wrong shape", method: "POST", path: "/app/installations/7/access_tokens",
			body: `{"repositories": "web"}`, want: "apps/create-installation-access-token"},
		{name: "installation ID not an integer", method: "POST", path: "/app/installations/seven/access_tokens",
			body: `{}`, want: "installation_id"},
		{name: "no such operation", method: "GET", path: "/repos/acme/web/git/treez/abc", want: "not an operation"},
		{name: "wrong method", method: "DELETE", path: "/repos/acme/web/git/blobs/abc", want: "not an operation"},
		{name: "no Accept header", method: "GET", path: "/repos/acme/web/git/blobs/abc",
			header: map[string]string{"Accept": ""}, want: "no Accept header"},
		{name: "Accept not a GitHub media type", method: "GET", path: "/repos/acme/web/git/blobs/abc",
			header: map[string]string{"Accept": "text/html"}, want: "not a GitHub JSON media type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			s := New(rec)
			s.AddRepo("acme/web", 7)
			now := time.Now()
			auth := "Bearer " + appJWT(t, s, now.Add(-30*time.Second), now.Add(90*time.Second))
			status, _ := do(t, s, tc.method, tc.path, auth, tc.body, tc.header)
			if status < 400 {
				t.Errorf("status %d, want an error", status)
			}
			errs := rec.Errors()
			if len(errs) != 1 || !strings.Contains(errs[0], tc.want) {
				t.Fatalf("violations reported = %q, want one about %q", errs, tc.want)
			}
			if v := s.Violations(); len(v) != 1 {
				t.Errorf("Violations() = %q", v)
			}
		})
	}
}

// TestAuthentication: wrong keys, expired tokens and tokens of other
// installations are refused as GitHub refuses them (not violations: a
// client can meet them).
func TestAuthentication(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	s.AddRepo("other/repo", 8)
	sha := s.Commit("acme/web", "", map[string]string{"a": "a"})
	now := time.Now()

	other := New(t) // a different App key
	other.AddRepo("acme/web", 7)
	if status, _ := do(t, s, "POST", "/app/installations/7/access_tokens", "Bearer "+appJWT(t, other, now, now.Add(time.Minute)), "{}", nil); status != 401 {
		t.Errorf("JWT of another key: %d, want 401", status)
	}
	if status, _ := do(t, s, "POST", "/app/installations/7/access_tokens", "Bearer "+appJWT(t, s, now.Add(-2*time.Minute), now.Add(-time.Minute)), "{}", nil); status != 401 {
		t.Errorf("expired JWT: %d, want 401", status)
	}
	if status, _ := do(t, s, "POST", "/app/installations/7/access_tokens", "Bearer "+appJWT(t, s, now, now.Add(time.Hour)), "{}", nil); status != 401 {
		t.Errorf("JWT an hour long: %d, want 401", status)
	}
	if status, _ := do(t, s, "POST", "/app/installations/99/access_tokens", "Bearer "+appJWT(t, s, now, now.Add(time.Minute)), "{}", nil); status != 404 {
		t.Errorf("unknown installation: %d, want 404", status)
	}
	if status, _ := do(t, s, "GET", "/repos/acme/web/commits/"+sha, "", "", nil); status != 401 {
		t.Errorf("no credentials: %d, want 401", status)
	}

	tok := installationToken(t, s)
	if status, _ := do(t, s, "GET", "/repos/acme/web/commits/"+sha, "Bearer "+tok, "", nil); status != 200 {
		t.Errorf("Bearer token: %d, want 200", status)
	}
	if status, _ := do(t, s, "GET", "/repos/other/repo/commits/"+sha, "token "+tok, "", nil); status != 404 {
		t.Errorf("a repository of another installation: %d, want 404", status)
	}

	s.SetTokenTTL(time.Second)
	short := installationToken(t, s)
	time.Sleep(1100 * time.Millisecond)
	if status, _ := do(t, s, "GET", "/repos/acme/web/commits/"+sha, "token "+short, "", nil); status != 401 {
		t.Errorf("expired token: %d, want 401", status)
	}
}

func TestFaults(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	sha := s.Commit("acme/web", "", map[string]string{"a": "a"})
	tok := installationToken(t, s)
	s.FailNext("/repos/acme/web/commits/", 503, 2, map[string]string{"Retry-After": "3"})
	for i, want := range []int{503, 503, 200} {
		if status, _ := do(t, s, "GET", "/repos/acme/web/commits/"+sha, "token "+tok, "", nil); status != want {
			t.Errorf("request %d: %d, want %d", i, status, want)
		}
	}
	s.FailNext("/repos/acme/web/git/", 403, 1, map[string]string{"Retry-After": "60"})
	status, out := do(t, s, "GET", "/repos/acme/web/git/blobs/"+BlobSHA([]byte("a")), "token "+tok, "", nil)
	if status != 403 || !strings.HasSuffix(out["documentation_url"].(string), "secondary-rate-limits") {
		t.Errorf("secondary rate limit: %d %v", status, out)
	}
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Status != 403 || !strings.HasPrefix(last.Path, "/repos/acme/web/git/blobs/") {
		t.Errorf("last request %+v", last)
	}
}

func TestCompareAndPulls(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	c1 := s.Commit("acme/web", "", map[string]string{"old.txt": "same\n", "keep": "1\n"})
	c2 := s.Commit("acme/web", c1, map[string]string{"old.txt": Deleted, "new.txt": "same\n", "keep": "2\n"})
	s.SetBranch("acme/web", "main", c2)
	tok := installationToken(t, s)
	status, out := do(t, s, "GET", "/repos/acme/web/compare/"+c1+"...main", "token "+tok, "", nil)
	if status != 200 {
		t.Fatalf("compare: %d %v", status, out)
	}
	var got []string
	for _, f := range out["files"].([]any) {
		m := f.(map[string]any)
		got = append(got, fmt.Sprintf("%s:%s:%v", m["status"], m["filename"], m["previous_filename"]))
	}
	if want := "modified:keep:<nil> renamed:new.txt:old.txt"; strings.Join(got, " ") != want {
		t.Errorf("files %v, want %s", got, want)
	}
	if out["status"] != "ahead" || out["ahead_by"] != 1.0 {
		t.Errorf("status %v ahead_by %v", out["status"], out["ahead_by"])
	}
	s.AddPull("acme/web", 4, c2, []string{"keep"})
	status, _ = do(t, s, "GET", "/repos/acme/web/commits/"+c2+"/pulls", "token "+tok, "", nil)
	if status != 200 {
		t.Errorf("pulls of a commit: %d", status)
	}
	if status, _ := do(t, s, "GET", "/repos/acme/web/collaborators/octocat/permission", "token "+tok, "", nil); status != 200 {
		t.Errorf("permission: %d", status)
	}
}

// TestRejectsResponsesOutsideTheSpec: a response that breaks the
// description is a violation too.
func TestRejectsResponsesOutsideTheSpec(t *testing.T) {
	rec := &recorder{TB: t}
	s := New(rec)
	s.AddRepo("acme/web", 7)
	sha := s.Commit("acme/web", "", map[string]string{"a": "a"})
	s.malform = func(op string, b []byte) []byte {
		if op == "git/get-tree" {
			return []byte(strings.Replace(string(b), `"truncated":false`, `"truncated":"no"`, 1))
		}
		return b
	}
	tok := installationToken(t, s)
	do(t, s, "GET", "/repos/acme/web/git/trees/"+sha, "token "+tok, "", nil)
	if errs := rec.Errors(); len(errs) != 1 || !strings.Contains(errs[0], "git/get-tree") || !strings.Contains(errs[0], "truncated") {
		t.Fatalf("violations reported = %q, want one about the tree's truncated", errs)
	}
}
