//go:build unix

package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
)

// bigRun is a run of n stages in the shapes pipelines take: a fan-out of
// matrix stages under a build, chains behind them, and a gate at the end;
// each stage has three steps, a third of the stages have run.
func bigRun(n int) (plan.Plan, engine.RunStatus) {
	start := time.Now().Add(-10 * time.Minute)
	p := plan.Plan{Pipeline: "big", Git: plan.Git{Repo: "acme/web", Ref: "refs/heads/main", SHA: strings.Repeat("a", 40), Event: "push", Actor: "alice"}}
	st := engine.RunStatus{RunRef: engine.RunRef{RunID: "big-1", Pipeline: "big"}, State: engine.StateRunning, Start: start}
	for i := range n {
		s := plan.Stage{ID: fmt.Sprintf("stage-%d", i), Name: fmt.Sprintf("stage-%d", i)}
		switch {
		case i == 0:
		case i%10 < 4: // matrix instances of one block
			block := i - i%10
			s.Name = fmt.Sprintf("test-%d", block)
			s.ID = fmt.Sprintf("test-%d[go=1.%d]", block, 20+i%10)
			s.Matrix, s.MatrixKeys = map[string]string{"go": fmt.Sprintf("1.%d", 20+i%10)}, []string{"go"}
			s.Needs = []string{"stage-0"}
		default:
			s.Needs = []string{p.Stages[i-1].ID}
		}
		if i == n-1 {
			s.Approval = &plan.Approval{Approvers: []string{"team:sre"}, Description: "Ship it"}
		}
		ss := engine.StageStatus{ID: s.ID, Name: s.Name, State: engine.StatePending}
		for j := range 3 {
			s.Steps = append(s.Steps, plan.Step{Name: fmt.Sprintf("step-%d", j), Kind: "run"})
			step := engine.StepStatus{Name: fmt.Sprintf("step-%d", j), Kind: "run", State: engine.StatePending}
			if i%3 == 0 {
				step.State, step.Attempt, step.Start, step.End = engine.StateSucceeded, 1, start, start.Add(time.Duration(j+1)*time.Second)
			}
			ss.Steps = append(ss.Steps, step)
		}
		if i%3 == 0 {
			ss.State, ss.Runner, ss.Start, ss.End = engine.StateSucceeded, "runner-1", start, start.Add(3*time.Second)
		}
		p.Stages = append(p.Stages, s)
		st.Stages = append(st.Stages, ss)
	}
	return p, st
}

// BenchmarkRunPage1000 is the server's time to render the run page of a
// 1,000-stage run: the view (graph layout included) and the template, from
// the plan and status in hand (docs/benchmarks.md).
func BenchmarkRunPage1000(b *testing.B) {
	wv, err := newWeb(b.TempDir(), webFuncs)
	if err != nil {
		b.Fatal(err)
	}
	p, st := bigRun(1000)
	allowed := func([]string) bool { return true }
	var buf bytes.Buffer
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		buf.Reset()
		v := runViewOf("big-1", &p, &st, time.Now(), allowed, "")
		if err := wv.pages.Render(&buf, "run.html", pageData{User: "alice", CSRF: "x", Data: v}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(buf.Len())/1024, "KiB/page")
}

// cpuTime is the CPU time the process has used: on a machine shared with
// other work, the time a page costs, which wall time is not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRunLive1000 is what each poll of the run page costs the
// server beyond Temporal: the live state of a 1,000-stage run as JSON.
func BenchmarkRunLive1000(b *testing.B) {
	p, st := bigRun(1000)
	var n int
	b.ReportAllocs()
	for b.Loop() {
		body, err := json.Marshal(liveOf(&p, &st, time.Now()))
		if err != nil {
			b.Fatal(err)
		}
		n = len(body)
	}
	b.ReportMetric(float64(n)/1024, "KiB/state")
}
