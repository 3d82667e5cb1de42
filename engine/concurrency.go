package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Concurrency groups.
//
// Each group has a lock: a long-lived workflow, ConcurrencyGroup, with the
// ID GroupWorkflowID(group). A run of a pipeline with a concurrency block
// asks for the lock before its first stage, through an activity that
// signals the lock with SignalWithStart (so the first run of a group starts
// it), and waits, in state "queued", for a grant signal. The lock keeps the
// holder and a FIFO queue of waiting runs in workflow state, so it is as
// durable as the runs themselves:
//
//   - without cancel_in_progress a new run waits behind the holder and the
//     runs queued before it;
//   - with cancel_in_progress a new run asks Temporal to cancel the holder
//     and every run queued before it; a cancelled run releases the lock as
//     it finishes (after its cleanup), and the lock passes on.
//
// A run releases the lock when it ends, from a disconnected context, so a
// failed or cancelled run releases it too. A run that ends without
// releasing (terminated by an operator) is noticed by the lock, which checks
// every groupCheckInterval whether its holder still runs. A grant to a run
// that has already ended fails to deliver and passes to the next one. The
// lock workflow continues as new when its history grows and ends when the
// group is idle.
//
// The alternative, the starting client cancelling runs it finds by a search
// attribute, races with visibility's eventual consistency and cannot make a
// run wait durably; this design has no such window.

// groupCheckInterval is how often a lock checks that its holder still runs.
const groupCheckInterval = 2 * time.Minute

// GroupMember is a run in a concurrency group: its run (workflow) ID and
// the Temporal run ID of the attempt.
type GroupMember struct {
	RunID     string `json:"run_id"`
	Execution string `json:"execution"`
}

// GroupRequest asks a group's lock for the lock.
type GroupRequest struct {
	Group            string      `json:"group"`
	Member           GroupMember `json:"member"`
	CancelInProgress bool        `json:"cancel_in_progress"`
	// TaskQueue is where the lock workflow runs if it must be started.
	TaskQueue string `json:"task_queue"`
}

// GroupState is the state of a group's lock, and the input it continues as
// new with.
type GroupState struct {
	Group   string        `json:"group"`
	Holder  *GroupMember  `json:"holder,omitempty"`
	Waiting []GroupMember `json:"waiting,omitempty"`
}

// Control holds the activities that talk to Temporal itself on behalf of
// workflows; they run on the workflow task queue.
type Control struct {
	Client client.Client
}

// AcquireGroup asks a group's lock for the lock, starting the lock workflow
// if no run of the group is about.
func (c *Control) AcquireGroup(ctx context.Context, req GroupRequest) error {
	_, err := c.Client.SignalWithStartWorkflow(ctx, GroupWorkflowID(req.Group), signalGroupAcquire, req,
		client.StartWorkflowOptions{
			ID:                    GroupWorkflowID(req.Group),
			TaskQueue:             req.TaskQueue,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		},
		GroupWorkflowName, GroupState{Group: req.Group})
	if err != nil {
		return fmt.Errorf("asking for concurrency group %q: %w", req.Group, err)
	}
	return nil
}

// ReleaseGroup gives the lock back, or leaves the queue.
func (c *Control) ReleaseGroup(ctx context.Context, req GroupRequest) error {
	err := c.Client.SignalWorkflow(ctx, GroupWorkflowID(req.Group), "", signalGroupRelease, req.Member)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing concurrency group %q: %w", req.Group, err)
	}
	return nil
}

// IsRunning reports whether a run still runs.
func (c *Control) IsRunning(ctx context.Context, m GroupMember) (bool, error) {
	resp, err := c.Client.DescribeWorkflowExecution(ctx, m.RunID, m.Execution)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describing run %q: %w", m.RunID, err)
	}
	return resp.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

var control *Control

func controlOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           workflow.GetInfo(ctx).TaskQueueName,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
}

