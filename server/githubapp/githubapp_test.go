package githubapp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

const repo = "acme/web"

// setup starts a fake GitHub with acme/web in installation 7 and returns
// it with the App and the installation's client.
func setup(t *testing.T) (*githubfake.Server, *App, *Client) {
	t.Helper()
	f := githubfake.New(t)
	f.AddRepo(repo, 7)
	app := &App{ID: f.AppID, PrivateKey: f.PrivateKey, BaseURL: f.URL()}
	c, err := app.Installation(7)
	if err != nil {
		t.Fatal(err)
	}
	return f, app, c
}

var ctx = context.Background()

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return sortStrings(out)
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

var pipelineCommit = map[string]string{
	".sluice/a.hcl":            `pipeline "a" {}` + "\n",
	".sluice/b.hcl":            `pipeline "b" {}` + "\n",
	"examples/x/.sluice/p.hcl": `pipeline "p" {}` + "\n",
	".sluice/notes.txt":        "not a pipeline\n",
	".sluice/sub/c.hcl":        "too deep\n",
	"sluice/d.hcl":             "no dot\n",
	"x.sluice/e.hcl":           "not the directory\n",
	"README.md":                "# web\n",
	"main.go":                  "package main\n",
}

func TestPipelineFiles(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", pipelineCommit)
	files, err := c.PipelineFiles(ctx, repo, sha)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".sluice/a.hcl", ".sluice/b.hcl", "examples/x/.sluice/p.hcl"}
	if got := keys(files); !reflect.DeepEqual(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	for _, p := range want {
		if string(files[p]) != pipelineCommit[p] {
			t.Errorf("%s = %q, want %q", p, files[p], pipelineCommit[p])
		}
	}
	if n := f.Count("GET", "/repos/acme/web/git/trees/"); n != 1 {
		t.Errorf("%d tree requests, want 1 recursive one", n)
	}
	if n := f.Count("GET", "/repos/acme/web/git/blobs/"); n != 3 {
		t.Errorf("%d blob requests, want 3", n)
	}

	// A later commit shares two of the blobs: only the changed file is
	// fetched.
	sha2 := f.Commit(repo, sha, map[string]string{".sluice/b.hcl": `pipeline "b2" {}` + "\n", "main.go": "package main // 2\n"})
	files, err = c.PipelineFiles(ctx, repo, sha2)
	if err != nil {
		t.Fatal(err)
	}
	if string(files[".sluice/b.hcl"]) != `pipeline "b2" {}`+"\n" || string(files[".sluice/a.hcl"]) != pipelineCommit[".sluice/a.hcl"] {
		t.Errorf("second commit's files %q", files)
	}
	if n := f.Count("GET", "/repos/acme/web/git/blobs/"); n != 4 {
		t.Errorf("%d blob requests after the second commit, want 4 (one new blob)", n)
	}
	if n := f.Count("GET", "/repos/acme/web/git/blobs/"+githubfake.BlobSHA(files[".sluice/b.hcl"])); n != 1 {
		t.Errorf("the new blob was requested %d times", n)
	}
	// The same commit again: the tree only.
	if _, err := c.PipelineFiles(ctx, repo, sha2); err != nil {
		t.Fatal(err)
	}
	if n := f.Count("GET", "/repos/acme/web/git/blobs/"); n != 4 {
		t.Errorf("%d blob requests after a repeat, want still 4", n)
	}
}

// TestBlobCacheSharedByInstallations: another installation's repository
// with the same file content needs no blob request.
func TestBlobCacheSharedByInstallations(t *testing.T) {
	f, app, c := setup(t)
	f.AddRepo("other/api", 8)
	if _, err := c.PipelineFiles(ctx, repo, f.Commit(repo, "", pipelineCommit)); err != nil {
		t.Fatal(err)
	}
	c8, err := app.Installation(8)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := app.Installation(8); again != c8 {
		t.Error("Installation(8) twice gave two clients")
	}
	files, err := c8.PipelineFiles(ctx, "other/api", f.Commit("other/api", "", map[string]string{".sluice/a.hcl": pipelineCommit[".sluice/a.hcl"]}))
	if err != nil {
		t.Fatal(err)
	}
	if string(files[".sluice/a.hcl"]) != pipelineCommit[".sluice/a.hcl"] {
		t.Errorf("files %q", files)
	}
	if n := f.Count("GET", "/repos/other/api/git/blobs/"); n != 0 {
		t.Errorf("%d blob requests for a cached blob", n)
	}
}

