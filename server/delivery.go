package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server/githubapp"
	"github.com/sluice-ci/sluice/server/webhook"
)

// Queue is the task queue of the server's own workflows and activities:
// deliveries are handled where the GitHub App's credentials are, never on
// a runner.
const Queue = "sluice-server"

// DeliveryWorkflowName is the Delivery workflow's registered name.
const DeliveryWorkflowName = "Delivery"

// Via says where a delivery came from.
const (
	ViaGitHub = "github"
	ViaGit    = "git"
	ViaAPI    = "api"
)

// DeliveryInput is one event to act on. It holds no credentials: tokens
// are minted inside the activity.
type DeliveryInput struct {
	Via   string        `json:"via"`
	Event webhook.Event `json:"event"`
	// Received is when the server answered the delivery.
	Received time.Time `json:"received"`
	// Pipelines limits a manual run to these pipelines (by name); empty
	// means every pipeline the event triggers.
	Pipelines []string `json:"pipelines,omitempty"`
	// Inputs are a manual run's inputs.
	Inputs map[string]string `json:"inputs,omitempty"`
	// ApprovedBy is who, with write access, approved the head of a pull
	// request from a fork for testing (ok-to-test).
	ApprovedBy string `json:"approved_by,omitempty"`
	// DryRun starts a manual run as a dry run (the API's dry_run):
	// pipeline.dry_run is true in its plan, and it changes nothing
	// outside its workspaces (see engine.RunInput.DryRun).
	DryRun bool `json:"dry_run,omitempty"`
	// Local runs the delivery's activity as a local activity, in the
	// workflow task of the worker that took the workflow: a handful of
	// writes to Temporal per delivery instead of a dozen. Servers set it on
	// every delivery they start; a history started without it (by an
	// older server) replays the activity it scheduled.
	Local bool `json:"local,omitempty"`
}

// DeliveryResult says what a delivery started, and why it started
// nothing for each pipeline it did not.
type DeliveryResult struct {
	Runs    []TriggeredRun    `json:"runs,omitempty"`
	Skipped []SkippedPipeline `json:"skipped,omitempty"`
	Invalid []InvalidPipeline `json:"invalid,omitempty"`
	// Ignored says why the event starts nothing at all ([skip ci]).
	Ignored string `json:"ignored,omitempty"`
	// Gated lists the pipelines of a pull request from a fork that wait
	// for someone with write access to approve its head (ok-to-test).
	Gated []string `json:"gated,omitempty"`
	// Done and Refused say what a command (a re-run, a button, a
	// /sluice comment) did, and what it would not do and why.
	Done    []string `json:"done,omitempty"`
	Refused []string `json:"refused,omitempty"`
}

// TriggeredRun is a run a delivery started, or found already started for
// the same repository, pipeline, event class and commit.
type TriggeredRun struct {
	RunID    string `json:"run_id"`
	Pipeline string `json:"pipeline"`
	// Dir is the project directory in the repository ("" for the top).
	Dir string `json:"dir,omitempty"`
	// Existing says the run had been started by an earlier event (a push
	// and a pull request of the same commit).
	Existing bool `json:"existing,omitempty"`
}

// SkippedPipeline is a pipeline the event does not trigger.
type SkippedPipeline struct {
	Pipeline string `json:"pipeline"`
	Dir      string `json:"dir,omitempty"`
	Reason   string `json:"reason"`
}

// InvalidPipeline is a pipeline whose files at the commit do not compile:
// no run starts, and the diagnostics say where and why (file:line:column).
type InvalidPipeline struct {
	Dir         string `json:"dir"`
	Diagnostics string `json:"diagnostics"`
}

// Delivery handles one delivery: it reads the pipelines at the event's
// commit, compiles them with the event and starts the runs they call for.
// Everything is in one activity, which is idempotent (run IDs derive from
// the event), so that GitHub's 5xx and rate limits are retried with
// backoff here, durably, and a retry never starts a run twice.
func Delivery(ctx workflow.Context, in DeliveryInput) (DeliveryResult, error) {
	var t *Triggers
	var res DeliveryResult
	if in.Local {
		return deliverLocally(ctx, in)
	}
	ctx = workflow.WithActivityOptions(ctx, deliveryActivity)
	err := workflow.ExecuteActivity(ctx, t.Trigger, in).Get(ctx, &res)
	return res, err
}

