package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/server/githubapp"
)

// Signing in to the web view with GitHub, through the GitHub App's
// user-to-server OAuth (its client ID and secret, github { client_id,
// client_secret } in server.hcl):
//
//  1. GET /login/github?next=PATH sets a short-lived signed cookie holding
//     a random state and where to go after, and sends the browser to
//     GitHub's authorize page with that state and the callback URL
//     (PUBLIC_URL/login/github/callback, which must be the App's callback
//     URL).
//  2. GitHub sends the browser back to the callback with a code and the
//     state; the state must be the cookie's (no one else's sign-in can be
//     slipped in), then the code is exchanged for a user token.
//  3. With the token, GET /user gives the login, and GET
//     /user/installations must list an installation of the App: only
//     people who reach a repository the App is installed on sign in.
//     The token is then dropped; the session names the login, which is
//     what approvers name.

// oauthCookie carries the state of a sign-in under way.
const oauthCookie = "sluice_oauth"

// oauthTTL bounds a sign-in under way (GitHub's codes last 10 minutes).
const oauthTTL = 10 * time.Minute

// oauthEnabled says whether GitHub sign-in is configured.
func (s *Server) oauthEnabled() bool {
	return s.cfg.GitHub.ClientID != "" && s.cfg.GitHub.ClientSecret != ""
}

func (s *Server) oauth() *githubapp.OAuth {
	return &githubapp.OAuth{ClientID: s.cfg.GitHub.ClientID, ClientSecret: s.cfg.GitHub.ClientSecret, WebURL: s.githubWeb(), APIURL: s.cfg.GitHub.APIURL}
}

func (s *Server) oauthCallback() string { return s.URL() + "/login/github/callback" }

func (s *Server) oauthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /login/github", s.oauthStart)
	mux.HandleFunc("GET /login/github/callback", s.oauthFinish)
}

func (s *Server) oauthStart(w http.ResponseWriter, r *http.Request) {
	if !s.oauthEnabled() {
		http.Error(w, "signing in with GitHub is not set up on this server: give it the GitHub App's client ID and secret (SLUICE_GITHUB_CLIENT_ID, SLUICE_GITHUB_CLIENT_SECRET)", http.StatusNotFound)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	state := hex.EncodeToString(b)
	next := localPath(r.URL.Query().Get("next"))
	exp := time.Now().Add(oauthTTL)
	http.SetCookie(w, &http.Cookie{
		Name: oauthCookie, Value: s.web.sign(next, state, exp), Path: "/login/github", Expires: exp,
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.oauth().AuthorizeURL(s.oauthCallback(), state), http.StatusFound)
}

func (s *Server) secureCookies() bool { return strings.HasPrefix(s.cfg.PublicURL, "https://") }

func (s *Server) oauthFinish(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, msg string) {
		s.render(w, status, "login.html", session{}, loginData{Next: "/", Error: msg, GitHub: s.oauthEnabled()})
	}
	if !s.oauthEnabled() {
		refuse(http.StatusNotFound, "Signing in with GitHub is not set up on this server.")
		return
	}
	// The sign-in under way is this browser's, whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: oauthCookie, Value: "", Path: "/login/github", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	q := r.URL.Query()
	c, err := r.Cookie(oauthCookie)
	if err != nil {
		refuse(http.StatusBadRequest, "This sign-in was not started here, or took more than 10 minutes: sign in again.")
		return
	}
	started, ok := s.web.verify(c.Value, time.Now())
	if !ok || q.Get("state") == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(started.CSRF)) != 1 {
		refuse(http.StatusBadRequest, "This sign-in's state does not match the one this browser started: sign in again.")
		return
	}
	if e := q.Get("error"); e != "" {
		msg := "GitHub did not sign you in (" + e + ")."
		if e == "access_denied" {
			msg = "You declined to authorize the App on GitHub, so you are not signed in."
		}
		refuse(http.StatusForbidden, msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	login, err := s.githubLogin(ctx, q.Get("code"))
	if err != nil {
		s.log.Warn("signing in with GitHub", "error", err)
		status := http.StatusBadGateway
		var oe *githubapp.OAuthError
		var denied *notInstalledError
		switch {
		case errors.As(err, &denied):
			status = http.StatusForbidden
		case errors.As(err, &oe):
			status = http.StatusBadRequest
		}
		refuse(status, err.Error())
		return
	}
	s.signIn(w, r, login)
	http.Redirect(w, r, localPath(started.User), http.StatusSeeOther)
}

// notInstalledError refuses someone who reaches none of the App's
// installations.
type notInstalledError struct{ login string }

func (e *notInstalledError) Error() string {
	return fmt.Sprintf("%s has no access to any repository this server's GitHub App is installed on, so may not sign in here.", e.login)
}

// githubLogin finishes a sign-in: the code for a token, the token for the
// login, which must reach an installation of the App.
func (s *Server) githubLogin(ctx context.Context, code string) (string, error) {
	if code == "" {
		return "", errors.New("GitHub sent no code back")
	}
	o := s.oauth()
	tok, err := o.Exchange(ctx, code, s.oauthCallback())
	if err != nil {
		return "", err
	}
	login, err := o.User(ctx, tok)
	if err != nil {
		return "", err
	}
	ids, err := o.Installations(ctx, tok)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", &notInstalledError{login}
	}
	return login, nil
}