func TestPipelineFilesTruncatedTree(t *testing.T) {
	f, _, c := setup(t)
	f.SetTreeLimit(5) // the recursive listing has more, the root and .sluice fewer
	sha := f.Commit(repo, "", pipelineCommit)
	files, err := c.PipelineFiles(ctx, repo, sha)
	if err != nil {
		t.Fatal(err)
	}
	// The fallback reads the root's .sluice only.
	if got, want := keys(files), []string{".sluice/a.hcl", ".sluice/b.hcl"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	var trees []string
	for _, r := range f.Requests() {
		if strings.HasPrefix(r.Path, "/repos/acme/web/git/trees/") {
			trees = append(trees, r.Query)
		}
	}
	if want := []string{"recursive=1", "", ""}; !reflect.DeepEqual(trees, want) {
		t.Errorf("tree requests' queries %q, want %q (recursive, root, .sluice)", trees, want)
	}
}

func TestPipelineFilesErrors(t *testing.T) {
	f, _, c := setup(t)
	_, err := c.PipelineFiles(ctx, repo, strings.Repeat("ab", 20))
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), strings.Repeat("ab", 20)) || !strings.Contains(err.Error(), repo) {
		t.Errorf("unknown commit: %v", err)
	}
	if _, err := c.PipelineFiles(ctx, "acme/nope", "main"); !errors.As(err, &nf) || !strings.Contains(err.Error(), "acme/nope") {
		t.Errorf("unknown repository: %v", err)
	}
	if _, err := c.PipelineFiles(ctx, "nope", "main"); err == nil || !strings.Contains(err.Error(), "owner/name") {
		t.Errorf("bad repository name: %v", err)
	}
	big := f.Commit(repo, "", map[string]string{".sluice/big.hcl": strings.Repeat("#", dsl.MaxFileSize+1), ".sluice/a.hcl": "ok\n"})
	_, err = c.PipelineFiles(ctx, repo, big)
	if err == nil || !strings.Contains(err.Error(), ".sluice/big.hcl") || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversized file: %v", err)
	}
	if n := f.Count("GET", "/repos/acme/web/git/blobs/"+githubfake.BlobSHA([]byte(strings.Repeat("#", dsl.MaxFileSize+1)))); n != 0 {
		t.Errorf("the oversized blob was fetched %d times; its size is in the tree", n)
	}
}

