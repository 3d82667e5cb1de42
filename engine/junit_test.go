package engine

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/runners/artifacts"
	"github.com/sluice-ci/sluice/steps"
	runstep "github.com/sluice-ci/sluice/steps/run"
)

// junitStep is a run step for the host executor that writes a JUnit
// report of one passing and one failing Go test, whose failure prints the
// secret it was given in $TOKEN, and then exits with code.
func junitStep(name, code string) plan.Step {
	report := `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="example.com/web/auth" tests="2" failures="1">
    <testcase classname="example.com/web/auth" name="TestLogout"></testcase>
    <testcase classname="example.com/web/auth" name="TestLogin">
      <failure message="Failed">=== RUN   TestLogin&#xA;    login_test.go:14: login with $TOKEN was refused&#xA;--- FAIL: TestLogin (0.00s)&#xA;</failure>
    </testcase>
  </testsuite>
</testsuites>`
	s := plan.Step{Name: name, Kind: plan.KindRun, Run: &plan.RunStep{
		Script: plan.Lit("mkdir -p auth out && touch auth/login_test.go\ncat > out/" + name + ".xml <<EOF\n" + report + "\nEOF\nexit " + code),
		JUnit:  []string{"out/" + name + ".xml"},
	}}
	s.Env = map[string]plan.Template{"TOKEN": tmpl(plan.Ref{Secret: "tok"})}
	return s
}

// wantJUnit is the status of junitStep's tests: the secret is masked in
// the failure, as in the step's outputs and log.
var wantJUnit = &TestReport{Total: 2, Failed: 1, Failures: []TestFailure{{
	Suite: "example.com/web/auth", Name: "TestLogin", File: "auth/login_test.go", Line: 14,
	Message: "login with *** was refused",
	Details: "=== RUN   TestLogin\n    login_test.go:14: login with *** was refused\n--- FAIL: TestLogin (0.00s)",
}}}

func junitPlan() plan.Plan {
	after := step("after", "ok")
	after.Run.Command = []plan.Template{tmpl("echo"), tmpl(out("single", "exit_code"))}
	single := junitStep("single", "1")
	single.ContinueOnError = true
	p := testPlan("junit",
		// A stage of one step runs as a batch that takes the stage.
		stage("batched", nil, junitStep("unit", "1")),
		// A step whose output the next one uses runs alone.
		stage("alone", nil, single, after),
		// A step that passes has its report too.
		stage("passing", nil, junitStep("green", "0")),
	)
	// The failed stage does not stop the others.
	p.Stages[0].ContinueOnError = true
	p.Secrets = []plan.Secret{{Name: "tok", Env: "TOKEN_ENV"}}
	return p
}

// checkJUnitStatus checks that the failures of junitPlan's steps reached
// their status, from a batch and from a step run alone, failed or not.
func checkJUnitStatus(t *testing.T, st RunStatus) {
	t.Helper()
	for _, s := range []struct {
		stage string
		step  int
		state State
	}{{"batched", 0, StateFailed}, {"alone", 0, StateFailed}, {"passing", 0, StateSucceeded}} {
		ss := stageOf(t, st, s.stage).Steps[s.step]
		if ss.State != s.state {
			t.Errorf("%s/%s: %s (%s), want %s", s.stage, ss.Name, ss.State, ss.Error, s.state)
		}
		if diff := cmp.Diff(wantJUnit, ss.Tests); diff != "" {
			t.Errorf("%s/%s: tests (-want +got):\n%s", s.stage, ss.Name, diff)
		}
	}
	if a := stageOf(t, st, "alone"); a.Steps[1].State != StateSucceeded || a.Steps[1].Tests != nil {
		t.Errorf("alone/after: %+v", a.Steps[1])
	}
}

// A run step's JUnit report reaches its status through the host executor,
// the activity and the workflow: in the failure of a step that failed, in
// the result of one that passed, with secrets masked.
func TestJUnitReachesStepStatus(t *testing.T) {
	h := newHarness(t)
	h.acts.Executors = steps.Registry{plan.KindRun: &runstep.Executor{}}
	st := h.run(t, RunInput{Plan: junitPlan()})
	if !st.State.Done() {
		t.Fatalf("run %s, error %v", st.State, h.err)
	}
	checkJUnitStatus(t, st)
	log := h.logs.get("batched/unit")
	if strings.Contains(log, "s3cr3t") || !strings.Contains(log, "sluice: FAIL auth/login_test.go:14: example.com/web/auth.TestLogin: login with *** was refused") {
		t.Errorf("log:\n%s", log)
	}
}

// The same through a Temporal server, where results and failures travel
// as the data converter encodes them.
func TestServerJUnit(t *testing.T) {
	c := testClient(t)
	t.Setenv("TOKEN_ENV", "s3cr3t-value")
	startTestRunner(t, c, RunnerOptions{
		Name: "junit-runner",
		Activities: &Activities{
			Workspaces: TempWorkspaces{Dir: t.TempDir()},
			Executors:  steps.Registry{plan.KindRun: &runstep.Executor{}},
		},
		Artifacts: artifacts.Store{Dir: t.TempDir()},
		Workflows: true,
	})
	runID, err := Start(testCtx(t), c, junitPlan(), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, c, runID)
	if !st.State.Done() {
		t.Fatalf("run %s: %s", st.State, st.Error)
	}
	checkJUnitStatus(t, st)
}