// QueryDeliveryProgress asks a running Delivery workflow how its attempts
// went: a DeliveryProgress.
const QueryDeliveryProgress = "progress"

// DeliveryProgress is a delivery's attempt under way, and why the one
// before failed.
type DeliveryProgress struct {
	Attempt     int32  `json:"attempt"`
	LastFailure string `json:"last_failure,omitempty"`
}

// deliverLocally runs the delivery's activity as a local activity, with
// deliveryActivity's retries made here: the backoff waits in a durable
// timer (or as long as GitHub's Retry-After asks), and the attempt and the
// last failure answer QueryDeliveryProgress. A server that dies
// mid-attempt has its workflow task time out, and the server that takes
// it up runs the attempt again.
func deliverLocally(ctx workflow.Context, in DeliveryInput) (DeliveryResult, error) {
	var t *Triggers
	var res DeliveryResult
	var progress DeliveryProgress
	if err := workflow.SetQueryHandler(ctx, QueryDeliveryProgress, func() (DeliveryProgress, error) { return progress, nil }); err != nil {
		return res, err
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: deliveryActivity.StartToCloseTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	retry := deliveryActivity.RetryPolicy
	began := workflow.Now(ctx)
	wait := retry.InitialInterval
	for attempt := int32(1); ; attempt++ {
		progress.Attempt = attempt
		err := workflow.ExecuteLocalActivity(lctx, t.Trigger, in).Get(ctx, &res)
		if err == nil {
			return res, nil
		}
		var app *temporal.ApplicationError
		if errors.As(err, &app) && (app.NonRetryable() || slices.Contains(retry.NonRetryableErrorTypes, app.Type())) {
			return res, err
		}
		// The activity's own words, not the SDK's wrapping of them.
		cause := err
		for errors.Unwrap(cause) != nil {
			cause = errors.Unwrap(cause)
		}
		progress.Attempt, progress.LastFailure = attempt+1, cause.Error()
		next := wait
		if app != nil && app.NextRetryDelay() > 0 {
			next = app.NextRetryDelay()
		}
		if workflow.Now(ctx).Add(next).Sub(began) > deliveryActivity.ScheduleToCloseTimeout {
			return res, err
		}
		if err := workflow.Sleep(ctx, next); err != nil {
			return res, err
		}
		wait = min(time.Duration(float64(wait)*retry.BackoffCoefficient), retry.MaximumInterval)
	}
}

// deliveryActivity are the options of the activities that read a
// repository and start runs.
var deliveryActivity = workflow.ActivityOptions{
	StartToCloseTimeout:    5 * time.Minute,
	ScheduleToCloseTimeout: 24 * time.Hour,
	// A server that dies mid-delivery is noticed within this, and the
	// delivery goes on in the server that comes back (or another).
	HeartbeatTimeout: 10 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        2 * time.Minute,
		NonRetryableErrorTypes: []string{errNotFound},
	},
}

const errNotFound = "NotFound"

// Triggers are the activities that turn events into runs.
type Triggers struct {
	Client client.Client
	// Git reads repositories of git hooks.
	Git Source
	// GitHub returns the Source for an installation of the App; nil when
	// the server is no GitHub App.
	GitHub func(installation int64) (Source, error)
	// Environ is where SLUICE_VAR_<name> values come from, as for sluice
	// plan.
	Environ []string
	// Modules is the cache of git module sources, $SLUICE_HOME/modules
	// (see moduleOptions).
	Modules string
	Log     *slog.Logger

	// App returns the client of an installation of the GitHub App, for
	// checks, comments and permissions; nil when the server is no App.
	App func(installation int64) (*githubapp.Client, error)
	// Limits paces writes to GitHub per installation.
	Limits *WriteLimits
	// PublicURL is the server's URL, for the checks' links.
	PublicURL string
	// Statuses also posts commit statuses.
	Statuses bool
	// InstallationOf says which installation of the App serves a
	// repository, as its webhooks said.
	InstallationOf func(repo string) (int64, bool)
	// MayApprove checks a user against a stage's approvers.
	MayApprove func(ctx context.Context, p plan.Plan, approvers []string, user string) (bool, error)
}