// acquireGroup waits until the run holds its concurrency group. It returns
// an error when the run was cancelled while it waited.
func (r *run) acquireGroup(ctx workflow.Context) error {
	granted := workflow.GetSignalChannel(ctx, signalGroupGranted)
	if err := workflow.ExecuteActivity(controlOptions(ctx), control.AcquireGroup, r.groupRequest(ctx)).Get(ctx, nil); err != nil {
		return err
	}
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(granted, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
	sel.Select(ctx)
	return ctx.Err()
}

func (r *run) releaseGroup(ctx workflow.Context) {
	err := workflow.ExecuteActivity(controlOptions(ctx), control.ReleaseGroup, r.groupRequest(ctx)).Get(ctx, nil)
	if err != nil {
		r.logger.Warn("releasing concurrency group", "group", r.plan.Concurrency.Group, "error", err)
	}
}

func (r *run) groupRequest(ctx workflow.Context) GroupRequest {
	info := workflow.GetInfo(ctx)
	return GroupRequest{
		Group:            r.plan.Concurrency.Group,
		Member:           GroupMember{RunID: info.WorkflowExecution.ID, Execution: info.WorkflowExecution.RunID},
		CancelInProgress: r.plan.Concurrency.CancelInProgress,
		TaskQueue:        info.TaskQueueName,
	}
}

// ConcurrencyGroup is the lock of one concurrency group; see the comment on
// concurrency groups above for how runs use it.
func ConcurrencyGroup(ctx workflow.Context, st GroupState) error {
	logger := workflow.GetLogger(ctx)
	acquire := workflow.GetSignalChannel(ctx, signalGroupAcquire)
	release := workflow.GetSignalChannel(ctx, signalGroupRelease)
	_ = workflow.SetQueryHandler(ctx, "state", func() (GroupState, error) { return st, nil })

	onAcquire := func(req GroupRequest) {
		if req.CancelInProgress {
			var older []GroupMember
			if st.Holder != nil {
				older = append(older, *st.Holder)
			}
			older = append(older, st.Waiting...)
			// Both runs say why: the older is superseded by the newer,
			// which lists what it superseded.
			tell := workflow.GetVersion(ctx, "group-superseded", workflow.DefaultVersion, 1) == 1
			var superseded []string
			for _, m := range older {
				if m == req.Member {
					continue
				}
				if tell {
					if err := workflow.SignalExternalWorkflow(ctx, m.RunID, m.Execution, SignalSuperseded, Superseded{By: req.Member.RunID}).Get(ctx, nil); err != nil {
						logger.Info("telling a run it is superseded", "run", m.RunID, "error", err)
					}
				}
				// The holder stays the holder until it releases, after its
				// cleanup; queued runs leave the queue now.
				err := workflow.RequestCancelExternalWorkflow(ctx, m.RunID, m.Execution).Get(ctx, nil)
				if err != nil {
					logger.Info("cancelling a run of the group", "run", m.RunID, "error", err)
					continue
				}
				superseded = append(superseded, m.RunID)
			}
			if tell && len(superseded) > 0 {
				if err := workflow.SignalExternalWorkflow(ctx, req.Member.RunID, req.Member.Execution, SignalSuperseded, Superseded{Supersedes: superseded}).Get(ctx, nil); err != nil {
					logger.Info("telling a run what it superseded", "run", req.Member.RunID, "error", err)
				}
			}
			st.Waiting = nil
		}
		if (st.Holder == nil || *st.Holder != req.Member) && !slices.Contains(st.Waiting, req.Member) {
			st.Waiting = append(st.Waiting, req.Member)
		}
	}
	onRelease := func(m GroupMember) {
		if st.Holder != nil && *st.Holder == m {
			st.Holder = nil
		}
		st.Waiting = slices.DeleteFunc(st.Waiting, func(w GroupMember) bool { return w == m })
	}
	grant := func() {
		for st.Holder == nil && len(st.Waiting) > 0 {
			m := st.Waiting[0]
			st.Waiting = st.Waiting[1:]
			err := workflow.SignalExternalWorkflow(ctx, m.RunID, m.Execution, signalGroupGranted, st.Group).Get(ctx, nil)
			if err != nil {
				logger.Info("run of the group is gone", "run", m.RunID, "error", err)
				continue
			}
			st.Holder = &m
		}
	}
	drain := func() bool {
		got := false
		for {
			var req GroupRequest
			if !acquire.ReceiveAsync(&req) {
				break
			}
			onAcquire(req)
			got = true
		}
		for {
			var m GroupMember
			if !release.ReceiveAsync(&m) {
				break
			}
			onRelease(m)
			got = true
		}
		return got
	}

	checkCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	for handled := 0; ; handled++ {
		grant()
		if st.Holder == nil && len(st.Waiting) == 0 {
			if drain() {
				continue
			}
			return nil
		}
		if handled >= 500 || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			drain()
			return workflow.NewContinueAsNewError(ctx, GroupWorkflowName, st)
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(acquire, func(c workflow.ReceiveChannel, _ bool) {
			var req GroupRequest
			c.Receive(ctx, &req)
			onAcquire(req)
		})
		sel.AddReceive(release, func(c workflow.ReceiveChannel, _ bool) {
			var m GroupMember
			c.Receive(ctx, &m)
			onRelease(m)
		})
		timerCtx, stopTimer := workflow.WithCancel(ctx)
		if st.Holder != nil {
			holder := *st.Holder
			sel.AddFuture(workflow.NewTimer(timerCtx, groupCheckInterval), func(f workflow.Future) {
				if f.Get(ctx, nil) != nil {
					return
				}
				var running bool
				if err := workflow.ExecuteActivity(checkCtx, control.IsRunning, holder).Get(ctx, &running); err != nil {
					logger.Warn("checking the holder of the group", "run", holder.RunID, "error", err)
					return
				}
				if !running {
					onRelease(holder)
				}
			})
		}
		sel.Select(ctx)
		stopTimer()
	}
}
