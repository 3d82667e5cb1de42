package server

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server/githubapp"
)

// GitHub's limits on a check run's output (REST description of
// checks/create): summary and text are each at most 65,535 characters,
// and a request carries at most 50 annotations; later updates add to
// them.
const (
	maxCheckOutput        = 65535
	annotationsPerRequest = 50
	// maxAnnotations keeps a run with thousands of failed tests from
	// spending the installation's write budget on annotations.
	maxAnnotations = 500
	// logTailLines is how much of a failed step's log a check shows.
	logTailLines = 30
)

// cutMarker ends an output cut to GitHub's limit.
const cutMarker = "\n\n… cut here: GitHub shows at most 65,535 characters; the whole log is on the run's page."

// cutRunes returns s cut to at most limit characters (runes, as GitHub
// counts them), the marker included when it is cut.
func cutRunes(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	keep := limit - utf8.RuneCountInString(cutMarker)
	n := 0
	for i := range s {
		if n == keep {
			return s[:i] + cutMarker
		}
		n++
	}
	return s
}

// checkWant is one check run as a run's status calls for it.
type checkWant struct {
	// Key names the check within the run's report: "run" for the
	// pipeline's, "stage:ID" for a stage's (which asks for its approval),
	// "stage:ID#decided" for a stage's after its approval.
	Key string
	Run githubapp.CheckRun
	// Digest is what a write is owed for: status, conclusion and
	// decision, never the steps' progress (which would write once per
	// step, and GitHub allows about 80 writes a minute).
	Digest string
	// Annotations are every annotation of the check; they are sent 50 a
	// request.
	Annotations []githubapp.Annotation
}

// reportView is what a run's checks are drawn from.
type reportView struct {
	in   ReportInput
	plan *plan.Plan
	st   engine.RunStatus
	// tail returns the last lines of a step's log, masked as stored.
	tail func(stage, step string) string
}

// ExternalID is a check run's external_id: the run (with its
// execution, so that a re-run's checks are new ones) and the check's key.
func ExternalID(runID, execution, key string) string {
	return runID + "@" + execution + "/" + key
}

// ParseExternalID splits an external_id made by ExternalID.
func ParseExternalID(id string) (runID, key string, ok bool) {
	run, key, ok := strings.Cut(id, "/")
	if !ok {
		return "", "", false
	}
	runID, _, ok = strings.Cut(run, "@")
	return runID, key, ok && runID != "" && key != ""
}

// checkName is the name of a stage's check: "<pipeline> / <stage>", a
// matrix instance with its values: "go / test (1.26, linux)".
func checkName(pipeline string, ps plan.Stage) string {
	name := ps.Name
	if name == "" {
		name = ps.ID
	}
	if len(ps.MatrixKeys) > 0 {
		vals := make([]string, len(ps.MatrixKeys))
		for i, k := range ps.MatrixKeys {
			vals[i] = ps.Matrix[k]
		}
		name += " (" + strings.Join(vals, ", ") + ")"
	}
	return pipeline + " / " + name
}

// detailsURL is the page of the run (stage "" ) or of one of its stages.
func (v *reportView) detailsURL(stage string) string {
	if v.in.PublicURL == "" {
		return ""
	}
	u := strings.TrimSuffix(v.in.PublicURL, "/") + "/runs/" + url.PathEscape(v.in.RunID)
	if stage != "" {
		u += "/stages/" + url.PathEscape(stage)
	}
	return u
}

// checks lists the check runs the run's status calls for, the pipeline's
// first and then the stages' in the plan's order.
func (v *reportView) checks() []checkWant {
	out := []checkWant{v.runCheck()}
	for _, ps := range v.plan.Stages {
		ss, ok := v.st.Stage(ps.ID)
		if !ok {
			continue
		}
		out = append(out, v.stageCheck(ps, ss))
	}
	return out
}

