package githubfake

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
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

// call is do for any JSON answer, with the response's headers.
func call(t *testing.T, s *Server, method, path, tok string, body any) (int, http.Header, any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(s.URL(), "/")+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("User-Agent", "githubfake-test")
	req.Header.Set("Authorization", "token "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: the answer is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, out
}

func field(v any, path ...string) any {
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

func rawAnnotations(n int) []map[string]any {
	out := []map[string]any{}
	for i := range n {
		out = append(out, map[string]any{"path": fmt.Sprintf("f%d.go", i), "start_line": i + 1, "end_line": i + 1, "annotation_level": "notice", "message": "m"})
	}
	return out
}

// checkRunSetup makes acme/web with a commit and a check run, and returns
// the token, the commit and the run's path.
func checkRunSetup(t *testing.T, s *Server) (tok, sha, runPath string) {
	t.Helper()
	s.AddRepo("acme/web", 7)
	sha = s.Commit("acme/web", "", map[string]string{"a": "a"})
	tok = installationToken(t, s)
	status, h, out := call(t, s, "POST", "/repos/acme/web/check-runs", tok, map[string]any{"name": "build", "head_sha": sha, "external_id": "e1"})
	if status != 201 || h.Get("Location") == "" {
		t.Fatalf("create: %d %v", status, out)
	}
	return tok, sha, fmt.Sprintf("/repos/acme/web/check-runs/%v", int64(field(out, "id").(float64)))
}

// TestCheckRunLimits: writes beyond GitHub's limits get GitHub's 422, not
// a violation (data can exceed them), and change nothing.
func TestCheckRunLimits(t *testing.T) {
	s := New(t)
	tok, sha, run := checkRunSetup(t, s)
	output := func(summary string, annotations int) map[string]any {
		return map[string]any{"title": "t", "summary": summary, "annotations": rawAnnotations(annotations)}
	}
	action := func(label, desc, id string) map[string]any {
		return map[string]any{"label": label, "description": desc, "identifier": id}
	}
	for _, tc := range []struct {
		name, method, path string
		body               map[string]any
		want               string
	}{
		{"51 annotations", "PATCH", run, map[string]any{"output": output("s", 51)}, "No more than 50 items are allowed; 51 were supplied."},
		{"51 annotations on create", "POST", "/repos/acme/web/check-runs", map[string]any{"name": "b", "head_sha": sha, "output": output("s", 51)}, "No more than 50 items are allowed; 51 were supplied."},
		{"summary of 66,000", "PATCH", run, map[string]any{"output": output(strings.Repeat("x", 66000), 0)}, "Only 65535 characters are allowed; 66000 were supplied."},
		{"text of 65,536", "PATCH", run, map[string]any{"output": map[string]any{"title": "t", "summary": "s", "text": strings.Repeat("é", 65536)}}, "Only 65535 characters are allowed; 65536 were supplied."},
		{"4 actions", "PATCH", run, map[string]any{"actions": []any{action("a", "a", "a"), action("b", "b", "b"), action("c", "c", "c"), action("d", "d", "d")}}, "No more than 3 items are allowed; 4 were supplied."},
		{"label of 21", "PATCH", run, map[string]any{"actions": []any{action(strings.Repeat("l", 21), "d", "i")}}, "Only 20 characters are allowed; 21 were supplied."},
		{"description of 41", "PATCH", run, map[string]any{"actions": []any{action("l", strings.Repeat("d", 41), "i")}}, "Only 40 characters are allowed; 41 were supplied."},
		{"identifier of 21", "POST", "/repos/acme/web/check-runs", map[string]any{"name": "b", "head_sha": sha, "actions": []any{action("l", "d", strings.Repeat("i", 21))}}, "Only 20 characters are allowed; 21 were supplied."},
		{"completed without conclusion on create", "POST", "/repos/acme/web/check-runs", map[string]any{"name": "b", "head_sha": sha, "status": "completed"}, "\"conclusion\" is required"},
		{"output without title on update", "PATCH", run, map[string]any{"output": map[string]any{"summary": "s"}}, "\"title\" wasn't supplied."},
		{"stale", "PATCH", run, map[string]any{"conclusion": "stale"}, "stale"},
		{"multi-line annotation with columns", "PATCH", run, map[string]any{"output": map[string]any{"title": "t", "summary": "s", "annotations": []any{
			map[string]any{"path": "a", "start_line": 1, "end_line": 2, "start_column": 3, "annotation_level": "notice", "message": "m"}}}}, "start_column"},
		{"unknown commit", "POST", "/repos/acme/web/check-runs", map[string]any{"name": "b", "head_sha": strings.Repeat("e", 40)}, "No commit found for SHA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, out := call(t, s, tc.method, tc.path, tok, tc.body)
			if msg, _ := field(out, "message").(string); status != 422 || !strings.Contains(msg, tc.want) {
				t.Errorf("%d %v, want 422 saying %q", status, out, tc.want)
			}
		})
	}
	runs := s.CheckRuns("acme/web")
	if len(runs) != 1 || runs[0].Writes != 1 || len(runs[0].Annotations) != 0 || runs[0].Summary != "" || runs[0].Actions != nil || runs[0].Status != "queued" {
		t.Errorf("refused writes changed the runs: %+v", runs)
	}
	if v := s.Violations(); len(v) != 0 {
		t.Errorf("violations %q", v)
	}
	// At the limits: accepted.
	status, _, out := call(t, s, "PATCH", run, tok, map[string]any{
		"output":  map[string]any{"title": "t", "summary": strings.Repeat("x", 65535), "annotations": rawAnnotations(50)},
		"actions": []any{action(strings.Repeat("l", 20), strings.Repeat("d", 40), strings.Repeat("i", 20))},
	})
	if status != 200 || field(out, "output", "annotations_count") != 50.0 {
		t.Errorf("at the limits: %d %v", status, field(out, "output"))
	}
}

// TestCheckRunLimitsDoNotHideViolations: a write over a limit that is
// also outside the description is a violation.
func TestCheckRunLimitsDoNotHideViolations(t *testing.T) {
	rec := &recorder{TB: t}
	s := New(rec)
	tok, _, run := checkRunSetup(t, s)
	bad := rawAnnotations(51)
	bad[3]["annotation_level"] = "error"
	status, _, _ := call(t, s, "PATCH", run, tok, map[string]any{"output": map[string]any{"title": "t", "summary": "s", "annotations": bad}})
	// The description itself requires a conclusion with status
	// completed on update (not on create, where GitHub answers 422).
	status2, _, _ := call(t, s, "PATCH", run, tok, map[string]any{"status": "completed"})
	if errs := rec.Errors(); status != 400 || status2 != 400 || len(errs) != 2 || !strings.Contains(errs[0], "annotation_level") {
		t.Fatalf("statuses %d, %d; violations %q", status, status2, errs)
	}
}

// TestCheckRunAnnotationsAppend: each update's annotations are added to
// the run's; output replaces title and summary.
func TestCheckRunAnnotationsAppend(t *testing.T) {
	s := New(t)
	tok, _, run := checkRunSetup(t, s)
	for i, n := range []int{50, 50, 20} {
		status, _, out := call(t, s, "PATCH", run, tok, map[string]any{"output": map[string]any{"title": fmt.Sprint("pass ", i), "summary": "s", "annotations": rawAnnotations(n)}})
		if status != 200 {
			t.Fatalf("update %d: %d %v", i, status, out)
		}
	}
	status, _, out := call(t, s, "GET", run, tok, nil)
	if status != 200 || field(out, "output", "annotations_count") != 120.0 || field(out, "output", "title") != "pass 2" || field(out, "output", "text") != nil {
		t.Errorf("get: %d %v", status, field(out, "output"))
	}
	if runs := s.CheckRuns("acme/web"); len(runs[0].Annotations) != 120 || runs[0].Writes != 4 {
		t.Errorf("%d annotations, %d writes", len(runs[0].Annotations), runs[0].Writes)
	}
}

func TestCheckRunConclusionCompletes(t *testing.T) {
	s := New(t)
	tok, _, run := checkRunSetup(t, s)
	status, _, out := call(t, s, "PATCH", run, tok, map[string]any{"conclusion": "success"})
	if status != 200 || field(out, "status") != "completed" || field(out, "conclusion") != "success" || field(out, "completed_at") == nil {
		t.Fatalf("%d %v", status, out)
	}
	if field(out, "app", "id") != float64(s.AppID) || field(out, "external_id") != "e1" {
		t.Errorf("app %v, external_id %v", field(out, "app", "id"), field(out, "external_id"))
	}
}

func TestListCheckRunsForRef(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	sha := s.Commit("acme/web", "", map[string]string{"a": "a"})
	s.SetBranch("acme/web", "main", sha)
	tok := installationToken(t, s)
	var ids []int64
	for _, name := range []string{"build", "build", "build", "test"} {
		ids = append(ids, s.AddCheckRun("acme/web", s.AppID, name, sha, ""))
	}
	call(t, s, "PATCH", fmt.Sprintf("/repos/acme/web/check-runs/%d", ids[0]), tok, map[string]any{"conclusion": "failure"})
	call(t, s, "PATCH", fmt.Sprintf("/repos/acme/web/check-runs/%d", ids[1]), tok, map[string]any{"conclusion": "success"})
	theirs := s.AddCheckRun("acme/web", 99, "build", sha, "")
	list := func(query string) (total int, got []int64, h http.Header) {
		t.Helper()
		status, h, out := call(t, s, "GET", "/repos/acme/web/commits/main/check-runs?"+query, tok, nil)
		if status != 200 {
			t.Fatalf("%s: %d %v", query, status, out)
		}
		for _, r := range field(out, "check_runs").([]any) {
			got = append(got, int64(field(r, "id").(float64)))
		}
		return int(field(out, "total_count").(float64)), got, h
	}
	for _, tc := range []struct {
		query string
		want  []int64
	}{
		{"", []int64{theirs, ids[3], ids[2]}}, // filter=latest: each App's newest of each name
		{"filter=all", []int64{theirs, ids[3], ids[2], ids[1], ids[0]}},
		{"filter=all&app_id=1", []int64{ids[3], ids[2], ids[1], ids[0]}},
		{"filter=all&check_name=test", []int64{ids[3]}},
		{"filter=all&status=completed", []int64{ids[1], ids[0]}},
		{"status=completed", nil}, // the latest build is queued
	} {
		total, got, _ := list(tc.query)
		if total != len(tc.want) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("?%s: total %d, runs %v; want %v", tc.query, total, got, tc.want)
		}
	}
	total, got, h := list("filter=all&per_page=2&page=2")
	if total != 5 || !reflect.DeepEqual(got, []int64{ids[2], ids[1]}) {
		t.Errorf("page 2: total %d, runs %v", total, got)
	}
	if link := h.Get("Link"); !strings.Contains(link, "filter=all") || !strings.Contains(link, `page=3&per_page=2>; rel="next"`) || !strings.Contains(link, `rel="prev"`) {
		t.Errorf("Link %q", link)
	}
}

