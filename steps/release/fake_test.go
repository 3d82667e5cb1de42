package release

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGitHub speaks the part of GitHub's REST API (version 2022-11-28)
// the release step uses, with the paths, methods, request bodies and
// response shapes of GitHub's REST reference (docs.github.com/rest: git
// refs, git tags, releases, app installation access tokens). A request
// outside that part, or one that breaks its rules, fails the test.
type fakeGitHub struct {
	t      *testing.T
	prefix string // "/api/v3" on an Enterprise server
	web    string // the web URL in html_url fields
	owner  string
	repo   string

	token     string         // the token it accepts, as Bearer
	appID     int64          // GitHub App: id, installation and key
	install   int64          //
	appKey    *rsa.PublicKey //
	instToken string         // the installation token it hands out
	readOnly  bool           // writes get 403

	mu       sync.Mutex
	commits  map[string]bool
	refs     map[string]gitObject // "refs/tags/v1" → object
	tagObjs  map[string]gitObject // annotated tag sha → object
	releases []*fakeRelease
	nextID   int64
	calls    []string // "METHOD path?query", without the prefix

	// hang makes the next requests with these "METHOD path" keys do
	// their work, then answer nothing until the client gives up.
	hang map[string]int
	// before runs before a request with this "METHOD path" key is
	// handled, with the lock held, to stage what happens meanwhile.
	before map[string]func()
	// limit answers the next requests with this key with a secondary
	// rate limit asking to wait retryAfter seconds.
	limit      map[string]int
	retryAfter int
	// primary answers the next requests with this key as GitHub does
	// when the credentials' hourly limit is used up, until reset.
	primary map[string]int
	reset   time.Time

	srv *httptest.Server
}

type gitObject struct {
	Type string `json:"type"`
	SHA  string `json:"sha"`
}

type fakeRelease struct {
	id                int64
	tag, target, name string
	body              string
	draft, pre        bool
	created           time.Time
}

const (
	commitA = "aa218f56b14c9653891f9e74264a383fa43fefbd"
	commitB = "7638417db6d59f3c431d3e1f261cc637155684cd"
)

func newFake(t *testing.T, prefix string) *fakeGitHub {
	f := &fakeGitHub{
		t: t, prefix: prefix, owner: "acme", repo: "web", token: "ghp_good",
		commits: map[string]bool{commitA: true, commitB: true},
		refs:    map[string]gitObject{}, tagObjs: map[string]gitObject{},
		nextID: 1000, hang: map[string]int{}, before: map[string]func(){}, limit: map[string]int{}, primary: map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.web = "https://github.com"
	if prefix != "" {
		f.web = f.srv.URL
	}
	return f
}

func (f *fakeGitHub) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeGitHub) Releases() []fakeRelease {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRelease
	for _, r := range f.releases {
		out = append(out, *r)
	}
	return out
}

func (f *fakeGitHub) apiURL() string { return f.srv.URL + f.prefix + "/" }

