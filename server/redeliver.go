package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/server/githubapp"
)

// GitHub delivers each webhook once. A delivery the server did not take
// (it was down, Temporal was unreachable and it answered 503, a proxy
// failed) stays failed unless it is asked for again, which GitHub allows
// for three days. The Redeliver workflow does that: a Temporal Schedule
// runs it every hour on servers with a GitHub App. It lists the App's
// deliveries of the last three days, takes the events (GUIDs) none of
// whose attempts succeeded, and asks GitHub to deliver each again once,
// unless the server holds it already: a 503 can come after Temporal took
// the Delivery workflow, whose ID is the GUID's. A redelivery carries the
// same GUID, so nothing can start twice.

// RedeliverWorkflowName is the Redeliver workflow's registered name.
const RedeliverWorkflowName = "Redeliver"

// RedeliverScheduleID is the schedule that runs it.
const RedeliverScheduleID = "sluice-redeliver"

const (
	// redeliverEvery is how often the schedule fires: well inside
	// GitHub's three days, so that a delivery failed by an outage gets
	// several chances.
	redeliverEvery = time.Hour
	// redeliverWindow is how far back deliveries are looked at: GitHub's
	// three days, less a margin so that the oldest ones are not refused
	// as too old by the time they are asked for.
	redeliverWindow = 72*time.Hour - 10*time.Minute
	// redeliverMax bounds one pass's redeliveries (and so its writes to
	// GitHub, which rate limits them); the next pass takes the rest.
	redeliverMax = 100
)

// RedeliverResult says what one pass found and did.
type RedeliverResult struct {
	// Deliveries is how many attempts of the window were looked at, and
	// Events how many events (GUIDs) they were for.
	Deliveries int `json:"deliveries"`
	Events     int `json:"events"`
	// Failed are the events none of whose attempts the server took.
	Failed int `json:"failed"`
	// Held are failed events the server holds all the same.
	Held int `json:"held"`
	// Refused are failed events the server refused for what they are
	// (4xx: a bad signature, a malformed body): asking again would be
	// refused again.
	Refused int `json:"refused"`
	// Redelivered are the GUIDs asked for again.
	Redelivered []string `json:"redelivered,omitempty"`
}

// HookDeliverer is the GitHub App's side of redelivery.
type HookDeliverer interface {
	HookDeliveries(ctx context.Context, since time.Time, limit int) ([]githubapp.HookDelivery, error)
	Redeliver(ctx context.Context, id int64) error
}

// Redeliver runs one pass of redelivery.
func Redeliver(ctx workflow.Context) (RedeliverResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 10 * time.Second, MaximumAttempts: 5},
	})
	var r *Redeliverer
	var res RedeliverResult
	err := workflow.ExecuteActivity(ctx, r.RedeliverFailed).Get(ctx, &res)
	return res, err
}

// Redeliverer is the activity of the Redeliver workflow.
type Redeliverer struct {
	App    HookDeliverer
	Client client.Client
	Log    *slog.Logger
}