func TestCheckRunPermissions(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	sha := s.Commit("acme/web", "", map[string]string{"a": "a"})
	s.SetPermissions(7, map[string]string{"metadata": "read", "checks": "read"})
	now := time.Now()
	status, out := do(t, s, "POST", "/app/installations/7/access_tokens", "Bearer "+appJWT(t, s, now.Add(-30*time.Second), now.Add(90*time.Second)), "{}", nil)
	if status != 201 || !reflect.DeepEqual(out["permissions"], map[string]any{"metadata": "read", "checks": "read"}) {
		t.Fatalf("token: %d %v", status, out)
	}
	tok := out["token"].(string)
	for _, tc := range []struct {
		method, path string
		body         map[string]any
	}{
		{"POST", "/repos/acme/web/check-runs", map[string]any{"name": "b", "head_sha": sha}},
		{"POST", "/repos/acme/web/statuses/" + sha, map[string]any{"state": "pending"}},
	} {
		status, _, out := call(t, s, tc.method, tc.path, tok, tc.body)
		if status != 403 || field(out, "message") != "Resource not accessible by integration" {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, status, out)
		}
	}
	// Another App's run can be read, not written.
	theirs := s.AddCheckRun("acme/web", 42, "x", sha, "")
	if status, _, out := call(t, s, "GET", fmt.Sprintf("/repos/acme/web/check-runs/%d", theirs), tok, nil); status != 200 || field(out, "app", "slug") != "app-42" {
		t.Errorf("get another App's run: %d %v", status, out)
	}
	s.SetPermissions(7, DefaultPermissions)
	tok = installationToken(t, s)
	status, _, out2 := call(t, s, "PATCH", fmt.Sprintf("/repos/acme/web/check-runs/%d", theirs), tok, map[string]any{"status": "in_progress"})
	if msg, _ := field(out2, "message").(string); status != 403 || !strings.Contains(msg, "Invalid app_id `42`") {
		t.Errorf("update another App's run: %d %v", status, out2)
	}
}

