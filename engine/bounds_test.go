package engine

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// sizedStatus is the status of a finished run of n stages of three steps,
// each step with an output of out+i%100 bytes (in stage i) and an error
// of errLen bytes (of two-byte runes), the first step of each stage with a
// failed test whose details take details bytes.
func sizedStatus(n, out, errLen, details int) RunStatus {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	st := RunStatus{RunRef: RunRef{RunID: "big-1", Pipeline: "big"}, State: StateSucceeded, Start: at, End: at}
	for i := range n {
		s := StageStatus{ID: fmt.Sprintf("s%d", i), Name: fmt.Sprintf("s%d", i), State: StateSucceeded, Runner: "r1", Start: at, End: at}
		for j := range 3 {
			ss := StepStatus{Name: fmt.Sprintf("st%d-%d", i, j), Kind: "run", State: StateSucceeded, Attempt: 1, Start: at, End: at,
				Outputs: map[string]string{"v": strings.Repeat("x", out+i%100)}, Error: strings.Repeat("é", errLen/2)}
			if j == 0 {
				ss.Tests = &TestReport{Total: 10, Failed: 1, Failures: []TestFailure{{Name: "TestX", Message: "boom", Details: strings.Repeat("d", details)}}}
			}
			s.Steps = append(s.Steps, ss)
		}
		st.Stages = append(st.Stages, s)
	}
	return st
}

func TestFitStatus(t *testing.T) {
	// Small enough: as it is.
	small := sizedStatus(1000, 20, 0, 100)
	before := cloneJSON(t, small)
	if got := cloneJSON(t, fitStatus(small)); got != before {
		t.Fatal("a status within the budget was changed")
	}
	if n := len(before); n > StatusBudget {
		t.Fatalf("the small status takes %d bytes", n)
	}

	// Long errors: cut, at a rune boundary; the outputs stay.
	long := sizedStatus(200, 20, 4000, 4000)
	fit := fitStatus(long)
	if n := len(cloneJSON(t, fit)); n > StatusBudget {
		t.Fatalf("cut status takes %d bytes", n)
	}
	ss := fit.Stages[7].Steps[2]
	if !utf8.ValidString(ss.Error) || !strings.Contains(ss.Error, "more bytes cut") || len(ss.Error) > maxStatusText+40 {
		t.Errorf("cut error %q", ss.Error)
	}
	if ss.Outputs["v"] == "" || ss.OutputsDropped || fit.Stages[7].Steps[0].Tests.Failures[0].Details != "" {
		t.Errorf("cut step %+v", ss)
	}
	if !strings.Contains(fit.Trimmed, "cut to 1024 bytes") || strings.Contains(fit.Trimmed, "outputs") {
		t.Errorf("trimmed %q", fit.Trimmed)
	}
	if long.Stages[7].Steps[2].Error != strings.Repeat("é", 2000) || long.Stages[7].Steps[0].Tests.Failures[0].Details == "" {
		t.Error("fitStatus changed the status it was given")
	}

	// Large outputs: the largest dropped first, and said so.
	big := sizedStatus(100, 8000, 0, 0)
	fit = fitStatus(big)
	b := cloneJSON(t, fit)
	if len(b) > StatusBudget || len(b) < StatusBudget*3/4 {
		t.Errorf("cut status takes %d bytes, want up to %d, not much less", len(b), StatusBudget)
	}
	dropped, minDropped, maxKept := 0, 1<<30, 0
	for i, s := range fit.Stages {
		for _, ss := range s.Steps {
			switch {
			case ss.OutputsDropped && ss.Outputs != nil, !ss.OutputsDropped && len(ss.Outputs["v"]) != 8000+i:
				t.Fatalf("stage %s step %s: dropped %v, outputs of %d bytes", s.ID, ss.Name, ss.OutputsDropped, len(ss.Outputs["v"]))
			case ss.OutputsDropped:
				dropped++
				minDropped = min(minDropped, 8000+i)
			default:
				maxKept = max(maxKept, 8000+i)
			}
		}
	}
	if maxKept > minDropped {
		t.Errorf("outputs of %d bytes were dropped, of %d kept", minDropped, maxKept)
	}
	if dropped == 0 || !strings.Contains(fit.Trimmed, fmt.Sprintf("the outputs of %d steps dropped", dropped)) {
		t.Errorf("%d dropped; trimmed %q", dropped, fit.Trimmed)
	}
	var back RunStatus
	if err := json.Unmarshal([]byte(b), &back); err != nil || !back.Stages[99].Steps[0].OutputsDropped {
		t.Errorf("decoded: %v", err)
	}
}