// writeJSON answers with a JSON body, as GitHub does.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func githubError(w http.ResponseWriter, code int, msg, doc string) {
	writeJSON(w, code, map[string]any{"message": msg, "documentation_url": doc, "status": strconv.Itoa(code)})
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, f.prefix+"/")
	if !ok {
		f.t.Errorf("request %s %s outside the API root %s/", r.Method, r.URL.Path, f.prefix)
		githubError(w, 404, "Not Found", "https://docs.github.com/rest")
		return
	}
	path = "/" + path
	key := r.Method + " " + path
	f.mu.Lock()
	call := key
	if r.URL.RawQuery != "" {
		call += "?" + r.URL.RawQuery
	}
	f.calls = append(f.calls, call)
	if fn := f.before[key]; fn != nil {
		delete(f.before, key)
		fn()
	}
	if f.limit[key] > 0 {
		f.limit[key]--
		f.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		githubError(w, 403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
		return
	}
	if f.primary[key] > 0 {
		f.primary[key]--
		f.mu.Unlock()
		w.Header().Set("X-RateLimit-Limit", "5000")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Used", "5000")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(f.reset.Unix(), 10))
		w.Header().Set("X-RateLimit-Resource", "core")
		githubError(w, 403, "API rate limit exceeded for user ID 1.",
			"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit")
		return
	}
	hang := f.hang[key] > 0
	if hang {
		f.hang[key]--
	}
	f.mu.Unlock()

	if !strings.HasPrefix(r.Header.Get("Accept"), "application/vnd.github") {
		f.t.Errorf("%s: Accept %q, want GitHub's media type", key, r.Header.Get("Accept"))
	}
	if strings.HasPrefix(path, "/app/") {
		f.accessToken(w, r, path)
		return
	}
	if v := r.Header.Get("X-GitHub-Api-Version"); v != "2022-11-28" {
		f.t.Errorf("%s: X-GitHub-Api-Version %q, want 2022-11-28", key, v)
	}
	if !f.authorized(r) {
		githubError(w, 401, "Bad credentials", "https://docs.github.com/rest")
		return
	}
	rest, ok := strings.CutPrefix(path, "/repos/"+f.owner+"/"+f.repo+"/")
	if !ok {
		githubError(w, 404, "Not Found", "https://docs.github.com/rest")
		return
	}
	if r.Method == http.MethodPost && f.readOnly {
		githubError(w, 403, "Resource not accessible by personal access token", "https://docs.github.com/rest")
		return
	}

	f.mu.Lock()
	code, body := f.route(key, r, rest)
	f.mu.Unlock()
	if hang {
		// The work is done; the answer is lost.
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			f.t.Errorf("%s: the client waited 10s for an answer that never comes", key)
		}
		return
	}
	if p, ok := body.(*paged); ok && p.next {
		w.Header().Set("Link", fmt.Sprintf(`<%s?per_page=%d&page=%d>; rel="next"`, p.base, p.per, p.page+1))
	}
	writeJSON(w, code, body)
}

func (f *fakeGitHub) authorized(r *http.Request) bool {
	a := r.Header.Get("Authorization")
	switch {
	case f.token != "" && a == "Bearer "+f.token:
		return true
	case f.instToken != "" && a == "token "+f.instToken:
		return true
	}
	return false
}

