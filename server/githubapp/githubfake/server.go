// Package githubfake is a fake GitHub for tests of the GitHub App client:
// an HTTP server with the part of GitHub's REST API that Sluice's server
// uses, in-memory repositories built of real git objects (blob, tree and
// commit names computed as git computes them), an App with a generated
// key, installation tokens, pull requests, teams and collaborators, and
// fault injection for retry tests. It also takes the writes a CI system
// makes: check runs (with GitHub's limits on output, annotations and
// actions, and annotations appended across updates), commit statuses and
// comments, which tests read back with CheckRuns, Statuses and Comments.
// Signing in with GitHub through the App (oauth.go) works too: github.com's
// authorize and access_token endpoints, at the fake's root, and the user
// token's GET /user and GET /user/installations.
//
// Every request and every response is validated against GitHub's own
// OpenAPI description (Spec); a mismatch is a violation that fails the
// test. Beyond the description the fake is strict the way GitHub is:
// /app/ calls need an App JWT (RS256, signed by the App's key, issuer the
// App ID, at most 10 minutes long), repository calls an installation token
// of an installation that has the repository; every call needs a GitHub
// JSON media type in Accept and a User-Agent.
package githubfake

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/sluice-ci/sluice/internal/testing/apicheck"
)

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string // unescaped, like /repos/acme/web/git/blobs/<sha>
	Query  string // raw query
	// Status is the status the fake answered.
	Status int
}

// Server is a running fake GitHub.
type Server struct {
	// AppID and PrivateKey (PEM, PKCS#1) are the App's identity.
	AppID      int64
	PrivateKey []byte

	t      testing.TB
	srv    *httptest.Server
	check  *apicheck.Checker
	public *rsa.PublicKey

	mu            sync.Mutex
	hookURL       string                      // where the App's events go (deliveries.go)
	hookSecret    string                      // and the secret that signs them
	deliveries    []Delivery                  // the attempts to deliver them, oldest first
	repos         map[string]*repo            // by full name
	installations map[int64]string            // installation ID -> account (owner)
	perms         map[int64]map[string]string // installation ID -> permissions, when not the default
	forks         map[string]*repo            // the head repositories of fork pull requests
	tokens        map[string]token
	tokenTTL      time.Duration
	treeLimit     int
	teams         map[string]map[string]bool // "org/slug" -> members
	faults        []*fault
	requests      []Request
	violations    []string
	nextID        int64
	// checkChanged is closed, and replaced, whenever a check run changes:
	// WaitCheckRun waits on it.
	checkChanged chan struct{}
	// oauth is signing in with GitHub (oauth.go).
	oauth *oauthState

	// malform, when set, rewrites each response body before it is
	// validated: for tests of the validation itself.
	malform func(operation string, body []byte) []byte
}

type repo struct {
	id                 int64
	owner, name        string
	installation       int64
	git                *store
	branches           map[string]string
	pulls              map[int]*pull
	issues             map[int]bool      // issue numbers (pull requests are in pulls)
	perms              map[string]string // login -> admin, maintain, write, triage, read
	defaultBranch      string
	createdAt, updated time.Time
	fork               bool // a fork pull request's head repository

	checkRuns []*checkRun        // in creation order
	statuses  []*commitStatus    // in creation order
	comments  map[int][]*comment // by issue or pull request number
}

type pull struct {
	number   int
	id       int64
	head     string // head SHA
	headRef  string
	headRepo *repo // nil: the pull request's own repository
	baseRef  string
	baseSHA  string
	files    []string
	open     bool
}

type token struct {
	installation int64
	expires      time.Time
	perms        map[string]string
	// repos limits the token to these repositories (names without the
	// owner) when it was asked for so; empty: every one of the
	// installation's.
	repos []string
}

type fault struct {
	prefix  string
	status  int
	left    int
	headers map[string]string
}

// New starts a fake GitHub with a new App (ID 1, a 2048-bit key); every
// violation of GitHub's API description fails t, and the server stops when
// the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	doc, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		AppID:         1,
		PrivateKey:    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		t:             t,
		public:        &key.PublicKey,
		repos:         map[string]*repo{},
		installations: map[int64]string{},
		tokens:        map[string]token{},
		tokenTTL:      time.Hour,
		treeLimit:     100000,
		teams:         map[string]map[string]bool{},
		perms:         map[int64]map[string]string{},
		forks:         map[string]*repo{},
		nextID:        1000,
		checkChanged:  make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	if s.check, err = apicheck.New("GitHub", doc, s.srv.URL); err != nil {
		t.Fatal(err)
	}
	return s
}

// URL returns the API root, like https://api.github.com/ (with the slash).
func (s *Server) URL() string { return s.srv.URL + "/" }