func TestChanged(t *testing.T) {
	f, _, c := setup(t)
	c0 := f.Commit(repo, "", map[string]string{"old/name.txt": "content\n", "keep.txt": "1\n", ".sluice/a.hcl": "a\n"})

	t.Run("rename lists both names", func(t *testing.T) {
		c1 := f.Commit(repo, c0, map[string]string{"old/name.txt": githubfake.Deleted, "new/name.txt": "content\n"})
		files, complete, err := c.Changed(ctx, repo, c0, c1, false)
		if err != nil || !complete || !reflect.DeepEqual(files, []string{"new/name.txt", "old/name.txt"}) {
			t.Errorf("Changed = %v, %v, %v", files, complete, err)
		}
	})
	t.Run("three commits: a file changed in the first is listed", func(t *testing.T) {
		c1 := f.Commit(repo, c0, map[string]string{".sluice/a.hcl": "a2\n"})
		c2 := f.Commit(repo, c1, map[string]string{"README.md": "hi\n"})
		c3 := f.Commit(repo, c2, map[string]string{"main.go": "package main\n"})
		files, complete, err := c.Changed(ctx, repo, c0, c3, false)
		if err != nil || !complete || !reflect.DeepEqual(files, []string{".sluice/a.hcl", "README.md", "main.go"}) {
			t.Errorf("Changed = %v, %v, %v", files, complete, err)
		}
	})
	t.Run("new branch", func(t *testing.T) {
		before := len(f.Requests())
		files, complete, err := c.Changed(ctx, repo, strings.Repeat("0", 40), c0, false)
		if err != nil || complete || files != nil {
			t.Errorf("Changed = %v, %v, %v", files, complete, err)
		}
		if len(f.Requests()) != before {
			t.Error("a new branch asked GitHub")
		}
	})
	t.Run("forced", func(t *testing.T) {
		c1 := f.Commit(repo, c0, map[string]string{"keep.txt": "2\n"})
		if files, complete, err := c.Changed(ctx, repo, c0, c1, true); err != nil || complete {
			t.Errorf("Changed = %v, %v, %v", files, complete, err)
		}
	})
	many := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("gen/f%04d.txt", i)] = strconv.Itoa(i)
		}
		return m
	}
	for _, tc := range []struct {
		n, listed int
		complete  bool
	}{{299, 299, true}, {300, 300, false}, {301, 300, false}} {
		t.Run(fmt.Sprintf("%d files", tc.n), func(t *testing.T) {
			c1 := f.Commit(repo, c0, many(tc.n))
			files, complete, err := c.Changed(ctx, repo, c0, c1, false)
			if err != nil || complete != tc.complete || len(files) != tc.listed {
				t.Errorf("Changed = %d files, %v, %v; want %d, %v", len(files), complete, err, tc.listed, tc.complete)
			}
		})
	}
	t.Run("diverged", func(t *testing.T) {
		a := f.Commit(repo, c0, map[string]string{"a.txt": "a\n"})
		b := f.Commit(repo, c0, map[string]string{"b.txt": "b\n"})
		files, complete, err := c.Changed(ctx, repo, a, b, false)
		if err != nil || complete {
			t.Errorf("Changed = %v, %v, %v", files, complete, err)
		}
	})
	t.Run("unknown commit", func(t *testing.T) {
		_, _, err := c.Changed(ctx, repo, c0, strings.Repeat("cd", 20), false)
		var nf *NotFoundError
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), "cdcd") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestPullFiles(t *testing.T) {
	f, _, c := setup(t)
	head := f.Commit(repo, "", map[string]string{"a": "a"})
	names := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("dir/file%04d.go", i))
		}
		return out
	}
	for _, tc := range []struct {
		number, n, listed, requests int
		complete                    bool
	}{
		{1, 250, 250, 3, true},
		{2, 2999, 2999, 30, true},
		{3, 3000, 3000, 30, false},
		{4, 3500, 3000, 30, false},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			f.AddPull(repo, tc.number, head, names(tc.n))
			files, complete, err := c.PullFiles(ctx, repo, tc.number)
			if err != nil || complete != tc.complete || len(files) != tc.listed {
				t.Fatalf("PullFiles = %d files, %v, %v; want %d, %v", len(files), complete, err, tc.listed, tc.complete)
			}
			if !reflect.DeepEqual(files, names(tc.listed)) {
				t.Error("files differ")
			}
			prefix := fmt.Sprintf("/repos/acme/web/pulls/%d/files", tc.number)
			if n := f.Count("GET", prefix); n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
			for _, r := range f.Requests() {
				if r.Path == prefix && !strings.Contains(r.Query, "per_page=100") {
					t.Errorf("request %s?%s is not per_page=100", r.Path, r.Query)
				}
			}
		})
	}
}

func TestTeamMember(t *testing.T) {
	f, _, c := setup(t)
	f.AddTeam("acme", "release", "alice", "bob")
	for _, tc := range []struct {
		team, login string
		want        bool
	}{{"release", "alice", true}, {"release", "mallory", false}, {"nope", "alice", false}} {
		got, err := c.TeamMember(ctx, "acme", tc.team, tc.login)
		if err != nil || got != tc.want {
			t.Errorf("TeamMember(acme, %s, %s) = %v, %v; want %v", tc.team, tc.login, got, err, tc.want)
		}
	}
}

func TestPullsForCommit(t *testing.T) {
	f, _, c := setup(t)
	x := f.Commit(repo, "", map[string]string{"a": "a"})
	y := f.Commit(repo, x, map[string]string{"a": "b"})
	f.AddPull(repo, 5, x, []string{"a"})
	f.AddPull(repo, 6, x, []string{"a"})
	f.AddPull(repo, 7, y, []string{"a"})
	f.ClosePull(repo, 6)
	got, err := c.PullsForCommit(ctx, repo, x)
	if err != nil || !reflect.DeepEqual(got, []int{5}) {
		t.Errorf("PullsForCommit = %v, %v; want [5]", got, err)
	}
	got, err = c.PullsForCommit(ctx, repo, f.Commit(repo, y, map[string]string{"b": "b"}))
	if err != nil || len(got) != 0 {
		t.Errorf("PullsForCommit of a commit with no pull request = %v, %v", got, err)
	}
}