func TestResumeDroppedOutputs(t *testing.T) {
	p := testPlan("dropped",
		stage("gen", nil, step("big", "ok"), step("more", "ok")),
		stage("use", needs("gen"), step("read", "ok")),
		stage("other", nil, step("o1", "ok")),
		stage("last", needs("other"), step("l1", "ok"), step("l2", "ok")),
	)
	prev := RunStatus{State: StateSucceeded}
	for _, s := range p.Stages {
		ps := StageStatus{ID: s.ID, State: StateSucceeded}
		for _, step := range s.Steps {
			ps.Steps = append(ps.Steps, StepStatus{Name: step.Name, State: StateSucceeded, Outputs: map[string]string{"k": "v"}})
		}
		prev.Stages = append(prev.Stages, ps)
	}
	prev.Stages[0].Steps[0].Outputs, prev.Stages[0].Steps[0].OutputsDropped = nil, true

	// gen lost an output: it runs again, and use, which needs it.
	res, err := resumeFrom(&p, prev, "last/l2")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, rs := range res.Stages {
		kept = append(kept, fmt.Sprintf("%s:%d", rs.ID, len(rs.Steps)))
	}
	if got := strings.Join(kept, " "); got != "other:1 last:1" {
		t.Errorf("kept %s, want other:1 last:1", got)
	}
	// A step before the one retried from lost its outputs: say so.
	if _, err := resumeFrom(&p, prev, "gen/more"); err == nil || !strings.Contains(err.Error(), "retry from gen/big") {
		t.Errorf("retry after a step without outputs: %v", err)
	}
}

// TestStatusTooLarge runs a pipeline whose status, with every output,
// would take more than Temporal's 2 MiB: the status the run returns is cut
// to fit, and the steps still get every output in full.
func TestStatusTooLarge(t *testing.T) {
	h := newHarness(t)
	var stages []plan.Stage
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("gen%d", i)
		stages = append(stages, stage(id, nil, step(fmt.Sprintf("fill%d", i), "fill", "blob", fmt.Sprint(200_000+i))))
		ids = append(ids, id)
	}
	stages = append(stages, stage("use", ids, step("measure", "size", "n", tmpl(out("fill0", "blob")))))
	st := h.run(t, RunInput{Plan: testPlan("too-large", stages...)})
	if st.State != StateSucceeded {
		t.Fatalf("run %s: %s", st.State, st.Error)
	}
	if n := len(cloneJSON(t, st)); n > StatusBudget {
		t.Errorf("the result takes %d bytes", n)
	}
	if got := stageOf(t, st, "use").Steps[0].Outputs["n"]; got != "200000" {
		t.Errorf("the step saw an output of %s bytes, want 200000", got)
	}
	// The largest go first.
	if !stageOf(t, st, "gen11").Steps[0].OutputsDropped || stageOf(t, st, "gen0").Steps[0].OutputsDropped || !strings.Contains(st.Trimmed, "outputs of 7 steps dropped") {
		t.Errorf("trimmed %q", st.Trimmed)
	}
	if q := h.query(t); len(cloneJSON(t, q)) > StatusBudget || q.Trimmed == "" {
		t.Errorf("the status query's answer was not cut: %q", q.Trimmed)
	}
}
