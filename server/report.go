package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/time/rate"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server/githubapp"
)

// ReportWorkflowName is the Report workflow's registered name.
const ReportWorkflowName = "Report"

// ReportInput says which run to report to GitHub, and where.
type ReportInput struct {
	RunID string `json:"run_id"`
	// Execution is the Temporal run ID of the execution reported: a
	// re-run is a new execution of the same run, with check runs of its
	// own.
	Execution    string `json:"execution"`
	Repo         string `json:"repo"`
	Installation int64  `json:"installation"`
	// Dir is the project directory in the repository, for annotations'
	// paths.
	Dir string `json:"dir,omitempty"`
	// PublicURL is the server's URL, for the checks' details links.
	PublicURL string `json:"public_url,omitempty"`
	// Statuses also posts a commit status (sluice/<pipeline>) per run.
	Statuses bool `json:"statuses,omitempty"`
}

// ReportWorkflowID is the ID of the Report workflow of one execution of
// a run.
func ReportWorkflowID(runID, execution string) string {
	return "report-" + runID + "-" + execution
}

// Report follows one execution of a run and reports it to GitHub as check
// runs (and commit statuses). It is a workflow of its own beside the run,
// on the server's queue, so that reporting never fails or slows a run:
// GitHub's rate limits and outages only delay the checks.
func Report(ctx workflow.Context, in ReportInput) error {
	ctx = workflow.WithActivityOptions(ctx, reportActivity)
	var r *Reporter
	return workflow.ExecuteActivity(ctx, r.Follow, in).Get(ctx, nil)
}

// reportActivity: one long activity that heartbeats what it has written
// (the check-run IDs among it), so that a server that dies is replaced
// within the heartbeat timeout and the next attempt goes on from there.
var reportActivity = workflow.ActivityOptions{
	// GitHub marks a check left incomplete for 14 days stale.
	StartToCloseTimeout: 14 * 24 * time.Hour,
	HeartbeatTimeout:    15 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
	},
}

// reportState is what a report has written: it travels in the activity's
// heartbeats, so it survives the server.
type reportState struct {
	// Checks are the check-run IDs by key (see checkWant.Key).
	Checks map[string]int64 `json:"checks,omitempty"`
	// Sent is the digest last written per check.
	Sent map[string]string `json:"sent,omitempty"`
	// Annotated is how many annotations each check has been sent.
	Annotated map[string]int `json:"annotated,omitempty"`
	// Status is the commit status last posted.
	Status string `json:"status,omitempty"`
	// Writes counts the writes to GitHub, for the record.
	Writes int `json:"writes,omitempty"`
}

// Reporter is the activity that writes a run's checks.
type Reporter struct {
	Client client.Client
	// GitHub returns the client of an installation of the App.
	GitHub func(installation int64) (*githubapp.Client, error)
	// Limits paces writes per installation.
	Limits *WriteLimits
	// Logs opens a step's log, for the tail of a failed step; nil: none.
	Logs func(run, stage, step string) (io.ReadCloser, error)
	// Poll is how often the run's status is read (default 1 s).
	Poll time.Duration
	Log  *slog.Logger
}

