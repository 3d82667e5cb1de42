package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/temporalproto"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/engine/logstore/logship"
	"github.com/sluice-ci/sluice/server/webhook"
)

// The JSON API, /api/v1: see docs/api.md. Every request carries a bearer
// token (sluice server token create); the token names the user that
// approvals and manual runs are recorded as.

type ctxKey struct{}

func (s *Server) apiRoutes(mux *http.ServeMux) {
	h := func(pattern string, f func(w http.ResponseWriter, r *http.Request, user string)) {
		// A runner's token is kept on runner hosts: it ships step logs
		// (and asks for git credentials), and acts as nobody elsewhere.
		forRunners := strings.Contains(pattern, logship.Path)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			tok, ok := s.bearer(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
				httpError(w, http.StatusUnauthorized, "this needs an API token: Authorization: Bearer <token> (sluice server token create --user NAME, then sluice login URL)")
				return
			}
			if tok.Runner && !forRunners {
				httpError(w, http.StatusForbidden, fmt.Sprintf("the token of runner %s ships step logs and asks for git credentials only: use a user's token (sluice server token create --user NAME) for the rest of the API", tok.User))
				return
			}
			f(w, r, tok.User)
		})
	}
	h("GET /api/v1/whoami", func(w http.ResponseWriter, _ *http.Request, user string) {
		writeJSON(w, http.StatusOK, map[string]string{"user": user})
	})
	h("GET /api/v1/runs", s.apiListRuns)
	h("POST /api/v1/runs", s.apiStartRun)
	h("GET /api/v1/runs/{id}", s.apiGetRun)
	h("GET /api/v1/runs/{id}/plan", s.apiGetPlan)
	h("GET /api/v1/runs/{id}/history", s.apiGetHistory)
	h("GET /api/v1/runs/{id}/logs", s.apiGetLogs)
	s.logRoutes(h)
	h("POST /api/v1/runs/{id}/approve", s.apiDecide(true))
	h("POST /api/v1/runs/{id}/reject", s.apiDecide(false))
	h("POST /api/v1/runs/{id}/cancel", s.apiCancel)
	h("POST /api/v1/runs/{id}/retry", s.apiRetry)
	h("GET /api/v1/deliveries/{id...}", s.apiGetDelivery)
	h("POST /api/v1/deliveries/redeliver", func(w http.ResponseWriter, r *http.Request, user string) {
		if s.app == nil {
			httpError(w, http.StatusConflict, "this server has no GitHub App to redeliver webhooks with; start it with --github-app-id and --github-private-key")
			return
		}
		res, err := RedeliverNow(r.Context(), s.client)
		if err != nil {
			httpError(w, http.StatusBadGateway, err.Error())
			return
		}
		s.log.Info("webhook redelivery asked", "user", user, "redelivered", len(res.Redelivered))
		writeJSON(w, http.StatusOK, res)
	})
	h("GET /api/v1/runners", s.apiRunners)
	h("GET /api/v1/schedules", func(w http.ResponseWriter, r *http.Request, _ string) {
		list, err := ListSchedules(r.Context(), s.client)
		if err != nil {
			httpError(w, http.StatusBadGateway, err.Error())
			return
		}
		if list == nil {
			list = []ScheduleInfo{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"schedules": list})
	})
	mux.HandleFunc("POST /api/v1/git-credentials", s.apiGitCredentials)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no API endpoint %s %s; see docs/api.md", r.Method, r.URL.Path))
	})
}

// authenticate is the user of a request's bearer token: a user's token
// only, not a runner's.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	tok, ok := s.bearer(r)
	if !ok || tok.Runner {
		return "", false
	}
	return tok.User, true
}

// bearer is the API token of a request's Authorization: Bearer.
func (s *Server) bearer(r *http.Request) (Token, bool) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return Token{}, false
	}
	return s.tokens.Lookup(strings.TrimSpace(secret))
}

func (s *Server) apiListRuns(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	query, err := runFilterOf(q).query()
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			httpError(w, http.StatusBadRequest, "limit is a number from 1 to 1000")
			return
		}
		limit = n
	}
	runs, err := engine.List(r.Context(), s.client, query)
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return
	}
	if len(runs) > limit {
		runs = runs[:limit]
	}
	if runs == nil {
		runs = []engine.RunInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": runs})
}