func TestHeadAndPermission(t *testing.T) {
	f, _, c := setup(t)
	x := f.Commit(repo, "", map[string]string{"a": "a"})
	f.SetBranch(repo, "main", x)
	if got, err := c.Head(ctx, repo, "main"); err != nil || got != x {
		t.Errorf("Head(main) = %s, %v; want %s", got, err, x)
	}
	// A branch with a slash, its head a commit after x; a commit by SHA;
	// a branch that does not exist.
	y := f.Commit(repo, x, map[string]string{"b": "b"})
	f.SetBranch(repo, "release/1.x", y)
	if got, err := c.Head(ctx, repo, "release/1.x"); err != nil || got != y {
		t.Errorf("Head(release/1.x) = %s, %v; want %s", got, err, y)
	}
	if got, err := c.Head(ctx, repo, x); err != nil || got != x {
		t.Errorf("Head(%s) = %s, %v", x, got, err)
	}
	var nf *NotFoundError
	if _, err := c.Head(ctx, repo, "nowhere"); !errors.As(err, &nf) {
		t.Errorf("Head(nowhere): %v; want a NotFoundError", err)
	}
	f.SetPermission(repo, "alice", "maintain")
	for login, want := range map[string]string{"alice": "write", "mallory": "none"} {
		if got, err := c.Permission(ctx, repo, login); err != nil || got != want {
			t.Errorf("Permission(%s) = %s, %v; want %s", login, got, err, want)
		}
	}
}

func TestRetryableErrors(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", pipelineCommit)
	trees := "/repos/acme/web/git/trees/"
	check := func(name string, err error, after time.Duration) {
		t.Helper()
		var re *RetryableError
		if !errors.As(err, &re) {
			t.Fatalf("%s: %v (%T), want a RetryableError", name, err, err)
		}
		if d := re.After - after; d < -2*time.Second || d > 0 || (after == 0 && re.After != 0) {
			t.Errorf("%s: After = %s, want about %s", name, re.After, after)
		}
	}

	f.FailNext(trees, 502, 1, nil)
	_, err := c.PipelineFiles(ctx, repo, sha)
	check("502", err, 0)
	if files, err := c.PipelineFiles(ctx, repo, sha); err != nil || len(files) != 3 {
		t.Fatalf("after the 502: %v, %v", files, err)
	}

	f.FailNext(trees, 429, 1, map[string]string{"Retry-After": "7"})
	_, err = c.PipelineFiles(ctx, repo, sha)
	check("429", err, 7*time.Second)

	f.FailNext("/repos/acme/web/compare/", 503, 1, nil)
	_, _, err = c.Changed(ctx, repo, sha, sha, false)
	check("503 on compare", err, 0)
}

