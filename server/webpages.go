package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server/githubapp"
)

// The web view's pages other than sign-in and logs: the runs, a run (its
// stage graph, stages and steps, approvals, cancel and retry), runners
// and schedules. Pages are rendered here in full; their scripts keep them
// current by polling, the runs and runners pages for their table rendered
// as a fragment, the run page for its state as JSON (GET
// /runs/{id}/live), which run.js applies to the graph and the stages it
// already shows. Actions are plain forms that POST with the session's
// CSRF token and take the API's code paths (runactions.go).

// pageFuncs join webFuncs: the run pages' template functions.
var pageFuncs = template.FuncMap{
	"ago":   ago,
	"stamp": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"short": shortCommit,
	"join":  strings.Join,
}

func init() { maps.Copy(webFuncs, pageFuncs) }

// pageSecurity are the headers of the pages here: no script, style or
// frame from anywhere else.
func pageSecurity(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
}

// pageRoutes adds the pages.
func (s *Server) pageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/runs", http.StatusFound)
	})
	s.page(mux, "GET /runs", s.runsPage)
	s.page(mux, "GET /runs/new", s.newRunPage)
	s.page(mux, "POST /runs/new", s.newRun)
	// Checks' details links lead to these two.
	s.page(mux, "GET /runs/{id}", s.runPage)
	s.page(mux, "GET /runs/{id}/stages/{stage...}", s.runPage)
	s.page(mux, "GET /runs/{id}/live", s.runLive)
	s.page(mux, "POST /runs/{id}/approve", s.runDecide)
	s.page(mux, "POST /runs/{id}/cancel", s.runCancel)
	s.page(mux, "POST /runs/{id}/retry", s.runRetry)
	s.page(mux, "GET /runners", s.runnersPage)
	s.page(mux, "GET /schedules", s.schedulesPage)
}

// renderPart writes a fragment of a page (its template name).
func (s *Server) renderPart(w http.ResponseWriter, page, name string, sess session, data any) {
	var buf bytes.Buffer
	if err := s.web.pages.RenderPart(&buf, page, name, pageData{User: sess.User, CSRF: sess.CSRF, Data: data}); err != nil {
		s.log.Error("rendering a page fragment", "page", page, "part", name, "err", err)
		http.Error(w, "rendering "+page+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = buf.WriteTo(w)
}

// messageData is message.html's: an action's failure, or a run that is
// not there.
type messageData struct {
	Title, Message string
	Back, BackText string
}

func (s *Server) message(w http.ResponseWriter, status int, sess session, m messageData) {
	pageSecurity(w)
	s.render(w, status, "message.html", sess, m)
}

// runPath is a run's page.
func runPath(id string) string { return "/runs/" + url.PathEscape(id) }

// stagePath is a run's page focused on a stage.
func stagePath(id, stage string) string { return runPath(id) + "/stages/" + url.PathEscape(stage) }

// ---- durations and times ----

// span is how long from start to end, or to now for what has not ended;
// "" for what has not started.
func span(start, end, now time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = now
	}
	return humanDuration(end.Sub(start))
}

// humanDuration is a duration as people read it: 850ms, 12s, 3m 05s,
// 2h 10m.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Second:
		return strconv.Itoa(int(d.Milliseconds())) + "ms"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
}

// ago is how long ago t was, roughly.
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + humanDuration(-d.Round(time.Second))
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h ago"
	}
	return t.Local().Format("2006-01-02")
}

