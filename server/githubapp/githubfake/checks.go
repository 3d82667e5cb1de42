package githubfake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Check runs, commit statuses, comments and pull requests: what a CI
// system writes to GitHub, and the pull request it reads.

// CheckRunState is a check run as the fake holds it: its current state,
// with every annotation any write added.
type CheckRunState struct {
	ID                                    int64
	AppID                                 int64 // the App that created it (only that App may update it)
	Name, HeadSHA, ExternalID, DetailsURL string
	// Status is queued, in_progress or completed; Conclusion is set when
	// completed.
	Status, Conclusion     string
	StartedAt, CompletedAt time.Time // zero when not set
	// Title, Summary and Text are the output's (empty before any).
	Title, Summary, Text string
	Annotations          []Annotation // all, in the order they were sent
	Actions              []Action     // the last write's
	// Writes counts the accepted creates and updates of the run.
	Writes int
}

// Annotation is a check run annotation as sent.
type Annotation struct {
	Path                   string
	StartLine, EndLine     int
	StartColumn, EndColumn int // 0 when not sent
	Level                  string
	Title, Message         string
	RawDetails             string
}

// Action is a check run's requested action (a button).
type Action struct{ Label, Description, Identifier string }

// StatusState is a commit status as posted.
type StatusState struct {
	ID                                          int64
	SHA, State, Context, Description, TargetURL string
	Created                                     time.Time
}

type checkRun struct {
	id, app, suite                 int64
	name, headSHA, externalID      string
	detailsURL, status, conclusion string
	startedAt, completedAt         time.Time
	title, summary, text           string
	hasOutput, hasText             bool
	annotations                    []Annotation
	actions                        []Action
	writes                         int
}

func (cr *checkRun) state() CheckRunState {
	return CheckRunState{
		ID: cr.id, AppID: cr.app, Name: cr.name, HeadSHA: cr.headSHA, ExternalID: cr.externalID, DetailsURL: cr.detailsURL,
		Status: cr.status, Conclusion: cr.conclusion, StartedAt: cr.startedAt, CompletedAt: cr.completedAt,
		Title: cr.title, Summary: cr.summary, Text: cr.text,
		Annotations: append([]Annotation(nil), cr.annotations...), Actions: append([]Action(nil), cr.actions...),
		Writes: cr.writes,
	}
}

type commitStatus struct {
	id                                          int64
	sha, state, context, description, targetURL string
	created                                     time.Time
}

type comment struct {
	id      int64
	body    string
	created time.Time
}

// CheckRuns returns the current state of every check run of repo, in the
// order they were created.
func (s *Server) CheckRuns(repo string) []CheckRunState {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []CheckRunState
	for _, cr := range s.repo(repo).checkRuns {
		out = append(out, cr.state())
	}
	return out
}

// CheckRun returns check run id of repo; ok is false when there is none.
func (s *Server) CheckRun(repo string, id int64) (state CheckRunState, ok bool) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if cr := s.repo(repo).checkRun(id); cr != nil {
		return cr.state(), true
	}
	return CheckRunState{}, false
}

// AddCheckRun adds a queued check run named name on commit headSHA of
// repo, created by App appID (another App than the fake's when appID is
// not AppID), and returns its ID.
func (s *Server) AddCheckRun(repo string, appID int64, name, headSHA, externalID string) int64 {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repo(repo)
	if rp.git.commits[headSHA] == nil {
		s.t.Fatalf("githubfake: AddCheckRun(%s): no commit %s", repo, headSHA)
	}
	cr := s.newCheckRun(rp, appID, name, headSHA)
	cr.externalID = externalID
	cr.writes = 0
	s.checkRunChanged()
	return cr.id
}

// WaitCheckRun waits until a check run of repo satisfies done and returns
// it (the first created, if several do), or returns ctx's error. It looks
// at the runs as they are when called and again after every change.
func (s *Server) WaitCheckRun(ctx context.Context, repo string, done func(CheckRunState) bool) (CheckRunState, error) {
	for {
		s.mu.Lock()
		rp := s.repos[repo]
		if rp == nil {
			s.mu.Unlock()
			return CheckRunState{}, fmt.Errorf("githubfake: no repository %s", repo)
		}
		for _, cr := range rp.checkRuns {
			if st := cr.state(); done(st) {
				s.mu.Unlock()
				return st, nil
			}
		}
		changed := s.checkChanged
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return CheckRunState{}, fmt.Errorf("waiting for a check run of %s: %w", repo, ctx.Err())
		case <-changed:
		}
	}
}