func (t *Triggers) limits() *WriteLimits { return t.Limits }

// skipCI matches the markers that skip CI for a push or a pull request's
// head commit, in any case: [skip ci], [ci skip], [sluice skip].
var skipCI = regexp.MustCompile(`(?i)\[(ci *skip|skip *ci|sluice *skip)\]`)

// Trigger is the Delivery workflow's activity.
func (t *Triggers) Trigger(ctx context.Context, in DeliveryInput) (DeliveryResult, error) {
	ev := in.Event
	var res DeliveryResult
	// Every 2 s: a server that dies mid-delivery is noticed within the
	// 10 s heartbeat timeout and another attempt goes on.
	stop := engine.Heartbeat(ctx, 2*time.Second)
	defer stop()
	var except []string
	switch ev.Kind {
	case webhook.KindAction:
		return t.action(ctx, in)
	case webhook.KindComment:
		return t.comment(ctx, in)
	case webhook.KindRerun:
		handled, ex, err := t.rerun(ctx, in, &res)
		if err != nil || handled {
			return res, sourceError(err)
		}
		except = ex
	}
	g, err := eventGit(ev)
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), errNotFound, nil)
	}
	var gh *githubapp.Client
	if in.Via == ViaGitHub && t.App != nil && ev.InstallationID != 0 {
		if gh, err = t.App(ev.InstallationID); err != nil {
			return res, err
		}
	}
	skip := ""
	if (g.Event == "push" || g.Event == "pull_request") && in.ApprovedBy == "" {
		msg := ev.HeadCommitMessage
		if ev.Kind == webhook.KindPullRequest && gh != nil {
			// A pull request's event does not say its head's message.
			if msg, err = gh.CommitMessage(ctx, ev.Repo, g.SHA); err != nil {
				return res, sourceError(err)
			}
		}
		if m := skipCI.FindString(msg); m != "" {
			skip = fmt.Sprintf("the head commit asks to skip CI (%s)", m)
		}
	}
	// A pull request from a fork runs the pipelines of its base, never
	// its own (which could change what runs on its behalf), and only
	// once someone with write access approved its head.
	pr := ev.PullRequest
	fork := pr != nil && pr.Fork
	filesSHA, trusted := g.SHA, in.ApprovedBy != ""
	if fork {
		filesSHA = pr.BaseSHA
		if !trusted && gh != nil {
			perm, err := gh.Permission(ctx, ev.Repo, ev.Actor)
			if err != nil {
				return res, sourceError(err)
			}
			trusted = writer(perm)
		}
	}
	src, err := t.source(in)
	if err != nil {
		return res, err
	}
	ref := RepoRef{Name: ev.Repo, URL: ev.CloneURL, Installation: ev.InstallationID}
	files, err := src.PipelineFiles(ctx, ref, filesSHA)
	if err != nil {
		return res, sourceError(err)
	}
	changed := func() ([]string, bool, error) {
		switch {
		case ev.PullRequest != nil:
			return src.PullFiles(ctx, ref, ev.PullRequest.Number)
		case g.Event == "push":
			return src.Changed(ctx, ref, ev.Before, ev.After, ev.Forced)
		}
		return nil, false, nil
	}
	var files1 []string
	var complete bool
	if g.Event == "push" || g.Event == "pull_request" {
		if files1, complete, err = changed(); err != nil {
			return res, sourceError(err)
		}
	}
	g.ChangedFiles = files1
	plans, invalid := map[string]*plan.Plan{}, map[string]bool{}
	for _, dir := range pipelineDirs(files) {
		p, diags, err := compileFiles(files, dir, dsl.Options{
			Git: g, ChangedFilesKnown: complete, Environ: t.Environ, Inputs: in.Inputs, DryRun: in.DryRun,
			Modules: t.moduleOptions(ctx, gh, ref, filesSHA, dir),
		})
		switch {
		case err != nil:
			return res, err
		case diags != "":
			res.Invalid = append(res.Invalid, InvalidPipeline{Dir: dir, Diagnostics: diags})
			invalid[dir] = true
			if err := t.invalidCheck(ctx, gh, in, g.SHA, dir, diags); err != nil {
				return res, err
			}
			continue
		}
		plans[dir] = p
		switch {
		case len(in.Pipelines) > 0 && !slices.Contains(in.Pipelines, p.Pipeline):
			continue
		case slices.Contains(except, p.Pipeline):
			continue
		case !p.Trigger.Matched:
			res.Skipped = append(res.Skipped, SkippedPipeline{Pipeline: p.Pipeline, Dir: dir, Reason: p.Trigger.Reason})
			continue
		case skip != "":
			res.Skipped = append(res.Skipped, SkippedPipeline{Pipeline: p.Pipeline, Dir: dir, Reason: skip})
			if err := t.neutralCheck(ctx, gh, in, g.SHA, p.Pipeline, skip); err != nil {
				return res, err
			}
			continue
		}
		if fork {
			if err := withholdForFork(p); err != nil {
				return res, err
			}
			if !trusted {
				res.Gated = append(res.Gated, p.Pipeline)
				if err := t.gateCheck(ctx, gh, in, p.Pipeline); err != nil {
					return res, err
				}
				continue
			}
		}
		id := RunID(p.Pipeline, runKey(in, dir, g))
		run := TriggeredRun{RunID: id, Pipeline: p.Pipeline, Dir: dir}
		_, err = engine.Start(ctx, t.Client, *p, engine.StartOptions{RunID: id, Source: &engine.Source{URL: ev.CloneURL, Dir: dir}, DryRun: in.DryRun})
		switch {
		case errors.Is(err, engine.ErrRunExists):
			run.Existing = true
		case err != nil:
			return res, err
		}
		// Started again for a run that exists: a server that died
		// between the two left it unreported. A dry run is not reported:
		// its checks would pass a commit for what it only pretended.
		if !in.DryRun {
			if err := t.report(ctx, in, id, dir); err != nil {
				return res, err
			}
		}
		res.Runs = append(res.Runs, run)
	}
	if skip != "" && len(res.Runs) == 0 {
		res.Ignored = skip
	}
	// A push to the default branch says what the repository's schedules
	// are.
	if g.Event == "push" && g.Branch != "" && g.Branch == defaultBranch(ctx, in.Via, ev) {
		if err := t.reconcileSchedules(ctx, in.Via, ref, plans, invalid); err != nil {
			return res, err
		}
	}
	if t.Log != nil {
		t.Log.Info("delivery handled", "repo", ev.Repo, "ref", g.Ref, "sha", g.SHA, "runs", len(res.Runs), "skipped", len(res.Skipped), "invalid", len(res.Invalid), "gated", len(res.Gated))
	}
	return res, nil
}