// AddRepo adds an empty repository "owner/name", with default branch main,
// that installation installationID of the App can read. An installation
// belongs to the account of the first repository added to it.
func (s *Server) AddRepo(fullName string, installationID int64) {
	s.t.Helper()
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		s.t.Fatalf("githubfake: AddRepo(%q): not owner/name", fullName)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if acct, ok := s.installations[installationID]; ok && acct != owner {
		s.t.Fatalf("githubfake: installation %d is on %s, not %s", installationID, acct, owner)
	}
	s.installations[installationID] = owner
	s.nextID++
	s.repos[fullName] = &repo{
		id: s.nextID, owner: owner, name: name, installation: installationID, git: newStore(),
		branches: map[string]string{}, pulls: map[int]*pull{}, issues: map[int]bool{}, perms: map[string]string{},
		comments: map[int][]*comment{}, defaultBranch: "main", createdAt: fakeEpoch, updated: fakeEpoch,
	}
}

func (s *Server) repo(fullName string) *repo {
	s.t.Helper()
	r := s.repos[fullName]
	if r == nil {
		s.t.Fatalf("githubfake: no repository %s (AddRepo it first)", fullName)
	}
	return r
}

// Commit makes a commit in repo on parent ("" for a first commit) that
// writes files (path -> content; the content Deleted removes a file) and
// returns its SHA. Blob, tree and commit SHAs are git's.
func (s *Server) Commit(repo, parent string, files map[string]string) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.repo(repo).git.commit(parent, files)
	if err != nil {
		s.t.Fatalf("githubfake: Commit in %s: %v", repo, err)
	}
	return c.sha
}

// CommitMessage is Commit with the commit's message.
func (s *Server) CommitMessage(repo, parent, message string, files map[string]string) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.repo(repo).git.commitMessage(parent, message, files)
	if err != nil {
		s.t.Fatalf("githubfake: CommitMessage in %s: %v", repo, err)
	}
	return c.sha
}

// SetBranch points branch of repo at the commit sha.
func (s *Server) SetBranch(repo, branch, sha string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(repo)
	if r.git.commits[sha] == nil {
		s.t.Fatalf("githubfake: SetBranch(%s, %s): no commit %s", repo, branch, sha)
	}
	r.branches[branch] = sha
}

// AddPull adds an open pull request to repo, from its branch pr-<number>
// at headSHA into main, that changes files (in that order). Its base is
// main's commit when it is added (headSHA when main is not set).
func (s *Server) AddPull(repo string, number int, headSHA string, files []string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addPull(s.repo(repo), number, nil, fmt.Sprintf("pr-%d", number), headSHA, files)
}

// AddForkPull adds an open pull request to repo from a fork: from branch
// headRef of repository headRepo ("owner/name", which the App need not
// see) at headSHA into main, changing files. pulls/get shows the fork as
// head.repo. A test that writes check runs or statuses on headSHA makes
// the commit in repo (GitHub keeps a fork's pull request commits in the
// base repository's network too).
func (s *Server) AddForkPull(repo string, number int, headRepo, headRef, headSHA string, files []string) {
	s.t.Helper()
	owner, name, ok := strings.Cut(headRepo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		s.t.Fatalf("githubfake: AddForkPull(%q): the head repository is not owner/name", headRepo)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repo(repo)
	if headRepo == repo {
		s.t.Fatalf("githubfake: AddForkPull: the head repository %s is the base repository (use AddPull)", headRepo)
	}
	fork := s.forks[headRepo]
	if fork == nil {
		s.nextID++
		fork = newForkRepo(s.nextID, owner, name)
		s.forks[headRepo] = fork
	}
	s.addPull(rp, number, fork, headRef, headSHA, files)
}

func newForkRepo(id int64, owner, name string) *repo {
	return &repo{id: id, owner: owner, name: name, defaultBranch: "main", createdAt: fakeEpoch, updated: fakeEpoch, fork: true}
}

func (s *Server) addPull(rp *repo, number int, headRepo *repo, headRef, headSHA string, files []string) {
	if rp.issues[number] {
		s.t.Fatalf("githubfake: %s/%s#%d is an issue", rp.owner, rp.name, number)
	}
	base := rp.branches[rp.defaultBranch]
	if base == "" {
		base = headSHA
	}
	s.nextID++
	rp.pulls[number] = &pull{number: number, id: s.nextID, head: headSHA, headRef: headRef, headRepo: headRepo,
		baseRef: rp.defaultBranch, baseSHA: base, files: append([]string(nil), files...), open: true}
}

// AddIssue adds an open issue, which comments can be made on, to repo.
func (s *Server) AddIssue(repo string, number int) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repo(repo)
	if rp.pulls[number] != nil {
		s.t.Fatalf("githubfake: %s#%d is a pull request", repo, number)
	}
	rp.issues[number] = true
}

// DefaultPermissions are the permissions of an installation's tokens
// unless SetPermissions changed them: what Sluice's App asks for. Read
// it, do not change it (copy it to give SetPermissions a variant).
var DefaultPermissions = map[string]string{
	"contents": "read", "metadata": "read", "members": "read", "pull_requests": "write",
	"issues": "write", "checks": "write", "statuses": "write",
}