// route handles a repository request with the lock held.
func (f *fakeGitHub) route(key string, r *http.Request, rest string) (int, any) {
	const (
		docRef     = "https://docs.github.com/rest/git/refs#get-a-reference"
		docCreate  = "https://docs.github.com/rest/git/refs#create-a-reference"
		docTag     = "https://docs.github.com/rest/git/tags#get-a-tag"
		docRelTag  = "https://docs.github.com/rest/releases/releases#get-a-release-by-tag-name"
		docRelPost = "https://docs.github.com/rest/releases/releases#create-a-release"
	)
	notFound := func(doc string) (int, any) {
		return 404, map[string]any{"message": "Not Found", "documentation_url": doc, "status": "404"}
	}
	switch {
	case r.Method == "GET" && strings.HasPrefix(rest, "git/ref/tags/"):
		name := "refs/" + strings.TrimPrefix(rest, "git/ref/")
		o, ok := f.refs[name]
		if !ok {
			return notFound(docRef)
		}
		return 200, f.refJSON(name, o)

	case r.Method == "GET" && strings.HasPrefix(rest, "git/tags/"):
		sha := strings.TrimPrefix(rest, "git/tags/")
		o, ok := f.tagObjs[sha]
		if !ok {
			return notFound(docTag)
		}
		return 200, map[string]any{
			"node_id": "TAG_" + sha, "tag": "annotated", "sha": sha,
			"url":     f.srv.URL + f.prefix + "/repos/acme/web/git/tags/" + sha,
			"message": "release", "tagger": map[string]any{"name": "Ann", "email": "ann@example.com", "date": "2026-01-02T03:04:05Z"},
			"object":       map[string]any{"type": o.Type, "sha": o.SHA, "url": f.srv.URL + "/repos/acme/web/git/commits/" + o.SHA},
			"verification": map[string]any{"verified": false, "reason": "unsigned", "signature": nil, "payload": nil, "verified_at": nil},
		}

	case key == "POST /repos/"+f.owner+"/"+f.repo+"/git/refs":
		var in struct {
			Ref *string `json:"ref"`
			SHA *string `json:"sha"`
		}
		if !f.decode(key, r, &in) || in.Ref == nil || in.SHA == nil {
			f.t.Errorf("%s: ref and sha are required", key)
			return 422, map[string]any{"message": "Invalid request.", "documentation_url": docCreate, "status": "422"}
		}
		if !strings.HasPrefix(*in.Ref, "refs/") || strings.Count(*in.Ref, "/") < 2 {
			f.t.Errorf("%s: ref %q must start with refs/ and have two slashes", key, *in.Ref)
			return 422, map[string]any{"message": "Reference name is invalid", "documentation_url": docCreate, "status": "422"}
		}
		if _, ok := f.refs[*in.Ref]; ok {
			return 422, map[string]any{"message": "Reference already exists", "documentation_url": docCreate, "status": "422"}
		}
		if !f.commits[*in.SHA] {
			return 422, map[string]any{"message": "Object does not exist", "documentation_url": docCreate, "status": "422"}
		}
		o := gitObject{Type: "commit", SHA: *in.SHA}
		f.refs[*in.Ref] = o
		return 201, f.refJSON(*in.Ref, o)

	case r.Method == "GET" && strings.HasPrefix(rest, "releases/tags/"):
		tag := strings.TrimPrefix(rest, "releases/tags/")
		for _, rel := range f.releases {
			if rel.tag == tag && !rel.draft {
				return 200, f.releaseJSON(rel)
			}
		}
		return notFound(docRelTag)

	case key == "GET /repos/"+f.owner+"/"+f.repo+"/releases":
		q := r.URL.Query()
		per, _ := strconv.Atoi(q.Get("per_page"))
		if per <= 0 || per > 100 {
			per = 30
		}
		page, _ := strconv.Atoi(q.Get("page"))
		if page <= 0 {
			page = 1
		}
		// Newest first, as GitHub lists them.
		sorted := slices.Clone(f.releases)
		slices.Reverse(sorted)
		var out []any
		for i := (page - 1) * per; i < len(sorted) && i < page*per; i++ {
			out = append(out, f.releaseJSON(sorted[i]))
		}
		if out == nil {
			out = []any{}
		}
		return 200, &paged{items: out, next: page*per < len(sorted), page: page, per: per, base: f.srv.URL + r.URL.Path}

	case key == "POST /repos/"+f.owner+"/"+f.repo+"/releases":
		var in struct {
			TagName                *string `json:"tag_name"`
			TargetCommitish        *string `json:"target_commitish"`
			Name                   *string `json:"name"`
			Body                   *string `json:"body"`
			Draft                  *bool   `json:"draft"`
			Prerelease             *bool   `json:"prerelease"`
			DiscussionCategoryName *string `json:"discussion_category_name"`
			GenerateReleaseNotes   *bool   `json:"generate_release_notes"`
			MakeLatest             *string `json:"make_latest"`
		}
		if !f.decode(key, r, &in) || in.TagName == nil {
			f.t.Errorf("%s: tag_name is required", key)
			return 422, map[string]any{"message": "Invalid request.", "documentation_url": docRelPost, "status": "422"}
		}
		rel := &fakeRelease{id: f.nextID, tag: *in.TagName, created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		f.nextID++
		if in.TargetCommitish != nil {
			rel.target = *in.TargetCommitish
		}
		rel.draft = in.Draft != nil && *in.Draft
		rel.pre = in.Prerelease != nil && *in.Prerelease
		if in.Body != nil {
			rel.body = *in.Body
		}
		if in.Name != nil {
			rel.name = *in.Name
		}
		if in.GenerateReleaseNotes != nil && *in.GenerateReleaseNotes {
			rel.body += "## What's Changed\n* generated by the fake\n"
			if rel.name == "" {
				rel.name = rel.tag
			}
		}
		if !rel.draft {
			for _, x := range f.releases {
				if x.tag == rel.tag && !x.draft {
					return 422, map[string]any{
						"message": "Validation Failed", "documentation_url": docRelPost, "status": "422",
						"errors": []any{map[string]any{"resource": "Release", "code": "already_exists", "field": "tag_name"}},
					}
				}
			}
		}
		f.releases = append(f.releases, rel)
		return 201, f.releaseJSON(rel)
	}
	f.t.Errorf("unexpected request %s", key)
	return notFound("https://docs.github.com/rest")
}

// paged is a list answer with GitHub's Link header.
type paged struct {
	items     []any
	next      bool
	page, per int
	base      string
}

func (p *paged) MarshalJSON() ([]byte, error) { return json.Marshal(p.items) }

func (f *fakeGitHub) decode(key string, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("%s: Content-Type %q, want application/json", key, ct)
	}
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		f.t.Errorf("%s: body is not the documented request: %v", key, err)
		return false
	}
	return true
}