// RedeliverFailed asks GitHub again for the failed deliveries of the
// window that the server does not hold.
func (r *Redeliverer) RedeliverFailed(ctx context.Context) (RedeliverResult, error) {
	var res RedeliverResult
	if r.App == nil {
		return res, temporal.NewNonRetryableApplicationError("this server has no GitHub App (--github-app-id and its private key) to list and redeliver webhook deliveries with", "NoGitHubApp", nil)
	}
	list, err := r.App.HookDeliveries(ctx, time.Now().Add(-redeliverWindow), 10_000)
	if err != nil {
		return res, err
	}
	res.Deliveries = len(list)
	type event struct {
		ok, refused bool
		newest      githubapp.HookDelivery
	}
	events := map[string]*event{}
	var order []string // newest event first, as listed
	for _, d := range list {
		e := events[d.GUID]
		if e == nil {
			e = &event{newest: d}
			events[d.GUID] = e
			order = append(order, d.GUID)
		}
		if d.OK() {
			e.ok = true
		}
		if d.ID > e.newest.ID {
			e.newest = d
		}
	}
	res.Events = len(events)
	for _, guid := range order {
		e := events[guid]
		if e.ok {
			continue
		}
		res.Failed++
		// A 4xx is the server refusing the delivery itself; a 5xx, or no
		// answer (GitHub records 502 "failed to connect"), is the server
		// not taking it.
		if c := e.newest.StatusCode; c >= 400 && c < 500 && c != 429 {
			res.Refused++
			continue
		}
		held, err := r.held(ctx, guid)
		if err != nil {
			return res, err
		}
		if held {
			res.Held++
			continue
		}
		if len(res.Redelivered) >= redeliverMax {
			continue
		}
		if err := r.App.Redeliver(ctx, e.newest.ID); err != nil {
			return res, err
		}
		res.Redelivered = append(res.Redelivered, guid)
		if r.Log != nil {
			r.Log.Info("webhook redelivered", "delivery", guid, "event", e.newest.Event, "failed_with", e.newest.StatusCode, "at", e.newest.DeliveredAt)
		}
	}
	return res, nil
}

// held says whether the server holds the delivery guid: its Delivery
// workflow exists.
func (r *Redeliverer) held(ctx context.Context, guid string) (bool, error) {
	_, err := r.Client.DescribeWorkflowExecution(ctx, "github-"+guid, "")
	var nf *serviceerror.NotFound
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &nf):
		return false, nil
	default:
		return false, fmt.Errorf("looking for delivery %s: %w", guid, err)
	}
}

// reconcileRedelivery schedules redelivery on a server with a GitHub App,
// and removes the schedule from one without.
func (s *Server) reconcileRedelivery(ctx context.Context) error {
	if s.app != nil {
		return scheduleRedelivery(ctx, s.client)
	}
	// Not waited for: most servers without an App (the local one that
	// sluice run starts) never had the schedule, and start faster.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := s.client.ScheduleClient().GetHandle(ctx, RedeliverScheduleID).Delete(ctx)
		var nf *serviceerror.NotFound
		if err != nil && !errors.As(err, &nf) {
			s.log.Warn("removing the webhook redelivery schedule of a server without a GitHub App", "error", err)
		}
	}()
	return nil
}

// scheduleRedelivery makes the schedule that runs Redeliver every hour,
// or updates the one a previous server made.
func scheduleRedelivery(ctx context.Context, c client.Client) error {
	sc := c.ScheduleClient()
	opts := client.ScheduleOptions{
		ID:      RedeliverScheduleID,
		Spec:    client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: redeliverEvery}}},
		Action:  &client.ScheduleWorkflowAction{ID: "redeliver", Workflow: RedeliverWorkflowName, TaskQueue: Queue},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		// A pass missed while the server was down is made at once.
		CatchupWindow: redeliverEvery,
	}
	_, err := sc.Create(ctx, opts)
	if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		err = sc.GetHandle(ctx, RedeliverScheduleID).Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := u.Description.Schedule
			s.Spec, s.Action = &opts.Spec, opts.Action
			return &client.ScheduleUpdate{Schedule: &s}, nil
		}})
	}
	if err != nil {
		return fmt.Errorf("scheduling webhook redelivery: %w", err)
	}
	return nil
}

// RedeliverNow runs a pass at once and returns what it did: `sluice
// server redeliver`, after an outage.
func RedeliverNow(ctx context.Context, c client.Client) (RedeliverResult, error) {
	var res RedeliverResult
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    "redeliver-now-" + time.Now().UTC().Format("20060102T150405.000"),
		TaskQueue:             Queue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, RedeliverWorkflowName)
	if err != nil {
		return res, err
	}
	err = run.Get(ctx, &res)
	return res, err
}
