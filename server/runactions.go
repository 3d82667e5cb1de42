package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server/githubapp"
	"github.com/sluice-ci/sluice/server/webhook"
)

// What the API and the web view both do to runs: list them with filters,
// approve or reject a stage, cancel, retry. Each returns, with its error,
// the HTTP status that error means.

// runFilter narrows a listing of runs; empty fields do not.
type runFilter struct {
	Repo     string
	Pipeline string
	// Branch is a branch name; Ref a full ref (refs/tags/v1).
	Branch string
	Ref    string
	SHA    string
	Status string
	Event  string
}

// runFilterOf reads a filter from a query: repo, pipeline, branch, ref,
// sha, status, event.
func runFilterOf(q url.Values) runFilter {
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	return runFilter{Repo: get("repo"), Pipeline: get("pipeline"), Branch: get("branch"), Ref: get("ref"), SHA: get("sha"), Status: get("status"), Event: get("event")}
}

// query is the filter as a visibility query over the runs' search
// attributes; a value with a quote in it is refused.
func (f runFilter) query() (string, error) {
	ref := f.Ref
	if f.Branch != "" {
		if ref != "" && ref != "refs/heads/"+f.Branch {
			return "", fmt.Errorf("give a branch or a ref, not both")
		}
		ref = "refs/heads/" + f.Branch
	}
	var conds []string
	for _, c := range []struct {
		param, value string
		attr         string
	}{
		{"repo", f.Repo, engine.AttrRepo.GetName()},
		{"pipeline", f.Pipeline, engine.AttrPipeline.GetName()},
		{"ref", ref, engine.AttrRef.GetName()},
		{"sha", f.SHA, engine.AttrSHA.GetName()},
		{"status", f.Status, engine.AttrStatus.GetName()},
		{"event", f.Event, engine.AttrEvent.GetName()},
	} {
		if c.value == "" {
			continue
		}
		if strings.ContainsAny(c.value, `'"\`) {
			return "", fmt.Errorf("%s %q has a quote in it", c.param, c.value)
		}
		conds = append(conds, fmt.Sprintf("%s = '%s'", c.attr, c.value))
	}
	slices.Sort(conds)
	return strings.Join(conds, " AND "), nil
}

// temporalStatus is the HTTP status of an error about a run or delivery:
// 404 for one that does not exist, 409 for one that has ended, 502 for
// Temporal failing.
func temporalStatus(err error) int {
	var nf *serviceerror.NotFound
	switch {
	case strings.Contains(err.Error(), "already finished"), strings.Contains(err.Error(), "already completed"):
		return http.StatusConflict
	case errors.As(err, &nf), strings.Contains(err.Error(), "not found"), strings.Contains(err.Error(), "no such run"):
		return http.StatusNotFound
	}
	return http.StatusBadGateway
}

// decideStage approves (or rejects) stage of run as user, after checking
// that user is one of the stage's approvers.
func (s *Server) decideStage(ctx context.Context, run, stage, user, reason string, approve bool) (int, error) {
	p, err := engine.RunPlan(ctx, s.client, run)
	if err != nil {
		if temporalStatus(err) == http.StatusNotFound {
			return http.StatusNotFound, fmt.Errorf("no run %q", run)
		}
		return temporalStatus(err), err
	}
	st, ok := findStage(p, stage)
	if !ok {
		return http.StatusNotFound, fmt.Errorf("run %q has no stage %q", run, stage)
	}
	if st.Approval != nil {
		allowed, err := s.mayApprove(ctx, p, st.Approval.Approvers, user)
		if err != nil {
			return http.StatusBadGateway, err
		}
		if !allowed {
			return http.StatusForbidden, fmt.Errorf("%s may not approve or reject stage %q: its approvers are %s", user, stage, strings.Join(st.Approval.Approvers, ", "))
		}
	}
	decide := engine.Reject
	if approve {
		decide = engine.Approve
	}
	if err := decide(ctx, s.client, run, stage, user, reason); err != nil {
		return http.StatusConflict, err
	}
	return http.StatusOK, nil
}

// writerTTL is how long mayOperate trusts GitHub's word that a user may
// write to a repository: a collaborator removed on GitHub loses cancel
// and retry within it. A user who may not is asked about every time.
const writerTTL = time.Minute

// writerCache remembers GitHub's answers to "may user write to repo".
type writerCache struct {
	mu sync.Mutex
	m  map[[2]string]writerEntry
}

type writerEntry struct {
	perm string
	at   time.Time
}

// mayOperate says whether user may cancel, retry or start runs of repo,
// and if not, why. A repository the GitHub App serves takes write access
// to it on GitHub (write, maintain or admin), as GitHub's own Re-run and
// Cancel do, asked as the App and kept for writerTTL. A git repository of
// server.hcl, or a run of no repository, takes a user the server knows
// (an API token or a sign-in), who every caller here is.
func (s *Server) mayOperate(ctx context.Context, repo, user, what string) (bool, string, error) {
	if s.app == nil || repo == "" {
		return true, "", nil
	}
	id, ok := s.installations.get(repo)
	if !ok {
		return true, "", nil // not a repository of the App's
	}
	key := [2]string{repo, strings.ToLower(user)}
	s.writers.mu.Lock()
	e, cached := s.writers.m[key]
	s.writers.mu.Unlock()
	if !cached || time.Since(e.at) > writerTTL {
		c, err := s.app.Installation(id)
		if err != nil {
			return false, "", err
		}
		perm, err := c.Permission(ctx, repo, user)
		if err != nil {
			var nf *githubapp.NotFoundError
			if !errors.As(err, &nf) {
				return false, "", fmt.Errorf("asking GitHub whether %s may write to %s: %w", user, repo, err)
			}
			perm = "none" // GitHub knows no such user
		}
		e = writerEntry{perm: perm, at: time.Now()}
		// Only writers are kept: access given on GitHub counts at once.
		if writer(perm) {
			s.writers.mu.Lock()
			if s.writers.m == nil {
				s.writers.m = map[[2]string]writerEntry{}
			}
			s.writers.m[key] = e
			s.writers.mu.Unlock()
		}
	}
	if writer(e.perm) {
		return true, "", nil
	}
	return false, fmt.Sprintf("%s may not %s runs of %s: that takes write access to the repository on GitHub, and %s has %s", user, what, repo, user, e.perm), nil
}

// runOperator checks that user may do what to run: 404 for a run that
// does not exist, 403 for a user without write access to its repository.
func (s *Server) runOperator(ctx context.Context, run, user, what string) (int, error) {
	p, err := engine.RunPlan(ctx, s.client, run)
	if err != nil {
		if temporalStatus(err) == http.StatusNotFound {
			return http.StatusNotFound, fmt.Errorf("no run %q", run)
		}
		return temporalStatus(err), err
	}
	ok, why, err := s.mayOperate(ctx, p.Git.Repo, user, what)
	switch {
	case err != nil:
		return http.StatusBadGateway, err
	case !ok:
		return http.StatusForbidden, errors.New(why)
	}
	return http.StatusOK, nil
}

// cancelRun cancels a run that is running, as user.
func (s *Server) cancelRun(ctx context.Context, run, user string) (int, error) {
	if status, err := s.runOperator(ctx, run, user, "cancel"); err != nil {
		return status, err
	}
	if err := engine.Cancel(ctx, s.client, run); err != nil {
		return temporalStatus(err), err
	}
	return http.StatusAccepted, nil
}

// retryRun retries a finished run from a step ("" for the first that did
// not succeed), as user, and reports the new execution to GitHub.
func (s *Server) retryRun(ctx context.Context, run, from, user string) (int, error) {
	if status, err := s.runOperator(ctx, run, user, "retry"); err != nil {
		return status, err
	}
	if err := engine.Retry(ctx, s.client, run, from); err != nil {
		return http.StatusConflict, err
	}
	// The new execution is reported to GitHub with checks of its own.
	if p, err := engine.RunPlan(ctx, s.client, run); err == nil {
		in := DeliveryInput{Via: ViaAPI, Event: webhook.Event{Repo: p.Git.Repo}}
		if err := s.triggers.report(ctx, in, run, ""); err != nil {
			s.log.Warn("reporting a retried run to GitHub", "run", run, "error", err)
		}
	}
	return http.StatusAccepted, nil
}