// progress maps a state to a check's status and conclusion.
func progress(s engine.State) (status, conclusion string) {
	switch s {
	case engine.StateRunning:
		return "in_progress", ""
	case engine.StateSucceeded:
		return "completed", "success"
	case engine.StateFailed:
		return "completed", "failure"
	case engine.StateCancelled:
		return "completed", "cancelled"
	case engine.StateSkipped:
		return "completed", "skipped"
	}
	return "queued", ""
}

func (v *reportView) runCheck() checkWant {
	st := v.st
	status, conclusion := progress(st.State)
	if st.State == engine.StateWaitingApproval || st.State == engine.StatePending {
		// A run is pending only for the moment after it starts: one
		// write fewer. (Queued, it waits for its concurrency group.)
		status = "in_progress"
	}
	title := fmt.Sprintf("%s: %s", v.plan.Pipeline, stateWords(st.State))
	if st.State == engine.StateRunning || st.State == engine.StateWaitingApproval {
		var waiting []string
		for _, ss := range st.Stages {
			if ss.State == engine.StateWaitingApproval {
				waiting = append(waiting, ss.ID)
			}
		}
		if len(waiting) > 0 {
			title = fmt.Sprintf("%s: waiting for approval of %s", v.plan.Pipeline, strings.Join(waiting, ", "))
		}
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "Run [%s](%s) of `%s` at `%.12s`", st.RunID, v.detailsURL(""), v.plan.Pipeline, v.plan.Git.SHA)
	if v.in.PublicURL == "" {
		sum.Reset()
		fmt.Fprintf(&sum, "Run `%s` of `%s` at `%.12s`", st.RunID, v.plan.Pipeline, v.plan.Git.SHA)
	}
	if st.ResumedFrom != "" {
		fmt.Fprintf(&sum, ", re-run from `%s`", st.ResumedFrom)
	}
	if st.SupersededBy != "" {
		fmt.Fprintf(&sum, ", superseded by `%s`", st.SupersededBy)
	}
	sum.WriteString(".\n\n| Stage | Status | Duration |\n|---|---|---|\n")
	var text strings.Builder
	for _, ps := range v.plan.Stages {
		ss, ok := st.Stage(ps.ID)
		if !ok {
			continue
		}
		name := strings.TrimPrefix(checkName(v.plan.Pipeline, ps), v.plan.Pipeline+" / ")
		link := mdEscape(name)
		if u := v.detailsURL(ps.ID); u != "" {
			link = "[" + link + "](" + u + ")"
		}
		fmt.Fprintf(&sum, "| %s | %s | %s |\n", link, stateWords(ss.State)+reasonSuffix(ss), duration(ss.Start, ss.End))
		if ss.State == engine.StateFailed {
			v.failedStepText(&text, ps, ss)
		}
	}
	if st.Error != "" && st.State.Done() {
		fmt.Fprintf(&sum, "\n%s\n", mdEscape(st.Error))
	}
	return checkWant{
		Key: "run",
		Run: githubapp.CheckRun{
			Name: v.plan.Pipeline, HeadSHA: v.plan.Git.SHA, ExternalID: ExternalID(v.in.RunID, v.in.Execution, "run"),
			DetailsURL: v.detailsURL(""), Status: status, Conclusion: conclusion,
			StartedAt: st.Start, CompletedAt: endOf(status, st.End),
			Title: title, Summary: cutRunes(sum.String(), maxCheckOutput), Text: cutRunes(text.String(), maxCheckOutput),
		},
		Digest: status + "/" + conclusion,
	}
}

