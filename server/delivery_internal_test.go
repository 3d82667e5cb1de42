package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// TestDeliveryActivityKinds runs the Delivery workflow both ways: as the
// servers start it now (Local: the activity runs as a local activity) and
// as older servers did (a scheduled activity, which their histories
// hold). Either way the result is the activity's; as a local activity a
// failed attempt (GitHub answering 502) is retried after its backoff, in
// a durable timer. (A scheduled activity's retries are the Temporal
// server's; the test environment would wait out the backoff in the
// workflow's goroutine.)
func TestDeliveryActivityKinds(t *testing.T) {
	for _, local := range []bool{true, false} {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestWorkflowEnvironment()
		env.RegisterWorkflowWithOptions(Delivery, workflow.RegisterOptions{Name: DeliveryWorkflowName})
		calls := 0
		env.RegisterActivityWithOptions(func(_ context.Context, in DeliveryInput) (DeliveryResult, error) {
			calls++
			if local && calls == 1 {
				return DeliveryResult{}, errors.New("GitHub answered 502")
			}
			return DeliveryResult{Runs: []TriggeredRun{{RunID: "web-1", Pipeline: in.Event.Repo}}}, nil
		}, activity.RegisterOptions{Name: "Trigger"})
		var kinds []string
		env.SetOnLocalActivityStartedListener(func(*activity.Info, context.Context, []any) { kinds = append(kinds, "local") })
		env.SetOnActivityStartedListener(func(*activity.Info, context.Context, converter.EncodedValues) { kinds = append(kinds, "scheduled") })
		if local {
			// During the backoff after the failed attempt, the workflow
			// says which attempt comes and why the last failed.
			env.RegisterDelayedCallback(func() {
				v, err := env.QueryWorkflow(QueryDeliveryProgress)
				if err != nil {
					t.Errorf("query: %v", err)
					return
				}
				var p DeliveryProgress
				if err := v.Get(&p); err != nil || p.Attempt != 2 || p.LastFailure != "GitHub answered 502" {
					t.Errorf("progress during the backoff: %+v, %v; want attempt 2 after \"GitHub answered 502\"", p, err)
				}
			}, 500*time.Millisecond)
		}
		in := DeliveryInput{Via: ViaGitHub, Local: local}
		in.Event.Repo = "acme/web"
		env.ExecuteWorkflow(DeliveryWorkflowName, in)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatalf("local %v: %v", local, err)
		}
		var res DeliveryResult
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		if len(res.Runs) != 1 || res.Runs[0].RunID != "web-1" || res.Runs[0].Pipeline != "acme/web" {
			t.Errorf("local %v: result %+v", local, res)
		}
		want := []string{"scheduled"}
		if local {
			want = []string{"local", "local"}
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("local %v: attempts ran as %v, want %v", local, kinds, want)
		}
	}
}

// TestDeliveryLocalNotRetried: what cannot succeed (a repository the App
// cannot read) fails the delivery at once, not after a day of retries.
func TestDeliveryLocalNotRetried(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Delivery, workflow.RegisterOptions{Name: DeliveryWorkflowName})
	calls := 0
	env.RegisterActivityWithOptions(func(context.Context, DeliveryInput) (DeliveryResult, error) {
		calls++
		return DeliveryResult{}, temporal.NewNonRetryableApplicationError("acme/web: not found", errNotFound, nil)
	}, activity.RegisterOptions{Name: "Trigger"})
	env.ExecuteWorkflow(DeliveryWorkflowName, DeliveryInput{Via: ViaGitHub, Local: true})
	err := env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "acme/web: not found") {
		t.Fatalf("workflow error %v, want the activity's", err)
	}
	if calls != 1 {
		t.Errorf("%d attempts, want 1", calls)
	}
}
