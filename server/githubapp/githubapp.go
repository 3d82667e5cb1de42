// Package githubapp is Sluice's GitHub App client: it authenticates as an
// App (a JWT signed with the App's private key), mints installation tokens
// through ghinstallation, and reads what the webhook server needs from
// GitHub's REST API: pipeline files at a commit, the files a push or a
// pull request changed, team membership and the pull requests of a commit;
// and it writes what a CI system reports (checks.go): check runs, commit
// statuses and comments.
//
// Errors a retry may cure (GitHub's 5xx, 429, rate limits) are
// *RetryableError, with the wait GitHub asked for; the client never sleeps
// or retries by itself, since its callers are Temporal activities, which
// retry with backoff.
package githubapp

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v62/github"
	ghtoken "github.com/google/go-github/v88/github"
)

// DefaultBaseURL is github.com's API root.
const DefaultBaseURL = "https://api.github.com/"

// App is a GitHub App's identity.
type App struct {
	ID int64
	// PrivateKey is the App's private key, PEM (PKCS#1 as GitHub issues
	// it, or PKCS#8).
	PrivateKey []byte
	// BaseURL is the API root: DefaultBaseURL when empty; on GitHub
	// Enterprise Server https://HOST/api/v3/.
	BaseURL string
	// HTTP is the client whose Transport and Timeout all requests use;
	// http.DefaultClient's when nil.
	HTTP *http.Client
	// Observe, when set before the App's first request, learns of every
	// request it makes to GitHub, for the server's metrics.
	Observe func(Call)

	once    sync.Once
	initErr error
	apps    *ghinstallation.AppsTransport
	base    *url.URL
	blobs   *blobCache

	mu      sync.Mutex
	clients map[int64]*Client
}

// LoadApp reads an App's private key from keyFile and checks that it is a
// PEM RSA private key.
func LoadApp(id int64, keyFile, baseURL string) (*App, error) {
	if id <= 0 {
		return nil, fmt.Errorf("the GitHub App ID must be a positive number, not %d", id)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the GitHub App's private key: %w", err)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("the GitHub App's private key %s: %w", keyFile, err)
	}
	return &App{ID: id, PrivateKey: key, BaseURL: baseURL}, nil
}

// checkKey says whether key is a PEM RSA private key.
func checkKey(key []byte) error {
	block, _ := pem.Decode(key)
	if block == nil {
		return errors.New("not a PEM file (GitHub's download begins with -----BEGIN RSA PRIVATE KEY-----)")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return fmt.Errorf("not a valid RSA private key: %v", err)
		}
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return fmt.Errorf("not a valid private key: %v", err)
		}
		if _, ok := k.(*rsa.PrivateKey); !ok {
			return fmt.Errorf("a %T, not an RSA private key (GitHub Apps sign with RSA)", k)
		}
	default:
		return fmt.Errorf("a PEM %q block, not an RSA private key", block.Type)
	}
	return nil
}

func (a *App) init() error {
	a.once.Do(func() {
		if err := checkKey(a.PrivateKey); err != nil {
			a.initErr = fmt.Errorf("the GitHub App's private key: %w", err)
			return
		}
		base := a.BaseURL
		if base == "" {
			base = DefaultBaseURL
		}
		if !strings.HasSuffix(base, "/") {
			base += "/"
		}
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			a.initErr = fmt.Errorf("the GitHub API URL %q is not an http(s) URL", a.BaseURL)
			return
		}
		a.base = u
		a.apps, err = ghinstallation.NewAppsTransport(a.transport(), a.ID, a.PrivateKey)
		if err != nil {
			a.initErr = fmt.Errorf("the GitHub App's private key: %w", err)
			return
		}
		a.apps.BaseURL = strings.TrimSuffix(base, "/")
		a.blobs = newBlobCache(blobCacheEntries, blobCacheBytes)
		a.clients = map[int64]*Client{}
	})
	return a.initErr
}

func (a *App) transport() http.RoundTripper {
	tr := http.DefaultTransport
	if a.HTTP != nil && a.HTTP.Transport != nil {
		tr = a.HTTP.Transport
	}
	if a.Observe != nil {
		return observed{base: tr, observe: a.Observe}
	}
	return tr
}

// Installation returns a client for one installation of the App, the same
// one for every call with the same ID. Each has its own ghinstallation
// transport, which mints the installation token on first use and again a
// minute before it expires; the token stays inside the transport, never
// stored anywhere else, and leaves it only for git (GitToken).
func (a *App) Installation(id int64) (*Client, error) {
	if err := a.init(); err != nil {
		return nil, err
	}
	if id <= 0 {
		return nil, fmt.Errorf("the GitHub App installation ID must be a positive number, not %d", id)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.clients[id]; c != nil {
		return c, nil
	}
	tr := ghinstallation.NewFromAppsTransport(a.apps, id)
	// An empty JSON object, not the JSON null a nil options value sends:
	// GitHub's description declares the body an object.
	tr.InstallationTokenOptions = &ghtoken.InstallationTokenOptions{}
	hc := &http.Client{Transport: http.RoundTripper(tr)}
	if a.Observe != nil {
		hc.Transport = tagged{base: tr, installation: id}
	}
	if a.HTTP != nil {
		hc.Timeout = a.HTTP.Timeout
		tr.Client = &http.Client{Transport: a.transport(), Timeout: a.HTTP.Timeout}
	}
	gh := github.NewClient(hc)
	gh.BaseURL = a.base
	c := &Client{gh: gh, installation: id, appID: a.ID, blobs: a.blobs, tokens: tr}
	a.clients[id] = c
	return c, nil
}

// Client reads and writes GitHub as one installation of the App.
type Client struct {
	gh           *github.Client
	installation int64
	appID        int64 // the App's ID: FindCheckRun lists only its check runs
	blobs        *blobCache
	tokens       *ghinstallation.Transport
}

// GitToken returns the installation's token for git over HTTPS, where
// GitHub takes it as the password of the user x-access-token: the server
// fetches the private repositories of git modules with it. It is the
// token API calls use, minted and refreshed by the same transport; callers
// use it for one fetch and keep it nowhere.
func (c *Client) GitToken(ctx context.Context) (string, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("minting a token for installation %d: %w", c.installation, err)
	}
	return tok, nil
}

// RepoReadToken mints an installation token that may only read the
// contents of one repository (repositories: [name], permissions:
// contents: read), for a runner on another host to check it out: what
// leaves the server can read that repository's code and nothing else,
// for an hour at most. It is minted anew on every call.
func (a *App) RepoReadToken(ctx context.Context, installation int64, repo string) (string, time.Time, error) {
	if err := a.init(); err != nil {
		return "", time.Time{}, err
	}
	_, name, err := split(repo)
	if err != nil {
		return "", time.Time{}, err
	}
	tr := ghinstallation.NewFromAppsTransport(a.apps, installation)
	read := "read"
	tr.InstallationTokenOptions = &ghtoken.InstallationTokenOptions{
		Repositories: []string{name},
		Permissions:  &ghtoken.InstallationPermissions{Contents: &read},
	}
	if a.HTTP != nil {
		tr.Client = &http.Client{Transport: a.transport(), Timeout: a.HTTP.Timeout}
	}
	tok, err := tr.Token(ctx)
	if err != nil {
		return "", time.Time{}, classify(err, fmt.Sprintf("a read-only token for %s", repo))
	}
	exp, _, err := tr.Expiry()
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, exp, nil
}

// split splits "owner/name".
func split(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("repository %q is not owner/name", repo)
	}
	return owner, name, nil
}
