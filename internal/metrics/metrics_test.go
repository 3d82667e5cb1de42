package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/metrics"
	"github.com/sluice-ci/sluice/internal/testing/metricstest"
)

func TestRunnerSeries(t *testing.T) {
	reg := metrics.NewRegistry()
	free := uint64(5 << 30)
	r := metrics.NewRunner(reg, metrics.RunnerInfo{Name: "r1", Version: "v1.2.3", Labels: []string{"gpu", "linux"},
		DiskFree: func() (uint64, error) { return free, nil }})
	srv, err := metrics.Listen("127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// Before the runner started, its pool reads zero.
	got := metricstest.Scrape(t, srv.URL())
	if v, ok := got.Value("sluice_runner_stages_running", nil); !ok || v != 0 {
		t.Errorf("stages running before Watch: %v %v", v, ok)
	}
	if v, ok := got.Value("sluice_runner_info", map[string]string{"runner": "r1", "version": "v1.2.3", "labels": "gpu,linux"}); !ok || v != 1 {
		t.Errorf("sluice_runner_info: %v %v", v, ok)
	}
	if v, _ := got.Value("sluice_runner_disk_free_bytes", nil); v != float64(free) {
		t.Errorf("disk free: %v, want %d", v, free)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if got[name] == nil {
			t.Errorf("%s is missing", name)
		}
	}

	// The pool's figures are read at each scrape.
	pool := engine.NewStagePool(3)
	r.Watch(pool)
	pool.Hold("run-1\x00build")
	pool.Hold("run-2\x00test")
	got = metricstest.Scrape(t, srv.URL())
	for name, want := range map[string]float64{"sluice_runner_stages_running": 2, "sluice_runner_stage_slots": 3, "sluice_runner_taking_stages": 1} {
		if v, _ := got.Value(name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	pool.Block("disk full")
	if v, _ := metricstest.Scrape(t, srv.URL()).Value("sluice_runner_taking_stages", nil); v != 0 {
		t.Errorf("a runner whose disk is full: taking_stages %v", v)
	}

	// Steps by kind and result; a cancelled context is a cancelled step.
	ctx := context.Background()
	r.StepDone(ctx, "run", 2*time.Second, nil)
	r.StepDone(ctx, "run", 3*time.Second, errors.New("exit status 1"))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	r.StepDone(cancelled, "image", time.Second, context.Canceled)
	got = metricstest.Scrape(t, srv.URL())
	steps := got["sluice_runner_step_duration_seconds"]
	if steps == nil || steps.Type != "HISTOGRAM" {
		t.Fatalf("step durations: %+v", steps)
	}
	for _, c := range []struct{ kind, result string }{{"run", "succeeded"}, {"run", "failed"}, {"image", "cancelled"}} {
		if n, _ := stepsValue(steps, map[string]string{"kind": c.kind, "result": c.result}); n != 1 {
			t.Errorf("steps %s %s: %v, want 1", c.kind, c.result, n)
		}
	}
	// No label of a step names its run.
	for _, s := range steps.Samples {
		for _, v := range s.Labels {
			if strings.Contains(v, "run-1") {
				t.Errorf("a label names a run: %v", s.Labels)
			}
		}
	}
}

func TestTemporalSeries(t *testing.T) {
	reg := metrics.NewRegistry()
	h, err := metrics.Temporal(reg)
	if err != nil {
		t.Fatal(err)
	}
	tagged := h.WithTags(map[string]string{"namespace": "sluice", "operation": "StartWorkflowExecution"})
	tagged.Counter("temporal_request").Inc(2)
	tagged.Timer("temporal_request_latency").Record(30 * time.Millisecond)
	h.WithTags(map[string]string{"task_queue": "sluice"}).Gauge("temporal_num_pollers").Update(2)
	srv, err := metrics.Listen("127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := metricstest.Scrape(t, srv.URL())
	if v, _ := got.Value("temporal_request_total", map[string]string{"namespace": "sluice", "operation": "StartWorkflowExecution"}); v != 2 || got["temporal_request_total"].Type != "COUNTER" {
		t.Errorf("temporal_request_total: %+v", got["temporal_request_total"])
	}
	if v, _ := got.Value("temporal_request_latency_seconds", nil); v != 1 {
		t.Errorf("temporal_request_latency_seconds: %+v", got["temporal_request_latency_seconds"])
	}
	if v, _ := got.Value("temporal_num_pollers", map[string]string{"task_queue": "sluice"}); v != 2 {
		t.Errorf("temporal_num_pollers: %+v", got["temporal_num_pollers"])
	}
}

// stepsValue is the value of the step durations' sample with labels.
func stepsValue(f *metricstest.Family, labels map[string]string) (float64, bool) {
	return metricstest.Families{"f": f}.Value("f", labels)
}
