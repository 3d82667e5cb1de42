package githubapp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-github/v62/github"
)

// What a CI system writes to GitHub: check runs, commit statuses and
// comments; and the pull request it reads. Every limit GitHub enforces on
// these is checked here first, so that a write GitHub would refuse with a
// 422 is an error before any request, naming the field.

// CheckRun is what Sluice writes to a check run. Zero fields are not sent.
type CheckRun struct {
	Name, HeadSHA, ExternalID, DetailsURL string
	// Status is queued, in_progress or completed; completed needs a
	// Conclusion, and a Conclusion alone completes the run.
	Status string
	// Conclusion is success, failure, neutral, cancelled, skipped,
	// timed_out or action_required.
	Conclusion             string
	StartedAt, CompletedAt time.Time
	// Title, Summary and Text are the output, sent when any of them or
	// Annotations is set. GitHub then needs a title (Title, else Name) and
	// a summary, and replaces the run's title and summary (its text only
	// when Text is set): an update that adds annotations repeats Summary.
	// Summary and Text may each be at most 65,535 characters.
	Title, Summary, Text string
	// Annotations are appended to the run's (GitHub keeps all of them);
	// at most MaxAnnotations per create or update: the caller batches.
	Annotations []Annotation
	// Actions, at most 3, replace the run's when set.
	Actions []Action
}

// Annotation marks lines of a file in a check run.
type Annotation struct {
	Path string
	// StartLine is 1 or more; EndLine is at least StartLine, or 0 for
	// StartLine.
	StartLine, EndLine int
	Level              string // notice | warning | failure
	// Title is at most 255 characters, Message (required) and RawDetails
	// at most 64 KiB each.
	Title, Message, RawDetails string
}

// Action is a button on a completed check run; clicking it sends the App a
// check_run requested_action event with Identifier. Label is at most 20
// characters, Description 40 and Identifier 20, all required.
type Action struct{ Label, Description, Identifier string }

// GitHub's limits on check runs.
const (
	// MaxAnnotations is how many annotations one create or update of a
	// check run may carry.
	MaxAnnotations = 50

	maxActions        = 3
	maxOutputChars    = 65535
	maxActionLabel    = 20
	maxActionDesc     = 40
	maxActionID       = 20
	maxAnnotTitle     = 255
	maxAnnotBytes     = 64 << 10
	maxStatusDesc     = 140
	maxCommentChars   = 65536
	checkRunsPageSize = 100
)

var (
	checkStatuses    = []string{"queued", "in_progress", "completed"}
	checkConclusions = []string{"success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"}
	annotationLevels = []string{"notice", "warning", "failure"}
	statusStates     = []string{"pending", "success", "failure", "error"}
)

// checkRunRequest is the body of a check run create or update: go-github
// v62's UpdateCheckRunOptions always sends name (blanking it when empty)
// and cannot send started_at.
type checkRunRequest struct {
	Name        string           `json:"name,omitempty"`
	HeadSHA     string           `json:"head_sha,omitempty"`
	DetailsURL  string           `json:"details_url,omitempty"`
	ExternalID  string           `json:"external_id,omitempty"`
	Status      string           `json:"status,omitempty"`
	Conclusion  string           `json:"conclusion,omitempty"`
	StartedAt   string           `json:"started_at,omitempty"`
	CompletedAt string           `json:"completed_at,omitempty"`
	Output      *checkRunOutput  `json:"output,omitempty"`
	Actions     []checkRunAction `json:"actions,omitempty"`
}

type checkRunOutput struct {
	Title       string               `json:"title"`
	Summary     string               `json:"summary"`
	Text        string               `json:"text,omitempty"`
	Annotations []checkRunAnnotation `json:"annotations,omitempty"`
}

type checkRunAnnotation struct {
	Path       string `json:"path"`
	StartLine  int    `json:"start_line"`
	EndLine    int    `json:"end_line"`
	Level      string `json:"annotation_level"`
	Message    string `json:"message"`
	Title      string `json:"title,omitempty"`
	RawDetails string `json:"raw_details,omitempty"`
}

type checkRunAction struct {
	Label       string `json:"label"`
	Description string `json:"description"`
	Identifier  string `json:"identifier"`
}