// SetPermissions sets the permissions (like "checks": "write") of the
// tokens installation installationID gets from now on; tokens minted
// before keep theirs, as GitHub's do. Check run writes need checks:write,
// commit statuses statuses:write, comments issues:write (or, on a pull
// request, pull_requests:write), pulls/get pull_requests:read; without
// them the answer is GitHub's 403 "Resource not accessible by
// integration".
func (s *Server) SetPermissions(installationID int64, perms map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]string{}
	for k, v := range perms {
		m[k] = v
	}
	s.perms[installationID] = m
}

// ClosePull closes a pull request.
func (s *Server) ClosePull(repo string, number int) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.repo(repo).pulls[number]
	if p == nil {
		s.t.Fatalf("githubfake: no pull request %s#%d", repo, number)
	}
	p.open = false
}

// AddTeam adds team slug to org with active members.
func (s *Server) AddTeam(org, slug string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]bool{}
	for _, login := range members {
		m[login] = true
	}
	s.teams[org+"/"+slug] = m
}

// SetPermission gives login a role on repo: admin, maintain, write, triage
// or read. Anyone else has none.
func (s *Server) SetPermission(repo, login, role string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo(repo).perms[login] = role
}

// TokenInstallation says which installation an unexpired installation
// token was minted for: what a git server of the fake's repositories
// checks a fetch's x-access-token password against, as GitHub's does.
func (s *Server) TokenInstallation(tok string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok || time.Now().After(t.expires) {
		return 0, false
	}
	return t.installation, true
}

// SetTokenTTL sets how long installation tokens minted from now on last
// (GitHub's is an hour).
func (s *Server) SetTokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenTTL = d
}

// SetTreeLimit sets how many entries a tree listing holds before GitHub
// cuts it and sets truncated (GitHub's is 100,000 entries or 7 MB).
func (s *Server) SetTreeLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.treeLimit = n
}

// FailNext makes the next n requests whose path starts with pathPrefix
// fail with status and the extra headers (like Retry-After), before
// authentication, with a body shaped as GitHub's: a 403 or 429 with
// Retry-After reads as a secondary rate limit, a 403 with
// X-RateLimit-Remaining 0 as the primary one.
func (s *Server) FailNext(pathPrefix string, status, n int, headers map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{prefix: pathPrefix, status: status, left: n, headers: headers})
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count returns how many requests so far had method and a path starting
// with pathPrefix.
func (s *Server) Count(method, pathPrefix string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && strings.HasPrefix(r.Path, pathPrefix) {
			n++
		}
	}
	return n
}

// Violations returns the violations so far; each has failed the test.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

func (s *Server) violation(err error) {
	s.mu.Lock()
	s.violations = append(s.violations, err.Error())
	s.mu.Unlock()
	s.t.Errorf("fake GitHub: %v", err)
}

// response is what a handler answers.
type response struct {
	status int
	header http.Header
	body   any
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/login/oauth/") {
		s.serveOAuth(w, r) // github.com's, not the REST API's
		return
	}
	// A request is recorded before its response is sent, so that a client
	// that has its answer sees it in Requests.
	record := func(status int) {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: status})
		s.mu.Unlock()
	}
	in, err := s.check.Request(r)
	var refuse *response
	if err != nil {
		// A check run write beyond GitHub's size limits (which the
		// description states as maxItems and maxLength) is no client
		// bug: data can exceed them, and GitHub answers 422.
		res, ok := s.beyondLimits(r, in)
		if !ok {
			s.violation(err)
			record(http.StatusBadRequest)
			writeJSON(w, http.StatusBadRequest, nil, apiError("Problems parsing JSON"))
			return
		}
		refuse = &res
	}
	res := s.handle(r, in, refuse)
	body, err := json.Marshal(res.body)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	malform := s.malform
	s.mu.Unlock()
	if malform != nil {
		body = malform(in.Route.Operation.OperationID, body)
	}
	h := res.header
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Api-Version-Selected", apiVersion)
	for k, v := range map[string]string{"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999", "X-RateLimit-Used": "1", "X-RateLimit-Resource": "core",
		"X-RateLimit-Reset": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)} {
		if h.Get(k) == "" {
			h.Set(k, v)
		}
	}
	if err := s.validateResponse(in, res.status, h, body); err != nil {
		s.violation(err)
	}
	record(res.status)
	for k, v := range h {
		w.Header()[k] = v
	}
	w.WriteHeader(res.status)
	w.Write(body)
}

