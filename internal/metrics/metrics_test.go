package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/metrics"
)

// scrape reads what a metrics server serves, as Prometheus would.
func scrape(t *testing.T, url string) map[string]*familyValues {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	out := map[string]*familyValues{}
	for name, f := range families {
		fv := &familyValues{typ: f.GetType().String()}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			fv.samples = append(fv.samples, sample{labels, v})
		}
		out[name] = fv
	}
	return out
}

type familyValues struct {
	typ     string
	samples []sample
}

type sample struct {
	labels map[string]string
	value  float64
}

// value is the sample whose labels include want.
func (f *familyValues) value(want map[string]string) (float64, bool) {
	if f == nil {
		return 0, false
	}
next:
	for _, s := range f.samples {
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

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
	got := scrape(t, srv.URL())
	if v, ok := got["sluice_runner_stages_running"].value(nil); !ok || v != 0 {
		t.Errorf("stages running before Watch: %v %v", v, ok)
	}
	if v, ok := got["sluice_runner_info"].value(map[string]string{"runner": "r1", "version": "v1.2.3", "labels": "gpu,linux"}); !ok || v != 1 {
		t.Errorf("sluice_runner_info: %v %v", v, ok)
	}
	if v, _ := got["sluice_runner_disk_free_bytes"].value(nil); v != float64(free) {
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
	got = scrape(t, srv.URL())
	for name, want := range map[string]float64{"sluice_runner_stages_running": 2, "sluice_runner_stage_slots": 3, "sluice_runner_taking_stages": 1} {
		if v, _ := got[name].value(nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	pool.Block("disk full")
	if v, _ := scrape(t, srv.URL())["sluice_runner_taking_stages"].value(nil); v != 0 {
		t.Errorf("a runner whose disk is full: taking_stages %v", v)
	}

	// Steps by kind and result; a cancelled context is a cancelled step.
	ctx := context.Background()
	r.StepDone(ctx, "run", 2*time.Second, nil)
	r.StepDone(ctx, "run", 3*time.Second, errors.New("exit status 1"))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	r.StepDone(cancelled, "image", time.Second, context.Canceled)
	got = scrape(t, srv.URL())
	steps := got["sluice_runner_step_duration_seconds"]
	if steps == nil || steps.typ != "HISTOGRAM" {
		t.Fatalf("step durations: %+v", steps)
	}
	for _, c := range []struct{ kind, result string }{{"run", "succeeded"}, {"run", "failed"}, {"image", "cancelled"}} {
		if n, _ := steps.value(map[string]string{"kind": c.kind, "result": c.result}); n != 1 {
			t.Errorf("steps %s %s: %v, want 1", c.kind, c.result, n)
		}
	}
	// No label of a step names its run.
	for _, s := range steps.samples {
		for _, v := range s.labels {
			if strings.Contains(v, "run-1") {
				t.Errorf("a label names a run: %v", s.labels)
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
	got := scrape(t, srv.URL())
	if v, _ := got["temporal_request_total"].value(map[string]string{"namespace": "sluice", "operation": "StartWorkflowExecution"}); v != 2 || got["temporal_request_total"].typ != "COUNTER" {
		t.Errorf("temporal_request_total: %+v", got["temporal_request_total"])
	}
	if v, _ := got["temporal_request_latency_seconds"].value(nil); v != 1 {
		t.Errorf("temporal_request_latency_seconds: %+v", got["temporal_request_latency_seconds"])
	}
	if v, _ := got["temporal_num_pollers"].value(map[string]string{"task_queue": "sluice"}); v != 2 {
		t.Errorf("temporal_num_pollers: %+v", got["temporal_num_pollers"])
	}
}
