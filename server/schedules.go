package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/server/webhook"
)

// Schedules.
//
// The on "schedule" blocks of a repository's default branch are Temporal
// Schedules, one per pipeline (a pipeline has at most one schedule
// trigger), reconciled on every push to the default branch: created,
// updated when the cron or branch changed, deleted when the pipeline no
// longer has one. A pipeline whose files do not compile keeps the schedule
// it had. Each firing starts a ScheduledRun workflow on the server's queue,
// which compiles the pipeline at the head of the schedule's branch and
// starts its run. Overlapping firings are skipped (a run still going when
// the next is due), and firings missed while Temporal was down are caught
// up for one hour. Cron expressions are in UTC.

// ScheduledWorkflowName is the registered name of ScheduledRun.
const ScheduledWorkflowName = "ScheduledRun"

// KindSchedule is a run started by a schedule.
const KindSchedule = "schedule"

// scheduleCatchup is how far back a firing missed while Temporal was down
// still runs.
const scheduleCatchup = time.Hour

// schedulePrefix starts the ID of every schedule Sluice manages.
const schedulePrefix = "sluice-schedule:"

// ScheduledInput is what a schedule's firing needs: which pipeline of
// which repository, at the head of which branch.
type ScheduledInput struct {
	Via      string  `json:"via"`
	Repo     RepoRef `json:"repo"`
	Dir      string  `json:"dir,omitempty"`
	Pipeline string  `json:"pipeline"`
	Cron     string  `json:"cron"`
	Branch   string  `json:"branch"`
}

// ScheduledRun is one firing of a pipeline's schedule.
func ScheduledRun(ctx workflow.Context, in ScheduledInput) (DeliveryResult, error) {
	ctx = workflow.WithActivityOptions(ctx, deliveryActivity)
	var t *Triggers
	var res DeliveryResult
	err := workflow.ExecuteActivity(ctx, t.Fire, in, workflow.GetInfo(ctx).WorkflowExecution.ID).Get(ctx, &res)
	return res, err
}

// Fire is ScheduledRun's activity: the branch's head, then the pipeline
// compiled for a schedule event there and started.
func (t *Triggers) Fire(ctx context.Context, in ScheduledInput, firing string) (DeliveryResult, error) {
	var head string
	var err error
	if in.Via == ViaGitHub {
		src, serr := t.source(DeliveryInput{Via: ViaGitHub, Event: webhook.Event{InstallationID: in.Repo.Installation}})
		if serr != nil {
			return DeliveryResult{}, serr
		}
		head, err = src.(githubSource).c.Head(ctx, in.Repo.Name, in.Branch)
	} else {
		head, err = remoteRef(ctx, in.Repo.URL, "refs/heads/"+in.Branch)
	}
	if err != nil {
		return DeliveryResult{}, sourceError(fmt.Errorf("finding the head of branch %s of %s: %w", in.Branch, in.Repo.Name, err))
	}
	ev := webhook.Event{
		Kind: KindSchedule, Name: "schedule", Delivery: firing,
		Repo: in.Repo.Name, CloneURL: in.Repo.URL, InstallationID: in.Repo.Installation,
		Actor: "schedule", Ref: "refs/heads/" + in.Branch, Branch: in.Branch, After: head,
	}
	return t.Trigger(ctx, DeliveryInput{Via: in.Via, Event: ev, Pipelines: []string{in.Pipeline}})
}

// remoteRef is the commit a ref of a git repository points at.
func remoteRef(ctx context.Context, url, ref string) (string, error) {
	out, err := gitOut(ctx, ".", "ls-remote", "--", url, ref)
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "", fmt.Errorf("%s has no %s", url, ref)
	}
	return f[0], nil
}

// defaultBranch is the branch a repository's HEAD names.
func defaultBranch(ctx context.Context, via string, ev webhook.Event) string {
	if via == ViaGitHub {
		return ev.DefaultBranch
	}
	out, err := gitOut(ctx, ".", "ls-remote", "--symref", "--", ev.CloneURL, "HEAD")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "ref: refs/heads/"); ok {
			b, _, _ := strings.Cut(rest, "\t")
			return b
		}
	}
	return ""
}

// scheduleID names the schedule of a repository's pipeline.
func scheduleID(repo, dir, pipeline string) string {
	return schedulePrefix + repo + ":" + dir + ":" + pipeline
}