// validateResponse checks a response against the operation's declared
// responses; one with a status the description does not declare (GitHub
// sends 401, 429 and 5xx to any operation) is checked as a basic-error.
func (s *Server) validateResponse(in *openapi3filter.RequestValidationInput, status int, h http.Header, body []byte) error {
	op := in.Route.Operation
	if op.Responses.Status(status) != nil || op.Responses.Default() != nil {
		return s.check.Response(in, status, h, body)
	}
	if status < 400 {
		return fmt.Errorf("response %d to %s %s (%s): the description declares no such status", status, in.Request.Method, in.Request.URL.Path, op.OperationID)
	}
	var x any
	if err := json.Unmarshal(body, &x); err != nil {
		return fmt.Errorf("response %d to %s %s is not JSON: %v", status, in.Request.Method, in.Request.URL.Path, err)
	}
	if err := s.check.Schema("basic-error").VisitJSON(x); err != nil {
		return fmt.Errorf("response %d to %s %s is not GitHub's basic-error: %v", status, in.Request.Method, in.Request.URL.Path, err)
	}
	return nil
}

// GitHub's limits on a check run write, which its description states as
// maxLength and maxItems.
const (
	maxOutputChars   = 65535 // output.summary and output.text
	maxAnnotations   = 50    // per request
	maxActions       = 3
	maxActionLabel   = 20
	maxActionDesc    = 40
	maxActionID      = 20
	maxAnnotTitle    = 255
	maxAnnotMessage  = 64 << 10 // bytes: message and raw_details
	maxStatusDesc    = 140
	maxStatuses      = 1000 // per SHA and context
	maxCommentChars  = 65536
	checkRunDocs     = "https://docs.github.com/rest/checks/runs"
	invalidRequest   = "Invalid request.\n\n"
	resourceNotAllow = "Resource not accessible by integration"
)

// beyondLimits answers a check run write that the description refuses
// only for exceeding GitHub's limits (too many annotations or actions, a
// summary, text or action field too long) as GitHub does: 422 "Invalid
// request." with GitHub's wording. It checks that the same request cut to
// the limits is valid; ok is false when it is not, or when the request is
// not a check run write over a limit: then the request is a violation.
func (s *Server) beyondLimits(r *http.Request, in *openapi3filter.RequestValidationInput) (res response, ok bool) {
	if in == nil || in.Route == nil || in.Route.Operation == nil {
		return response{}, false
	}
	if op := in.Route.Operation.OperationID; op != "checks/create" && op != "checks/update" {
		return response{}, false
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return response{}, false
	}
	var problems []string
	cut := func(obj map[string]any, key string, limit int) {
		if v, ok := obj[key].(string); ok {
			if n := utf8.RuneCountInString(v); n > limit {
				problems = append(problems, fmt.Sprintf("Only %d characters are allowed; %d were supplied.", limit, n))
				obj[key] = string([]rune(v)[:limit])
			}
		}
	}
	items := func(obj map[string]any, key string, limit int) []any {
		list, _ := obj[key].([]any)
		if len(list) > limit {
			problems = append(problems, fmt.Sprintf("No more than %d items are allowed; %d were supplied.", limit, len(list)))
			list = list[:limit]
			obj[key] = list
		}
		return list
	}
	if out, ok := m["output"].(map[string]any); ok {
		cut(out, "summary", maxOutputChars)
		cut(out, "text", maxOutputChars)
		items(out, "annotations", maxAnnotations)
	}
	for _, a := range items(m, "actions", maxActions) {
		if action, ok := a.(map[string]any); ok {
			cut(action, "label", maxActionLabel)
			cut(action, "description", maxActionDesc)
			cut(action, "identifier", maxActionID)
		}
	}
	if len(problems) == 0 {
		return response{}, false
	}
	within, _ := json.Marshal(m)
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(within))
	r2.ContentLength = int64(len(within))
	if _, err := s.check.Request(r2); err != nil {
		return response{}, false
	}
	res = errorResponse(http.StatusUnprocessableEntity, invalidRequest+strings.Join(problems, "\n"))
	res.body.(map[string]string)["documentation_url"] = checkRunDocs
	return res, true
}

const apiVersion = "2022-11-28"

// mediaType is a GitHub JSON media type: application/json,
// application/vnd.github+json, application/vnd.github.v3+json or a
// preview type like application/vnd.github.groot-preview+json.
var mediaType = regexp.MustCompile(`^application/(json|vnd\.github(\.[a-z0-9-]+)*(\+json)?)$`)