// Follow reports one execution of a run until it has ended and its
// checks say so.
func (r *Reporter) Follow(ctx context.Context, in ReportInput) error {
	var state reportState
	resumed := activity.HasHeartbeatDetails(ctx) || activity.GetInfo(ctx).Attempt > 1
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &state)
	}
	if state.Checks == nil {
		state.Checks, state.Sent, state.Annotated = map[string]int64{}, map[string]string{}, map[string]int{}
	}
	gh, err := r.GitHub(in.Installation)
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "NoGitHub", err)
	}
	p, err := engine.RunPlan(ctx, r.Client, in.RunID)
	if err != nil {
		return err
	}
	if in.Dir == "" {
		if src, err := engine.RunSource(ctx, r.Client, in.RunID); err == nil && src != nil {
			in.Dir = src.Dir
		}
	}
	w := &checkWriter{gh: gh, limits: r.Limits, installation: in.Installation, repo: in.Repo, sha: p.Git.SHA, state: &state, resumed: resumed,
		heartbeat: func() { activity.RecordHeartbeat(ctx, state) }}
	poll := r.Poll
	if poll <= 0 {
		poll = time.Second
	}
	for {
		st, ended, err := engine.ExecutionStatus(ctx, r.Client, in.RunID, in.Execution)
		if err != nil {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				return temporal.NewNonRetryableApplicationError(err.Error(), errNotFound, err)
			}
			return err
		}
		v := &reportView{in: in, plan: &p, st: st, tail: r.tail(in.RunID)}
		for _, c := range v.checks() {
			if err := w.write(ctx, c); err != nil {
				return err
			}
		}
		if in.Statuses {
			if err := w.status(ctx, p.Pipeline, st, v.detailsURL("")); err != nil {
				return err
			}
		}
		w.heartbeat()
		if ended && st.State.Done() {
			if r.Log != nil {
				r.Log.Info("run reported", "run", in.RunID, "state", st.State, "writes", state.Writes)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// tail returns the last lines of a step's log.
func (r *Reporter) tail(run string) func(stage, step string) string {
	if r.Logs == nil {
		return nil
	}
	return func(stage, step string) string {
		rc, err := r.Logs(run, stage, step)
		if err != nil {
			return ""
		}
		defer rc.Close()
		return lastLines(rc, logTailLines)
	}
}

// lastLines reads the last n lines of rd (each cut at 1,000 bytes).
func lastLines(rd io.Reader, n int) string {
	ring := make([]string, 0, n)
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 1000 {
			line = strings.ToValidUTF8(line[:1000], "") + " …"
		}
		if len(ring) == n {
			ring = append(ring[1:], line)
		} else {
			ring = append(ring, line)
		}
	}
	return strings.Join(ring, "\n")
}

// checkWriter writes checks, creating each once and updating it only when
// its digest changes.
type checkWriter struct {
	gh           *githubapp.Client
	limits       *WriteLimits
	installation int64
	repo, sha    string
	state        *reportState
	// resumed says an earlier attempt may have written more than the
	// state says: look each check up by external_id first (its ID, status
	// and annotations).
	resumed bool
	// checked are the checks whose state on GitHub this attempt has read,
	// after a resume.
	checked   map[string]bool
	heartbeat func()
}

func (w *checkWriter) write(ctx context.Context, c checkWant) error {
	st := w.state
	sent := st.Annotated[c.Key]
	if st.Sent[c.Key] == c.Digest && sent >= len(c.Annotations) {
		return nil
	}
	batches := annotationBatches(c.Annotations[min(sent, len(c.Annotations)):])
	cr := c.Run
	if len(batches) > 0 {
		cr.Annotations = batches[0]
	}
	id := st.Checks[c.Key]
	if w.resumed && !w.checked[c.Key] {
		// After a crash the state the heartbeats kept may be older than
		// what was written: GitHub says what the check is, so that an
		// attempt that goes on writes neither the same status again nor
		// the same annotations twice (GitHub appends them).
		var f githubapp.FoundCheckRun
		_, _, err := w.call(ctx, func() (int64, error) {
			var ok bool
			var err error
			if f, ok, err = w.gh.FindCheckRunState(ctx, w.repo, w.sha, cr.ExternalID); !ok {
				f = githubapp.FoundCheckRun{}
			}
			return f.ID, err
		}, false)
		if err != nil {
			return err
		}
		if w.checked == nil {
			w.checked = map[string]bool{}
		}
		w.checked[c.Key] = true
		if f.ID != 0 {
			id, st.Checks[c.Key] = f.ID, f.ID
			if f.Annotations > sent {
				sent, st.Annotated[c.Key] = f.Annotations, f.Annotations
			}
			if c.Digest == f.Status+"/"+f.Conclusion || c.Digest == f.Conclusion {
				st.Sent[c.Key] = c.Digest
			}
			if st.Sent[c.Key] == c.Digest && sent >= len(c.Annotations) {
				return nil
			}
			batches = annotationBatches(c.Annotations[min(sent, len(c.Annotations)):])
			cr.Annotations = nil
			if len(batches) > 0 {
				cr.Annotations = batches[0]
			}
		}
	}
	if id == 0 {
		newID, _, err := w.call(ctx, func() (int64, error) { return w.gh.CreateCheckRun(ctx, w.repo, cr) }, true)
		if err != nil {
			return err
		}
		st.Checks[c.Key] = newID
	} else {
		st.Checks[c.Key] = id
		if _, _, err := w.call(ctx, func() (int64, error) { return 0, w.gh.UpdateCheckRun(ctx, w.repo, id, cr) }, true); err != nil {
			return err
		}
	}
	st.Sent[c.Key] = c.Digest
	st.Annotated[c.Key] = sent + len(cr.Annotations)
	w.heartbeat()
	// The rest of the annotations, 50 a request.
	for _, b := range batches[min(1, len(batches)):] {
		id := st.Checks[c.Key]
		up := githubapp.CheckRun{Title: cr.Title, Summary: cr.Summary, Annotations: b}
		if _, _, err := w.call(ctx, func() (int64, error) { return 0, w.gh.UpdateCheckRun(ctx, w.repo, id, up) }, true); err != nil {
			return err
		}
		st.Annotated[c.Key] += len(b)
		w.heartbeat()
	}
	return nil
}

// status posts the run's commit status when its state changes: pending,
// then success, failure or error; never more than twice or three times a
// run (GitHub keeps at most 1,000 per commit and context).
func (w *checkWriter) status(ctx context.Context, pipeline string, st engine.RunStatus, url string) error {
	s := githubapp.Status{Context: "sluice/" + pipeline, TargetURL: url}
	switch st.State {
	case engine.StateSucceeded:
		s.State, s.Description = "success", "the run succeeded"
	case engine.StateFailed:
		s.State, s.Description = "failure", "the run failed"
	case engine.StateCancelled:
		s.State, s.Description = "error", "the run was cancelled"
	case engine.StateWaitingApproval:
		s.State, s.Description = "pending", "waiting for approval"
	default:
		s.State, s.Description = "pending", "the run is "+stateWords(st.State)
	}
	if st.State == engine.StateRunning || st.State == engine.StatePending || st.State == engine.StateQueued {
		s.Description = "the run is in progress"
	}
	digest := s.State + "/" + s.Description
	if w.state.Status == digest {
		return nil
	}
	if _, _, err := w.call(ctx, func() (int64, error) { return 0, w.gh.CreateStatus(ctx, w.repo, w.sha, s) }, true); err != nil {
		return err
	}
	w.state.Status = digest
	w.heartbeat()
	return nil
}

// call makes one GitHub call, paced by the installation's write limit
// when it writes, and waits and tries again for as long as GitHub says
// when it is rate limited; other failures are the activity's to retry.
func (w *checkWriter) call(ctx context.Context, f func() (int64, error), writes bool) (int64, bool, error) {
	for {
		if err := w.limits.Wait(ctx, w.installation, writes); err != nil {
			return 0, false, err
		}
		id, err := f()
		var re *githubapp.RetryableError
		if errors.As(err, &re) && re.After > 0 {
			w.limits.Hold(w.installation, re.After)
			w.heartbeat()
			continue
		}
		if err != nil {
			return 0, false, err
		}
		if writes {
			w.state.Writes++
		}
		return id, true, nil
	}
}

// WriteLimits paces GitHub writes per installation: GitHub allows about
// 80 content-creating requests a minute (and 500 an hour) per
// installation, and after a 429 or a secondary rate limit nothing until
// the time it names.
type WriteLimits struct {
	// PerMinute is the pace (default 80).
	PerMinute int
	mu        sync.Mutex
	m         map[int64]*installationLimit
}

type installationLimit struct {
	lim   *rate.Limiter
	until time.Time
}

func (l *WriteLimits) get(id int64) *installationLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[int64]*installationLimit{}
	}
	il := l.m[id]
	if il == nil {
		n := l.PerMinute
		if n <= 0 {
			n = 80
		}
		// A burst of 10 lets a run's first checks out at once.
		il = &installationLimit{lim: rate.NewLimiter(rate.Every(time.Minute/time.Duration(n)), 10)}
		l.m[id] = il
	}
	return il
}

