package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.temporal.io/api/serviceerror"

	"github.com/sluice-ci/sluice/engine"
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

// cancelRun cancels a run that is running.
func (s *Server) cancelRun(ctx context.Context, run string) (int, error) {
	if err := engine.Cancel(ctx, s.client, run); err != nil {
		return temporalStatus(err), err
	}
	return http.StatusAccepted, nil
}

// retryRun retries a finished run from a step ("" for the first that did
// not succeed) and reports the new execution to GitHub.
func (s *Server) retryRun(ctx context.Context, run, from string) (int, error) {
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