// handle answers a request; refuse, when not nil, is the answer to an
// authenticated request that GitHub's validation refuses.
func (s *Server) handle(r *http.Request, in *openapi3filter.RequestValidationInput, refuse *response) response {
	// Faults come first, as a load balancer's or a rate limiter's would.
	s.mu.Lock()
	for _, f := range s.faults {
		if f.left > 0 && strings.HasPrefix(r.URL.Path, f.prefix) {
			f.left--
			s.mu.Unlock()
			return faultResponse(f)
		}
	}
	s.mu.Unlock()

	// Headers every GitHub client sends.
	accepts := r.Header.Values("Accept")
	if len(accepts) == 0 {
		s.violation(fmt.Errorf("%s %s has no Accept header; GitHub's clients send application/vnd.github+json", r.Method, r.URL.Path))
		return errorResponse(http.StatusUnsupportedMediaType, "Unsupported 'Accept' header")
	}
	for _, a := range accepts {
		for _, one := range strings.Split(a, ",") {
			if mt := strings.TrimSpace(strings.Split(one, ";")[0]); !mediaType.MatchString(mt) {
				s.violation(fmt.Errorf("%s %s accepts %q, not a GitHub JSON media type", r.Method, r.URL.Path, a))
				return errorResponse(http.StatusUnsupportedMediaType, "Unsupported 'Accept' header")
			}
		}
	}
	if r.Header.Get("User-Agent") == "" {
		s.violation(fmt.Errorf("%s %s has no User-Agent; GitHub refuses such requests", r.Method, r.URL.Path))
		return errorResponse(http.StatusForbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header")
	}
	if v := r.Header.Get("X-GitHub-Api-Version"); v != "" && v != apiVersion {
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("API version %s is not supported.", v))
	}

	op := in.Route.Operation.OperationID
	p := in.PathParams
	if op == "apps/create-installation-access-token" {
		return s.createToken(r, p["installation_id"])
	}
	if res, ok := s.appOp(op, r, p, r.URL.Query()); ok {
		return res
	}
	if res, ok := s.userOp(op, r); ok {
		return res
	}
	tok, res := s.installationOf(r)
	if tok.installation == 0 {
		return res
	}
	if refuse != nil {
		return *refuse
	}
	inst := tok.installation
	switch op {
	case "teams/get-membership-for-user-in-org":
		return s.teamMembership(inst, p["org"], p["team_slug"], p["username"])
	}
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
	}
	if res, ok := s.writeOp(op, tok, p, r.URL.Query(), body); ok {
		return res
	}
	res, ok := s.repoOp(op, inst, p, r.URL.Query())
	if !ok {
		s.violation(fmt.Errorf("%s %s (%s) is GitHub's but the fake does not implement it", r.Method, r.URL.Path, op))
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	return res
}

// repoOp answers an operation on a repository for installation inst; ok
// is false for an operation the fake does not implement.
func (s *Server) repoOp(op string, inst int64, p map[string]string, q url.Values) (res response, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repos[p["owner"]+"/"+p["repo"]]
	if rp == nil || rp.installation != inst {
		return errorResponse(http.StatusNotFound, "Not Found"), true
	}
	switch op {
	case "git/get-tree":
		return s.getTree(rp, p["tree_sha"], q.Has("recursive")), true
	case "git/get-blob":
		return s.getBlob(rp, p["file_sha"]), true
	case "repos/compare-commits-with-basehead":
		return s.compare(rp, p["basehead"], q), true
	case "pulls/list-files":
		return s.pullFiles(rp, p["pull_number"], q), true
	case "repos/get-commit":
		return s.getCommit(rp, p["ref"]), true
	case "repos/list-commits":
		return s.listCommits(rp, q), true
	case "repos/list-pull-requests-associated-with-commit":
		return s.pullsForCommit(rp, p["commit_sha"], q), true
	case "repos/get-collaborator-permission-level":
		return s.permission(rp, p["username"]), true
	}
	return response{}, false
}

func faultResponse(f *fault) response {
	h := http.Header{}
	for k, v := range f.headers {
		h.Set(k, v)
	}
	var body map[string]string
	switch {
	case f.status == http.StatusForbidden && h.Get("X-RateLimit-Remaining") == "0":
		body = apiError("API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.")
		body["documentation_url"] = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-rate-limits"
	case f.status == http.StatusForbidden || f.status == http.StatusTooManyRequests:
		body = apiError("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.")
		body["documentation_url"] = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
	case f.status >= 500:
		body = apiError("Server Error")
	default:
		body = apiError(http.StatusText(f.status))
	}
	return response{status: f.status, header: h, body: body}
}

func apiError(msg string) map[string]string {
	return map[string]string{"message": msg, "documentation_url": "https://docs.github.com/rest", "status": ""}
}

func errorResponse(status int, msg string) response {
	b := apiError(msg)
	b["status"] = strconv.Itoa(status)
	return response{status: status, body: b}
}

