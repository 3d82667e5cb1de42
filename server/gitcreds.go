package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// RunnerGitCredentials is how a runner on another host (sluice runner
// --server URL, with a runner's token) gets credentials to fetch a run's
// repository: it asks the server (POST /api/v1/git-credentials) for a
// read-only installation token of the GitHub App for that repository and
// keeps it until five minutes before it expires. Where the server has
// none to give (a repository the App is not on, a user's token rather
// than a runner's), the runner fetches with its own git configuration,
// and asks again five minutes later.
func RunnerGitCredentials(serverURL, token string, hc *http.Client) func(ctx context.Context, repo, url string) (string, string, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	type entry struct {
		user, pass string
		until      time.Time
	}
	var mu sync.Mutex
	cache := map[string]entry{}
	endpoint := strings.TrimSuffix(serverURL, "/") + "/api/v1/git-credentials"
	return func(ctx context.Context, repo, url string) (string, string, error) {
		if repo == "" {
			return "", "", nil
		}
		key := repo + "\x00" + url
		mu.Lock()
		e, ok := cache[key]
		mu.Unlock()
		if ok && time.Now().Before(e.until) {
			return e.user, e.pass, nil
		}
		body, _ := json.Marshal(GitCredentialsRequest{Repository: repo, URL: url})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return "", "", err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return "", "", fmt.Errorf("asking the server for credentials for %s: %w", repo, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		switch resp.StatusCode {
		case http.StatusOK:
			var c GitCredentials
			if err := json.Unmarshal(b, &c); err != nil {
				return "", "", fmt.Errorf("the server's credentials for %s: %w", repo, err)
			}
			e = entry{user: c.Username, pass: c.Password, until: c.ExpiresAt.Add(-5 * time.Minute)}
		case http.StatusNotFound, http.StatusForbidden:
			e = entry{until: time.Now().Add(5 * time.Minute)}
		default:
			var msg struct{ Error string }
			_ = json.Unmarshal(b, &msg)
			return "", "", fmt.Errorf("asking the server for credentials for %s: %s %s", repo, resp.Status, msg.Error)
		}
		mu.Lock()
		cache[key] = e
		mu.Unlock()
		return e.user, e.pass, nil
	}
}