// TestRateLimits: the primary limit (403, X-RateLimit-Remaining 0) and a
// secondary one (403 with Retry-After). go-github then refuses further
// calls itself until the wait is over, which stays retryable.
func TestRateLimits(t *testing.T) {
	t.Run("primary", func(t *testing.T) {
		f, _, c := setup(t)
		sha := f.Commit(repo, "", pipelineCommit)
		reset := time.Now().Add(2 * time.Minute).Unix()
		f.FailNext("/repos/", 403, 1, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(reset, 10)})
		_, err := c.PipelineFiles(ctx, repo, sha)
		var re *RetryableError
		if !errors.As(err, &re) || re.After < 110*time.Second || re.After > 2*time.Minute {
			t.Fatalf("err = %v, want a RetryableError after about 2m", err)
		}
		before := len(f.Requests())
		_, err = c.PipelineFiles(ctx, repo, sha)
		if !errors.As(err, &re) || len(f.Requests()) != before {
			t.Errorf("second call: %v, %d requests", err, len(f.Requests())-before)
		}
	})
	t.Run("secondary", func(t *testing.T) {
		f, _, c := setup(t)
		f.FailNext("/orgs/", 403, 1, map[string]string{"Retry-After": "30"})
		_, err := c.TeamMember(ctx, "acme", "release", "alice")
		var re *RetryableError
		if !errors.As(err, &re) || re.After != 30*time.Second {
			t.Fatalf("err = %v, want a RetryableError after 30s", err)
		}
	})
	t.Run("token endpoint", func(t *testing.T) {
		f, _, c := setup(t)
		f.FailNext("/app/", 500, 1, nil)
		_, err := c.TeamMember(ctx, "acme", "release", "alice")
		var re *RetryableError
		if !errors.As(err, &re) {
			t.Fatalf("err = %v (%T), want a RetryableError", err, err)
		}
		if _, err := c.TeamMember(ctx, "acme", "release", "alice"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestInstallationToken(t *testing.T) {
	tokens := "/app/installations/7/access_tokens"
	t.Run("cached", func(t *testing.T) {
		f, _, c := setup(t)
		sha := f.Commit(repo, "", pipelineCommit)
		for range 2 {
			if _, err := c.PipelineFiles(ctx, repo, sha); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.Count("POST", tokens); n != 1 {
			t.Errorf("%d token requests for two calls, want 1", n)
		}
	})
	t.Run("refreshed before expiry", func(t *testing.T) {
		f, _, c := setup(t)
		// ghinstallation refreshes a minute before expiry: a token that
		// lives 62s is fresh for one to two seconds.
		f.SetTokenTTL(62 * time.Second)
		f.AddTeam("acme", "release", "alice")
		for range 2 {
			if _, err := c.TeamMember(ctx, "acme", "release", "alice"); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.Count("POST", tokens); n != 1 {
			t.Errorf("%d token requests before expiry, want 1", n)
		}
		time.Sleep(2100 * time.Millisecond)
		if ok, err := c.TeamMember(ctx, "acme", "release", "alice"); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if n := f.Count("POST", tokens); n != 2 {
			t.Errorf("%d token requests after expiry, want 2", n)
		}
	})
}

func TestLoadApp(t *testing.T) {
	f := githubfake.New(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("app.pem", f.PrivateKey)
	app, err := LoadApp(42, good, "")
	if err != nil || app.ID != 42 || string(app.PrivateKey) != string(f.PrivateKey) {
		t.Fatalf("LoadApp = %+v, %v", app, err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	for _, tc := range []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "nope.pem"), "reading the GitHub App's private key"},
		{"not PEM", write("junk.pem", []byte("hello")), "not a PEM file"},
		{"EC key", write("ec.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "not an RSA private key"},
		{"certificate", write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), "not an RSA private key"},
	} {
		if _, err := LoadApp(42, tc.file, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := (&App{ID: 1, PrivateKey: []byte("junk")}).Installation(1); err == nil {
		t.Error("an App with a bad key gave a client")
	}
}

func TestBlobCacheBounds(t *testing.T) {
	c := newBlobCache(3, 10)
	c.put("a", []byte("1234"))
	c.put("b", []byte("1234"))
	c.get("a") // b is now the least recently used
	c.put("c", []byte("1234"))
	if _, ok := c.get("b"); ok || c.len() != 2 {
		t.Errorf("byte bound: b kept, %d entries", c.len())
	}
	c.put("d", []byte("1"))
	c.put("e", []byte("1"))
	if c.len() != 3 {
		t.Errorf("entry bound: %d entries", c.len())
	}
	c.put("huge", make([]byte, 11))
	if _, ok := c.get("huge"); ok {
		t.Error("an entry larger than the cache was kept")
	}
}

// RepoReadToken asks GitHub for a token limited to one repository and to
// reading its contents; a repository the installation does not have, or a
// permission it lacks, is refused (GitHub's 422), saying so.
func TestRepoReadToken(t *testing.T) {
	f, app, _ := setup(t)
	tok, exp, err := app.RepoReadToken(ctx, 7, repo)
	if err != nil {
		t.Fatal(err)
	}
	inst, repos, perms, ok := f.TokenScope(tok)
	if !ok || inst != 7 || !reflect.DeepEqual(repos, []string{"web"}) || !reflect.DeepEqual(perms, map[string]string{"contents": "read"}) {
		t.Errorf("the token: installation %d, repositories %v, permissions %v", inst, repos, perms)
	}
	if d := time.Until(exp); d < 50*time.Minute || d > time.Hour {
		t.Errorf("the token expires in %v; GitHub's last an hour", d)
	}
	if _, _, err := app.RepoReadToken(ctx, 7, "acme/elsewhere"); err == nil || !strings.Contains(err.Error(), "a read-only token for acme/elsewhere") {
		t.Errorf("a token for a repository the installation does not have: %v", err)
	}
	f.SetPermissions(7, map[string]string{"metadata": "read", "checks": "write"})
	if _, _, err := app.RepoReadToken(ctx, 7, repo); err == nil || !strings.Contains(err.Error(), "422") {
		t.Errorf("a token for contents the installation may not read: %v", err)
	}
}