func (v *reportView) stageCheck(ps plan.Stage, ss *engine.StageStatus) checkWant {
	status, conclusion := progress(ss.State)
	title := stateWords(ss.State) + reasonSuffix(ss)
	var sum strings.Builder
	if ss.Runner != "" {
		fmt.Fprintf(&sum, "On runner `%s`.\n\n", ss.Runner)
	}
	sum.WriteString("| Step | Status | Attempt | Duration |\n|---|---|---|---|\n")
	for _, step := range ss.Steps {
		attempt := ""
		if step.Attempt > 1 {
			attempt = fmt.Sprint(step.Attempt)
		}
		state := stateWords(step.State)
		if step.Resumed {
			state += " (kept from the earlier attempt)"
		}
		fmt.Fprintf(&sum, "| %s | %s | %s | %s |\n", mdEscape(step.Name), state, attempt, duration(step.Start, step.End))
	}
	for _, step := range ss.Steps {
		if step.Tests != nil {
			fmt.Fprintf(&sum, "\nTests of %s: %s.\n", mdEscape(step.Name), step.Tests.Summary())
		}
	}
	if ss.Reason != "" {
		fmt.Fprintf(&sum, "\n%s\n", mdEscape(ss.Reason))
	}
	if a := ss.Approval; a != nil && a.Decision != "" {
		fmt.Fprintf(&sum, "\n%s.\n", approvalWords(a))
	}
	var text strings.Builder
	if ss.State == engine.StateFailed {
		v.failedStepText(&text, ps, ss)
	}
	key := "stage:" + ps.ID
	if a := ss.Approval; a != nil && !a.Requested.IsZero() {
		if a.Decision == "" && ss.State == engine.StateWaitingApproval {
			return v.approvalCheck(ps, ss)
		}
		if a.Decision != "" {
			// The check that asked for approval is completed, and GitHub
			// does not take a completed check back to in progress: the
			// stage goes on in a new check of the same name.
			key += decidedSuffix
		}
	}
	return checkWant{
		Key: key,
		Run: githubapp.CheckRun{
			Name: checkName(v.plan.Pipeline, ps), HeadSHA: v.plan.Git.SHA, ExternalID: ExternalID(v.in.RunID, v.in.Execution, key),
			DetailsURL: v.detailsURL(ps.ID), Status: status, Conclusion: conclusion,
			StartedAt: ss.Start, CompletedAt: endOf(status, ss.End),
			Title: title, Summary: cutRunes(sum.String(), maxCheckOutput), Text: cutRunes(text.String(), maxCheckOutput),
		},
		Digest:      status + "/" + conclusion,
		Annotations: capAnnotations(v.stageAnnotations(ps, ss)),
	}
}

// Approve and reject buttons' identifiers (at most 20 characters); the
// check run's external_id says which run and stage.
const (
	ActionApprove = "approve"
	ActionReject  = "reject"
	ActionRun     = "ok-to-test"
)

// decidedSuffix marks the key of a stage's check after its approval.
const decidedSuffix = "#decided"

// StageOfKey is the stage a check's key names ("stage:ID", or after its
// approval "stage:ID#decided").
func StageOfKey(key string) (string, bool) {
	stage, ok := strings.CutPrefix(key, "stage:")
	stage = strings.TrimSuffix(stage, decidedSuffix)
	return stage, ok && stage != ""
}