// reconcileSchedules makes the repository's schedules what the default
// branch's pipelines say. kept are the project directories whose pipeline
// did not compile: their schedules stay as they were.
func (t *Triggers) reconcileSchedules(ctx context.Context, via string, ref RepoRef, plans map[string]*plan.Plan, kept map[string]bool) error {
	sc := t.Client.ScheduleClient()
	want := map[string]ScheduledInput{}
	for dir, p := range plans {
		if p.Schedule == nil {
			continue
		}
		want[scheduleID(ref.Name, dir, p.Pipeline)] = ScheduledInput{Via: via, Repo: ref, Dir: dir, Pipeline: p.Pipeline, Cron: p.Schedule.Cron, Branch: p.Schedule.Branch}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		in := want[id]
		opts := client.ScheduleOptions{
			ID:            id,
			Spec:          client.ScheduleSpec{CronExpressions: []string{in.Cron}},
			Action:        &client.ScheduleWorkflowAction{ID: "scheduled-" + strings.TrimPrefix(id, schedulePrefix), Workflow: ScheduledWorkflowName, TaskQueue: Queue, Args: []any{in}},
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			CatchupWindow: scheduleCatchup,
			Memo:          map[string]any{"pipeline": in.Pipeline, "repo": in.Repo.Name, "cron": in.Cron, "branch": in.Branch},
		}
		// Every push to the default branch comes here: a schedule that
		// is as it should be is only read, not written again.
		desc, err := sc.GetHandle(ctx, id).Describe(ctx)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			_, err = sc.Create(ctx, opts)
		case err == nil && scheduleIs(desc, in, opts):
			continue
		case err == nil:
			err = temporal.ErrScheduleAlreadyRunning
		}
		if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			err = sc.GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				s := u.Description.Schedule
				s.Spec, s.Action = &opts.Spec, opts.Action
				if s.Policy == nil {
					s.Policy = &client.SchedulePolicies{}
				}
				s.Policy.Overlap, s.Policy.CatchupWindow = opts.Overlap, opts.CatchupWindow
				return &client.ScheduleUpdate{Schedule: &s}, nil
			}})
		}
		if err != nil {
			return fmt.Errorf("scheduling pipeline %s of %s (%q): %w", in.Pipeline, ref.Name, in.Cron, err)
		}
	}
	existing, err := t.schedulesOf(ctx, ref.Name)
	if err != nil {
		return err
	}
	for _, id := range existing {
		if _, ok := want[id]; ok {
			continue
		}
		dir := strings.SplitN(strings.TrimPrefix(id, schedulePrefix+ref.Name+":"), ":", 2)[0]
		if kept[dir] {
			continue
		}
		err := sc.GetHandle(ctx, id).Delete(ctx)
		var nf *serviceerror.NotFound
		if err != nil && !errors.As(err, &nf) {
			return fmt.Errorf("deleting schedule %s: %w", id, err)
		}
	}
	return nil
}

// scheduleIs says whether a schedule already is what reconcileSchedules
// would make it: the same firing (pipeline, repository, cron, branch:
// the spec is made from the cron), workflow and policies.
func scheduleIs(desc *client.ScheduleDescription, in ScheduledInput, opts client.ScheduleOptions) bool {
	a, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction)
	want := opts.Action.(*client.ScheduleWorkflowAction)
	if !ok || a.ID != want.ID || a.TaskQueue != want.TaskQueue || len(a.Args) != 1 || desc.Schedule.Policy == nil {
		return false
	}
	if name, ok := a.Workflow.(string); !ok || name != want.Workflow {
		return false
	}
	var got ScheduledInput
	p, ok := a.Args[0].(*commonpb.Payload)
	if !ok || converter.GetDefaultDataConverter().FromPayload(p, &got) != nil || got != in {
		return false
	}
	return desc.Schedule.Policy.Overlap == opts.Overlap && desc.Schedule.Policy.CatchupWindow == opts.CatchupWindow
}

// schedulesOf lists the IDs of a repository's schedules: a listing only,
// not a description of each schedule of every repository.
func (t *Triggers) schedulesOf(ctx context.Context, repo string) ([]string, error) {
	it, err := t.Client.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, fmt.Errorf("listing schedules: %w", err)
	}
	var ids []string
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("listing schedules: %w", err)
		}
		if strings.HasPrefix(e.ID, schedulePrefix+repo+":") {
			ids = append(ids, e.ID)
		}
	}
	return ids, nil
}

// ScheduleInfo is a pipeline's schedule as `sluice schedules` shows it.
type ScheduleInfo struct {
	ID       string      `json:"id"`
	Repo     string      `json:"repo"`
	Dir      string      `json:"dir,omitempty"`
	Pipeline string      `json:"pipeline"`
	Cron     string      `json:"cron"`
	Branch   string      `json:"branch"`
	Next     []time.Time `json:"next,omitempty"`
	// Last is when it last fired, if it did.
	Last time.Time `json:"last,omitzero"`
}

// ListSchedules lists the schedules Sluice manages, with their next
// firing times.
func ListSchedules(ctx context.Context, c client.Client) ([]ScheduleInfo, error) {
	sc := c.ScheduleClient()
	it, err := sc.List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, fmt.Errorf("listing schedules: %w", err)
	}
	var out []ScheduleInfo
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("listing schedules: %w", err)
		}
		if !strings.HasPrefix(e.ID, schedulePrefix) {
			continue
		}
		rest := strings.TrimPrefix(e.ID, schedulePrefix)
		// repo:dir:pipeline, where the repository may hold no colon.
		parts := strings.SplitN(rest, ":", 3)
		if len(parts) != 3 {
			continue
		}
		info := ScheduleInfo{ID: e.ID, Repo: parts[0], Dir: parts[1], Pipeline: parts[2]}
		desc, err := sc.GetHandle(ctx, e.ID).Describe(ctx)
		if err != nil {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				continue // deleted since it was listed
			}
			return nil, fmt.Errorf("describing schedule %s: %w", e.ID, err)
		}
		if spec := desc.Schedule.Spec; spec != nil && len(spec.CronExpressions) > 0 {
			info.Cron = spec.CronExpressions[0]
		}
		if a, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction); ok && len(a.Args) == 1 {
			var in ScheduledInput
			if p, ok := a.Args[0].(*commonpb.Payload); ok && converter.GetDefaultDataConverter().FromPayload(p, &in) == nil {
				info.Cron, info.Branch = in.Cron, in.Branch
			}
		}
		info.Next = desc.Info.NextActionTimes
		if n := len(desc.Info.RecentActions); n > 0 {
			info.Last = desc.Info.RecentActions[n-1].ActualTime
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
