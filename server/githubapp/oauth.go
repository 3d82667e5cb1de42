package githubapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v62/github"
)

// OAuth signs people in with GitHub through the App's user-to-server
// OAuth flow: the browser goes to GitHub's authorize page with a state,
// comes back with a code, which is exchanged (with the App's client
// secret) for a token acting as the user. The token is used at once to
// read who the user is and which of the App's installations they reach,
// then dropped: it is never stored.
//
// The authorize and access_token endpoints are GitHub's web endpoints
// (https://github.com/login/oauth/...), not its REST API.
type OAuth struct {
	ClientID     string
	ClientSecret string
	// WebURL is GitHub's web root (https://github.com, or
	// https://HOST for GitHub Enterprise Server).
	WebURL string
	// APIURL is the REST API root, as App.BaseURL.
	APIURL string
	// HTTP is the client for the exchange and the API calls;
	// http.DefaultClient's transport with a timeout when nil.
	HTTP *http.Client
}

// WebURL is GitHub's web root for an API root: https://github.com for
// api.github.com, https://HOST for https://HOST/api/v3/, and the API's
// own scheme and host otherwise (a test's fake serves both).
func WebURL(apiURL string) string {
	if apiURL == "" {
		apiURL = DefaultBaseURL
	}
	u, err := url.Parse(apiURL)
	if err != nil || u.Host == "" {
		return "https://github.com"
	}
	if strings.EqualFold(u.Host, "api.github.com") {
		return "https://github.com"
	}
	return u.Scheme + "://" + u.Host
}

func (o *OAuth) web() string {
	if o.WebURL != "" {
		return strings.TrimSuffix(o.WebURL, "/")
	}
	return WebURL(o.APIURL)
}

func (o *OAuth) client() *http.Client {
	if o.HTTP != nil {
		return o.HTTP
	}
	return &http.Client{Timeout: 20 * time.Second}
}

// AuthorizeURL is where the browser is sent to sign in: GitHub asks the
// user to authorize the App (once) and sends them back to redirect with
// the code and state.
func (o *OAuth) AuthorizeURL(redirect, state string) string {
	q := url.Values{"client_id": {o.ClientID}, "redirect_uri": {redirect}, "state": {state}, "allow_signup": {"false"}}
	return o.web() + "/login/oauth/authorize?" + q.Encode()
}

// OAuthError is GitHub's refusal of a code exchange (it answers 200 with
// an error field): a code that was used or has expired
// (bad_verification_code), wrong client credentials, a redirect that
// does not match.
type OAuthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *OAuthError) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("GitHub refused the sign-in (%s): %s", e.Code, e.Description)
	}
	return "GitHub refused the sign-in: " + e.Code
}

// Exchange trades the code GitHub sent back for a user access token.
func (o *OAuth) Exchange(ctx context.Context, code, redirect string) (string, error) {
	form := url.Values{"client_id": {o.ClientID}, "client_secret": {o.ClientSecret}, "code": {code}, "redirect_uri": {redirect}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.web()+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sluice")
	resp, err := o.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("exchanging the sign-in code with GitHub: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("exchanging the sign-in code with GitHub: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("exchanging the sign-in code with GitHub: %s", resp.Status)
	}
	var out struct {
		OAuthError
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("exchanging the sign-in code with GitHub: the answer is not JSON: %w", err)
	}
	if out.Code != "" {
		return "", &out.OAuthError
	}
	if out.AccessToken == "" {
		return "", errors.New("exchanging the sign-in code with GitHub: the answer has no access token")
	}
	return out.AccessToken, nil
}

func (o *OAuth) api(token string) (*github.Client, error) {
	base := o.APIURL
	if base == "" {
		base = DefaultBaseURL
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("the GitHub API URL %q: %w", o.APIURL, err)
	}
	gh := github.NewClient(o.client()).WithAuthToken(token)
	gh.BaseURL = u
	return gh, nil
}

// User returns the login of the user a token acts for (GET /user).
func (o *OAuth) User(ctx context.Context, token string) (string, error) {
	gh, err := o.api(token)
	if err != nil {
		return "", err
	}
	u, _, err := gh.Users.Get(ctx, "")
	if err != nil {
		return "", classify(err, "asking GitHub who signed in")
	}
	if u.GetLogin() == "" {
		return "", errors.New("asking GitHub who signed in: the answer has no login")
	}
	return u.GetLogin(), nil
}

// Installations returns the IDs of the App's installations the user of a
// token can reach (GET /user/installations): none means the user has no
// access to any repository the App is installed on.
func (o *OAuth) Installations(ctx context.Context, token string) ([]int64, error) {
	gh, err := o.api(token)
	if err != nil {
		return nil, err
	}
	var ids []int64
	opts := &github.ListOptions{PerPage: 100}
	for {
		list, resp, err := gh.Apps.ListUserInstallations(ctx, opts)
		if err != nil {
			return nil, classify(err, "listing the GitHub App's installations the user reaches")
		}
		for _, in := range list {
			ids = append(ids, in.GetID())
		}
		if resp.NextPage == 0 {
			return ids, nil
		}
		opts.Page = resp.NextPage
	}
}
