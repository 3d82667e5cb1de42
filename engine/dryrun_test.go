package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// dryRunPlan has a step that uses a secret the runner does not have, a
// scan step (an executor with side effects) and a stage behind approval.
func dryRunPlan(approvalTimeout time.Duration) plan.Plan {
	secretStep := step("use", "env", EnvDryRun, "TOKEN")
	secretStep.Env = map[string]plan.Template{"TOKEN": tmpl(plan.Ref{Secret: "gh"})}
	secretStep.Refs = append(secretStep.Refs, plan.Ref{Secret: "gh"})
	scan := plan.Step{Name: "scan", Kind: plan.KindScan, Scan: &plan.ScanStep{Image: plan.Lit("reg/app@sha256:1")}}
	p := testPlan("dry",
		stage("build", nil, secretStep),
		stage("release", needs("build"), scan),
	)
	p.Secrets = []plan.Secret{{Name: "gh", Env: "UNSET_ENV"}}
	p.Stages[1].Approval = &plan.Approval{Approvers: []string{"team:sre"}, Timeout: plan.Duration(approvalTimeout)}
	if err := p.Seal(); err != nil {
		panic(err)
	}
	return p
}

// sideEffects is an executor that reports a dry run when asked for one.
type sideEffects struct {
	mu  sync.Mutex
	got []bool
}

func (s *sideEffects) Execute(_ context.Context, req steps.Request) (steps.Result, error) {
	s.mu.Lock()
	s.got = append(s.got, req.DryRun)
	s.mu.Unlock()
	if req.DryRun {
		return steps.Result{DryRun: "scan"}, nil
	}
	return steps.Result{}, nil
}

func TestDryRun(t *testing.T) {
	h := newHarness(t)
	scans := &sideEffects{}
	h.acts.Executors[plan.KindScan] = scans
	st := h.run(t, RunInput{Plan: dryRunPlan(0), DryRun: true})
	if st.State != StateSucceeded || !st.DryRun {
		t.Fatalf("run %s (dry run %t): %s %v", st.State, st.DryRun, st.Error, h.err)
	}
	use := stageOf(t, st, "build").Steps[0]
	if use.Outputs[EnvDryRun] != "true" || use.Outputs["TOKEN"] != "" {
		t.Errorf("the step's environment: %v, want %s=true and an empty TOKEN", use.Outputs, EnvDryRun)
	}
	if log := h.logs.get("build/use"); !strings.Contains(log, `sluice: dry run: secret "gh" is empty for this step: environment variable "UNSET_ENV" is not set on this runner`) {
		t.Errorf("the log does not say the secret is missing:\n%s", log)
	}
	rel := stageOf(t, st, "release")
	if a := rel.Approval; a == nil || a.Decision != DecisionApproved || a.By != DryRunApprover || a.Decided.IsZero() {
		t.Errorf("a dry run's approval: %+v", a)
	}
	if rel.Steps[0].DryRun != "scan" {
		t.Errorf("scan step's status: %+v, want dry run %q", rel.Steps[0], "scan")
	}
	if len(scans.got) != 1 || !scans.got[0] {
		t.Errorf("the scan executor saw DryRun %v, want [true]", scans.got)
	}
}

func TestNotDryRun(t *testing.T) {
	t.Run("unset secret fails the step", func(t *testing.T) {
		h := newHarness(t)
		h.acts.Executors[plan.KindScan] = &sideEffects{}
		st := h.run(t, RunInput{Plan: dryRunPlan(time.Hour)})
		if st.DryRun {
			t.Error("status says dry run")
		}
		s := wantStage(t, st, "build", StateFailed, `resolving secret "gh" on runner "r1": environment variable "UNSET_ENV" is not set on this runner`)
		if s.Steps[0].State != StateFailed {
			t.Errorf("step %+v", s.Steps[0])
		}
	})
	t.Run("approval waits", func(t *testing.T) {
		h := newHarness(t)
		scans := &sideEffects{}
		h.acts.Executors[plan.KindScan] = scans
		h.acts.Secrets = HostSecrets{LookupEnv: func(string) (string, bool) { return "s3cr3t-value", true }}
		st := h.run(t, RunInput{Plan: dryRunPlan(time.Hour)})
		wantStage(t, st, "release", StateFailed, "approval timed out")
		if len(scans.got) != 0 {
			t.Errorf("the scan ran without approval")
		}
		use := stageOf(t, st, "build").Steps[0]
		if _, ok := use.Outputs[EnvDryRun]; ok && use.Outputs[EnvDryRun] != "" {
			t.Errorf("%s is set outside a dry run: %v", EnvDryRun, use.Outputs)
		}
	})
}