// StartRunRequest starts a manual run of a repository's pipelines at a
// ref or commit (POST /api/v1/runs).
type StartRunRequest struct {
	// Repository is the repository's name, as the server knows it (a
	// repository block, or owner/name on GitHub).
	Repository string `json:"repository"`
	// Ref is a branch or tag (refs/heads/main or main); SHA the commit.
	// For git repositories the SHA is needed when the ref is not given.
	Ref      string            `json:"ref,omitempty"`
	SHA      string            `json:"sha,omitempty"`
	Pipeline string            `json:"pipeline,omitempty"`
	Inputs   map[string]string `json:"inputs,omitempty"`
	// DryRun starts a dry run (sluice run --dry-run): nothing outside
	// the runners' workspaces changes, and it is not reported to GitHub.
	DryRun bool `json:"dry_run,omitempty"`
}

func (s *Server) apiStartRun(w http.ResponseWriter, r *http.Request, user string) {
	var req StartRunRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return
	}
	res, status, err := s.startManual(r.Context(), user, req)
	if err != nil {
		httpError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// startManual starts a manual run as user (the API's POST /api/v1/runs
// and the web view's New run) and returns what it started, or the HTTP
// status of why it could not.
func (s *Server) startManual(ctx context.Context, user string, req StartRunRequest) (DeliveryResult, int, error) {
	var none DeliveryResult
	// A git repository of server.hcl, or one the GitHub App is installed
	// on, read through the App as its webhooks' are.
	url, ok := s.cfg.repositoryURL(req.Repository)
	var installation int64
	if !ok && s.app != nil {
		if installation, ok = s.installations.get(req.Repository); ok {
			url = s.githubRepoURL(req.Repository) + ".git"
		}
	}
	if !ok {
		return none, http.StatusNotFound, fmt.Errorf("repository %q is not one of this server's repositories: neither a repository block of server.hcl nor a repository the GitHub App is installed on (as owner/name; one is learnt from its webhooks)", req.Repository)
	}
	if ok, why, err := s.mayOperate(ctx, req.Repository, user, "start"); err != nil {
		return none, http.StatusBadGateway, err
	} else if !ok {
		return none, http.StatusForbidden, errors.New(why)
	}
	ref := req.Ref
	if ref != "" && !strings.HasPrefix(ref, "refs/") {
		ref = "refs/heads/" + ref
	}
	sha := req.SHA
	if sha == "" {
		if ref == "" {
			return none, http.StatusBadRequest, errors.New("give the ref (a branch or tag) or the commit to run")
		}
		head, err := s.headOf(ctx, url, req.Repository, installation, ref)
		if err != nil {
			return none, http.StatusNotFound, fmt.Errorf("repository %q has no ref %s: %v", req.Repository, ref, err)
		}
		sha = head
	}
	if !shaPattern.MatchString(sha) {
		return none, http.StatusBadRequest, fmt.Errorf("%q is not a full commit ID", sha)
	}
	ev := webhook.Event{Kind: KindManual, Name: "manual", Repo: req.Repository, CloneURL: url, InstallationID: installation, Actor: user, Ref: ref, After: sha}
	ev.Branch, _ = strings.CutPrefix(ref, "refs/heads/")
	ev.Tag, _ = strings.CutPrefix(ref, "refs/tags/")
	id := "api-" + engine.NewRunID("manual")
	ev.Delivery = id
	in := DeliveryInput{Via: ViaAPI, Event: ev, Inputs: req.Inputs, DryRun: req.DryRun}
	if req.Pipeline != "" {
		in.Pipelines = []string{req.Pipeline}
	}
	if _, status, err := s.deliver(ctx, id, in); err != nil {
		return none, status, err
	}
	res, err := s.deliveryResult(ctx, id, 60*time.Second)
	if err != nil {
		return none, http.StatusGatewayTimeout, err
	}
	return res, http.StatusCreated, nil
}

// GitCredentialsRequest asks for what a runner on another host fetches a
// run's repository with (POST /api/v1/git-credentials).
type GitCredentialsRequest struct {
	// Repository is the run's, owner/name; URL the one it fetches.
	Repository string `json:"repository"`
	URL        string `json:"url"`
}

// GitCredentials are a user name and password for git over HTTPS.
type GitCredentials struct {
	Username  string    `json:"username"`
	Password  string    `json:"password"`
	ExpiresAt time.Time `json:"expires_at"`
}

// apiGitCredentials gives a runner's token (and only a runner's) a fresh
// installation token of the GitHub App that may read the contents of one
// repository and nothing else, for fetching it from GitHub's host over
// HTTPS: a private repository checks out on runners on other hosts with
// no credentials of their own. 404 for a repository the App is not
// installed on: the runner then fetches with its own configuration.
func (s *Server) apiGitCredentials(w http.ResponseWriter, r *http.Request) {
	tok, ok := s.bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
		httpError(w, http.StatusUnauthorized, "this needs a runner's API token: Authorization: Bearer <token> (sluice server token create --runner NAME)")
		return
	}
	if !tok.Runner {
		httpError(w, http.StatusForbidden, fmt.Sprintf("git credentials are for runners, and the token of %s is a user's: give the runner a token made with sluice server token create --runner NAME", tok.User))
		return
	}
	var req GitCredentialsRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return
	}
	if s.app == nil {
		httpError(w, http.StatusNotFound, "this server is no GitHub App: it has no credentials for any repository")
		return
	}
	id, ok := s.installations.get(req.Repository)
	if !ok {
		httpError(w, http.StatusNotFound, fmt.Sprintf("the GitHub App is not installed on %q (as far as its webhooks told this server)", req.Repository))
		return
	}
	if host := httpsHost(s.githubWeb()); host == "" || httpsHost(req.URL) != host {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("credentials are given for GitHub's host %s over HTTPS only, not for %q", s.githubWeb(), req.URL))
		return
	}
	secret, exp, err := s.app.RepoReadToken(r.Context(), id, req.Repository)
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return
	}
	s.log.Info("read-only git credentials given to a runner", "runner", tok.User, "repo", req.Repository, "expires", exp)
	writeJSON(w, http.StatusOK, GitCredentials{Username: "x-access-token", Password: secret, ExpiresAt: exp})
}

