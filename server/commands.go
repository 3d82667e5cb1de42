package server

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server/githubapp"
	"github.com/sluice-ci/sluice/server/webhook"
)

// This file holds what GitHub asks of Sluice besides events that start
// runs: re-runs from the Checks UI, the Approve and Reject buttons of an
// approval's check, the ok-to-test of a pull request from a fork, and
// /sluice commands in pull request comments.

// github returns the App's client for the installation that delivered
// in, or an error that says the server is no GitHub App.
func (t *Triggers) github(in DeliveryInput) (*githubapp.Client, error) {
	if t.App == nil || in.Event.InstallationID == 0 {
		return nil, fmt.Errorf("the server is not configured as a GitHub App (app id and private key), so it cannot act on %s events", in.Event.Kind)
	}
	return t.App(in.Event.InstallationID)
}

// writer says whether a user may run commands: GitHub's write, maintain
// or admin permission on the repository.
func writer(perm string) bool { return perm == "admin" || perm == "write" || perm == "maintain" }

// runsOfCommit lists the runs of a commit of a repository, the latest
// execution of each, in the order they started.
func (t *Triggers) runsOfCommit(ctx context.Context, repo, sha string) ([]engine.RunInfo, error) {
	q := fmt.Sprintf("%s = '%s' AND %s = '%s'", engine.AttrRepo.GetName(), quoteVisibility(repo), engine.AttrSHA.GetName(), quoteVisibility(sha))
	all, err := engine.List(ctx, t.Client, q)
	if err != nil {
		return nil, err
	}
	latest := map[string]engine.RunInfo{}
	for _, r := range all {
		if prev, ok := latest[r.RunID]; !ok || r.Start.After(prev.Start) {
			latest[r.RunID] = r
		}
	}
	out := make([]engine.RunInfo, 0, len(latest))
	for _, r := range latest {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

func quoteVisibility(s string) string { return strings.ReplaceAll(s, "'", "") }

// rerun handles "Re-run" in GitHub's Checks UI. A check run's re-run
// retries its run (from the stage of the check, or the first step that did
// not succeed); a check suite's re-run retries every run of the commit
// that did not succeed and starts the others again. handled is false when
// the commit has no run yet (a fork's pull request never approved, an
// event that was lost): the caller then starts runs for the commit.
func (t *Triggers) rerun(ctx context.Context, in DeliveryInput, res *DeliveryResult) (handled bool, except []string, err error) {
	rr := in.Event.Rerun
	retry := func(runID, from string) error {
		if err := engine.Retry(ctx, t.Client, runID, from); err != nil {
			res.Refused = append(res.Refused, fmt.Sprintf("re-running %s: %v", runID, err))
			return nil
		}
		res.Done = append(res.Done, fmt.Sprintf("re-running %s from %s", runID, orFirst(from)))
		return t.report(ctx, in, runID, "")
	}
	if runID, key, ok := ParseExternalID(rr.ExternalID); ok && rr.CheckRunID != 0 {
		st, err := engine.Status(ctx, t.Client, runID)
		if err != nil {
			return false, nil, err
		}
		if !st.State.Done() {
			res.Refused = append(res.Refused, fmt.Sprintf("run %s is still %s; cancel it before re-running it", runID, st.State))
			return true, nil, nil
		}
		from := ""
		if stage, isStage := StageOfKey(key); isStage {
			if ss, ok := st.Stage(stage); ok && ss.State == engine.StateSucceeded {
				from = stage
			}
		} else if st.State == engine.StateSucceeded {
			// The pipeline's check of a run that succeeded: all again.
			return false, nil, nil
		}
		return true, nil, retry(runID, from)
	}
	runs, err := t.runsOfCommit(ctx, in.Event.Repo, rr.HeadSHA)
	if err != nil {
		return false, nil, err
	}
	if len(runs) == 0 && rr.HeadBranch == "" && t.App != nil {
		// A fork's check suite names no branch and no pull request: find
		// the pull request by its head. Only people with write access can
		// re-run checks, so the re-run approves the head.
		gh, err := t.github(in)
		if err != nil {
			return false, nil, err
		}
		numbers, err := gh.PullsForCommit(ctx, in.Event.Repo, rr.HeadSHA)
		if err != nil {
			return false, nil, sourceError(err)
		}
		if len(numbers) > 0 {
			perm, err := gh.Permission(ctx, in.Event.Repo, in.Event.Actor)
			if err != nil {
				return false, nil, sourceError(err)
			}
			if !writer(perm) {
				res.Refused = append(res.Refused, fmt.Sprintf("%s has %s access; re-running needs write access", in.Event.Actor, perm))
				return true, nil, nil
			}
			r, err := t.okToTest(ctx, in, gh, numbers[0], rr.HeadSHA)
			res.Runs, res.Gated, res.Invalid, res.Skipped = r.Runs, r.Gated, r.Invalid, r.Skipped
			res.Done, res.Refused = append(res.Done, r.Done...), append(res.Refused, r.Refused...)
			return true, nil, err
		}
	}
	if len(runs) == 0 {
		return false, nil, nil
	}
	for _, r := range runs {
		switch {
		case !r.Status.Done():
			except = append(except, r.Pipeline)
			res.Refused = append(res.Refused, fmt.Sprintf("run %s is still %s", r.RunID, r.Status))
		case r.Status != engine.StateSucceeded:
			except = append(except, r.Pipeline)
			if err := retry(r.RunID, ""); err != nil {
				return false, nil, err
			}
		}
	}
	// Runs that succeeded (and pipelines with no run) start again.
	return false, except, nil
}

func orFirst(from string) string {
	if from == "" {
		return "the first step that did not succeed"
	}
	return from
}

// report starts reporting a run's latest execution to GitHub, when the
// delivery came from GitHub.
func (t *Triggers) report(ctx context.Context, in DeliveryInput, runID, dir string) error {
	if t.App == nil || in.Via == ViaGit {
		return nil
	}
	id := in.Event.InstallationID
	if id == 0 && t.InstallationOf != nil {
		// A run started through the API of a repository the App serves.
		id, _ = t.InstallationOf(in.Event.Repo)
	}
	if id == 0 {
		return nil
	}
	return startReport(ctx, t.Client, ReportInput{
		RunID: runID, Repo: in.Event.Repo, Installation: id, Dir: dir,
		PublicURL: t.PublicURL, Statuses: t.Statuses,
	})
}

// action handles a button of a check run: Approve or Reject on an
// approval's check, Run on a fork's pull request waiting for ok-to-test.
func (t *Triggers) action(ctx context.Context, in DeliveryInput) (DeliveryResult, error) {
	var res DeliveryResult
	ev, ra := in.Event, in.Event.RequestedAction
	gh, err := t.github(in)
	if err != nil {
		return res, err
	}
	refuse := func(why string) (DeliveryResult, error) {
		res.Refused = append(res.Refused, why)
		// Said on the check itself, where the button was clicked; its
		// conclusion and buttons stay.
		err := t.limits().Wait(ctx, ev.InstallationID, true)
		if err == nil {
			err = gh.UpdateCheckRun(ctx, ev.Repo, ra.CheckRunID, githubapp.CheckRun{
				Title: "not accepted: " + firstLine(why), Summary: fmt.Sprintf("@%s clicked %q, which was not accepted: %s", ev.Actor, ra.Identifier, why),
			})
		}
		return res, sourceError(err)
	}
	perm, err := gh.Permission(ctx, ev.Repo, ev.Actor)
	if err != nil {
		return res, sourceError(err)
	}
	if !writer(perm) {
		return refuse(fmt.Sprintf("%s has %s access to %s; approving needs write access", ev.Actor, perm, ev.Repo))
	}
	if ra.Identifier == ActionRun {
		number, ok := parseGateID(ra.ExternalID)
		if !ok {
			return refuse("the check does not name a pull request")
		}
		return t.okToTest(ctx, in, gh, number, ra.HeadSHA)
	}
	runID, key, ok := ParseExternalID(ra.ExternalID)
	stage, isGate := StageOfKey(key)
	if !ok || !isGate || (ra.Identifier != ActionApprove && ra.Identifier != ActionReject) {
		return refuse(fmt.Sprintf("the button %q of this check is not one Sluice acts on", ra.Identifier))
	}
	if err := t.decide(ctx, runID, stage, ev.Actor, ra.Identifier == ActionApprove, "from GitHub's checks"); err != nil {
		return refuse(err.Error())
	}
	res.Done = append(res.Done, fmt.Sprintf("%s %sd stage %s of run %s", ev.Actor, ra.Identifier, stage, runID))
	return res, nil
}

// decide approves or rejects a stage for a GitHub user, who must be one
// of the stage's approvers.
func (t *Triggers) decide(ctx context.Context, runID, stage, user string, approve bool, why string) error {
	p, err := engine.RunPlan(ctx, t.Client, runID)
	if err != nil {
		return err
	}
	ps, ok := findStage(p, stage)
	if !ok || ps.Approval == nil {
		return fmt.Errorf("run %s has no stage %q that asks for approval", runID, stage)
	}
	if t.MayApprove != nil {
		ok, err := t.MayApprove(ctx, p, ps.Approval.Approvers, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s is not one of the approvers of stage %q (%s)", user, stage, strings.Join(ps.Approval.Approvers, ", "))
		}
	}
	if approve {
		return engine.Approve(ctx, t.Client, runID, stage, user, why)
	}
	return engine.Reject(ctx, t.Client, runID, stage, user, why)
}

// The external_id of a fork's gate check of a pipeline:
// "pull-<number>@<sha>/ok-to-test:<pipeline>".
func gateID(number int, sha, pipeline string) string {
	return ExternalID(fmt.Sprintf("pull-%d", number), sha, ActionRun+":"+pipeline)
}

func parseGateID(id string) (int, bool) {
	run, key, ok := ParseExternalID(id)
	var n int
	if !ok || !strings.HasPrefix(key, ActionRun+":") {
		return 0, false
	}
	if _, err := fmt.Sscanf(run, "pull-%d", &n); err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// okToTest starts the runs of a pull request from a fork whose head is
// sha, approved by the event's sender (who has write access). The approval
// holds for that head only: a new push asks again.
func (t *Triggers) okToTest(ctx context.Context, in DeliveryInput, gh *githubapp.Client, number int, sha string) (DeliveryResult, error) {
	pr, err := gh.PullRequest(ctx, in.Event.Repo, number)
	if err != nil {
		return DeliveryResult{}, sourceError(err)
	}
	if !pr.Open {
		return DeliveryResult{Refused: []string{fmt.Sprintf("pull request #%d is closed", number)}}, nil
	}
	if sha != "" && pr.HeadSHA != sha {
		return DeliveryResult{Refused: []string{fmt.Sprintf("pull request #%d has moved on to %.12s since %.12s was approved; approve its new head", number, pr.HeadSHA, sha)}}, nil
	}
	ev := in.Event
	ev.Kind, ev.Name, ev.Action = webhook.KindPullRequest, "pull_request", "ok-to-test"
	ev.After, ev.Ref, ev.Branch = pr.HeadSHA, fmt.Sprintf("refs/pull/%d/head", number), pr.HeadRef
	ev.HeadCommitMessage = ""
	ev.PullRequest = &webhook.PullRequest{Number: number, HeadSHA: pr.HeadSHA, HeadRef: pr.HeadRef, HeadRepo: pr.HeadRepo, BaseRef: pr.BaseRef, BaseSHA: pr.BaseSHA, Fork: pr.Fork}
	next := DeliveryInput{Via: ViaGitHub, Event: ev, Received: in.Received, ApprovedBy: in.Event.Actor}
	res, err := t.Trigger(ctx, next)
	if err == nil {
		res.Done = append(res.Done, fmt.Sprintf("%s approved %.12s of pull request #%d for testing", in.Event.Actor, pr.HeadSHA, number))
	}
	return res, err
}

// comment handles /sluice commands in a pull request's comment, from users
// with write access; others get a reply that says why not.
func (t *Triggers) comment(ctx context.Context, in DeliveryInput) (DeliveryResult, error) {
	var res DeliveryResult
	ev, c := in.Event, in.Event.Comment
	gh, err := t.github(in)
	if err != nil {
		return res, err
	}
	var replies []string
	perm, err := gh.Permission(ctx, ev.Repo, ev.Actor)
	if err != nil {
		return res, sourceError(err)
	}
	cmds := webhook.Commands(c.Body)
	if !writer(perm) {
		replies = append(replies, fmt.Sprintf("@%s: Sluice takes commands from people with write access to %s, and you have %s access. Someone with write access can run them for you.", ev.Actor, ev.Repo, perm))
		res.Refused = append(res.Refused, fmt.Sprintf("%s has %s access", ev.Actor, perm))
		cmds = nil
	}
	var pr githubapp.PullRequest
	if len(cmds) > 0 {
		if pr, err = gh.PullRequest(ctx, ev.Repo, c.Number); err != nil {
			return res, sourceError(err)
		}
	}
	for _, cmd := range cmds {
		out, err := t.command(ctx, in, gh, pr, cmd, &res)
		if err != nil {
			return res, err
		}
		replies = append(replies, "`"+cmd.Line+"`: "+out)
	}
	if len(replies) == 0 {
		return res, nil
	}
	body := strings.Join(replies, "\n\n")
	if err := t.limits().Wait(ctx, ev.InstallationID, true); err != nil {
		return res, err
	}
	if err := gh.CreateComment(ctx, ev.Repo, c.Number, body); err != nil {
		return res, sourceError(err)
	}
	return res, nil
}

const commandHelp = "Sluice's commands: `/sluice retry [stage]`, `/sluice approve <stage>`, `/sluice cancel`, `/sluice ok-to-test`."

// command runs one /sluice command and says what came of it.
func (t *Triggers) command(ctx context.Context, in DeliveryInput, gh *githubapp.Client, pr githubapp.PullRequest, cmd webhook.Command, res *DeliveryResult) (string, error) {
	user := in.Event.Actor
	refuse := func(format string, args ...any) (string, error) {
		msg := fmt.Sprintf(format, args...)
		res.Refused = append(res.Refused, msg)
		return msg, nil
	}
	done := func(format string, args ...any) (string, error) {
		msg := fmt.Sprintf(format, args...)
		res.Done = append(res.Done, msg)
		return msg, nil
	}
	if cmd.Name == "ok-to-test" {
		if !pr.Fork {
			return refuse("this pull request is not from a fork: its runs need no approval")
		}
		r, err := t.okToTest(ctx, in, gh, pr.Number, pr.HeadSHA)
		if err != nil {
			return "", err
		}
		res.Runs = append(res.Runs, r.Runs...)
		res.Refused = append(res.Refused, r.Refused...)
		if len(r.Refused) > 0 {
			return strings.Join(r.Refused, "; "), nil
		}
		return done("approved %.12s for testing: %d run(s) started; a new push asks again", pr.HeadSHA, len(r.Runs))
	}
	runs, err := t.runsOfCommit(ctx, in.Event.Repo, pr.HeadSHA)
	if err != nil {
		return "", err
	}
	switch cmd.Name {
	case "retry":
		from := ""
		if len(cmd.Args) > 0 {
			from = cmd.Args[0]
		}
		var said []string
		for _, r := range runs {
			if !r.Status.Done() {
				said = append(said, fmt.Sprintf("%s is still %s", r.RunID, r.Status))
				continue
			}
			if from != "" {
				p, err := engine.RunPlan(ctx, t.Client, r.RunID)
				if err != nil {
					return "", err
				}
				if _, ok := findStage(p, from); !ok && !slices.ContainsFunc(p.Stages, func(s plan.Stage) bool { return s.Name == from }) {
					continue
				}
			}
			if err := engine.Retry(ctx, t.Client, r.RunID, from); err != nil {
				said = append(said, fmt.Sprintf("%s: %v", r.RunID, err))
				continue
			}
			if err := t.report(ctx, in, r.RunID, ""); err != nil {
				return "", err
			}
			said = append(said, fmt.Sprintf("re-running %s from %s", r.RunID, orFirst(from)))
		}
		if len(said) == 0 {
			return refuse("no run of %.12s to retry%s", pr.HeadSHA, map[bool]string{true: " with a stage " + from, false: ""}[from != ""])
		}
		return done("%s", strings.Join(said, "; "))
	case "approve":
		if len(cmd.Args) == 0 {
			return refuse("say which stage: `/sluice approve <stage>`")
		}
		stage := cmd.Args[0]
		for _, r := range runs {
			st, err := engine.Status(ctx, t.Client, r.RunID)
			if err != nil {
				return "", err
			}
			ss, ok := st.Stage(stage)
			if !ok || ss.State != engine.StateWaitingApproval {
				continue
			}
			if err := t.decide(ctx, r.RunID, stage, user, true, "/sluice approve in pull request #"+fmt.Sprint(pr.Number)); err != nil {
				return refuse("%v", err)
			}
			return done("approved stage %s of run %s", stage, r.RunID)
		}
		return refuse("no run of %.12s waits for approval of a stage %q", pr.HeadSHA, stage)
	case "cancel":
		var said []string
		for _, r := range runs {
			if r.Status.Done() {
				continue
			}
			if err := engine.Cancel(ctx, t.Client, r.RunID); err != nil {
				said = append(said, fmt.Sprintf("%s: %v", r.RunID, err))
				continue
			}
			said = append(said, "cancelling "+r.RunID)
		}
		if len(said) == 0 {
			return refuse("no run of %.12s is in progress", pr.HeadSHA)
		}
		return done("%s", strings.Join(said, "; "))
	}
	return refuse("unknown command %q. %s", cmd.Name, commandHelp)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// forkPolicy is why a run of a pull request from a fork does what it
// does: it is the untrusted code of someone without write access.
const forkPolicy = "a pull request from a fork gets no secrets and runs no approval or deploy stage"

// withholdForFork changes a plan compiled for a pull request from a fork:
// its secrets are withheld (empty on every runner), and stages that ask
// for approval or deploy or publish (argocd and release steps) are
// skipped, with every stage that needs them.
func withholdForFork(p *plan.Plan) error {
	for i := range p.Secrets {
		p.Secrets[i].Env, p.Secrets[i].File = "", ""
		p.Secrets[i].Withheld = forkPolicy
	}
	skipped := map[string]bool{}
	for changed := true; changed; {
		changed = false
		for i := range p.Stages {
			st := &p.Stages[i]
			if skipped[st.ID] {
				continue
			}
			deploys := st.Approval != nil || slices.ContainsFunc(st.Steps, func(s plan.Step) bool { return s.ArgoCD != nil || s.Release != nil })
			for _, n := range st.Needs {
				deploys = deploys || skipped[n]
			}
			if deploys {
				skipped[st.ID], changed = true, true
				if st.Skip == "" {
					st.Skip = forkPolicy
				}
			}
		}
	}
	return p.Seal()
}