// neutralCheck says on the commit that a pipeline was skipped ([skip
// ci]): neutral, so it is told apart from one not run yet, and required
// checks pass.
func (t *Triggers) neutralCheck(ctx context.Context, gh *githubapp.Client, in DeliveryInput, sha, pipeline, why string) error {
	if gh == nil {
		return nil
	}
	now := time.Now().UTC()
	_, err := oneCheck(ctx, gh, t.Limits, in.Event.InstallationID, in.Event.Repo, githubapp.CheckRun{
		Name: pipeline, HeadSHA: sha, ExternalID: ExternalID("skip-"+pipeline, sha, "skipped"),
		Status: "completed", Conclusion: "neutral", StartedAt: now, CompletedAt: now,
		Title: "skipped", Summary: fmt.Sprintf("Not run: %s. Push a commit without the marker, or start it with `sluice run --server`, to run it.", why),
	}, nil)
	return sourceError(err)
}

// invalidCheck reports a project whose pipeline files do not compile, with
// an annotation at each diagnostic's file:line.
func (t *Triggers) invalidCheck(ctx context.Context, gh *githubapp.Client, in DeliveryInput, sha, dir, diags string) error {
	if gh == nil {
		return nil
	}
	where := dsl.DefaultDir
	if dir != "" {
		where = dir + "/" + dsl.DefaultDir
	}
	now := time.Now().UTC()
	_, err := oneCheck(ctx, gh, t.Limits, in.Event.InstallationID, in.Event.Repo, githubapp.CheckRun{
		Name: "sluice: " + where, HeadSHA: sha, ExternalID: ExternalID("invalid-"+strings.ReplaceAll(where, "/", "_"), sha, "diagnostics"),
		Status: "completed", Conclusion: "failure", StartedAt: now, CompletedAt: now,
		Title:   "the pipeline files do not compile",
		Summary: fmt.Sprintf("No run started: the pipeline files in `%s` at this commit have errors. `sluice validate` shows the same.", where),
		Text:    cutRunes("````text\n"+diags+"\n````\n", maxCheckOutput),
	}, diagnosticAnnotations(diags))
	return sourceError(err)
}