func shortCommit(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// ---- GitHub links ----

// githubRepoURL is a repository's page on GitHub, when the run came from
// GitHub (a repository the App's webhooks told the server about).
func (s *Server) githubRepoURL(repo string) string {
	if s.app == nil || repo == "" {
		return ""
	}
	if _, ok := s.installations.get(repo); !ok {
		return ""
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok {
		return ""
	}
	return s.githubWeb() + "/" + url.PathEscape(owner) + "/" + url.PathEscape(name)
}

// githubWeb is GitHub's web root.
func (s *Server) githubWeb() string {
	if s.cfg.GitHub.WebURL != "" {
		return strings.TrimSuffix(s.cfg.GitHub.WebURL, "/")
	}
	return githubapp.WebURL(s.cfg.GitHub.APIURL)
}

// ---- the runs ----

// runsData is runs.html's.
type runsData struct {
	Filter   runFilter
	Statuses []string
	Events   []string
	Runs     []runRow
	Page     int
	PerPage  int
	Total    int64
	First    int
	Last     int
	Prev     string
	Next     string
	// Live is the URL of the rows, which the page fetches to update.
	Live  string
	Error string
}

// runRow is one run in the list.
type runRow struct {
	engine.RunInfo
	Path      string
	Branch    string
	CommitURL string
	Duration  string
	Done      bool
}

var runStates = []string{"pending", "queued", "waiting_approval", "running", "succeeded", "failed", "skipped", "cancelled"}

var runEvents = []string{"push", "pull_request", "tag", "manual", "schedule"}

// defaultPerPage is how many runs a page of the list shows.
const defaultPerPage = 25

func (s *Server) runsPage(w http.ResponseWriter, r *http.Request, sess session) {
	q := r.URL.Query()
	d := runsData{Filter: runFilterOf(q), Statuses: runStates, Events: runEvents, Page: 1, PerPage: defaultPerPage}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 0 && n <= 100000 {
		d.Page = n
	}
	if n, err := strconv.Atoi(q.Get("per_page")); err == nil && n > 0 {
		d.PerPage = min(n, 200)
	}
	status := http.StatusOK
	query, err := d.Filter.query()
	if err != nil {
		d.Error, status = err.Error(), http.StatusBadRequest
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		page, err := engine.ListPage(ctx, s.client, query, d.Page, d.PerPage)
		cancel()
		if err != nil {
			d.Error, status = err.Error(), http.StatusBadGateway
		}
		now := time.Now()
		for _, ri := range page.Runs {
			row := runRow{RunInfo: ri, Path: runPath(ri.RunID), Done: ri.Status.Done()}
			row.Branch, _ = strings.CutPrefix(ri.Ref, "refs/heads/")
			if !row.Done || !ri.End.IsZero() {
				row.Duration = span(ri.Start, ri.End, now)
			}
			if u := s.githubRepoURL(ri.Repo); u != "" && ri.SHA != "" {
				row.CommitURL = u + "/commit/" + url.PathEscape(ri.SHA)
			}
			d.Runs = append(d.Runs, row)
		}
		d.Total = page.Total
		if len(d.Runs) > 0 {
			d.First = (d.Page-1)*d.PerPage + 1
			d.Last = d.First + len(d.Runs) - 1
		}
		link := func(p int) string {
			v := url.Values{}
			for k, vs := range q {
				if k != "page" && k != "part" {
					v[k] = vs
				}
			}
			if p > 1 {
				v.Set("page", strconv.Itoa(p))
			}
			if len(v) == 0 {
				return "/runs"
			}
			return "/runs?" + v.Encode()
		}
		if d.Page > 1 {
			d.Prev = link(d.Page - 1)
		}
		if page.More {
			d.Next = link(d.Page + 1)
		}
		live := url.Values{}
		maps.Copy(live, q)
		live.Set("part", "rows")
		d.Live = "/runs?" + live.Encode()
	}
	if q.Get("part") == "rows" {
		s.renderPart(w, "runs.html", "rows", sess, d)
		return
	}
	pageSecurity(w)
	s.render(w, status, "runs.html", sess, d)
}

// ---- a run ----

// runView is run.html's.
type runView struct {
	ID       string
	Path     string
	Pipeline string
	Git      plan.Git
	Branch   string
	Status   liveRun
	Start    time.Time
	Graph    graph
	Stages   []stageView
	// Focus is the stage (or stage block) the page was opened at.
	Focus        string
	RepoURL      string
	CommitURL    string
	PullURL      string
	TraceID      string
	ResumedFrom  string
	SupersededBy string
	Supersedes   []string
	DryRun       bool
	// MayOperate says whether the user may cancel and retry the run;
	// when not, NoOperate says why (mayOperate).
	MayOperate bool
	NoOperate  string
	// Live is where run.js reads the run's state.
	Live string
}

// stageView is one stage of the run page. (Its fields and stepView's are
// flat and few, and strings made here: a template looks each field up by
// name every time, which is most of the time a 1,000-stage page takes.)
type stageView struct {
	ID, State, Duration, Runner, Reason, Decision string
	Anchor                                        string
	Path                                          string
	// Needs lists what the stage needs, as text.
	Needs    string
	Focus    bool
	Approval *approvalView
	Steps    []stepView
}

// stepView is one step of a stage.
type stepView struct {
	Name, Kind, State string
	// Attempt is the attempt's number, "" before the first.
	Attempt, Duration, Error string
	Log                      string
	From                     string
	Resumed                  bool
}

// approvalView is a stage's approval gate.
type approvalView struct {
	Approvers   []string
	Description string
	// Waiting is shown while the gate waits; Allowed says whether the user
	// may decide it.
	Waiting  bool
	Allowed  bool
	Deadline time.Time
	Decision string
	// Action, CSRF and Stage make the form.
	Action, CSRF, Stage string
}

// liveRun is the state of a run as run.js reads it to update the page:
// everything on it that changes as the run goes on, and nothing else.
type liveRun struct {
	State    string      `json:"state"`
	Done     bool        `json:"done"`
	Duration string      `json:"duration"`
	Error    string      `json:"error,omitempty"`
	Stages   []liveStage `json:"stages"`
}

type liveStage struct {
	ID       string     `json:"id"`
	State    string     `json:"state"`
	Duration string     `json:"duration,omitempty"`
	Runner   string     `json:"runner,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Decision string     `json:"decision,omitempty"`
	Steps    []liveStep `json:"steps"`
}

type liveStep struct {
	State    string `json:"state"`
	Attempt  int    `json:"attempt,omitempty"`
	Duration string `json:"duration,omitempty"`
	Error    string `json:"error,omitempty"`
}

// decisionText says how an approval was decided.
func decisionText(a *engine.ApprovalStatus) string {
	if a == nil || a.Decision == "" {
		return ""
	}
	var t string
	switch a.Decision {
	case engine.DecisionApproved:
		t = "Approved by " + a.By
	case engine.DecisionRejected:
		t = "Rejected by " + a.By
	case engine.DecisionTimedOut:
		t = "Timed out"
	default:
		t = a.Decision
	}
	if a.Reason != "" {
		t += ": " + a.Reason
	}
	return t
}

// liveOf is the live state of a run of p.
func liveOf(p *plan.Plan, st *engine.RunStatus, now time.Time) liveRun {
	lr := liveRun{State: string(st.State), Done: st.State.Done(), Duration: span(st.Start, st.End, now), Error: st.Error, Stages: make([]liveStage, len(p.Stages))}
	if lr.State == "" {
		lr.State = string(engine.StatePending)
	}
	byID := make(map[string]*engine.StageStatus, len(st.Stages))
	for i := range st.Stages {
		byID[st.Stages[i].ID] = &st.Stages[i]
	}
	for i := range p.Stages {
		ps := &p.Stages[i]
		ls := liveStage{ID: ps.ID, State: string(engine.StatePending), Steps: make([]liveStep, len(ps.Steps))}
		ss := byID[ps.ID]
		if ss != nil {
			ls.State, ls.Runner, ls.Reason = string(ss.State), ss.Runner, ss.Reason
			ls.Duration = span(ss.Start, ss.End, now)
			ls.Decision = decisionText(ss.Approval)
		} else if ps.Skip != "" {
			ls.State, ls.Reason = string(engine.StateSkipped), ps.Skip
		}
		for j := range ps.Steps {
			step := liveStep{State: string(engine.StatePending)}
			if ss != nil && j < len(ss.Steps) {
				x := &ss.Steps[j]
				step = liveStep{State: string(x.State), Attempt: x.Attempt, Duration: span(x.Start, x.End, now), Error: x.Error}
			}
			ls.Steps[j] = step
		}
		lr.Stages[i] = ls
	}
	return lr
}

// runViewOf makes the run page of a run of p with status st. allowed says
// whether the user may decide an approval with those approvers; focus is
// the stage the page opens at.
func runViewOf(id string, p *plan.Plan, st *engine.RunStatus, now time.Time, allowed func([]string) bool, focus string) runView {
	v := runView{ID: id, Path: runPath(id), Pipeline: p.Pipeline, Git: p.Git, Start: st.Start, Focus: focus,
		ResumedFrom: st.ResumedFrom, SupersededBy: st.SupersededBy, Supersedes: st.Supersedes, DryRun: st.DryRun,
		Live: runPath(id) + "/live"}
	v.Branch, _ = strings.CutPrefix(p.Git.Ref, "refs/heads/")
	v.Status = liveOf(p, st, now)
	byID := make(map[string]*engine.StageStatus, len(st.Stages))
	for i := range st.Stages {
		byID[st.Stages[i].ID] = &st.Stages[i]
	}
	states := make([]string, len(p.Stages))
	anchors := make([]string, len(p.Stages))
	v.Stages = make([]stageView, len(p.Stages))
	for i := range p.Stages {
		ps := &p.Stages[i]
		ls := v.Status.Stages[i]
		sv := stageView{ID: ls.ID, State: ls.State, Duration: ls.Duration, Runner: ls.Runner, Reason: ls.Reason, Decision: ls.Decision,
			Anchor: "stage-" + strconv.Itoa(i), Path: stagePath(id, ps.ID),
			Needs: strings.Join(ps.Needs, ", "), Focus: focus != "" && (ps.ID == focus || ps.Name == focus)}
		ss := byID[ps.ID]
		if ps.Approval != nil {
			a := &approvalView{Approvers: ps.Approval.Approvers, Description: ps.Approval.Description, Decision: ls.Decision,
				Action: runPath(id) + "/approve", Stage: ps.ID}
			if ss != nil && ss.Approval != nil {
				if len(ss.Approval.Approvers) > 0 {
					a.Approvers = ss.Approval.Approvers
				}
				if ss.Approval.Description != "" {
					a.Description = ss.Approval.Description
				}
				a.Deadline = ss.Approval.Deadline
			}
			a.Waiting = ls.State == string(engine.StateWaitingApproval) && a.Decision == ""
			if !v.Status.Done && a.Decision == "" {
				a.Allowed = allowed(a.Approvers)
			}
			sv.Approval = a
		}
		sv.Steps = make([]stepView, len(ps.Steps))
		for j := range ps.Steps {
			step := &ps.Steps[j]
			x := ls.Steps[j]
			sv.Steps[j] = stepView{Name: step.Name, Kind: step.Kind, State: x.State, Duration: x.Duration, Error: x.Error,
				Log: logViewPath(id, ps.ID, step.Name), From: ps.ID + "/" + step.Name}
			if x.Attempt > 0 {
				sv.Steps[j].Attempt = strconv.Itoa(x.Attempt)
			}
			if ss != nil && j < len(ss.Steps) {
				sv.Steps[j].Resumed = ss.Steps[j].Resumed
			}
		}
		v.Stages[i] = sv
		states[i], anchors[i] = ls.State, sv.Anchor
	}
	v.Graph = layoutGraph(p, states, anchors, focus)
	return v
}

// loadRun reads a run's plan and status at once.
func (s *Server) loadRun(ctx context.Context, id string) (plan.Plan, engine.RunStatus, error) {
	var (
		p    plan.Plan
		st   engine.RunStatus
		perr error
		wg   sync.WaitGroup
	)
	wg.Go(func() { p, perr = engine.RunPlan(ctx, s.client, id) })
	st, err := engine.Status(ctx, s.client, id)
	wg.Wait()
	if perr != nil {
		return p, st, perr
	}
	return p, st, err
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request, sess session) {
	id, focus := r.PathValue("id"), r.PathValue("stage")
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	p, st, err := s.loadRun(ctx, id)
	if err != nil {
		status := temporalStatus(err)
		msg := err.Error()
		if status == http.StatusNotFound {
			msg = fmt.Sprintf("There is no run %q on this server.", id)
		}
		s.message(w, status, sess, messageData{Title: "No such run", Message: msg, Back: "/runs", BackText: "All runs"})
		return
	}
	if focus != "" {
		if _, ok := findStage(p, focus); !ok && !hasStageBlock(&p, focus) {
			s.message(w, http.StatusNotFound, sess, messageData{Title: "No such stage", Message: fmt.Sprintf("Run %s has no stage %q.", id, focus), Back: runPath(id), BackText: "The run"})
			return
		}
	}
	// Whether the user may decide each approval, asked once per list of
	// approvers (a team's membership is a GitHub call).
	decided := map[string]bool{}
	allowed := func(approvers []string) bool {
		key := strings.Join(approvers, "\x00")
		if ok, seen := decided[key]; seen {
			return ok
		}
		ok, err := s.mayApprove(ctx, p, approvers, sess.User)
		if err != nil {
			s.log.Warn("checking an approver", "run", id, "user", sess.User, "error", err)
		}
		decided[key] = ok
		return ok
	}
	v := runViewOf(id, &p, &st, time.Now(), allowed, focus)
	// Buttons only for those they would work for; if GitHub cannot say,
	// they are shown, and the action itself asks again.
	ok, why, err := s.mayOperate(ctx, p.Git.Repo, sess.User, "cancel or retry")
	if err != nil {
		s.log.Warn("checking who may cancel and retry", "run", id, "user", sess.User, "error", err)
	}
	v.MayOperate, v.NoOperate = ok || err != nil, why
	if u := s.githubRepoURL(p.Git.Repo); u != "" {
		v.RepoURL = u
		if p.Git.SHA != "" {
			v.CommitURL = u + "/commit/" + url.PathEscape(p.Git.SHA)
		}
		if p.Git.PullRequest > 0 {
			v.PullURL = u + "/pull/" + strconv.Itoa(p.Git.PullRequest)
		}
	}
	if s.traces != nil {
		// The run's trace, where this server exports traces.
		v.TraceID = engine.TraceID(id)
	}
	for i := range v.Stages {
		if a := v.Stages[i].Approval; a != nil {
			a.CSRF = sess.CSRF
		}
	}
	pageSecurity(w)
	s.render(w, http.StatusOK, "run.html", sess, v)
}

func hasStageBlock(p *plan.Plan, name string) bool {
	for i := range p.Stages {
		if p.Stages[i].Name == name {
			return true
		}
	}
	return false
}

// runLive is the run's state for run.js, with an ETag so that a poll of
// a run that did not change costs a 304.
func (s *Server) runLive(w http.ResponseWriter, r *http.Request, _ session) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	p, st, err := s.loadRun(ctx, id)
	if err != nil {
		httpError(w, temporalStatus(err), err.Error())
		return
	}
	body, err := json.Marshal(liveOf(&p, &st, time.Now()))
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	sum := sha256.Sum256(body)
	tag := `"` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "private, no-cache")
	if r.Header.Get("If-None-Match") == tag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// actionFailed shows why an action was refused, with the way back.
func (s *Server) actionFailed(w http.ResponseWriter, status int, sess session, id, what string, err error) {
	s.message(w, status, sess, messageData{Title: what + " failed", Message: err.Error(), Back: runPath(id), BackText: "Back to the run"})
}

// runDecide approves or rejects a stage: the form's stage, reason and
// decision (approve or reject).
func (s *Server) runDecide(w http.ResponseWriter, r *http.Request, sess session) {
	id, stage := r.PathValue("id"), r.PostFormValue("stage")
	approve := r.PostFormValue("decision") != "reject"
	what := map[bool]string{true: "Approving", false: "Rejecting"}[approve]
	if stage == "" {
		s.actionFailed(w, http.StatusBadRequest, sess, id, what, fmt.Errorf("the form names no stage"))
		return
	}
	status, err := s.decideStage(r.Context(), id, stage, sess.User, strings.TrimSpace(r.PostFormValue("reason")), approve)
	if err != nil {
		s.actionFailed(w, status, sess, id, what+" stage "+stage, err)
		return
	}
	http.Redirect(w, r, stagePath(id, stage), http.StatusSeeOther)
}

func (s *Server) runCancel(w http.ResponseWriter, r *http.Request, sess session) {
	id := r.PathValue("id")
	if status, err := s.cancelRun(r.Context(), id, sess.User); err != nil {
		s.actionFailed(w, status, sess, id, "Cancelling", err)
		return
	}
	http.Redirect(w, r, runPath(id), http.StatusSeeOther)
}

// runRetry retries a finished run from the form's step (from, as
// STAGE/STEP; empty: the first step that did not succeed).
func (s *Server) runRetry(w http.ResponseWriter, r *http.Request, sess session) {
	id := r.PathValue("id")
	if status, err := s.retryRun(r.Context(), id, r.PostFormValue("from"), sess.User); err != nil {
		s.actionFailed(w, status, sess, id, "Retrying", err)
		return
	}
	http.Redirect(w, r, runPath(id), http.StatusSeeOther)
}

// ---- a manual run ----

type newRunData struct {
	Form StartRunRequest
	// Ref is the form's branch, tag or commit; Inputs its name=value
	// lines, as typed.
	Ref, Inputs string
	// Repositories are those of server.hcl, offered in the form.
	Repositories []string
	Error        string
}

// newRunPage is the form of a manual run (?repo= and ?ref= fill it in).
func (s *Server) newRunPage(w http.ResponseWriter, r *http.Request, sess session) {
	d := newRunData{Form: StartRunRequest{Repository: r.URL.Query().Get("repo"), Pipeline: r.URL.Query().Get("pipeline")}, Ref: r.URL.Query().Get("ref")}
	s.renderNewRun(w, http.StatusOK, sess, d)
}

func (s *Server) renderNewRun(w http.ResponseWriter, status int, sess session, d newRunData) {
	for _, rp := range s.cfg.Repositories {
		d.Repositories = append(d.Repositories, rp.Name)
	}
	pageSecurity(w)
	s.render(w, status, "newrun.html", sess, d)
}

// newRun starts the form's manual run, as POST /api/v1/runs does, and
// goes to its page (to the list of the runs, when it started several); a
// refusal, a pipeline that does not compile or nothing to run is shown on
// the form, kept as it was typed.
func (s *Server) newRun(w http.ResponseWriter, r *http.Request, sess session) {
	d := newRunData{Ref: strings.TrimSpace(r.PostFormValue("ref")), Inputs: r.PostFormValue("inputs")}
	d.Form = StartRunRequest{
		Repository: strings.TrimSpace(r.PostFormValue("repo")),
		Pipeline:   strings.TrimSpace(r.PostFormValue("pipeline")),
		DryRun:     r.PostFormValue("dry_run") != "",
	}
	if shaPattern.MatchString(d.Ref) {
		d.Form.SHA = d.Ref
	} else {
		d.Form.Ref = d.Ref
	}
	for i, line := range strings.Split(d.Inputs, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			d.Error = fmt.Sprintf("Input line %d, %q, is not name=value.", i+1, line)
			s.renderNewRun(w, http.StatusBadRequest, sess, d)
			return
		}
		if d.Form.Inputs == nil {
			d.Form.Inputs = map[string]string{}
		}
		d.Form.Inputs[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	res, status, err := s.startManual(r.Context(), sess.User, d.Form)
	if err != nil {
		d.Error = err.Error()
		s.renderNewRun(w, status, sess, d)
		return
	}
	switch len(res.Runs) {
	case 1:
		http.Redirect(w, r, runPath(res.Runs[0].RunID), http.StatusSeeOther)
		return
	case 0:
		var why []string
		for _, inv := range res.Invalid {
			why = append(why, "The pipelines do not compile:\n"+strings.TrimSpace(inv.Diagnostics))
		}
		for _, sk := range res.Skipped {
			why = append(why, fmt.Sprintf("Pipeline %s does not run: %s.", sk.Pipeline, sk.Reason))
		}
		if res.Ignored != "" {
			why = append(why, res.Ignored)
		}
		if len(why) == 0 {
			why = append(why, "No pipeline of the repository starts on a manual run of this ref.")
		}
		d.Error = "Nothing to run. " + strings.Join(why, " ")
		s.renderNewRun(w, http.StatusUnprocessableEntity, sess, d)
		return
	}
	q := url.Values{"repo": {d.Form.Repository}, "event": {"manual"}}
	http.Redirect(w, r, "/runs?"+q.Encode(), http.StatusSeeOther)
}

// ---- runners and schedules ----

type runnersData struct {
	Runners []runnerRow
	Online  int
	Error   string
	Live    string
}

type runnerRow struct {
	engine.RunnerReport
	Busy   bool
	Stages []runnerStage
}

// runnerStage is a stage a runner runs, as a link to it.
type runnerStage struct {
	Run, Stage, Path string
}

func (s *Server) runnersPage(w http.ResponseWriter, r *http.Request, sess session) {
	d := runnersData{Live: "/runners?part=rows"}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	status := http.StatusOK
	runners, err := engine.Runners(ctx, s.client)
	if err != nil {
		d.Error, status = err.Error(), http.StatusBadGateway
	}
	for _, rr := range runners {
		row := runnerRow{RunnerReport: rr, Busy: len(rr.Stages) > 0}
		for _, rs := range rr.Stages {
			run, stage, _ := strings.Cut(rs, "/")
			row.Stages = append(row.Stages, runnerStage{Run: run, Stage: stage, Path: stagePath(run, stage)})
		}
		if rr.Online {
			d.Online++
		}
		d.Runners = append(d.Runners, row)
	}
	if r.URL.Query().Get("part") == "rows" {
		s.renderPart(w, "runners.html", "rows", sess, d)
		return
	}
	pageSecurity(w)
	s.render(w, status, "runners.html", sess, d)
}

type schedulesData struct {
	Schedules []scheduleRow
	Error     string
}

type scheduleRow struct {
	ScheduleInfo
	Runs string
}

func (s *Server) schedulesPage(w http.ResponseWriter, r *http.Request, sess session) {
	var d schedulesData
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	status := http.StatusOK
	list, err := ListSchedules(ctx, s.client)
	if err != nil {
		d.Error, status = err.Error(), http.StatusBadGateway
	}
	for _, sc := range list {
		q := url.Values{"repo": {sc.Repo}, "pipeline": {sc.Pipeline}, "event": {KindSchedule}}
		d.Schedules = append(d.Schedules, scheduleRow{ScheduleInfo: sc, Runs: "/runs?" + q.Encode()})
	}
	pageSecurity(w)
	s.render(w, status, "schedules.html", sess, d)
}
