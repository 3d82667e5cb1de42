package githubfake

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Signing in with GitHub through the App (user-to-server OAuth): the
// authorize and access_token endpoints, which are github.com's web
// endpoints outside the REST description (the fake serves them at its
// root, as GitHub Enterprise Server does at https://HOST/login/oauth/),
// and the REST calls a user token makes, GET /user and
// GET /user/installations, which are validated like every other call.
//
// GitHub's behaviour encoded here: a code is good once and for 10
// minutes; the exchange answers 200 with an "error" field when it
// refuses; a redirect_uri given to authorize must be given again, the
// same, to the exchange; user tokens (ghu_) last 8 hours and act only for
// their user, never as an installation.

// oauthCodeTTL is how long an authorization code may be exchanged.
const oauthCodeTTL = 10 * time.Minute

// userTokenTTL is how long a user access token lasts (an App's tokens
// expire by default).
const userTokenTTL = 8 * time.Hour

type oauthCode struct {
	login    string
	redirect string
	expires  time.Time
}

type userToken struct {
	login   string
	expires time.Time
}

// oauthState is the fake's OAuth state, made on first use.
type oauthState struct {
	clientID, clientSecret string
	callback               string // the App's callback URL; empty: any
	signedIn               string // who is signed in to GitHub in the browser
	denied                 bool
	codes                  map[string]oauthCode
	tokens                 map[string]userToken
}

func (s *Server) oauthLocked() *oauthState {
	if s.oauth == nil {
		s.oauth = &oauthState{
			clientID:     "Iv1." + strings.ToLower(randomString(16)),
			clientSecret: randomString(40),
			codes:        map[string]oauthCode{},
			tokens:       map[string]userToken{},
		}
	}
	return s.oauth
}

// OAuthClient returns the App's OAuth client ID and secret, which a
// server signs people in with.
func (s *Server) OAuthClient() (clientID, clientSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.oauthLocked()
	return o.clientID, o.clientSecret
}

// SetCallbackURL sets the App's callback URL: authorize then refuses a
// redirect_uri that is not on it (same scheme, host and port, a path
// under it), as GitHub does.
func (s *Server) SetCallbackURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthLocked().callback = u
}

// SignInAs makes login the user signed in to GitHub in the browser, who
// has authorized the App: authorize sends them straight back with a
// code. Until it is called, authorize answers that nobody is signed in.
func (s *Server) SignInAs(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.oauthLocked()
	o.signedIn, o.denied = login, false
}

// DenyAuthorization makes the signed-in user decline to authorize the
// App: authorize sends them back with error=access_denied.
func (s *Server) DenyAuthorization() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthLocked().denied = true
}

// serveOAuth answers /login/oauth/authorize and
// /login/oauth/access_token.
func (s *Server) serveOAuth(w http.ResponseWriter, r *http.Request) {
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: status})
		s.mu.Unlock()
	}()
	page := func(code int, msg string) {
		status = code
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintf(w, "<!doctype html><title>GitHub</title><p>%s</p>\n", html.EscapeString(msg))
	}
	switch r.URL.Path {
	case "/login/oauth/authorize":
		if r.Method != http.MethodGet {
			page(http.StatusMethodNotAllowed, "authorize is a page the browser is sent to (GET)")
			return
		}
		q := r.URL.Query()
		s.mu.Lock()
		o := s.oauthLocked()
		if q.Get("client_id") != o.clientID {
			s.mu.Unlock()
			page(http.StatusNotFound, "The client_id is not of any App.")
			return
		}
		redirect := q.Get("redirect_uri")
		if redirect == "" {
			redirect = o.callback
		}
		if !redirectOK(o.callback, redirect) {
			s.mu.Unlock()
			page(http.StatusBadRequest, "The redirect_uri is not associated with this application.")
			return
		}
		back, err := url.Parse(redirect)
		if err != nil || back.Scheme == "" {
			s.mu.Unlock()
			page(http.StatusBadRequest, "The redirect_uri is not a URL.")
			return
		}
		v := back.Query()
		switch {
		case o.signedIn == "":
			s.mu.Unlock()
			page(http.StatusUnauthorized, "Sign in to GitHub to continue (the fake has nobody signed in: call SignInAs).")
			return
		case o.denied:
			v.Set("error", "access_denied")
			v.Set("error_description", "The user has denied your application access.")
			v.Set("error_uri", "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied")
		default:
			code := strings.ToLower(randomString(20))
			o.codes[code] = oauthCode{login: o.signedIn, redirect: q.Get("redirect_uri"), expires: time.Now().Add(oauthCodeTTL)}
			v.Set("code", code)
		}
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		s.mu.Unlock()
		back.RawQuery = v.Encode()
		status = http.StatusFound
		http.Redirect(w, r, back.String(), http.StatusFound)
	case "/login/oauth/access_token":
		if r.Method != http.MethodPost {
			page(http.StatusNotFound, "Not Found")
			return
		}
		if err := r.ParseForm(); err != nil {
			page(http.StatusBadRequest, err.Error())
			return
		}
		answer := func(v map[string]any) {
			if strings.Contains(r.Header.Get("Accept"), "application/json") {
				writeJSON(w, http.StatusOK, nil, v)
				return
			}
			form := url.Values{}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				form.Set(k, fmt.Sprint(v[k]))
			}
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
			w.Write([]byte(form.Encode()))
		}
		refuse := func(code, desc, uri string) {
			answer(map[string]any{"error": code, "error_description": desc, "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#" + uri})
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		o := s.oauthLocked()
		if r.PostForm.Get("client_id") != o.clientID || r.PostForm.Get("client_secret") != o.clientSecret {
			refuse("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.", "incorrect-client-credentials")
			return
		}
		code := r.PostForm.Get("code")
		c, ok := o.codes[code]
		if !ok || time.Now().After(c.expires) {
			refuse("bad_verification_code", "The code passed is incorrect or expired.", "bad-verification-code")
			return
		}
		if c.redirect != "" && r.PostForm.Get("redirect_uri") != c.redirect {
			refuse("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.", "redirect-uri-mismatch")
			return
		}
		delete(o.codes, code) // good once
		tok := "ghu_" + randomString(36)
		o.tokens[tok] = userToken{login: c.login, expires: time.Now().Add(userTokenTTL)}
		answer(map[string]any{
			"access_token": tok, "token_type": "bearer", "scope": "",
			"expires_in": int(userTokenTTL.Seconds()), "refresh_token": "ghr_" + randomString(76), "refresh_token_expires_in": 15897600,
		})
	default:
		page(http.StatusNotFound, "Not Found")
	}
}

