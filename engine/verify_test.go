package engine

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/verify"
	"github.com/sluice-ci/sluice/steps/verify/promtest"
)

// fakeArgo stands in for the argocd executor: Argo CD cannot run here
// (steps/argocd is tested against its validated fake). It deploys nothing
// and records the rollbacks it is asked for.
type fakeArgo struct {
	mu        sync.Mutex
	rollbacks []string // "app previous-image"
}

func (f *fakeArgo) Execute(_ context.Context, req steps.Request) (steps.Result, error) {
	return steps.Result{Outputs: map[string]string{
		"revision":       "abc123",
		"image":          req.Step.ArgoCD.Image.Literal(),
		"previous_image": "registry.local/web:1.0",
	}}, nil
}

func (f *fakeArgo) Rollback(_ context.Context, req steps.Request, previousImage string) (steps.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rollbacks = append(f.rollbacks, req.Step.ArgoCD.App.Literal()+" "+previousImage)
	fmt.Fprintf(req.Log, "rolled back to %s\n", previousImage)
	return steps.Result{}, nil
}

func (f *fakeArgo) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.rollbacks...)
}

var _ Rollbacker = (*fakeArgo)(nil)
var _ VerifyChecker = verify.Executor{}

type verifyRunner struct {
	r    *Runner
	argo *fakeArgo
	logs *memLogs
}