// approvalCheck is a stage's check while the stage waits for approval: a
// completed check with conclusion action_required and Approve and Reject
// buttons (GitHub shows buttons only on completed checks). Once decided,
// the stage goes on in a new check of the same name, which replaces this
// one on the pull request.
func (v *reportView) approvalCheck(ps plan.Stage, ss *engine.StageStatus) checkWant {
	a := ss.Approval
	key := "stage:" + ps.ID
	cr := githubapp.CheckRun{
		Name: checkName(v.plan.Pipeline, ps), HeadSHA: v.plan.Git.SHA,
		ExternalID: ExternalID(v.in.RunID, v.in.Execution, key),
		DetailsURL: v.detailsURL(ps.ID), Status: "completed", Conclusion: "action_required",
		StartedAt: a.Requested, CompletedAt: a.Requested, Title: "waiting for approval",
	}
	who := "anyone who may approve on this server"
	if len(a.Approvers) > 0 {
		who = strings.Join(a.Approvers, ", ")
	}
	var sum strings.Builder
	if a.Description != "" {
		fmt.Fprintf(&sum, "%s\n\n", mdEscape(a.Description))
	}
	fmt.Fprintf(&sum, "Approvers: %s. They need write access to the repository.\n", mdEscape(who))
	if !a.Deadline.IsZero() {
		fmt.Fprintf(&sum, "\nIt times out at %s.\n", a.Deadline.UTC().Format(time.RFC1123))
	}
	sum.WriteString("\nApprove or reject with the buttons above, `/sluice approve " + ps.ID + "` in the pull request, or `sluice approve`.\n")
	cr.Summary = cutRunes(sum.String(), maxCheckOutput)
	cr.Actions = []githubapp.Action{
		{Label: "Approve", Description: "Approve and go on", Identifier: ActionApprove},
		{Label: "Reject", Description: "Reject: the stage does not run", Identifier: ActionReject},
	}
	return checkWant{Key: key, Run: cr, Digest: "action_required"}
}

// approvalWords says how an approval was decided.
func approvalWords(a *engine.ApprovalStatus) string {
	var s string
	switch a.Decision {
	case engine.DecisionApproved:
		s = "Approved by " + mdEscape(a.By)
	case engine.DecisionRejected:
		s = "Rejected by " + mdEscape(a.By)
	default:
		s = "Nobody approved it in time"
	}
	if a.Reason != "" {
		s += ": " + mdEscape(a.Reason)
	}
	return s
}

// failedStepText writes the failed step's error and the tail of its log.
func (v *reportView) failedStepText(b *strings.Builder, ps plan.Stage, ss *engine.StageStatus) {
	for _, step := range ss.Steps {
		if step.State != engine.StateFailed {
			continue
		}
		fmt.Fprintf(b, "### %s / %s failed\n\n", mdEscape(ps.ID), mdEscape(step.Name))
		if step.Error != "" {
			fmt.Fprintf(b, "%s\n\n", mdEscape(step.Error))
		}
		if v.tail != nil {
			if t := v.tail(ps.ID, step.Name); t != "" {
				fmt.Fprintf(b, "Last lines of its log:\n\n````text\n%s\n````\n\n", strings.TrimRight(t, "\n"))
			}
		}
	}
}

// stageAnnotations points at the step that failed, in the pipeline file.
func (v *reportView) stageAnnotations(ps plan.Stage, ss *engine.StageStatus) []githubapp.Annotation {
	var out []githubapp.Annotation
	// Failed tests from the JUnit reports steps declare, at their file
	// and line (paths of the workspace, the project directory).
	for _, step := range ss.Steps {
		if step.Tests == nil {
			continue
		}
		for _, f := range step.Tests.Failures {
			if f.File == "" || f.Line <= 0 {
				continue
			}
			title := f.Name
			if f.Suite != "" {
				title = f.Suite + "." + f.Name
			}
			msg := f.Message
			if msg == "" {
				msg = "the test failed"
			}
			out = append(out, githubapp.Annotation{
				Path: v.repoPath(f.File), StartLine: f.Line, EndLine: f.Line, Level: "failure",
				Title: title, Message: msg, RawDetails: f.Details,
			})
		}
	}
	if ss.State != engine.StateFailed {
		return out
	}
	for i, step := range ss.Steps {
		if step.State != engine.StateFailed || i >= len(ps.Steps) {
			continue
		}
		file, line, ok := sourceLine(ps.Steps[i].Source)
		if !ok {
			file, line, ok = sourceLine(ps.Source)
		}
		if !ok {
			continue
		}
		msg := step.Error
		if msg == "" {
			msg = "the step failed"
		}
		out = append(out, githubapp.Annotation{
			Path: v.repoPath(path.Join(".sluice", file)), StartLine: line, EndLine: line, Level: "failure",
			Title: fmt.Sprintf("%s / %s failed", ps.ID, step.Name), Message: msg,
		})
	}
	return out
}