// Wait blocks until installation id may make a call (a write when
// writes).
func (l *WriteLimits) Wait(ctx context.Context, id int64, writes bool) error {
	if l == nil {
		return nil
	}
	il := l.get(id)
	l.mu.Lock()
	until := il.until
	l.mu.Unlock()
	if d := time.Until(until); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	if !writes {
		return nil
	}
	return il.lim.Wait(ctx)
}

// Hold stops installation id's calls for d, as GitHub asked.
func (l *WriteLimits) Hold(id int64, d time.Duration) {
	if l == nil {
		return
	}
	il := l.get(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := time.Now().Add(d); t.After(il.until) {
		il.until = t
	}
}

// startReport starts the Report workflow of a run's latest execution,
// unless it runs already.
func startReport(ctx context.Context, c client.Client, in ReportInput) error {
	if in.Execution == "" {
		ex, err := engine.Execution(ctx, c, in.RunID)
		if err != nil {
			return err
		}
		in.Execution = ex
	}
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       ReportWorkflowID(in.RunID, in.Execution),
		TaskQueue:                                Queue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("report %s to GitHub", in.RunID),
	}, ReportWorkflowName, in)
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &dup) {
		return nil
	}
	return err
}

// oneCheck writes a check run that is complete at once (a skipped push, a
// pipeline that does not compile, a pull request from a fork waiting for
// approval): created once per external_id, found again after a retry.
func oneCheck(ctx context.Context, gh *githubapp.Client, limits *WriteLimits, installation int64, repo string, cr githubapp.CheckRun, notes []githubapp.Annotation) (int64, error) {
	state := reportState{Checks: map[string]int64{}, Sent: map[string]string{}, Annotated: map[string]int{}}
	w := &checkWriter{gh: gh, limits: limits, installation: installation, repo: repo, sha: cr.HeadSHA, state: &state, resumed: true,
		heartbeat: func() {
			if activity.IsActivity(ctx) {
				activity.RecordHeartbeat(ctx)
			}
		}}
	if err := w.write(ctx, checkWant{Key: "one", Run: cr, Digest: cr.Status + "/" + cr.Conclusion, Annotations: notes}); err != nil {
		return 0, err
	}
	return state.Checks["one"], nil
}