// startVerifyRunner starts a runner with the real verify executor, the
// argocd stand-in and the workflows; stop stops it.
func startVerifyRunner(t *testing.T, c client.Client, argo *fakeArgo) *verifyRunner {
	t.Helper()
	vr := &verifyRunner{argo: argo, logs: newMemLogs()}
	r, err := NewRunner(c, RunnerOptions{
		Name: "verify-runner",
		Activities: &Activities{
			Workspaces:        TempWorkspaces{Dir: t.TempDir()},
			Executors:         steps.Registry{plan.KindRun: newFakeExec(), plan.KindVerify: verify.Executor{}, plan.KindArgoCD: argo},
			Logs:              vr.logs,
			HeartbeatInterval: 200 * time.Millisecond,
		},
		Workflows: true,
		Worker:    worker.Options{WorkflowPanicPolicy: worker.FailWorkflow, MaxHeartbeatThrottleInterval: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	vr.r = r
	t.Cleanup(r.Stop)
	return vr
}

// verifyPlan deploys in one stage and watches the error rate in the next.
func verifyPlan(name, promURL string, forD time.Duration, onFailure string) plan.Plan {
	below := 0.05
	deploy := plan.Step{Name: "ship", Kind: plan.KindArgoCD, ArgoCD: &plan.ArgoCDStep{
		App: plan.Lit("web"), Image: plan.Lit("registry.local/web:2.0"),
		GitOps: &plan.GitOps{Repo: plan.Lit("https://git.local/deploy"), File: "web/kustomization.yaml", Branch: "main", Format: "kustomize"},
		Wait:   "healthy",
	}}
	check := plan.Step{Name: "errors", Kind: plan.KindVerify, Verify: &plan.VerifyStep{
		Prometheus: plan.Lit(promURL), Query: plan.Lit(promtest.ErrorRateQuery), Below: &below,
		For: plan.Duration(forD), Interval: plan.Duration(time.Second), OnFailure: onFailure,
	}}
	return testPlan(name,
		stage("deploy", nil, deploy),
		stage("monitor", needs("deploy"), check, step("announce", "ok")),
	)
}

var checkLine = regexp.MustCompile(`verify: check (\d+): `)

// checkNumbers lists the numbers of the checks a log shows.
func checkNumbers(log string) []int {
	var ns []int
	for _, m := range checkLine.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		ns = append(ns, n)
	}
	return ns
}

func verifyStep(t *testing.T, st RunStatus) StepStatus {
	t.Helper()
	ss, ok := st.Stage("monitor")
	if !ok || len(ss.Steps) < 1 {
		t.Fatalf("no monitor stage in %+v", st)
	}
	return ss.Steps[0]
}

// TestVerifyWatch runs verify steps against a real Prometheus scraping a
// target whose error rate the test sets, on a real Temporal server.
func TestVerifyWatch(t *testing.T) {
	c := testClient(t)
	prom := promtest.Start(t)
	lowRate := func(t *testing.T) {
		prom.Target.SetErrorRate(0.01)
		prom.WaitFor(t, promtest.ErrorRateQuery, func(v float64) bool { return v < 0.015 }, 30*time.Second)
	}
	// watch starts, at a low error rate, a runner and a run whose verify
	// step watches for d; the caller stops the runner.
	watch := func(t *testing.T, name string, d time.Duration, onFailure string, o StartOptions) (*verifyRunner, string) {
		t.Helper()
		lowRate(t)
		vr := startVerifyRunner(t, c, &fakeArgo{})
		runID, err := Start(testCtx(t), c, verifyPlan(name, prom.URL, d, onFailure), o)
		if err != nil {
			vr.r.Stop()
			t.Fatal(err)
		}
		return vr, runID
	}

	t.Run("passes after for", func(t *testing.T) {
		vr, runID := watch(t, "verify-pass", 6*time.Second, "rollback", StartOptions{})
		defer vr.r.Stop()
		st := waitDone(t, c, runID)
		vs := verifyStep(t, st)
		if st.State != StateSucceeded || vs.State != StateSucceeded {
			t.Fatalf("run %s, verify step %s (%s); want both succeeded\n%s", st.State, vs.State, vs.Error, vr.logs.get("monitor/errors"))
		}
		if took := vs.End.Sub(vs.Start); took < 6*time.Second || took > 20*time.Second {
			t.Errorf("the watch took %s; want about for = 6s", took)
		}
		if v, err := strconv.ParseFloat(vs.Outputs["value"], 64); err != nil || v >= 0.05 {
			t.Errorf("value = %q; want the low error rate", vs.Outputs["value"])
		}
		if n := checkNumbers(vr.logs.get("monitor/errors")); len(n) < 3 || len(n) > 8 {
			// 7 when each check takes no time; fewer on a busy machine.
			t.Errorf("checks %v; want up to 7 (one a second for 6s)", n)
		}
		if calls := vr.argo.calls(); len(calls) != 0 {
			t.Errorf("rollbacks %v after a passing watch", calls)
		}
	})

	t.Run("resumes after the worker restarts", func(t *testing.T) {
		// The watch outlasts the restart by far, so that a loaded machine
		// (slow status queries, a slow stop) still sees checks after it.
		const watchFor = 20 * time.Second
		first, runID := watch(t, "verify-restart", watchFor, "fail", StartOptions{})
		argo := first.argo
		waitFor(t, c, runID, "three checks", func(RunStatus) bool { return len(checkNumbers(first.logs.get("monitor/errors"))) >= 3 })
		first.r.Stop()
		stopped := time.Now()
		time.Sleep(3 * time.Second)
		second := startVerifyRunner(t, c, argo)
		st := waitDone(t, c, runID)
		vs := verifyStep(t, st)
		if st.State != StateSucceeded || vs.State != StateSucceeded {
			t.Fatalf("run %s, verify step %s (%s); want both succeeded", st.State, vs.State, vs.Error)
		}
		before, after := checkNumbers(first.logs.get("monitor/errors")), checkNumbers(second.logs.get("monitor/errors"))
		if len(after) == 0 || after[0] != before[len(before)-1]+1 {
			t.Errorf("checks before the restart %v, after %v; want the count to go on", before, after)
		}
		// The timer kept its deadline: the watch ends about for after it
		// started, not for after the restart.
		if vs.End.After(vs.Start.Add(watchFor+6*time.Second)) || vs.End.After(stopped.Add(watchFor)) {
			t.Errorf("the watch ran from %s to %s, stopped at %s; want it to end about %s after it started", vs.Start, vs.End, stopped, watchFor)
		}
	})

	t.Run("rolls back when the error rate rises", func(t *testing.T) {
		vr, runID := watch(t, "verify-rollback", 15*time.Second, "rollback", StartOptions{RunID: "verify-rollback-" + NewRunID("")})
		defer vr.r.Stop()
		running := waitFor(t, c, runID, "a first value", func(st RunStatus) bool {
			vs := verifyStep(t, st)
			return vs.State == StateRunning && vs.Outputs["value"] != ""
		})
		if vs := verifyStep(t, running); vs.Attempt != 1 {
			t.Errorf("running verify step %+v", vs)
		}
		prom.Target.SetErrorRate(0.5)
		st := waitDone(t, c, runID)
		vs := verifyStep(t, st)
		if st.State != StateFailed || vs.State != StateFailed {
			t.Fatalf("run %s, verify step %s; want both failed", st.State, vs.State)
		}
		for _, want := range []string{"crossed its bound (the step fails when the value reaches 0.05)", `rolled back step "ship" (stage deploy) to registry.local/web:1.0`} {
			if !strings.Contains(vs.Error, want) {
				t.Errorf("verify step error %q; want %q", vs.Error, want)
			}
		}
		if v, err := strconv.ParseFloat(vs.Outputs["value"], 64); err != nil || v < 0.05 {
			t.Errorf("value = %q; want the high error rate", vs.Outputs["value"])
		}
		if took := vs.End.Sub(vs.Start); took > 12*time.Second {
			t.Errorf("the step failed after %s; it should fail at the first check over the bound", took)
		}
		if calls := vr.argo.calls(); len(calls) != 1 || calls[0] != "web registry.local/web:1.0" {
			t.Errorf("rollbacks %v; want one of app web to registry.local/web:1.0", calls)
		}
		if log := vr.logs.get("deploy/ship"); !strings.Contains(log, "rolling back step \"ship\" to registry.local/web:1.0") {
			t.Errorf("the deploy's log does not show the rollback:\n%s", log)
		}
		if ss, _ := st.Stage("monitor"); ss.Steps[1].State != StateSkipped {
			t.Errorf("the step after the failed verify is %s; want skipped", ss.Steps[1].State)
		}
		if *update {
			recordHistory(t, c, runID, "verify-rollback")
		}
	})
}
