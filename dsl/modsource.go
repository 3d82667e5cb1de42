package dsl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Limits on what a git module source brings in: only its .hcl files are
// kept, and a repository that holds more than this is refused.
const (
	// MaxModuleRepoFiles bounds the .hcl files of one module repository.
	MaxModuleRepoFiles = 10000
	// MaxModuleRepoBytes bounds their total size.
	MaxModuleRepoBytes = 64 << 20
)

// moduleSource is a module block's source: a local directory or a
// directory of a git repository at a ref.
type moduleSource struct {
	local string // a slash path relative to the calling file's directory
	// A git source: the repository, the directory in it ("" for its
	// top) and the tag, branch or commit.
	url, subdir, ref string
}

func (s moduleSource) isGit() bool { return s.url != "" }

// gitSchemes are the URL schemes of git sources.
var gitSchemes = []string{"https", "http", "ssh", "git", "file"}

// fullSHA matches a full commit ID, SHA-1 or SHA-256.
var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// parseModuleSource reads a source as written: "./dir", "../dir", or
// "git::URL//subdir?ref=REF". Its errors are sentences for a diagnostic.
func parseModuleSource(s string) (moduleSource, error) {
	if s == "." || s == ".." || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") {
		if strings.Contains(s, "\\") {
			return moduleSource{}, fmt.Errorf("%q uses \\; write local paths with /, which works on every system", s)
		}
		return moduleSource{local: path.Clean(s)}, nil
	}
	rest, ok := strings.CutPrefix(s, "git::")
	if !ok {
		return moduleSource{}, fmt.Errorf("%q is not a module source. Write a directory relative to this file's directory, starting with ./ or ../ (like \"./ci/go\"), or a git repository, like \"git::https://github.com/acme/ci-modules.git//go?ref=v1.4.0\"", s)
	}
	rest, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return moduleSource{}, fmt.Errorf("the query of %q cannot be read: %v", s, err)
	}
	for k := range q {
		if k != "ref" {
			return moduleSource{}, fmt.Errorf("%q has the parameter %q; a git source takes only ?ref=TAG_OR_COMMIT", s, k)
		}
	}
	src := moduleSource{ref: q.Get("ref")}
	if len(q["ref"]) > 1 {
		return moduleSource{}, fmt.Errorf("%q gives ref more than once", s)
	}
	if src.ref == "" {
		return moduleSource{}, fmt.Errorf("%q names no ref. Add ?ref= and a tag, branch or full commit SHA, like ?ref=v1.4.0, so that every run uses the same module", s)
	}
	if !validRef(src.ref) {
		return moduleSource{}, fmt.Errorf("ref %q of %q is not a tag, branch or full commit SHA", src.ref, s)
	}
	scheme, after, ok := strings.Cut(rest, "://")
	if !ok || !contains(gitSchemes, scheme) {
		return moduleSource{}, fmt.Errorf("%q is not the URL of a git repository; use one of the schemes %s, like git::https://github.com/acme/ci-modules.git", rest, strings.Join(gitSchemes, ", "))
	}
	// The directory in the repository follows a // after the host and
	// path: https://host/repo.git//dir.
	if i := strings.Index(after[min(1, len(after)):], "//"); i >= 0 {
		i += min(1, len(after))
		src.subdir, after = after[i+2:], after[:i]
		clean := path.Clean(src.subdir)
		if src.subdir == "" || !fs.ValidPath(clean) {
			return moduleSource{}, fmt.Errorf("%q is not a directory inside the repository; after // write a relative path like go or ci/go", src.subdir)
		}
		if clean == "." {
			clean = ""
		}
		src.subdir = clean
	}
	src.url = scheme + "://" + after
	u, err := url.Parse(src.url)
	if err != nil || (scheme != "file" && u.Host == "") {
		return moduleSource{}, fmt.Errorf("%q is not a URL", src.url)
	}
	if _, has := u.User.Password(); has {
		return moduleSource{}, fmt.Errorf("%q holds a password, and module sources are written to the lock file. Leave credentials out: the server fetches with its GitHub App's token, and on a laptop an ssh:// URL uses the ssh agent", src.url)
	}
	return src, nil
}

