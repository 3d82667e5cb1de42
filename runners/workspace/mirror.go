package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mirror returns a bare repository under root that holds commit sha of the
// repository at url, fetching it when the mirror does not have it yet. One
// mirror serves every run of a repository, so a runner fetches each commit
// once; workspaces are then cloned from the mirror as from a local
// repository (Options.Repo). Concurrent calls for the same url wait for
// each other.
func Mirror(ctx context.Context, root, url, sha string) (string, error) {
	return MirrorWith(ctx, root, url, sha, nil)
}

// Credentials returns the user name and password for fetching over HTTPS
// from url; empty ones fetch with git's own configuration only.
type Credentials func(ctx context.Context, url string) (user, password string, err error)

// MirrorWith is Mirror with credentials for an HTTPS URL (none for any
// other: they go only over TLS). They reach git as an http.extraHeader in
// its environment (GIT_CONFIG_COUNT), after any the runner's own
// environment sets: never on a command line another user could read, in
// no file, and only for the fetch.
func MirrorWith(ctx context.Context, root, url, sha string, creds Credentials) (string, error) {
	if url == "" {
		return "", fmt.Errorf("mirroring a repository: no URL given")
	}
	if !hexSHA.MatchString(sha) {
		return "", fmt.Errorf("mirroring %s: %q is not a commit SHA", url, sha)
	}
	sum := sha256.Sum256([]byte(url))
	dir := filepath.Join(root, hex.EncodeToString(sum[:8])+".git")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", root, err)
	}
	unlock, err := lock(ctx, dir+".lock")
	if err != nil {
		return "", fmt.Errorf("locking the mirror of %s: %w", url, err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		tmp, err := os.MkdirTemp(root, ".mirror-")
		if err != nil {
			return "", err
		}
		if _, err := git(ctx, tmp, "init", "--quiet", "--bare"); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("creating the mirror of %s: %w", url, err)
		}
		os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	if hasCommit(ctx, dir, sha) {
		return dir, nil
	}
	var env []string
	if creds != nil && strings.HasPrefix(url, "https://") {
		user, pass, err := creds(ctx, url)
		if err != nil {
			return "", fmt.Errorf("getting credentials for %s: %w", url, err)
		}
		if user != "" || pass != "" {
			env = authHeaderEnv(url, user, pass)
		}
	}
	// A commit is fetched by its ID (git's protocol v2 allows any reachable
	// one); a server that refuses gives its branches and tags instead.
	_, ferr := gitEnv(ctx, dir, env, "fetch", "--quiet", "--no-tags", "--", url, sha)
	if ferr != nil || !hasCommit(ctx, dir, sha) {
		if _, err := gitEnv(ctx, dir, env, "fetch", "--quiet", "--no-tags", "--", url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"); err != nil {
			return "", fmt.Errorf("fetching commit %s from %s: %w", sha, url, err)
		}
	}
	if !hasCommit(ctx, dir, sha) {
		return "", fmt.Errorf("the repository at %s has no commit %s (was it force-pushed away?)", url, sha)
	}
	// Keep what was fetched by ID reachable, so that gc leaves it.
	if _, err := git(ctx, dir, "update-ref", "refs/sluice/"+sha, sha); err != nil {
		return "", fmt.Errorf("mirroring %s: %w", url, err)
	}
	return dir, nil
}

func hasCommit(ctx context.Context, dir, sha string) bool {
	out, err := git(ctx, dir, "cat-file", "-t", sha)
	return err == nil && strings.TrimSpace(string(out)) == "commit"
}

// authHeaderEnv is the environment that gives git basic authentication
// for url's scheme and host as an http.extraHeader, numbered after the
// GIT_CONFIG_* entries the process's environment already has.
func authHeaderEnv(url, user, pass string) []string {
	n, _ := strconv.Atoi(os.Getenv("GIT_CONFIG_COUNT"))
	scheme, rest, _ := strings.Cut(url, "://")
	host, _, _ := strings.Cut(rest, "/")
	value := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	return []string{
		"GIT_CONFIG_COUNT=" + strconv.Itoa(n+1),
		fmt.Sprintf("GIT_CONFIG_KEY_%d=http.%s://%s/.extraHeader", n, scheme, host),
		fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", n, value),
	}
}