func (f *fakeGitHub) refJSON(name string, o gitObject) map[string]any {
	kind := "commits"
	if o.Type == "tag" {
		kind = "tags"
	}
	return map[string]any{
		"ref": name, "node_id": "REF_" + name,
		"url": f.srv.URL + f.prefix + "/repos/acme/web/git/" + name,
		"object": map[string]any{"type": o.Type, "sha": o.SHA,
			"url": f.srv.URL + f.prefix + "/repos/acme/web/git/" + kind + "/" + o.SHA},
	}
}

func (f *fakeGitHub) releaseJSON(r *fakeRelease) map[string]any {
	api := f.srv.URL + f.prefix + "/repos/acme/web"
	html := f.web + "/acme/web/releases/tag/" + r.tag
	var published any = r.created.Format(time.RFC3339)
	if r.draft {
		html = f.web + "/acme/web/releases/tag/untagged-" + strconv.FormatInt(r.id, 16)
		published = nil
	}
	id := strconv.FormatInt(r.id, 10)
	return map[string]any{
		"url": api + "/releases/" + id, "html_url": html,
		"assets_url":  api + "/releases/" + id + "/assets",
		"upload_url":  f.srv.URL + "/api/uploads/repos/acme/web/releases/" + id + "/assets{?name,label}",
		"tarball_url": api + "/tarball/" + r.tag, "zipball_url": api + "/zipball/" + r.tag,
		"id": r.id, "node_id": "RE_" + id, "tag_name": r.tag, "target_commitish": r.target,
		"name": r.name, "body": r.body, "draft": r.draft, "prerelease": r.pre,
		"created_at": r.created.Format(time.RFC3339), "published_at": published,
		"author": map[string]any{"login": "sluice-bot", "id": 1, "node_id": "U_1", "type": "Bot",
			"avatar_url": "https://avatars.githubusercontent.com/u/1", "url": f.srv.URL + "/users/sluice-bot",
			"html_url": f.web + "/sluice-bot", "site_admin": false},
		"assets": []any{},
	}
}

// accessToken is POST /app/installations/{id}/access_tokens: it checks the
// app's JWT (RS256, signed with the app's key, iss = app id) and hands out
// an installation token.
func (f *fakeGitHub) accessToken(w http.ResponseWriter, r *http.Request, path string) {
	const doc = "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
	id, ok := strings.CutPrefix(path, "/app/installations/")
	id, ok2 := strings.CutSuffix(id, "/access_tokens")
	if r.Method != "POST" || !ok || !ok2 {
		f.t.Errorf("unexpected request %s %s", r.Method, path)
		githubError(w, 404, "Not Found", doc)
		return
	}
	jwt, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || f.appKey == nil || f.checkJWT(jwt) != nil {
		if ok && f.appKey != nil {
			f.t.Logf("JWT rejected: %v", f.checkJWT(jwt))
		}
		githubError(w, 401, "A JSON web token could not be decoded", doc)
		return
	}
	if id != strconv.FormatInt(f.install, 10) {
		githubError(w, 404, "Not Found", doc)
		return
	}
	writeJSON(w, 201, map[string]any{
		"token": f.instToken, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"permissions": map[string]any{"contents": "write", "metadata": "read"}, "repository_selection": "selected",
	})
}

func (f *fakeGitHub) checkJWT(tok string) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%d parts", len(parts))
	}
	var head struct{ Alg string }
	var claims struct {
		Iss      string
		Iat, Exp int64
	}
	for i, v := range []any{&head, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return err
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	now := time.Now().Unix()
	switch {
	case head.Alg != "RS256":
		return fmt.Errorf("alg %q", head.Alg)
	case rsa.VerifyPKCS1v15(f.appKey, crypto.SHA256, sum[:], sig) != nil:
		return fmt.Errorf("bad signature")
	case claims.Iss != strconv.FormatInt(f.appID, 10):
		return fmt.Errorf("iss %q", claims.Iss)
	case claims.Exp <= now || claims.Iat > now || claims.Exp-claims.Iat > 600:
		return fmt.Errorf("iat %d exp %d", claims.Iat, claims.Exp)
	}
	return nil
}