func TestStatusesAndComments(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	sha := s.Commit("acme/web", "", map[string]string{"a": "a"})
	s.AddPull("acme/web", 3, sha, nil)
	tok := installationToken(t, s)
	for _, state := range []string{"pending", "success"} {
		if status, h, out := call(t, s, "POST", "/repos/acme/web/statuses/"+sha, tok, map[string]any{"state": state}); status != 201 || field(out, "context") != "default" || h.Get("Location") == "" {
			t.Fatalf("status %s: %d %v", state, status, out)
		}
	}
	status, _, out := call(t, s, "GET", "/repos/acme/web/commits/"+sha+"/statuses", tok, nil)
	if list, _ := out.([]any); status != 200 || len(list) != 2 || field(list[0], "state") != "success" {
		t.Errorf("list statuses (newest first): %d %v", status, out)
	}
	status, _, out = call(t, s, "POST", "/repos/acme/web/statuses/"+sha, tok, map[string]any{"state": "error", "description": strings.Repeat("d", 141)})
	if status != 422 || !strings.Contains(fmt.Sprint(field(out, "errors")), "maximum is 140") {
		t.Errorf("long description: %d %v", status, out)
	}
	if got := s.Statuses("acme/web", sha); len(got) != 2 || got[0].State != "pending" || got[1].Context != "default" {
		t.Errorf("Statuses %+v", got)
	}

	status, h, out := call(t, s, "POST", "/repos/acme/web/issues/3/comments", tok, map[string]any{"body": "hello"})
	if status != 201 || field(out, "user", "login") != "sluice[bot]" || !strings.Contains(h.Get("Location"), "/issues/comments/") {
		t.Errorf("comment: %d %v", status, out)
	}
	if status, _, _ := call(t, s, "POST", "/repos/acme/web/issues/4/comments", tok, map[string]any{"body": "hello"}); status != 404 {
		t.Errorf("comment on nothing: %d", status)
	}
	if status, _, _ := call(t, s, "POST", "/repos/acme/web/issues/3/comments", tok, map[string]any{"body": " "}); status != 422 {
		t.Errorf("blank comment: %d", status)
	}
	if got := s.Comments("acme/web", 3); !reflect.DeepEqual(got, []string{"hello"}) {
		t.Errorf("Comments %q", got)
	}
}