// headOf is the commit ref names in a repository: through the GitHub App
// for a repository of one of its installations, by git ls-remote for a
// git repository.
func (s *Server) headOf(ctx context.Context, url, repo string, installation int64, ref string) (string, error) {
	if installation == 0 {
		return remoteRef(ctx, url, ref)
	}
	c, err := s.app.Installation(installation)
	if err != nil {
		return "", err
	}
	name := strings.TrimPrefix(strings.TrimPrefix(ref, "refs/heads/"), "refs/tags/")
	return c.Head(ctx, repo, name)
}

// deliveryResult waits for a delivery's result.
func (s *Server) deliveryResult(ctx context.Context, id string, wait time.Duration) (DeliveryResult, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var res DeliveryResult
	err := s.client.GetWorkflow(ctx, id, "").Get(ctx, &res)
	if err != nil {
		return res, fmt.Errorf("delivery %s: %w", id, err)
	}
	return res, nil
}

func (s *Server) apiGetDelivery(w http.ResponseWriter, r *http.Request, _ string) {
	id := r.PathValue("id")
	desc, err := s.client.DescribeWorkflowExecution(r.Context(), id, "")
	if err != nil {
		apiTemporalError(w, "delivery", id, err)
		return
	}
	out := map[string]any{"id": id, "status": strings.ToLower(strings.TrimPrefix(desc.GetWorkflowExecutionInfo().GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_"))}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		res, err := s.deliveryResult(r.Context(), id, 10*time.Second)
		if err != nil {
			httpError(w, http.StatusBadGateway, err.Error())
			return
		}
		out["result"] = res
	} else if p := desc.GetPendingActivities(); len(p) > 0 && p[0].GetLastFailure() != nil {
		// A delivery an older server started: its activity is scheduled.
		out["last_failure"] = p[0].GetLastFailure().GetMessage()
		out["attempt"] = p[0].GetAttempt()
	} else if v, err := s.client.QueryWorkflow(r.Context(), id, "", QueryDeliveryProgress); err == nil {
		var p DeliveryProgress
		if v.Get(&p) == nil && p.LastFailure != "" {
			out["last_failure"], out["attempt"] = p.LastFailure, p.Attempt
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiGetRun(w http.ResponseWriter, r *http.Request, _ string) {
	st, err := engine.Status(r.Context(), s.client, r.PathValue("id"))
	if err != nil {
		apiTemporalError(w, "run", r.PathValue("id"), err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) apiGetPlan(w http.ResponseWriter, r *http.Request, _ string) {
	p, err := engine.RunPlan(r.Context(), s.client, r.PathValue("id"))
	if err != nil {
		apiTemporalError(w, "run", r.PathValue("id"), err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// apiGetHistory answers a run's Temporal history (its latest execution's,
// or ?execution=ID's) as `temporal workflow show --output json` writes it:
// what sluice replay --server replays against its build.
func (s *Server) apiGetHistory(w http.ResponseWriter, r *http.Request, _ string) {
	id := r.PathValue("id")
	h, err := engine.FetchHistory(r.Context(), s.client, id, r.URL.Query().Get("execution"))
	if err != nil {
		apiTemporalError(w, "run", id, err)
		return
	}
	// Only runs: the other workflows' histories (deliveries, reports)
	// hold what the API does not otherwise show.
	if ev := h.GetEvents(); len(ev) == 0 || ev[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName() != engine.WorkflowName {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no run %q", id))
		return
	}
	b, err := temporalproto.CustomJSONMarshalOptions{}.Marshal(h)
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Sprintf("encoding the history of run %q: %v", id, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (s *Server) apiGetLogs(w http.ResponseWriter, r *http.Request, _ string) {
	run := r.PathValue("id")
	if f := r.URL.Query().Get("follow"); f == "1" || f == "true" {
		s.apiFollowLog(w, r, run, r.URL.Query().Get("step"))
		return
	}
	keys, err := s.stack.Logs.List(run)
	if err != nil || len(keys) == 0 {
		httpError(w, http.StatusNotFound, fmt.Sprintf("run %q has no logs on this server", run))
		return
	}
	want := r.URL.Query().Get("step")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	n := 0
	for _, k := range keys {
		if want != "" && want != k.Step && want != k.Stage+"/"+k.Step {
			continue
		}
		rc, err := s.stack.Logs.Open(k.Run, k.Stage, k.Step)
		if err != nil {
			continue
		}
		n++
		if want == "" {
			fmt.Fprintf(w, "==> %s/%s <==\n", k.Stage, k.Step)
		}
		_, _ = io.Copy(w, rc)
		rc.Close()
	}
	if n == 0 {
		httpError(w, http.StatusNotFound, fmt.Sprintf("run %q has no step %q", run, want))
	}
}

// DecisionRequest approves or rejects a stage.
type DecisionRequest struct {
	Stage  string `json:"stage"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) apiDecide(approve bool) func(w http.ResponseWriter, r *http.Request, user string) {
	return func(w http.ResponseWriter, r *http.Request, user string) {
		run := r.PathValue("id")
		var req DecisionRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.Stage == "" {
			httpError(w, http.StatusBadRequest, `give the stage: {"stage": "deploy", "reason": "..."}`)
			return
		}
		if status, err := s.decideStage(r.Context(), run, req.Stage, user, req.Reason, approve); err != nil {
			httpError(w, status, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"run": run, "stage": req.Stage, "by": user})
	}
}

func findStage(p plan.Plan, id string) (plan.Stage, bool) {
	for _, st := range p.Stages {
		if st.ID == id {
			return st, true
		}
	}
	return plan.Stage{}, false
}

// mayApprove checks user against a stage's approvers: logins, and
// team:NAME or team:ORG/NAME, from server.hcl's team blocks or, for a
// repository on GitHub, the organisation's team through the App. No
// approvers means anyone with a token.
func (s *Server) mayApprove(ctx context.Context, p plan.Plan, approvers []string, user string) (bool, error) {
	if len(approvers) == 0 {
		return true, nil
	}
	for _, a := range approvers {
		team, isTeam := strings.CutPrefix(a, "team:")
		if !isTeam {
			if strings.EqualFold(a, user) {
				return true, nil
			}
			continue
		}
		if members, ok := s.cfg.Teams[team]; ok {
			if slices.ContainsFunc(members, func(m string) bool { return strings.EqualFold(m, user) }) {
				return true, nil
			}
			continue
		}
		if s.triggers.GitHub == nil {
			continue
		}
		org, slug, found := strings.Cut(team, "/")
		if !found {
			org, _, _ = strings.Cut(p.Git.Repo, "/")
			slug = team
		}
		ok, err := s.teamMember(ctx, p, org, slug, user)
		if err != nil {
			return false, fmt.Errorf("checking whether %s is in team %s/%s: %w", user, org, slug, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func (s *Server) apiCancel(w http.ResponseWriter, r *http.Request, user string) {
	if status, err := s.cancelRun(r.Context(), r.PathValue("id"), user); err != nil {
		httpError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"run": r.PathValue("id"), "state": "cancelling"})
}

func (s *Server) apiRetry(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		From string `json:"from"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
			return
		}
	}
	if status, err := s.retryRun(r.Context(), r.PathValue("id"), req.From, user); err != nil {
		httpError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"run": r.PathValue("id"), "from": req.From})
}

func apiTemporalError(w http.ResponseWriter, what, id string, err error) {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) || strings.Contains(err.Error(), "not found") {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no %s %q", what, id))
		return
	}
	httpError(w, http.StatusBadGateway, err.Error())
}
