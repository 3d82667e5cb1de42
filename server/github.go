package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.temporal.io/sdk/temporal"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/server/githubapp"
)

// githubSource reads repositories through one installation of the App.
type githubSource struct{ c *githubapp.Client }

func (g githubSource) PipelineFiles(ctx context.Context, r RepoRef, sha string) (map[string][]byte, error) {
	return g.c.PipelineFiles(ctx, r.Name, sha)
}

func (g githubSource) Changed(ctx context.Context, r RepoRef, before, after string, forced bool) ([]string, bool, error) {
	return g.c.Changed(ctx, r.Name, before, after, forced)
}

func (g githubSource) PullFiles(ctx context.Context, r RepoRef, number int) ([]string, bool, error) {
	return g.c.PullFiles(ctx, r.Name, number)
}

// newGitHubSources loads the App's key and returns the sources of its
// installations.
func newGitHubSources(app *githubapp.App) func(int64) (Source, error) {
	return func(id int64) (Source, error) {
		c, err := app.Installation(id)
		if err != nil {
			return nil, err
		}
		return githubSource{c}, nil
	}
}

// sourceError passes a source's error on as the delivery's activity
// should fail: GitHub's rate limits retry when GitHub says, its 5xx with
// the workflow's backoff, and what is not there does not retry.
func sourceError(err error) error {
	var ra *githubapp.RetryableError
	if errors.As(err, &ra) && ra.After > 0 {
		return temporal.NewApplicationErrorWithOptions(err.Error(), "RateLimited", temporal.ApplicationErrorOptions{NextRetryDelay: ra.After, Cause: err})
	}
	var nf *githubapp.NotFoundError
	if errors.As(err, &nf) {
		return temporal.NewNonRetryableApplicationError(err.Error(), errNotFound, err)
	}
	return err
}

// teamMember asks GitHub whether user is an active member of org's team,
// through the installation that delivered the run's repository's events.
func (s *Server) teamMember(ctx context.Context, p plan.Plan, org, slug, user string) (bool, error) {
	id, ok := s.installations.get(p.Git.Repo)
	if !ok {
		return false, fmt.Errorf("no installation of the GitHub App is known for %s yet (one is learnt from its webhooks)", p.Git.Repo)
	}
	c, err := s.app.Installation(id)
	if err != nil {
		return false, err
	}
	return c.TeamMember(ctx, org, slug, user)
}

// installations remembers which installation of the App reaches each
// repository, as webhooks say, in a file of the home so that it survives
// a restart.
type installations struct {
	file string
	mu   sync.Mutex
	m    map[string]int64
}

func openInstallations(file string) *installations {
	in := &installations{file: file, m: map[string]int64{}}
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &in.m)
	}
	return in
}

func (in *installations) get(repo string) (int64, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	id, ok := in.m[strings.ToLower(repo)]
	return id, ok
}

func (in *installations) remove(repo string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.m[strings.ToLower(repo)]; !ok {
		return
	}
	delete(in.m, strings.ToLower(repo))
	_ = proc.WriteRecord(in.file, in.m)
}

func (in *installations) set(repo string, id int64) {
	if repo == "" || id == 0 {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.m[strings.ToLower(repo)] == id {
		return
	}
	in.m[strings.ToLower(repo)] = id
	_ = os.MkdirAll(filepath.Dir(in.file), 0o700)
	_ = proc.WriteRecord(in.file, in.m)
}