// repoPath is a path of the project directory as a path of the
// repository.
func (v *reportView) repoPath(p string) string {
	if v.in.Dir == "" {
		return p
	}
	return path.Join(v.in.Dir, p)
}

// sourceLine splits a plan source ("pipeline.hcl:87", or with a column).
func sourceLine(src string) (file string, line int, ok bool) {
	f, rest, found := strings.Cut(src, ":")
	if !found || f == "" {
		return "", 0, false
	}
	rest, _, _ = strings.Cut(rest, ":")
	rest, _, _ = strings.Cut(rest, ",")
	if _, err := fmt.Sscanf(rest, "%d", &line); err != nil || line <= 0 {
		return "", 0, false
	}
	return f, line, true
}

func capAnnotations(a []githubapp.Annotation) []githubapp.Annotation {
	if len(a) > maxAnnotations {
		return a[:maxAnnotations]
	}
	return a
}

func endOf(status string, end time.Time) time.Time {
	if status != "completed" {
		return time.Time{}
	}
	if end.IsZero() {
		return time.Now().UTC()
	}
	return end
}

func reasonSuffix(ss *engine.StageStatus) string {
	if ss.State == engine.StateSkipped && ss.Reason != "" {
		return ": " + ss.Reason
	}
	return ""
}

func stateWords(s engine.State) string {
	switch s {
	case engine.StateWaitingApproval:
		return "waiting for approval"
	case "":
		return "pending"
	}
	return string(s)
}

func duration(start, end time.Time) string {
	if start.IsZero() || end.IsZero() {
		return ""
	}
	return end.Sub(start).Round(100 * time.Millisecond).String()
}

// mdEscape keeps user text from breaking a Markdown table or adding
// markup: pipes and line breaks in a cell, HTML everywhere.
func mdEscape(s string) string {
	r := strings.NewReplacer("|", `\|`, "\r\n", " ", "\n", " ", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}

// annotationBatches splits annotations into the batches of one request.
func annotationBatches(a []githubapp.Annotation) [][]githubapp.Annotation {
	var out [][]githubapp.Annotation
	for len(a) > 0 {
		n := min(len(a), annotationsPerRequest)
		out = append(out, a[:n])
		a = a[n:]
	}
	return out
}

// diagLine is the first line of a rendered diagnostic:
// "path:line:col: error: message".
var diagLine = regexp.MustCompile(`^([^\s:][^:]*):(\d+):(\d+): (error|warning): (.*)$`)

// diagnosticAnnotations turns a pipeline's rendered diagnostics
// ("path:line:col: message" lines, with repository paths) into
// annotations. A diagnostic in a file of no repository path (a git
// module's, in the module cache) has none: its text, which says where the
// module is called, stays in the check's summary.
func diagnosticAnnotations(diags string) []githubapp.Annotation {
	var out []githubapp.Annotation
	inRepo := true
	for _, line := range strings.Split(diags, "\n") {
		if m := diagLine.FindStringSubmatch(line); m != nil {
			if inRepo = !path.IsAbs(m[1]); !inRepo {
				continue
			}
			var n int
			fmt.Sscanf(m[2], "%d", &n)
			level := "failure"
			if m[4] == "warning" {
				level = "warning"
			}
			out = append(out, githubapp.Annotation{Path: m[1], StartLine: n, EndLine: n, Level: level, Title: strings.TrimSpace(m[5]), Message: strings.TrimSpace(m[5])})
			continue
		}
		// The detail: the indented lines under the source excerpt.
		if d, ok := strings.CutPrefix(line, "    "); ok && len(out) > 0 && inRepo {
			a := &out[len(out)-1]
			if a.Message == a.Title {
				a.Message += ":"
			}
			a.Message += " " + strings.TrimSpace(d)
		}
	}
	return slices.Clip(capAnnotations(out))
}