func writeJSON(w http.ResponseWriter, status int, h http.Header, body any) {
	for k, v := range h {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// createToken mints an installation token for an App JWT.
func (s *Server) createToken(r *http.Request, id string) response {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return errorResponse(http.StatusUnauthorized, "A JSON web token could not be decoded")
	}
	if err := s.verifyJWT(bearer, time.Now()); err != nil {
		return errorResponse(http.StatusUnauthorized, err.Error())
	}
	inst, _ := strconv.ParseInt(id, 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.installations[inst]; !ok {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	tok := "ghs_" + randomString(36)
	exp := time.Now().Add(s.tokenTTL).UTC().Truncate(time.Second)
	perms := s.perms[inst]
	if perms == nil {
		perms = DefaultPermissions
	}
	// A token may be asked for fewer repositories and permissions than
	// the installation has, never more (GitHub answers 422).
	var scope struct {
		Repositories []string          `json:"repositories"`
		Permissions  map[string]string `json:"permissions"`
	}
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &scope)
	}
	if len(scope.Permissions) > 0 {
		for k, v := range scope.Permissions {
			if have := perms[k]; have == "" || (v == "write" && have != "write") {
				return errorResponse(http.StatusUnprocessableEntity, "The permissions requested are not granted to this installation.")
			}
		}
		perms = scope.Permissions
	}
	body := map[string]any{"token": tok, "expires_at": exp.Format(time.RFC3339), "permissions": perms, "repository_selection": "all"}
	if len(scope.Repositories) > 0 {
		var repos []any
		for _, name := range scope.Repositories {
			var found *repo
			for _, rp := range s.repos {
				if rp.installation == inst && rp.name == name {
					found = rp
				}
			}
			if found == nil {
				return errorResponse(http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.")
			}
			repos = append(repos, s.repositoryJSON(found))
		}
		body["repository_selection"], body["repositories"] = "selected", repos
	}
	s.tokens[tok] = token{installation: inst, expires: exp, perms: perms, repos: scope.Repositories}
	return response{status: http.StatusCreated, body: body}
}

// TokenScope says what an unexpired installation token may do: its
// installation, the repositories it was limited to (none: all of the
// installation's) and its permissions.
func (s *Server) TokenScope(tok string) (installation int64, repos []string, perms map[string]string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok || time.Now().After(t.expires) {
		return 0, nil, nil, false
	}
	return t.installation, t.repos, t.perms, true
}

// installationOf authenticates a repository or organization call: an
// installation token in "token <t>" or "Bearer <t>". It returns the
// token, or one of installation 0 and the error response.
func (s *Server) installationOf(r *http.Request) (token, response) {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "token ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "Bearer ")
	}
	if !ok {
		return token{}, errorResponse(http.StatusUnauthorized, "Requires authentication")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok || time.Now().After(t.expires) {
		return token{}, errorResponse(http.StatusUnauthorized, "Bad credentials")
	}
	return t, response{}
}

func (s *Server) teamMembership(inst int64, org, slug, login string) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	team, ok := s.teams[org+"/"+slug]
	if s.installations[inst] != org || !ok || !team[login] {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	return response{status: http.StatusOK, body: map[string]any{
		"url":   fmt.Sprintf("%sorgs/%s/teams/%s/memberships/%s", s.URL(), org, slug, login),
		"role":  "member",
		"state": "active",
	}}
}

// resolve turns a commit SHA or a branch name into a commit.
func (rp *repo) resolve(ref string) *commit {
	if sha, ok := rp.branches[strings.TrimPrefix(ref, "heads/")]; ok {
		ref = sha
	}
	if c := rp.git.commits[ref]; c != nil {
		return c
	}
	if len(ref) >= 7 && len(ref) < 40 { // an abbreviated SHA, if unique
		var found *commit
		for sha, c := range rp.git.commits {
			if strings.HasPrefix(sha, ref) {
				if found != nil {
					return nil
				}
				found = c
			}
		}
		return found
	}
	return nil
}

func (s *Server) getTree(rp *repo, ref string, recursive bool) response {
	sha := ref
	if c := rp.resolve(ref); c != nil {
		sha = c.tree
	}
	if _, ok := rp.git.trees[sha]; !ok {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	entries := rp.git.list(sha, recursive)
	truncated := len(entries) > s.treeLimit
	if truncated {
		entries = entries[:s.treeLimit]
	}
	tree := make([]map[string]any, 0, len(entries))
	for _, e := range entries {
		m := map[string]any{"path": e.path, "mode": e.mode, "type": e.kind, "sha": e.sha}
		if e.kind == "blob" {
			m["size"] = e.size
			m["url"] = s.repoURL(rp) + "/git/blobs/" + e.sha
		} else {
			m["url"] = s.repoURL(rp) + "/git/trees/" + e.sha
		}
		tree = append(tree, m)
	}
	return response{status: http.StatusOK, body: map[string]any{
		"sha": sha, "url": s.repoURL(rp) + "/git/trees/" + sha, "tree": tree, "truncated": truncated,
	}}
}

func (s *Server) getBlob(rp *repo, sha string) response {
	content, ok := rp.git.blobs[sha]
	if !ok {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	return response{status: http.StatusOK, body: map[string]any{
		"sha": sha, "node_id": nodeID("B", sha), "size": len(content), "url": s.repoURL(rp) + "/git/blobs/" + sha,
		"content": base64Lines(content), "encoding": "base64",
	}}
}

// maxCompareFiles and maxCompareCommits are GitHub's caps on a
// comparison: files only on the first page, at most 300 of them, and 250
// commits when no page is asked for.
const (
	maxCompareFiles   = 300
	maxCompareCommits = 250
	maxPullFiles      = 3000
)

func (s *Server) compare(rp *repo, basehead string, q map[string][]string) response {
	baseRef, headRef, ok := strings.Cut(basehead, "...")
	if !ok {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	base, head := rp.resolve(baseRef), rp.resolve(headRef)
	if base == nil || head == nil {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	mb := rp.git.mergeBase(base.sha, head.sha)
	if mb == "" {
		return errorResponse(http.StatusNotFound, fmt.Sprintf("No common ancestor between %s and %s.", baseRef, headRef))
	}
	ahead := rp.git.between(base.sha, head.sha)
	behind := rp.git.between(head.sha, base.sha)
	status := "identical"
	switch {
	case len(ahead) > 0 && len(behind) > 0:
		status = "diverged"
	case len(ahead) > 0:
		status = "ahead"
	case len(behind) > 0:
		status = "behind"
	}
	page, perPage, paged := paging(q, maxCompareCommits)
	commits := ahead
	if paged {
		commits = pageOf(ahead, page, perPage)
	} else if len(commits) > maxCompareCommits {
		commits = commits[len(commits)-maxCompareCommits:]
	}
	cj := make([]map[string]any, 0, len(commits))
	for _, c := range commits {
		cj = append(cj, s.commitJSON(rp, c, false))
	}
	body := map[string]any{
		"url":               s.repoURL(rp) + "/compare/" + basehead,
		"html_url":          htmlRepoURL(rp) + "/compare/" + basehead,
		"permalink_url":     htmlRepoURL(rp) + "/compare/" + rp.owner + ":" + base.sha[:7] + "..." + rp.owner + ":" + head.sha[:7],
		"diff_url":          htmlRepoURL(rp) + "/compare/" + basehead + ".diff",
		"patch_url":         htmlRepoURL(rp) + "/compare/" + basehead + ".patch",
		"base_commit":       s.commitJSON(rp, base, false),
		"merge_base_commit": s.commitJSON(rp, rp.git.commits[mb], false),
		"status":            status,
		"ahead_by":          len(ahead),
		"behind_by":         len(behind),
		"total_commits":     len(ahead),
		"commits":           cj,
	}
	if page == 1 {
		files := rp.git.diff(rp.git.commits[mb].files, head.files)
		if len(files) > maxCompareFiles {
			files = files[:maxCompareFiles]
		}
		body["files"] = s.diffEntries(rp, head.sha, files)
	}
	return response{status: http.StatusOK, header: linkHeader(s.repoURL(rp)+"/compare/"+basehead, page, perPage, len(ahead), paged), body: body}
}

// paging reads page and per_page: per_page is GitHub's default
// (defaultPer) when absent and at most 100. paged says whether either was
// given.
func paging(q map[string][]string, defaultPer int) (page, perPage int, paged bool) {
	page, perPage = 1, defaultPer
	if v, ok := q["page"]; ok {
		paged = true
		if n, err := strconv.Atoi(v[0]); err == nil && n > 0 {
			page = n
		}
	}
	if v, ok := q["per_page"]; ok {
		paged = true
		perPage = 30
		if n, err := strconv.Atoi(v[0]); err == nil && n > 0 {
			perPage = min(n, 100)
		}
	} else if paged && defaultPer > 100 {
		perPage = 30
	}
	return page, perPage, paged
}

func pageOf[T any](all []T, page, perPage int) []T {
	start := (page - 1) * perPage
	if start >= len(all) {
		return nil
	}
	return all[start:min(start+perPage, len(all))]
}

// linkHeader is GitHub's Link header for a list of total items.
func linkHeader(base string, page, perPage, total int, paged bool) http.Header {
	return linkHeaderQuery(base, nil, page, perPage, total, paged)
}

// linkHeaderQuery is linkHeader for a list whose request had other query
// parameters (filters), which each link repeats as GitHub's do.
func linkHeaderQuery(base string, q url.Values, page, perPage, total int, paged bool) http.Header {
	h := http.Header{}
	if !paged && total <= perPage {
		return h
	}
	last := max(1, (total+perPage-1)/perPage)
	link := func(p int, rel string) string {
		v := url.Values{}
		for k, vs := range q {
			if k != "page" && k != "per_page" {
				v[k] = vs
			}
		}
		v.Set("per_page", strconv.Itoa(perPage))
		v.Set("page", strconv.Itoa(p))
		return fmt.Sprintf(`<%s?%s>; rel="%s"`, base, v.Encode(), rel)
	}
	var parts []string
	if page > 1 {
		parts = append(parts, link(page-1, "prev"))
	}
	if page < last {
		parts = append(parts, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		parts = append(parts, link(1, "first"))
	}
	if len(parts) > 0 {
		h.Set("Link", strings.Join(parts, ", "))
	}
	return h
}

func (s *Server) pullFiles(rp *repo, number string, q map[string][]string) response {
	n, _ := strconv.Atoi(number)
	p := rp.pulls[n]
	if p == nil {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	files := p.files
	if len(files) > maxPullFiles {
		files = files[:maxPullFiles]
	}
	page, perPage, _ := paging(q, 30)
	var out []map[string]any
	for _, f := range pageOf(files, page, perPage) {
		sha := BlobSHA([]byte(f))
		out = append(out, s.diffEntry(rp, p.head, change{path: f, status: "modified", sha: sha, additions: 1, deletions: 1}))
	}
	if out == nil {
		out = []map[string]any{}
	}
	return response{status: http.StatusOK, header: linkHeader(fmt.Sprintf("%s/pulls/%d/files", s.repoURL(rp), n), page, perPage, len(files), true), body: out}
}

func (s *Server) getCommit(rp *repo, ref string) response {
	c := rp.resolve(ref)
	if c == nil {
		return errorResponse(http.StatusUnprocessableEntity, fmt.Sprintf("No commit found for SHA: %s", ref))
	}
	return response{status: http.StatusOK, body: s.commitJSON(rp, c, true)}
}

// listCommits lists the commits reachable from sha (a branch name, which
// may hold slashes, or a commit; default the default branch), newest
// first along first parents, as GitHub's list does for a linear history.
func (s *Server) listCommits(rp *repo, q url.Values) response {
	ref := q.Get("sha")
	if ref == "" {
		ref = rp.defaultBranch
	}
	c := rp.resolve(ref)
	if c == nil {
		return errorResponse(http.StatusNotFound, "No commit found for SHA: "+ref)
	}
	var all []*commit
	for c != nil {
		all = append(all, c)
		if len(c.parents) == 0 {
			break
		}
		c = rp.git.commits[c.parents[0]]
	}
	page, perPage, paged := paging(q, 30)
	out := []map[string]any{}
	for _, c := range pageOf(all, page, perPage) {
		out = append(out, s.commitJSON(rp, c, false))
	}
	return response{status: http.StatusOK, header: linkHeaderQuery(s.repoURL(rp)+"/commits", url.Values{"sha": {ref}}, page, perPage, len(all), paged), body: out}
}

func (s *Server) pullsForCommit(rp *repo, sha string, q map[string][]string) response {
	var numbers []int
	for n, p := range rp.pulls {
		if p.head == sha {
			numbers = append(numbers, n)
		}
	}
	sort.Ints(numbers)
	page, perPage, _ := paging(q, 30)
	out := []map[string]any{}
	for _, n := range pageOf(numbers, page, perPage) {
		out = append(out, s.pullJSON(rp, rp.pulls[n]))
	}
	return response{status: http.StatusOK, header: linkHeader(s.repoURL(rp)+"/commits/"+sha+"/pulls", page, perPage, len(numbers), true), body: out}
}

func (s *Server) permission(rp *repo, login string) response {
	role := rp.perms[login]
	perm := map[string]string{"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "": "none"}[role]
	if role == "" {
		role = "none"
	}
	u := s.user(login)
	u["role_name"] = role
	u["permissions"] = map[string]bool{
		"admin": role == "admin", "maintain": role == "admin" || role == "maintain",
		"push":   perm == "admin" || perm == "write",
		"triage": perm != "none" && role != "read", "pull": perm != "none",
	}
	return response{status: http.StatusOK, body: map[string]any{"permission": perm, "role_name": role, "user": u}}
}

// verifyJWT checks an App JWT as GitHub does: RS256 signed by the App's
// key, issued by the App, not expired and at most 10 minutes long.
func (s *Server) verifyJWT(tok string, now time.Time) error {
	claims, err := verifyRS256(tok, s.public)
	if err != nil {
		return err
	}
	var c struct {
		Iss json.RawMessage `json:"iss"`
		Iat *int64          `json:"iat"`
		Exp *int64          `json:"exp"`
	}
	if err := json.Unmarshal(claims, &c); err != nil || c.Iat == nil || c.Exp == nil {
		return fmt.Errorf("A JSON web token could not be decoded")
	}
	iss := strings.Trim(string(c.Iss), `"`)
	if iss != strconv.FormatInt(s.AppID, 10) {
		return fmt.Errorf("Integration not found")
	}
	skew := int64(60)
	switch {
	case *c.Iat > now.Unix()+skew:
		return fmt.Errorf("'Issued at' claim ('iat') must be an Integer representing a time in the past.")
	case *c.Exp <= now.Unix():
		return fmt.Errorf("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.")
	case *c.Exp-*c.Iat > 600 || *c.Exp > now.Unix()+600+skew:
		return fmt.Errorf("'Expiration time' claim ('exp') is too far in the future")
	}
	return nil
}

func randomString(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