// checkRunChanged wakes WaitCheckRun; s.mu is held.
func (s *Server) checkRunChanged() {
	close(s.checkChanged)
	s.checkChanged = make(chan struct{})
}

// Statuses returns every status posted on commit sha of repo, in the
// order they were posted.
func (s *Server) Statuses(repo, sha string) []StatusState {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StatusState
	for _, st := range s.repo(repo).statuses {
		if st.sha == sha {
			out = append(out, StatusState{ID: st.id, SHA: st.sha, State: st.state, Context: st.context,
				Description: st.description, TargetURL: st.targetURL, Created: st.created})
		}
	}
	return out
}

// Comments returns the bodies of the comments on issue or pull request
// number of repo, in the order they were made.
func (s *Server) Comments(repo string, number int) []string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.repo(repo).comments[number] {
		out = append(out, c.body)
	}
	return out
}

func (rp *repo) checkRun(id int64) *checkRun {
	for _, cr := range rp.checkRuns {
		if cr.id == id {
			return cr
		}
	}
	return nil
}

// newCheckRun adds a queued check run; s.mu is held. A run's check suite
// is its App's on its commit.
func (s *Server) newCheckRun(rp *repo, app int64, name, sha string) *checkRun {
	var suite int64
	for _, other := range rp.checkRuns {
		if other.app == app && other.headSHA == sha {
			suite = other.suite
			break
		}
	}
	if suite == 0 {
		s.nextID++
		suite = s.nextID
	}
	s.nextID++
	cr := &checkRun{id: s.nextID, app: app, suite: suite, name: name, headSHA: sha, status: "queued",
		startedAt: time.Now().UTC().Truncate(time.Second), writes: 1}
	rp.checkRuns = append(rp.checkRuns, cr)
	return cr
}

// can says whether a token's permission name is at least level (read or
// write).
func (t token) can(name, level string) bool {
	p := t.perms[name]
	return p == "write" || p == "admin" || (level == "read" && p == "read")
}

func forbidden(msg, docs string) response {
	res := errorResponse(http.StatusForbidden, msg)
	res.body.(map[string]string)["documentation_url"] = docs
	return res
}

func invalid(msg, docs string) response {
	res := errorResponse(http.StatusUnprocessableEntity, msg)
	res.body.(map[string]string)["documentation_url"] = docs
	return res
}

// validationFailed is GitHub's 422 for a model's validation, with one
// error.
func validationFailed(resource, field, code, msg, docs string) response {
	e := map[string]any{"resource": resource, "field": field, "code": code}
	if msg != "" {
		e["message"] = msg
	}
	return response{status: http.StatusUnprocessableEntity, body: map[string]any{
		"message": "Validation Failed", "errors": []any{e}, "documentation_url": docs, "status": "422",
	}}
}