// validRef accepts the names git accepts for tags and branches, and SHAs.
func validRef(ref string) bool {
	if ref == "" || strings.HasPrefix(ref, "-") || strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") ||
		strings.HasSuffix(ref, ".lock") || strings.Contains(ref, "..") || strings.Contains(ref, "@{") || strings.Contains(ref, "//") {
		return false
	}
	for _, r := range ref {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("~^:?*[\\", r) {
			return false
		}
	}
	return true
}

// ModuleFetcher brings git module sources onto this machine. The compiler
// asks it for commits (Resolve) only when it writes the lock file; every
// compile asks for the files of the locked commit (Fetch). The server
// passes one that authenticates with its GitHub App (GitFetcher with
// Credentials); tests may pass their own.
type ModuleFetcher interface {
	// Resolve returns the commit that ref (a tag, a branch or a full
	// commit SHA) names in the repository at url now.
	Resolve(ctx context.Context, url, ref string) (commit string, err error)
	// Fetch returns a directory holding the .hcl files of the repository
	// at url as of commit, in its layout. ref, unless empty, is the ref
	// the lock says names commit: a fetcher that has to go to the network
	// checks that it still does, and returns a *MovedRefError if not.
	Fetch(ctx context.Context, url, ref, commit string) (dir string, err error)
}

// MovedRefError says that a locked tag or branch now names another commit:
// someone moved it, and what it names now has not been reviewed.
type MovedRefError struct {
	URL, Ref       string
	Locked, Commit string
}

func (e *MovedRefError) Error() string {
	return fmt.Sprintf("%s of %s was locked at commit %s and now names %s", e.Ref, e.URL, e.Locked, e.Commit)
}

// GitFetcher fetches git module sources with go-git, into a cache of one
// directory per repository URL and commit: Dir/<digest of URL>/<commit>,
// holding the .hcl files of that commit. A commit in the cache is never
// fetched again, so compiles with a lock file work offline once the
// modules have been fetched.
type GitFetcher struct {
	// Dir is the cache, usually $SLUICE_HOME/modules.
	Dir string
	// Credentials returns the user name and password for the HTTPS
	// repository at url, or empty strings for none. Nil: no credentials
	// (public repositories, file:// and ssh:// with the ssh agent).
	Credentials func(ctx context.Context, url string) (username, password string, err error)
}

// DefaultModuleCache is $SLUICE_HOME/modules, or ~/.sluice/modules.
func DefaultModuleCache() (string, error) {
	if h := os.Getenv("SLUICE_HOME"); h != "" {
		return filepath.Abs(filepath.Join(h, "modules"))
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the module cache: %w; set SLUICE_HOME", err)
	}
	return filepath.Join(home, ".sluice", "modules"), nil
}

func (f *GitFetcher) auth(ctx context.Context, url string) (transport.AuthMethod, error) {
	if f.Credentials == nil || !strings.HasPrefix(url, "https://") {
		// Credentials go only over TLS.
		return nil, nil
	}
	user, pass, err := f.Credentials(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("getting credentials for %s: %w", url, err)
	}
	if user == "" && pass == "" {
		return nil, nil
	}
	return &githttp.BasicAuth{Username: user, Password: pass}, nil
}

// Resolve lists the refs of the repository and finds ref among them: a
// tag first (peeled to its commit), then a branch. A full SHA names
// itself; Fetch checks that the repository has it.
func (f *GitFetcher) Resolve(ctx context.Context, url, ref string) (string, error) {
	if fullSHA.MatchString(ref) {
		return ref, nil
	}
	_, commit, err := f.resolve(ctx, url, ref)
	return commit, err
}

