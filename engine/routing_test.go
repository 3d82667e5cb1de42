package engine

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/runners/artifacts"
	"github.com/sluice-ci/sluice/steps"
)

// TestRoutingScales: 50 runners of 6 labels each on one server. A runner
// polls the queues of the label sets plans use that it has, plus the one of
// no labels: at most 4 here, where one queue per subset of its labels was
// 64 (3,200 pollers for the fleet, against the frontend's limit of about
// 1,200). Stages still reach a runner with all their labels, among them
// label sets first used after the runners started.
func TestRoutingScales(t *testing.T) {
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Workflows run on a runner with no labels; the fleet hosts steps.
	startRunner(t, c, "routing-workflows")

	sets := [][]string{{"linux"}, {"docker", "linux"}, {"gpu"}}
	run := func(name string, runsOn []string) RunStatus {
		t.Helper()
		p := testPlan(name, stage("s", nil, step("one", "ok")))
		p.Stages[0].RunsOn = runsOn
		id, err := Start(ctx, c, p, StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return waitDone(t, c, id)
	}
	// The plans tell the registry their sets before the fleet starts.
	for i, set := range sets[:2] {
		if st := run(fmt.Sprintf("routing-warm-%d", i), nil); st.State != StateSucceeded {
			t.Fatalf("warm-up run: %s", st.State)
		}
		if err := noteLabelSets(ctx, c, &plan.Plan{Stages: []plan.Stage{{RunsOn: set}}}); err != nil {
			t.Fatal(err)
		}
	}
	runners := make([]*Runner, 50)
	regions := []string{"eu", "us", "ap"}
	for i := range runners {
		labels := []string{"linux", "amd64", "region-" + regions[i%3], fmt.Sprintf("rack-%d", i%5), fmt.Sprintf("host-%d", i), "ssd"}
		if i%2 == 0 {
			labels[1] = "docker"
		}
		if i%10 == 0 {
			labels[5] = "gpu"
		}
		r, err := NewRunner(c, RunnerOptions{
			Name:       fmt.Sprintf("fleet-%02d", i),
			Labels:     labels,
			MaxStages:  1,
			Activities: &Activities{Workspaces: TempWorkspaces{Dir: t.TempDir()}, Executors: steps.Registry{plan.KindRun: newFakeExec()}},
			Artifacts:  artifacts.Store{Dir: t.TempDir()},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		runners[i] = r
	}
	// A set first used now: the fleet learns it.
	if st := run("routing-gpu", []string{"gpu"}); st.State != StateSucceeded {
		t.Fatalf("a stage for gpu: %s (%s)", st.State, st.Error)
	}
	for _, set := range sets {
		st := run("routing-"+fmt.Sprint(len(set)), set)
		if st.State != StateSucceeded {
			t.Fatalf("a stage for %v: %s (%s)", set, st.State, st.Error)
		}
	}
	total, most := 0, 0
	for _, r := range runners {
		n := len(r.Queues())
		total += n
		most = max(most, n)
	}
	t.Logf("50 runners of 6 labels: %d stage queues polled in all, at most %d a runner (one per subset of 6 labels: 64 a runner, 3,200 in all)", total, most)
	if most > 1+len(sets) {
		t.Errorf("a runner polls %d stage queues; want at most %d (the label sets in use it has, and none)", most, 1+len(sets))
	}
	// The gpu queue is polled by the five gpu runners, and by them only.
	gpuQueue := StageQueue([]string{"gpu"})
	for i, r := range runners {
		has := slices.Contains(r.Queues(), gpuQueue)
		if has != (i%10 == 0) {
			t.Errorf("runner %s polls the gpu queue: %v", r.name, has)
		}
	}
	resp, err := c.DescribeTaskQueue(ctx, gpuQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.GetPollers() {
		if id := p.GetIdentity(); !slices.Contains([]string{"sluice-runner/fleet-00", "sluice-runner/fleet-10", "sluice-runner/fleet-20", "sluice-runner/fleet-30", "sluice-runner/fleet-40"}, id) {
			t.Errorf("the gpu queue is polled by %s", id)
		}
	}
}