// writeOp answers the operations of this file for token tok; ok is false
// for any other operation.
func (s *Server) writeOp(op string, tok token, p map[string]string, q url.Values, body []byte) (res response, ok bool) {
	switch op {
	case "checks/create", "checks/update", "checks/get", "checks/list-for-ref",
		"repos/create-commit-status", "repos/list-commit-statuses-for-ref", "issues/create-comment", "pulls/get":
	default:
		return response{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repos[p["owner"]+"/"+p["repo"]]
	if rp == nil || rp.installation != tok.installation {
		return errorResponse(http.StatusNotFound, "Not Found"), true
	}
	switch op {
	case "checks/create":
		return s.createCheckRun(rp, tok, body), true
	case "checks/update":
		id, _ := strconv.ParseInt(p["check_run_id"], 10, 64)
		return s.updateCheckRun(rp, tok, id, body), true
	case "checks/get":
		id, _ := strconv.ParseInt(p["check_run_id"], 10, 64)
		if !tok.can("checks", "read") {
			return forbidden(resourceNotAllow, checkRunDocs+"#get-a-check-run"), true
		}
		cr := rp.checkRun(id)
		if cr == nil {
			return errorResponse(http.StatusNotFound, "Not Found"), true
		}
		return response{status: http.StatusOK, body: s.checkRunJSON(rp, cr)}, true
	case "checks/list-for-ref":
		return s.listCheckRuns(rp, tok, p["ref"], q), true
	case "repos/create-commit-status":
		return s.createStatus(rp, tok, p["sha"], body), true
	case "repos/list-commit-statuses-for-ref":
		return s.listStatuses(rp, tok, p["ref"], q), true
	case "issues/create-comment":
		n, _ := strconv.Atoi(p["issue_number"])
		return s.createComment(rp, tok, n, body), true
	default: // pulls/get
		n, _ := strconv.Atoi(p["pull_number"])
		if !tok.can("pull_requests", "read") {
			return forbidden(resourceNotAllow, "https://docs.github.com/rest/pulls/pulls#get-a-pull-request"), true
		}
		pr := rp.pulls[n]
		if pr == nil {
			return errorResponse(http.StatusNotFound, "Not Found"), true
		}
		return response{status: http.StatusOK, body: s.pullRequestJSON(rp, pr, true)}, true
	}
}

// checkRunBody is the body of checks/create and checks/update; a nil
// field was not sent.
type checkRunBody struct {
	Name        *string    `json:"name"`
	HeadSHA     *string    `json:"head_sha"`
	DetailsURL  *string    `json:"details_url"`
	ExternalID  *string    `json:"external_id"`
	Status      *string    `json:"status"`
	Conclusion  *string    `json:"conclusion"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	Output      *struct {
		Title       *string `json:"title"`
		Summary     *string `json:"summary"`
		Text        *string `json:"text"`
		Annotations []struct {
			Path        string `json:"path"`
			StartLine   int    `json:"start_line"`
			EndLine     int    `json:"end_line"`
			StartColumn int    `json:"start_column"`
			EndColumn   int    `json:"end_column"`
			Level       string `json:"annotation_level"`
			Message     string `json:"message"`
			Title       string `json:"title"`
			RawDetails  string `json:"raw_details"`
		} `json:"annotations"`
	} `json:"output"`
	Actions *[]struct {
		Label       string `json:"label"`
		Description string `json:"description"`
		Identifier  string `json:"identifier"`
	} `json:"actions"`
}

func (s *Server) createCheckRun(rp *repo, tok token, body []byte) response {
	docs := checkRunDocs + "#create-a-check-run"
	if !tok.can("checks", "write") {
		return forbidden(resourceNotAllow, docs)
	}
	var b checkRunBody
	if err := json.Unmarshal(body, &b); err != nil {
		return errorResponse(http.StatusBadRequest, "Problems parsing JSON")
	}
	if b.Name == nil || b.HeadSHA == nil { // the description requires both
		return invalid(invalidRequest+"\"name\" and \"head_sha\" are required.", docs)
	}
	c := rp.resolve(*b.HeadSHA)
	if c == nil || c.sha != *b.HeadSHA {
		return invalid("No commit found for SHA: "+*b.HeadSHA, docs)
	}
	if b.Status != nil && *b.Status == "completed" && b.Conclusion == nil {
		return invalid(invalidRequest+"When the \"status\" is \"completed\", \"conclusion\" is required.", docs)
	}
	probe := &checkRun{status: "queued"}
	if res, ok := applyCheckRun(probe, &b, docs); !ok {
		return res
	}
	cr := s.newCheckRun(rp, s.AppID, *b.Name, c.sha)
	applyCheckRun(cr, &b, docs)
	cr.writes = 1
	s.checkRunChanged()
	h := http.Header{}
	h.Set("Location", fmt.Sprintf("%s/check-runs/%d", s.repoURL(rp), cr.id))
	return response{status: http.StatusCreated, header: h, body: s.checkRunJSON(rp, cr)}
}

func (s *Server) updateCheckRun(rp *repo, tok token, id int64, body []byte) response {
	docs := checkRunDocs + "#update-a-check-run"
	if !tok.can("checks", "write") {
		return forbidden(resourceNotAllow, docs)
	}
	cr := rp.checkRun(id)
	if cr == nil {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	if cr.app != s.AppID {
		return forbidden(fmt.Sprintf("Invalid app_id `%d` - check run can only be modified by the GitHub App that created it.", cr.app), docs)
	}
	var b checkRunBody
	if err := json.Unmarshal(body, &b); err != nil {
		return errorResponse(http.StatusBadRequest, "Problems parsing JSON")
	}
	if b.Output != nil && b.Output.Title == nil {
		return invalid(invalidRequest+"\"title\" wasn't supplied.", docs)
	}
	// Validate on a copy: a refused write changes nothing.
	probe := *cr
	probe.annotations = append([]Annotation(nil), cr.annotations...)
	if res, ok := applyCheckRun(&probe, &b, docs); !ok {
		return res
	}
	applyCheckRun(cr, &b, docs)
	cr.writes++
	s.checkRunChanged()
	return response{status: http.StatusOK, body: s.checkRunJSON(rp, cr)}
}

// applyCheckRun applies a create's or update's body to cr as GitHub
// does: a conclusion completes the run, output replaces title and
// summary (and text when sent), annotations are appended, actions
// replaced. It refuses (ok false) what GitHub refuses beyond the
// description.
func applyCheckRun(cr *checkRun, b *checkRunBody, docs string) (res response, ok bool) {
	if b.Conclusion != nil && *b.Conclusion == "stale" {
		return invalid(invalidRequest+"Only GitHub can set the conclusion \"stale\".", docs), false
	}
	if b.CompletedAt != nil && b.Conclusion == nil && cr.conclusion == "" {
		return invalid(invalidRequest+"\"conclusion\" is required when \"completed_at\" is supplied.", docs), false
	}
	if b.Output != nil {
		for i, a := range b.Output.Annotations {
			var problem string
			switch {
			case a.StartLine < 1 || a.EndLine < a.StartLine:
				problem = fmt.Sprintf("start_line %d and end_line %d are not a range of lines", a.StartLine, a.EndLine)
			case (a.StartColumn != 0 || a.EndColumn != 0) && a.StartLine != a.EndLine:
				problem = "start_column and end_column are only allowed when start_line and end_line are equal"
			case utf8.RuneCountInString(a.Title) > maxAnnotTitle:
				problem = fmt.Sprintf("title is too long (maximum is %d characters)", maxAnnotTitle)
			case len(a.Message) > maxAnnotMessage || len(a.RawDetails) > maxAnnotMessage:
				problem = "message and raw_details may be at most 64 KB"
			}
			if problem != "" {
				return invalid(fmt.Sprintf("%sannotations[%d]: %s.", invalidRequest, i, problem), docs), false
			}
		}
	}
	if b.Name != nil {
		cr.name = *b.Name
	}
	if b.DetailsURL != nil {
		cr.detailsURL = *b.DetailsURL
	}
	if b.ExternalID != nil {
		cr.externalID = *b.ExternalID
	}
	if b.StartedAt != nil {
		cr.startedAt = b.StartedAt.UTC()
	}
	if b.Status != nil {
		cr.status = *b.Status
		if cr.status != "completed" {
			cr.conclusion, cr.completedAt = "", time.Time{}
		}
	}
	if b.Conclusion != nil {
		cr.status, cr.conclusion = "completed", *b.Conclusion
	}
	if b.CompletedAt != nil {
		cr.completedAt = b.CompletedAt.UTC()
	}
	if cr.status == "completed" && cr.completedAt.IsZero() {
		cr.completedAt = time.Now().UTC().Truncate(time.Second)
	}
	if o := b.Output; o != nil {
		cr.hasOutput = true
		if o.Title != nil {
			cr.title = *o.Title
		}
		if o.Summary != nil {
			cr.summary = *o.Summary
		}
		if o.Text != nil {
			cr.text, cr.hasText = *o.Text, true
		}
		for _, a := range o.Annotations {
			cr.annotations = append(cr.annotations, Annotation{
				Path: a.Path, StartLine: a.StartLine, EndLine: a.EndLine, StartColumn: a.StartColumn, EndColumn: a.EndColumn,
				Level: a.Level, Title: a.Title, Message: a.Message, RawDetails: a.RawDetails,
			})
		}
	}
	if b.Actions != nil {
		cr.actions = nil
		for _, a := range *b.Actions {
			cr.actions = append(cr.actions, Action(a))
		}
	}
	return response{}, true
}

// listCheckRuns is checks/list-for-ref: newest first. Filter latest (the
// default) keeps only each App's newest run of each name, before the
// other filters: status=completed&filter=latest lists no run whose name
// has a newer run in progress.
func (s *Server) listCheckRuns(rp *repo, tok token, ref string, q url.Values) response {
	if !tok.can("checks", "read") {
		return forbidden(resourceNotAllow, checkRunDocs+"#list-check-runs-for-a-git-reference")
	}
	c := rp.resolve(ref)
	if c == nil {
		return invalid("No commit found for SHA: "+ref, checkRunDocs+"#list-check-runs-for-a-git-reference")
	}
	var appID int64
	if v := q.Get("app_id"); v != "" {
		appID, _ = strconv.ParseInt(v, 10, 64)
	}
	latest := q.Get("filter") != "all"
	seen := map[string]bool{}
	var runs []*checkRun
	for i := len(rp.checkRuns) - 1; i >= 0; i-- {
		cr := rp.checkRuns[i]
		if cr.headSHA != c.sha {
			continue
		}
		key := fmt.Sprintf("%d/%s", cr.app, cr.name)
		older := seen[key]
		seen[key] = true
		switch {
		case latest && older,
			q.Has("check_name") && cr.name != q.Get("check_name"),
			q.Has("status") && cr.status != q.Get("status"),
			appID != 0 && cr.app != appID:
			continue
		}
		runs = append(runs, cr)
	}
	page, perPage, _ := paging(q, 30)
	list := []map[string]any{}
	for _, cr := range pageOf(runs, page, perPage) {
		list = append(list, s.checkRunJSON(rp, cr))
	}
	return response{status: http.StatusOK,
		header: linkHeaderQuery(s.repoURL(rp)+"/commits/"+ref+"/check-runs", q, page, perPage, len(runs), true),
		body:   map[string]any{"total_count": len(runs), "check_runs": list}}
}

func (s *Server) createStatus(rp *repo, tok token, sha string, body []byte) response {
	docs := "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
	if !tok.can("statuses", "write") {
		return forbidden(resourceNotAllow, docs)
	}
	var b struct {
		State       string  `json:"state"`
		TargetURL   *string `json:"target_url"`
		Description *string `json:"description"`
		Context     *string `json:"context"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return errorResponse(http.StatusBadRequest, "Problems parsing JSON")
	}
	c := rp.resolve(sha)
	if c == nil {
		return invalid("No commit found for SHA: "+sha, docs)
	}
	st := &commitStatus{sha: c.sha, state: b.State, context: "default", created: time.Now().UTC().Truncate(time.Second)}
	if b.Context != nil {
		st.context = *b.Context
	}
	if b.Description != nil {
		st.description = *b.Description
	}
	if b.TargetURL != nil {
		st.targetURL = *b.TargetURL
	}
	if utf8.RuneCountInString(st.description) > maxStatusDesc {
		return validationFailed("Status", "description", "custom", fmt.Sprintf("description is too long (maximum is %d characters)", maxStatusDesc), docs)
	}
	n := 0
	for _, other := range rp.statuses {
		// The context is case-insensitive.
		if other.sha == st.sha && strings.EqualFold(other.context, st.context) {
			n++
		}
	}
	if n >= maxStatuses {
		return validationFailed("Status", "", "custom", "This SHA and context has reached the maximum number of statuses.", docs)
	}
	s.nextID++
	st.id = s.nextID
	rp.statuses = append(rp.statuses, st)
	h := http.Header{}
	h.Set("Location", s.repoURL(rp)+"/statuses/"+st.sha)
	return response{status: http.StatusCreated, header: h, body: s.statusJSON(rp, st)}
}

// listStatuses is repos/list-commit-statuses-for-ref: newest first.
func (s *Server) listStatuses(rp *repo, tok token, ref string, q url.Values) response {
	if !tok.can("statuses", "read") {
		return forbidden(resourceNotAllow, "https://docs.github.com/rest/commits/statuses#list-commit-statuses-for-a-reference")
	}
	c := rp.resolve(ref)
	if c == nil {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	var all []*commitStatus
	for i := len(rp.statuses) - 1; i >= 0; i-- {
		if rp.statuses[i].sha == c.sha {
			all = append(all, rp.statuses[i])
		}
	}
	page, perPage, _ := paging(q, 30)
	list := []map[string]any{}
	for _, st := range pageOf(all, page, perPage) {
		list = append(list, s.statusJSON(rp, st))
	}
	return response{status: http.StatusOK, header: linkHeader(s.repoURL(rp)+"/commits/"+ref+"/statuses", page, perPage, len(all), true), body: list}
}

func (s *Server) createComment(rp *repo, tok token, number int, body []byte) response {
	docs := "https://docs.github.com/rest/issues/comments#create-an-issue-comment"
	pr := rp.pulls[number]
	if pr == nil && !rp.issues[number] {
		return errorResponse(http.StatusNotFound, "Not Found")
	}
	// A pull request's comments need issues or pull_requests write; an
	// issue's issues write.
	if !tok.can("issues", "write") && (pr == nil || !tok.can("pull_requests", "write")) {
		return forbidden(resourceNotAllow, docs)
	}
	var b struct {
		Body string `json:"body"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return errorResponse(http.StatusBadRequest, "Problems parsing JSON")
	}
	if strings.TrimSpace(b.Body) == "" {
		return validationFailed("IssueComment", "body", "missing_field", "", docs)
	}
	if utf8.RuneCountInString(b.Body) > maxCommentChars {
		return validationFailed("IssueComment", "body", "custom", fmt.Sprintf("Body is too long (maximum is %d characters)", maxCommentChars), docs)
	}
	s.nextID++
	c := &comment{id: s.nextID, body: b.Body, created: time.Now().UTC().Truncate(time.Second)}
	rp.comments[number] = append(rp.comments[number], c)
	h := http.Header{}
	h.Set("Location", fmt.Sprintf("%s/issues/comments/%d", s.repoURL(rp), c.id))
	return response{status: http.StatusCreated, header: h, body: s.commentJSON(rp, number, c)}
}