// gateCheck asks, on a fork's pull request, for someone with write access
// to approve its head before its pipelines run.
func (t *Triggers) gateCheck(ctx context.Context, gh *githubapp.Client, in DeliveryInput, pipeline string) error {
	if gh == nil {
		return nil
	}
	pr := in.Event.PullRequest
	now := time.Now().UTC()
	_, err := oneCheck(ctx, gh, t.Limits, in.Event.InstallationID, in.Event.Repo, githubapp.CheckRun{
		Name: pipeline, HeadSHA: pr.HeadSHA, ExternalID: gateID(pr.Number, pr.HeadSHA, pipeline),
		Status: "completed", Conclusion: "action_required", StartedAt: now, CompletedAt: now,
		Title: "waiting for approval to test code from a fork",
		Summary: fmt.Sprintf("Pull request #%d comes from %s, a fork. Its code runs once someone with write access to %s approves this head (%.12s) with the button above or a `/sluice ok-to-test` comment. "+
			"It then runs the pipeline of the base branch, not the pull request's own `.sluice`, with no secrets and without approval or deploy stages. A new push asks again.",
			pr.Number, orUnknown(pr.HeadRepo), in.Event.Repo, pr.HeadSHA),
		Actions: []githubapp.Action{{Label: "Approve and run", Description: "Run this head, without secrets", Identifier: ActionRun}},
	}, nil)
	return sourceError(err)
}

func orUnknown(s string) string {
	if s == "" {
		return "a deleted repository"
	}
	return s
}

func (t *Triggers) source(in DeliveryInput) (Source, error) {
	// A manual run of a repository of the App's (the API's) is read as
	// its webhooks are.
	if in.Via == ViaGitHub || in.Via == ViaAPI && in.Event.InstallationID != 0 {
		if t.GitHub == nil {
			return nil, temporal.NewNonRetryableApplicationError("the server is not configured as a GitHub App (app id and private key), so it cannot read the repository", errNotFound, nil)
		}
		return t.GitHub(in.Event.InstallationID)
	}
	return t.Git, nil
}

// eventGit is what a pipeline sees of an event (git.*): the same fields
// `sluice plan --event ... --ref ... --sha ... --repo ... --actor ...`
// fills for it.
func eventGit(ev webhook.Event) (plan.Git, error) {
	g := plan.Git{Repo: ev.Repo, Actor: ev.Actor, Ref: ev.Ref, Branch: ev.Branch, Tag: ev.Tag, SHA: ev.After}
	switch ev.Kind {
	case webhook.KindPush:
		g.Event = "push"
	case webhook.KindTag:
		g.Event = "tag"
	case webhook.KindPullRequest:
		pr := ev.PullRequest
		g.Event, g.PullRequest, g.BaseRef = "pull_request", pr.Number, pr.BaseRef
		g.SHA, g.Branch, g.Ref = pr.HeadSHA, pr.HeadRef, "refs/heads/"+pr.HeadRef
	case KindManual:
		g.Event = "manual"
	case KindSchedule:
		g.Event = "schedule"
	case webhook.KindRerun:
		// "Re-run" on GitHub: the head commit's pipelines run again, as
		// a push of its branch (a fork's check suite names no branch:
		// then as a manual run of the commit).
		rr := ev.Rerun
		g.SHA, g.Event = rr.HeadSHA, "push"
		if rr.HeadBranch != "" {
			g.Branch, g.Ref = rr.HeadBranch, "refs/heads/"+rr.HeadBranch
		} else {
			g.Event = "manual"
		}
	default:
		return g, fmt.Errorf("a %s event starts no runs", ev.Kind)
	}
	if len(g.SHA) < 7 {
		return g, fmt.Errorf("the event has no commit")
	}
	g.ShortSHA = g.SHA[:7]
	return g, nil
}

