package githubapp

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

// authorize follows the authorize URL as a browser would, without
// following GitHub's redirect back, and returns where it leads.
func authorize(t *testing.T, u string) *url.URL {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s, want a redirect back", resp.Status)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// The whole sign-in against the fake: authorize, exchange, who the user
// is, which installations they reach; a code is good once.
func TestOAuthSignIn(t *testing.T) {
	f := githubfake.New(t)
	f.AddRepo(repo, 7)
	f.AddRepo("other/thing", 8)
	f.SetPermission(repo, "alice", "write")
	id, secret := f.OAuthClient()
	const redirect = "http://ci.example/login/github/callback"
	f.SetCallbackURL("http://ci.example/login/github")
	o := &OAuth{ClientID: id, ClientSecret: secret, APIURL: f.URL()}

	f.SignInAs("alice")
	back := authorize(t, o.AuthorizeURL(redirect, "st4te"))
	if back.Host != "ci.example" || back.Query().Get("state") != "st4te" || back.Query().Get("code") == "" {
		t.Fatalf("redirected back to %s", back)
	}
	code := back.Query().Get("code")
	tok, err := o.Exchange(ctx, code, redirect)
	if err != nil {
		t.Fatal(err)
	}
	login, err := o.User(ctx, tok)
	if err != nil || login != "alice" {
		t.Fatalf("user %q, %v; want alice", login, err)
	}
	ids, err := o.Installations(ctx, tok)
	if err != nil || !slices.Equal(ids, []int64{7}) {
		t.Errorf("installations %v, %v; want [7]", ids, err)
	}
	var oe *OAuthError
	if _, err := o.Exchange(ctx, code, redirect); !errors.As(err, &oe) || oe.Code != "bad_verification_code" {
		t.Errorf("a code exchanged twice: %v", err)
	}

	// Someone with no role anywhere reaches no installation.
	f.SignInAs("mallory")
	tok, err = o.Exchange(ctx, authorize(t, o.AuthorizeURL(redirect, "x")).Query().Get("code"), redirect)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := o.Installations(ctx, tok); err != nil || len(ids) != 0 {
		t.Errorf("mallory's installations %v, %v; want none", ids, err)
	}

	// The wrong secret, and a declined authorization.
	bad := *o
	bad.ClientSecret = "nope"
	f.SignInAs("alice")
	if _, err := bad.Exchange(ctx, authorize(t, o.AuthorizeURL(redirect, "x")).Query().Get("code"), redirect); !errors.As(err, &oe) || oe.Code != "incorrect_client_credentials" {
		t.Errorf("a wrong client secret: %v", err)
	}
	f.DenyAuthorization()
	if back := authorize(t, o.AuthorizeURL(redirect, "x")); back.Query().Get("error") != "access_denied" || back.Query().Get("code") != "" {
		t.Errorf("a declined authorization came back as %s", back)
	}
	// A redirect off the App's callback URL is refused at GitHub.
	resp, err := http.Get(o.AuthorizeURL("http://evil.example/cb", "x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a redirect to another host: %s", resp.Status)
	}
}

func TestWebURL(t *testing.T) {
	for api, want := range map[string]string{
		"":                                "https://github.com",
		"https://api.github.com/":         "https://github.com",
		"https://ghe.example.com/api/v3/": "https://ghe.example.com",
		"http://127.0.0.1:4000/":          "http://127.0.0.1:4000",
	} {
		if got := WebURL(api); got != want {
			t.Errorf("WebURL(%q) = %q, want %q", api, got, want)
		}
	}
}