func TestPullsGet(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	base := s.Commit("acme/web", "", map[string]string{"a": "a"})
	s.SetBranch("acme/web", "main", base)
	head := s.Commit("acme/web", base, map[string]string{"a": "b"})
	s.AddForkPull("acme/web", 6, "mallory/web", "patch-1", head, []string{"a"})
	s.AddPull("acme/web", 7, head, []string{"a"})
	tok := installationToken(t, s)
	status, _, out := call(t, s, "GET", "/repos/acme/web/pulls/6", tok, nil)
	if status != 200 || field(out, "head", "repo", "full_name") != "mallory/web" || field(out, "head", "repo", "fork") != true ||
		field(out, "head", "ref") != "patch-1" || field(out, "head", "label") != "mallory:patch-1" ||
		field(out, "base", "repo", "full_name") != "acme/web" || field(out, "base", "sha") != base || field(out, "maintainer_can_modify") != true {
		t.Errorf("fork pull: %d head %v base %v", status, field(out, "head", "label"), field(out, "base", "sha"))
	}
	status, _, out = call(t, s, "GET", "/repos/acme/web/pulls/7", tok, nil)
	if status != 200 || field(out, "head", "repo", "full_name") != "acme/web" || field(out, "head", "repo", "fork") != false || field(out, "head", "ref") != "pr-7" {
		t.Errorf("same-repository pull: %d %v", status, field(out, "head"))
	}
	// A check run on a same-repository pull's head lists it; the fork's
	// does not.
	status, _, out = call(t, s, "POST", "/repos/acme/web/check-runs", tok, map[string]any{"name": "b", "head_sha": head})
	prs, _ := field(out, "pull_requests").([]any)
	if status != 201 || len(prs) != 1 || field(prs[0], "number") != 7.0 {
		t.Errorf("check run pull_requests: %d %v", status, field(out, "pull_requests"))
	}
}

func TestWaitCheckRun(t *testing.T) {
	s := New(t)
	s.AddRepo("acme/web", 7)
	sha := s.Commit("acme/web", "", map[string]string{"a": "a"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.WaitCheckRun(ctx, "acme/web", func(CheckRunState) bool { return true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no run: %v", err)
	}
	got := make(chan CheckRunState)
	go func() {
		st, err := s.WaitCheckRun(context.Background(), "acme/web", func(st CheckRunState) bool { return st.Name == "second" })
		if err != nil {
			t.Error(err)
		}
		got <- st
	}()
	s.AddCheckRun("acme/web", s.AppID, "first", sha, "")
	id := s.AddCheckRun("acme/web", s.AppID, "second", sha, "")
	select {
	case st := <-got:
		if st.ID != id {
			t.Errorf("WaitCheckRun = %+v, want run %d", st, id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitCheckRun did not return")
	}
}