// redirectOK says whether redirect is on the App's callback URL: the same
// scheme, host and port, and a path under the callback's.
func redirectOK(callback, redirect string) bool {
	if callback == "" {
		return true
	}
	cb, err1 := url.Parse(callback)
	rd, err2 := url.Parse(redirect)
	if err1 != nil || err2 != nil {
		return false
	}
	return cb.Scheme == rd.Scheme && cb.Host == rd.Host && strings.HasPrefix(rd.Path, cb.Path)
}

// userOp answers the REST calls made with a user token; ok is false for a
// request that does not carry one.
func (s *Server) userOp(op string, r *http.Request) (res response, ok bool) {
	auth := r.Header.Get("Authorization")
	tok, found := strings.CutPrefix(auth, "token ")
	if !found {
		tok, found = strings.CutPrefix(auth, "Bearer ")
	}
	if !found || !strings.HasPrefix(tok, "ghu_") {
		if op == "users/get-authenticated" || op == "apps/list-installations-for-authenticated-user" {
			// An installation token is no user: GitHub answers 403.
			return errorResponse(http.StatusForbidden, resourceNotAllow), true
		}
		return response{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.oauthLocked()
	t, known := o.tokens[tok]
	if !known || time.Now().After(t.expires) {
		return errorResponse(http.StatusUnauthorized, "Bad credentials"), true
	}
	switch op {
	case "users/get-authenticated":
		return response{status: http.StatusOK, body: s.privateUser(t.login)}, true
	case "apps/list-installations-for-authenticated-user":
		var ids []int64
		for id := range s.installations {
			if s.reachesLocked(t.login, id) {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		list := make([]map[string]any, 0, len(ids))
		for _, id := range ids {
			list = append(list, s.installationJSON(id))
		}
		return response{status: http.StatusOK, body: map[string]any{"total_count": len(list), "installations": list}}, true
	}
	// A user token reaches repositories too on GitHub; the fake's users
	// only sign in.
	return errorResponse(http.StatusForbidden, resourceNotAllow), true
}

// reachesLocked says whether login reaches installation id: it is the
// installation's account, has a role on one of its repositories or is in
// a team of its organisation.
func (s *Server) reachesLocked(login string, id int64) bool {
	acct := s.installations[id]
	if strings.EqualFold(acct, login) {
		return true
	}
	for _, rp := range s.repos {
		if rp.installation == id && rp.perms[login] != "" {
			return true
		}
	}
	for team, members := range s.teams {
		if org, _, _ := strings.Cut(team, "/"); org == acct && members[login] {
			return true
		}
	}
	return false
}

// privateUser is GET /user's answer: a private-user.
func (s *Server) privateUser(login string) map[string]any {
	u := s.user(login)
	u["user_view_type"] = "private"
	for k, v := range map[string]any{
		"name": login, "company": nil, "blog": "", "location": nil, "email": nil, "hireable": nil, "bio": nil,
		"twitter_username": nil, "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
		"created_at": stamp(fakeEpoch), "updated_at": stamp(fakeEpoch),
		"private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0, "disk_usage": 0, "collaborators": 0,
		"two_factor_authentication": true,
	} {
		u[k] = v
	}
	return u
}

// installationJSON is an installation of the App.
func (s *Server) installationJSON(id int64) map[string]any {
	acct := s.installations[id]
	perms := s.perms[id]
	if perms == nil {
		perms = DefaultPermissions
	}
	account := s.user(acct)
	account["type"] = "Organization"
	return map[string]any{
		"id": id, "app_id": s.AppID, "app_slug": "sluice", "target_id": userID(acct), "target_type": "Organization",
		"account": account, "repository_selection": "selected", "single_file_name": nil,
		"access_tokens_url": fmt.Sprintf("%s/app/installations/%d/access_tokens", s.srv.URL, id),
		"repositories_url":  s.srv.URL + "/installation/repositories",
		"html_url":          fmt.Sprintf("https://github.com/organizations/%s/settings/installations/%d", acct, id),
		"events":            []string{"push", "pull_request", "check_suite", "check_run"},
		"permissions":       perms, "created_at": stamp(fakeEpoch), "updated_at": stamp(fakeEpoch),
		"suspended_by": nil, "suspended_at": nil,
	}
}