func oneOf(v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// timestamp is GitHub's ISO 8601 form, YYYY-MM-DDTHH:MM:SSZ; "" for the
// zero time.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// request checks cr against GitHub's rules and builds the body of a
// create (create true) or an update.
func (cr CheckRun) request(create bool) (*checkRunRequest, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if create && cr.Name == "" {
		bad("it has no name")
	}
	if create && cr.HeadSHA == "" {
		bad("it has no head SHA")
	}
	if cr.Status != "" && !oneOf(cr.Status, checkStatuses) {
		bad("status %q is not one of %s", cr.Status, strings.Join(checkStatuses, ", "))
	}
	if cr.Conclusion != "" && !oneOf(cr.Conclusion, checkConclusions) {
		bad("conclusion %q is not one of %s", cr.Conclusion, strings.Join(checkConclusions, ", "))
	}
	switch {
	case cr.Status == "completed" && cr.Conclusion == "":
		bad("status completed needs a conclusion")
	case cr.Conclusion != "" && cr.Status != "" && cr.Status != "completed":
		bad("a conclusion (%s) completes the run, but the status is %s", cr.Conclusion, cr.Status)
	case !cr.CompletedAt.IsZero() && cr.Conclusion == "":
		bad("a completion time needs a conclusion")
	}
	body := &checkRunRequest{
		Name: cr.Name, DetailsURL: cr.DetailsURL, ExternalID: cr.ExternalID, Status: cr.Status, Conclusion: cr.Conclusion,
		StartedAt: timestamp(cr.StartedAt), CompletedAt: timestamp(cr.CompletedAt),
	}
	if create {
		body.HeadSHA = cr.HeadSHA
	}
	if cr.Title != "" || cr.Summary != "" || cr.Text != "" || len(cr.Annotations) > 0 {
		out := &checkRunOutput{Title: cr.Title, Summary: cr.Summary, Text: cr.Text}
		if out.Title == "" {
			out.Title = cr.Name
		}
		if out.Title == "" {
			bad("its output needs a title (Title, or Name to default to)")
		}
		if out.Summary == "" {
			bad("its output needs a summary (GitHub requires one whenever a title, text or annotations are sent, and replaces the run's with it)")
		}
		if n := utf8.RuneCountInString(out.Summary); n > maxOutputChars {
			bad("its summary is %d characters; GitHub allows at most %d", n, maxOutputChars)
		}
		if n := utf8.RuneCountInString(out.Text); n > maxOutputChars {
			bad("its text is %d characters; GitHub allows at most %d", n, maxOutputChars)
		}
		if len(cr.Annotations) > MaxAnnotations {
			bad("%d annotations in one request; GitHub takes at most %d a request (send the rest in updates)", len(cr.Annotations), MaxAnnotations)
		}
		for i, a := range cr.Annotations {
			end := a.EndLine
			if end == 0 {
				end = a.StartLine
			}
			what := fmt.Sprintf("annotation %d (%s:%d)", i, a.Path, a.StartLine)
			switch {
			case a.Path == "":
				bad("%s has no path", what)
			case a.StartLine < 1 || end < a.StartLine:
				bad("%s: lines %d to %d are not a range of lines from 1", what, a.StartLine, end)
			case !oneOf(a.Level, annotationLevels):
				bad("%s: level %q is not one of %s", what, a.Level, strings.Join(annotationLevels, ", "))
			case a.Message == "":
				bad("%s has no message", what)
			case utf8.RuneCountInString(a.Title) > maxAnnotTitle:
				bad("%s: its title is %d characters; GitHub allows at most %d", what, utf8.RuneCountInString(a.Title), maxAnnotTitle)
			case len(a.Message) > maxAnnotBytes || len(a.RawDetails) > maxAnnotBytes:
				bad("%s: its message or raw details exceed GitHub's %d bytes", what, maxAnnotBytes)
			}
			out.Annotations = append(out.Annotations, checkRunAnnotation{
				Path: a.Path, StartLine: a.StartLine, EndLine: end, Level: a.Level,
				Message: a.Message, Title: a.Title, RawDetails: a.RawDetails,
			})
		}
		body.Output = out
	}
	if len(cr.Actions) > maxActions {
		bad("%d actions; GitHub allows at most %d", len(cr.Actions), maxActions)
	}
	for i, a := range cr.Actions {
		for _, f := range []struct {
			field, value string
			limit        int
		}{{"label", a.Label, maxActionLabel}, {"description", a.Description, maxActionDesc}, {"identifier", a.Identifier, maxActionID}} {
			if f.value == "" {
				bad("action %d has no %s", i, f.field)
			} else if n := utf8.RuneCountInString(f.value); n > f.limit {
				bad("action %d's %s %q is %d characters; GitHub allows at most %d", i, f.field, f.value, n, f.limit)
			}
		}
		body.Actions = append(body.Actions, checkRunAction(a))
	}
	if len(problems) > 0 {
		// Sluice composes check runs itself: a run GitHub would refuse is
		// a programming error, never worth a retry.
		return nil, fmt.Errorf("invalid check run %q (a programming error; GitHub would refuse it): %s", cr.Name, strings.Join(problems, "; "))
	}
	return body, nil
}

// CreateCheckRun creates a check run on commit cr.HeadSHA of repo and
// returns its ID.
func (c *Client) CreateCheckRun(ctx context.Context, repo string, cr CheckRun) (int64, error) {
	owner, name, err := split(repo)
	if err != nil {
		return 0, err
	}
	body, err := cr.request(true)
	if err != nil {
		return 0, err
	}
	req, err := c.gh.NewRequest("POST", fmt.Sprintf("repos/%s/%s/check-runs", owner, name), body)
	if err != nil {
		return 0, err
	}
	var run github.CheckRun
	if _, err := c.gh.Do(ctx, req, &run); err != nil {
		return 0, classify(err, fmt.Sprintf("creating check run %q on commit %s in %s", cr.Name, cr.HeadSHA, repo))
	}
	if run.GetID() == 0 {
		return 0, fmt.Errorf("creating check run %q on commit %s in %s: GitHub's answer has no ID", cr.Name, cr.HeadSHA, repo)
	}
	return run.GetID(), nil
}

// UpdateCheckRun updates check run id of repo with the fields of cr that
// are set (HeadSHA is ignored: a run's commit does not change). Only the
// App that created a run may update it.
func (c *Client) UpdateCheckRun(ctx context.Context, repo string, id int64, cr CheckRun) error {
	owner, name, err := split(repo)
	if err != nil {
		return err
	}
	if id <= 0 {
		return fmt.Errorf("updating a check run in %s: %d is not a check run ID", repo, id)
	}
	body, err := cr.request(false)
	if err != nil {
		return err
	}
	req, err := c.gh.NewRequest("PATCH", fmt.Sprintf("repos/%s/%s/check-runs/%d", owner, name, id), body)
	if err != nil {
		return err
	}
	if _, err := c.gh.Do(ctx, req, nil); err != nil {
		return classify(err, fmt.Sprintf("updating check run %d in %s", id, repo))
	}
	return nil
}

// FindCheckRun finds this App's check run with externalID on commit sha
// of repo: it lists the commit's check runs of the App (app_id) with
// filter=all, every page of 100, and returns the newest (highest ID) whose
// external ID is externalID; found is false when there is none.
func (c *Client) FindCheckRun(ctx context.Context, repo, sha, externalID string) (id int64, found bool, err error) {
	f, found, err := c.FindCheckRunState(ctx, repo, sha, externalID)
	return f.ID, found, err
}

// FoundCheckRun is a check run as GitHub has it: what a report that
// resumes after a crash compares with what it would write.
type FoundCheckRun struct {
	ID                 int64
	Status, Conclusion string
	// Annotations is how many annotations it has.
	Annotations int
}

// FindCheckRunState is FindCheckRun with the check run's status,
// conclusion and number of annotations.
func (c *Client) FindCheckRunState(ctx context.Context, repo, sha, externalID string) (f FoundCheckRun, found bool, err error) {
	owner, name, err := split(repo)
	if err != nil {
		return f, false, err
	}
	if externalID == "" {
		return f, false, errors.New("finding a check run: the external ID is empty")
	}
	opts := &github.ListCheckRunsOptions{
		AppID:       github.Int64(c.appID),
		Filter:      github.String("all"),
		ListOptions: github.ListOptions{PerPage: checkRunsPageSize, Page: 1},
	}
	for {
		list, resp, err := c.gh.Checks.ListCheckRunsForRef(ctx, owner, name, sha, opts)
		if err != nil {
			return f, false, classify(err, fmt.Sprintf("the check runs of commit %s in %s", sha, repo))
		}
		for _, run := range list.CheckRuns {
			if run.GetExternalID() != externalID || (run.App != nil && run.App.GetID() != c.appID) {
				continue
			}
			if run.GetID() > f.ID {
				f = FoundCheckRun{ID: run.GetID(), Status: run.GetStatus(), Conclusion: run.GetConclusion(), Annotations: run.GetOutput().GetAnnotationsCount()}
				found = true
			}
		}
		if resp.NextPage == 0 {
			return f, found, nil
		}
		opts.Page = resp.NextPage
	}
}

// Status is a commit status. State is pending, success, failure or error;
// Context is "default" when empty; Description is cut to GitHub's 140
// characters (with an ellipsis); an empty TargetURL links nowhere.
type Status struct{ State, Context, Description, TargetURL string }

// CreateStatus posts a status on commit sha of repo. GitHub keeps at most
// 1,000 statuses per commit and context and refuses more (a 422, which
// stays an error: a retry meets it again).
func (c *Client) CreateStatus(ctx context.Context, repo, sha string, st Status) error {
	owner, name, err := split(repo)
	if err != nil {
		return err
	}
	if !oneOf(st.State, statusStates) {
		return fmt.Errorf("commit status %q on %s in %s: state %q is not one of %s (a programming error)", st.Context, sha, repo, st.State, strings.Join(statusStates, ", "))
	}
	rs := &github.RepoStatus{State: github.String(st.State)}
	if st.Context != "" {
		rs.Context = github.String(st.Context)
	}
	if st.Description != "" {
		rs.Description = github.String(cut(st.Description, maxStatusDesc))
	}
	if st.TargetURL != "" {
		rs.TargetURL = github.String(st.TargetURL)
	}
	if _, _, err := c.gh.Repositories.CreateStatus(ctx, owner, name, sha, rs); err != nil {
		return classify(err, fmt.Sprintf("commit status %q on %s in %s", st.Context, sha, repo))
	}
	return nil
}

// cut shortens s to at most n runes, ending with an ellipsis when it cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// CreateComment comments body (Markdown, at most 65,536 characters) on
// issue or pull request number of repo.
func (c *Client) CreateComment(ctx context.Context, repo string, number int, body string) error {
	owner, name, err := split(repo)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) == "" {
		return fmt.Errorf("commenting on %s#%d: the comment is empty", repo, number)
	}
	if n := utf8.RuneCountInString(body); n > maxCommentChars {
		return fmt.Errorf("commenting on %s#%d: the comment is %d characters; GitHub allows at most %d", repo, number, n, maxCommentChars)
	}
	if _, _, err := c.gh.Issues.CreateComment(ctx, owner, name, number, &github.IssueComment{Body: github.String(body)}); err != nil {
		return classify(err, fmt.Sprintf("a comment on %s#%d", repo, number))
	}
	return nil
}