// resolve returns the full name of ref in the repository and its commit.
func (f *GitFetcher) resolve(ctx context.Context, url, ref string) (plumbing.ReferenceName, string, error) {
	auth, err := f.auth(ctx, url)
	if err != nil {
		return "", "", err
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return "", "", fmt.Errorf("listing the refs of %s: %w", url, err)
	}
	byName := map[string]string{}
	for _, r := range refs {
		byName[r.Name().String()] = r.Hash().String()
	}
	candidates := []string{"refs/tags/" + ref, "refs/heads/" + ref}
	if strings.HasPrefix(ref, "refs/") {
		candidates = []string{ref}
	}
	for _, name := range candidates {
		if peeled, ok := byName[name+"^{}"]; ok {
			return plumbing.ReferenceName(name), peeled, nil
		}
		if h, ok := byName[name]; ok {
			return plumbing.ReferenceName(name), h, nil
		}
	}
	return "", "", fmt.Errorf("%s has no tag or branch %q", url, ref)
}

// cacheDir is where the files of url at commit are kept.
func (f *GitFetcher) cacheDir(url, commit string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(f.Dir, hex.EncodeToString(sum[:8]), commit)
}

// Fetch returns the cached files of url at commit, or fetches them: by
// ref when there is one (after checking that it still names commit), else
// by the commit itself, falling back to fetching every ref for servers
// that do not give single commits.
func (f *GitFetcher) Fetch(ctx context.Context, url, ref, commit string) (string, error) {
	if f.Dir == "" {
		return "", errors.New("no module cache directory")
	}
	if !fullSHA.MatchString(commit) {
		return "", fmt.Errorf("%q is not a full commit SHA", commit)
	}
	dir := f.cacheDir(url, commit)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	auth, err := f.auth(ctx, url)
	if err != nil {
		return "", err
	}
	repo, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		return "", err
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}})
	if err != nil {
		return "", err
	}
	fetch := func(specs []config.RefSpec, depth int) error {
		err := remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Depth: depth, Auth: auth, Tags: git.NoTags})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		return err
	}
	if ref != "" && !fullSHA.MatchString(ref) {
		name, now, err := f.resolve(ctx, url, ref)
		if err != nil {
			return "", err
		}
		if now != commit {
			return "", &MovedRefError{URL: url, Ref: ref, Locked: commit, Commit: now}
		}
		err = fetch([]config.RefSpec{config.RefSpec("+" + name + ":" + name)}, 1)
		if err != nil {
			return "", fmt.Errorf("fetching %s of %s: %w", ref, url, err)
		}
	} else {
		err := fetch([]config.RefSpec{config.RefSpec(commit + ":refs/sluice/commit")}, 1)
		if err != nil {
			// Servers that give only advertised refs (plain git without
			// uploadpack.allowReachableSHA1InWant) give everything.
			err = fetch([]config.RefSpec{"+refs/*:refs/sluice/all/*"}, 0)
		}
		if err != nil {
			return "", fmt.Errorf("fetching commit %s of %s: %w", commit, url, err)
		}
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return "", fmt.Errorf("%s has no commit %s: %w", url, commit, err)
	}
	if err := f.extract(c, dir); err != nil {
		return "", fmt.Errorf("writing the files of %s at %s: %w", url, commit, err)
	}
	return dir, nil
}

// extract writes the .hcl files of a commit to dir, through a temporary
// directory renamed into place, so that a directory in the cache is whole.
func (f *GitFetcher) extract(c *object.Commit, dir string) error {
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	files, size := 0, int64(0)
	err = tree.Files().ForEach(func(file *object.File) error {
		if !strings.HasSuffix(file.Name, ".hcl") || (file.Mode != filemode.Regular && file.Mode != filemode.Executable) || !fs.ValidPath(file.Name) {
			return nil
		}
		if files++; files > MaxModuleRepoFiles {
			return fmt.Errorf("the repository has more than %d .hcl files; keep modules in a repository of their own", MaxModuleRepoFiles)
		}
		if size += file.Size; size > MaxModuleRepoBytes {
			return fmt.Errorf("the .hcl files of the repository are more than %d MiB; keep modules in a repository of their own", MaxModuleRepoBytes>>20)
		}
		r, err := file.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		p := filepath.Join(tmp, filepath.FromSlash(file.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		w, err := os.Create(p)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, io.LimitReader(r, MaxFileSize+1)); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	})
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return nil // another compile fetched it first
		}
		return err
	}
	return nil
}
