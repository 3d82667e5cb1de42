package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/engine"
)

// The workflows a Sluice binary runs, and the task queues they run on.
// A worker registers them with the functions here, and so does the
// replayer of recorded histories (sluice replay), so that an upgrade is
// checked against the code its workers will run.

// RegisterWorkflows registers the workflows of the server's queue (Queue):
// Delivery, ScheduledRun, Redeliver and Report.
func RegisterWorkflows(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(Delivery, workflow.RegisterOptions{Name: DeliveryWorkflowName})
	r.RegisterWorkflowWithOptions(ScheduledRun, workflow.RegisterOptions{Name: ScheduledWorkflowName})
	r.RegisterWorkflowWithOptions(Redeliver, workflow.RegisterOptions{Name: RedeliverWorkflowName})
	r.RegisterWorkflowWithOptions(Report, workflow.RegisterOptions{Name: ReportWorkflowName})
}

// registerTraceWorkflows registers the workflow of TraceQueue.
func registerTraceWorkflows(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(Trace, workflow.RegisterOptions{Name: TraceWorkflowName})
}

// RegisterAllWorkflows registers every workflow a Sluice binary runs, on
// any of its queues: the engine's (engine.RegisterWorkflowTypes) and the
// server's. It is what a history is replayed against.
func RegisterAllWorkflows(r worker.WorkflowRegistry) {
	engine.RegisterWorkflowTypes(r)
	RegisterWorkflows(r)
	registerTraceWorkflows(r)
}

// WorkflowQueues are the task queues of Sluice's workflows: every
// execution on them is one of Sluice's, whatever its type (one of a type
// this build no longer has included).
var WorkflowQueues = []string{engine.WorkflowTaskQueue, Queue, TraceQueue}

// Execution is one workflow execution, as visibility lists it.
type Execution struct {
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
	Type       string    `json:"workflow_type"`
	Status     string    `json:"status"`
	Start      time.Time `json:"start"`
	Close      time.Time `json:"close,omitzero"`
}

// Executions lists the executions of Sluice's workflows (WorkflowQueues)
// that started or closed at since or later, and those running, whenever
// they started: those are the ones a new build takes up. Visibility is
// eventually consistent: an execution started a moment ago may be missing.
func Executions(ctx context.Context, c client.Client, since time.Time) ([]Execution, error) {
	queues := make([]string, len(WorkflowQueues))
	for i, q := range WorkflowQueues {
		queues[i] = fmt.Sprintf("TaskQueue = '%s'", q)
	}
	at := since.UTC().Format(time.RFC3339Nano)
	q := fmt.Sprintf("(%s) AND (ExecutionStatus = 'Running' OR StartTime >= '%s' OR CloseTime >= '%s')", strings.Join(queues, " OR "), at, at)
	var out []Execution
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("listing workflow executions (%s): %w", q, err)
		}
		for _, e := range resp.GetExecutions() {
			x := Execution{
				WorkflowID: e.GetExecution().GetWorkflowId(),
				RunID:      e.GetExecution().GetRunId(),
				Type:       e.GetType().GetName(),
				Status:     strings.ToLower(strings.TrimPrefix(e.GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_")),
				Start:      e.GetStartTime().AsTime(),
			}
			if e.GetCloseTime() != nil {
				x.Close = e.GetCloseTime().AsTime()
			}
			out = append(out, x)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return out, nil
		}
	}
}