// PullRequest is a pull request's head (its commit, branch and repository
// full name), base (branch and commit), whether it comes from a fork and
// whether it is open. HeadRepo is empty when the fork was deleted, which
// counts as a fork.
type PullRequest struct {
	Number                                       int
	HeadSHA, HeadRef, HeadRepo, BaseRef, BaseSHA string
	Fork, Open                                   bool
}

// PullRequest returns pull request number of repo. Fork is true when its
// head repository is not repo (GitHub gives a fork's pull requests no
// secrets: Sluice treats them the same way).
func (c *Client) PullRequest(ctx context.Context, repo string, number int) (PullRequest, error) {
	owner, name, err := split(repo)
	if err != nil {
		return PullRequest{}, err
	}
	pr, _, err := c.gh.PullRequests.Get(ctx, owner, name, number)
	if err != nil {
		return PullRequest{}, classify(err, fmt.Sprintf("pull request %s#%d", repo, number))
	}
	head, base := pr.GetHead(), pr.GetBase()
	out := PullRequest{
		Number: pr.GetNumber(), HeadSHA: head.GetSHA(), HeadRef: head.GetRef(), HeadRepo: head.GetRepo().GetFullName(),
		BaseRef: base.GetRef(), BaseSHA: base.GetSHA(), Open: pr.GetState() == "open",
	}
	switch hr, br := head.GetRepo(), base.GetRepo(); {
	case hr == nil || hr.GetFullName() == "":
		out.Fork = true // the fork was deleted
	case hr.GetID() != 0 && br.GetID() != 0:
		out.Fork = hr.GetID() != br.GetID()
	default:
		out.Fork = !strings.EqualFold(hr.GetFullName(), repo)
	}
	return out, nil
}
