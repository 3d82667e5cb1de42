package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/server/webui"
)

// The web view: pages rendered on the server from server/webui's
// templates, for people signed in with a session cookie (an API token
// entered once, or GitHub) or carrying an API token. Every POST a page
// makes carries the session's CSRF token.

// sessionCookie is the signed session: user, expiry and CSRF token.
const sessionCookie = "sluice_session"

// sessionTTL is how long a sign-in lasts.
const sessionTTL = 7 * 24 * time.Hour

// csrfHeader carries the CSRF token of requests made by the pages' script;
// forms send it as the field "csrf".
const csrfHeader = "X-Sluice-CSRF"

// web is the web view's state.
type web struct {
	pages *webui.Pages
	// key signs session cookies; it is kept in the home so that sessions
	// survive a restart.
	key []byte
}

// session is a signed-in browser, or an API client (CSRF empty: a bearer
// token is not sent by browsers on their own, so it needs none).
type session struct {
	User string
	CSRF string
	// Bearer is a request authenticated by an API token.
	Bearer bool
}

// pageData is what every page's template gets.
type pageData struct {
	User string
	CSRF string
	// Data is the page's own.
	Data any
}

// sessionKeyFile holds the key that signs session cookies.
func sessionKeyFile(home string) string { return filepath.Join(home, "server", "session.key") }

func loadSessionKey(home string) ([]byte, error) {
	file := sessionKeyFile(home)
	if b, err := os.ReadFile(file); err == nil && len(b) >= 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the session key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, err
	}
	// O_EXCL: two servers starting on one home agree on the first key.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadSessionKey(home)
	}
	if err != nil {
		return nil, fmt.Errorf("writing the session key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, err
	}
	return key, f.Close()
}

func newWeb(home string, funcs template.FuncMap) (*web, error) {
	key, err := loadSessionKey(home)
	if err != nil {
		return nil, err
	}
	pages, err := webui.Parse(funcs)
	if err != nil {
		return nil, fmt.Errorf("parsing the web view's templates: %w", err)
	}
	return &web{pages: pages, key: key}, nil
}

// sign makes a session cookie's value.
func (wv *web) sign(user, csrf string, expires time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(user)) + "." + strconv.FormatInt(expires.Unix(), 10) + "." + csrf
	mac := hmac.New(sha256.New, wv.key)
	mac.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// verify reads a session cookie's value.
func (wv *web) verify(value string, now time.Time) (session, bool) {
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return session{}, false
	}
	payload, sig := value[:i], value[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return session{}, false
	}
	mac := hmac.New(sha256.New, wv.key)
	mac.Write([]byte(payload))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return session{}, false
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 3 {
		return session{}, false
	}
	user, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || len(user) == 0 {
		return session{}, false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || now.Unix() >= exp {
		return session{}, false
	}
	return session{User: string(user), CSRF: parts[2]}, true
}

// signIn starts a session for user.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, user string) {
	csrf := make([]byte, 16)
	_, _ = rand.Read(csrf)
	exp := time.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    s.web.sign(user, hex.EncodeToString(csrf), exp),
		Path:     "/",
		Expires:  exp,
		HttpOnly: true,
		Secure:   strings.HasPrefix(s.cfg.PublicURL, "https://"),
		SameSite: http.SameSiteLaxMode,
	})
}

// webSession is who makes a request: a session cookie or an API token.
func (s *Server) webSession(r *http.Request) (session, bool) {
	if user, ok := s.authenticate(r); ok {
		return session{User: user, Bearer: true}, true
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	return s.web.verify(c.Value, time.Now())
}

// csrfOK checks that a state-changing request from a browser carries its
// session's CSRF token.
func (sess session) csrfOK(r *http.Request) bool {
	if sess.Bearer {
		return true
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) == 1
}

// page registers a page that needs a signed-in user; others are sent to
// sign in and come back. A POST must carry the CSRF token.
func (s *Server) page(mux *http.ServeMux, pattern string, f func(w http.ResponseWriter, r *http.Request, sess session)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.webSession(r)
		if !ok {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				http.Error(w, "sign in first: your session has ended", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !sess.csrfOK(r) {
			http.Error(w, "this form's CSRF token is missing or stale: reload the page and try again", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		f(w, r, sess)
	})
}

// render writes a page, or a 500 that says which template failed.
func (s *Server) render(w http.ResponseWriter, status int, name string, sess session, data any) {
	var buf bytes.Buffer
	if err := s.web.pages.Render(&buf, name, pageData{User: sess.User, CSRF: sess.CSRF, Data: data}); err != nil {
		s.log.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// localPath keeps a redirect target on this server.
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, `/\`) {
		return "/"
	}
	return next
}

type loginData struct {
	Next   string
	Error  string
	GitHub bool
}

// webRoutes adds the web view's pages.
func (s *Server) webRoutes(mux *http.ServeMux) {
	static := http.FileServerFS(webui.Static())
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		static.ServeHTTP(w, r)
	})))
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		s.render(w, http.StatusOK, "login.html", session{}, loginData{Next: localPath(r.URL.Query().Get("next")), GitHub: s.oauthEnabled()})
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		next := localPath(r.PostFormValue("next"))
		user, ok := s.tokens.User(strings.TrimSpace(r.PostFormValue("token")))
		if !ok {
			s.render(w, http.StatusUnauthorized, "login.html", session{}, loginData{Next: next, Error: "That token is not valid: check it, or make one with sluice server token create --user NAME.", GitHub: s.oauthEnabled()})
			return
		}
		s.signIn(w, r, user)
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
	s.page(mux, "POST /logout", func(w http.ResponseWriter, r *http.Request, _ session) {
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
	s.webLogRoutes(mux) // weblog.go
	s.pageRoutes(mux)   // webpages.go
	s.oauthRoutes(mux)  // weboauth.go
}

// webFuncs are the functions the templates use.
var webFuncs = template.FuncMap{}