// KindManual is a run started through the API (sluice run --server).
const KindManual = "manual"

// pipelineDirs lists the project directories that hold a .sluice, in
// order: "" for the repository's top.
func pipelineDirs(files map[string][]byte) []string {
	seen := map[string]bool{}
	for name := range files {
		d := path.Dir(path.Dir(name))
		if d == "." {
			d = ""
		}
		seen[d] = true
	}
	dirs := make([]string, 0, len(seen))
	for d := range seen {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs
}

// CompileFiles compiles the pipeline of the project directory dir from
// files (repository paths) for the event g, with the same compiler and
// options as `sluice plan`. A pipeline with errors gives its diagnostics,
// rendered with repository paths, file:line:column.
func CompileFiles(files map[string][]byte, dir string, g plan.Git, changedKnown bool, environ []string, inputs map[string]string) (*plan.Plan, string, error) {
	return compileFiles(files, dir, dsl.Options{Git: g, ChangedFilesKnown: changedKnown, Environ: environ, Inputs: inputs})
}

// compileFiles is CompileFiles with all of an event's options (its
// modules, a dry run); opts.Root is set here.
func compileFiles(files map[string][]byte, dir string, opts dsl.Options) (*plan.Plan, string, error) {
	tmp, err := os.MkdirTemp("", "sluice-pipeline-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(tmp)
	prefix := dir
	if prefix != "" {
		prefix += "/"
	}
	for name, b := range files {
		if !strings.HasPrefix(name, prefix+dsl.DefaultDir+"/") {
			continue
		}
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, "", err
		}
	}
	root := filepath.Join(tmp, filepath.FromSlash(dir))
	src, diags := dsl.Load(filepath.Join(root, dsl.DefaultDir))
	var p *plan.Plan
	if !diags.HasErrors() {
		var more = diags
		opts.Root = root
		p, diags = dsl.Compile(src, opts)
		diags = append(more, diags...)
	}
	if !diags.HasErrors() {
		return p, "", nil
	}
	var b strings.Builder
	if err := dsl.WriteDiagnostics(&b, src, diags, 100, false); err != nil {
		return nil, "", err
	}
	return nil, strings.ReplaceAll(b.String(), tmp+string(filepath.Separator), ""), nil
}

// runKey is what makes two events the same run: the repository, the
// project, the commit and the class of event. Pushes and pull requests of
// a commit are one class (the same code, tested once); a tag is its own; a
// manual run or a re-run is new every time.
func runKey(in DeliveryInput, dir string, g plan.Git) string {
	class := "commit"
	switch g.Event {
	case "tag":
		class = "tag:" + g.Tag
	case "manual", "schedule":
		class = g.Event + ":" + in.Event.Delivery
	}
	if in.Event.Kind == webhook.KindRerun {
		class = "rerun:" + in.Event.Delivery
	}
	return strings.Join([]string{in.Event.Repo, dir, class, g.SHA}, "\x00")
}

var notIDChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// RunID is the ID of the run of pipeline for a key: the pipeline's name
// and 64 bits of a digest of the key (32 would make two of a pipeline's
// 100,000 commits share a run ID more often than not).
func RunID(pipeline, key string) string {
	sum := sha256.Sum256([]byte(key))
	name := strings.Trim(notIDChars.ReplaceAllString(pipeline, "-"), "-")
	if name == "" {
		name = "run"
	}
	return name + "-" + hex.EncodeToString(sum[:8])
}
