package metrics

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ci/sluice/engine"
)

// StepBuckets are the bounds, in seconds, of step durations: from a
// tenth of a second to the default step timeout of an hour, and past it.
var StepBuckets = []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}

// Results of a step, a stage or a run, as the result label says them.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
	ResultCancelled = "cancelled"
)

// Runner is a runner process's series: what its stage pool holds, how
// long its steps take, and the free space of its work dir.
type Runner struct {
	steps *prometheus.HistogramVec
	pool  atomic.Pointer[engine.StagePool]
}

// RunnerInfo says which runner a process is, for sluice_runner_info.
type RunnerInfo struct {
	Name, Version string
	Labels        []string
	// DiskFree returns the bytes free for the runner's work dir; nil
	// exports no sluice_runner_disk_free_bytes.
	DiskFree func() (uint64, error)
}

// NewRunner registers a runner's series in reg. Until Watch gives it the
// runner's stage pool, the pool's series read zero.
func NewRunner(reg prometheus.Registerer, info RunnerInfo) *Runner {
	r := &Runner{steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "runner", Name: "step_duration_seconds",
		Help:    "How long the steps this runner ran took, by step kind and result (succeeded, failed, cancelled).",
		Buckets: StepBuckets,
	}, []string{"kind", "result"})}
	pool := func(f func(p *engine.StagePool) float64) func() float64 {
		return func() float64 {
			if p := r.pool.Load(); p != nil {
				return f(p)
			}
			return 0
		}
	}
	cs := []prometheus.Collector{
		r.steps,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "runner", Name: "stages_running",
			Help: "Stages this runner holds now (taken and not yet released)."},
			pool(func(p *engine.StagePool) float64 { return float64(p.Busy()) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "runner", Name: "stage_slots",
			Help: "Stages this runner holds at most at once (--max-stages)."},
			pool(func(p *engine.StagePool) float64 { return float64(p.MaxSlots()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "runner", Name: "stages_taken_total",
			Help: "Stages this runner has taken from the stage queues since it started."},
			pool(func(p *engine.StagePool) float64 { return float64(p.Taken()) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "runner", Name: "taking_stages",
			Help: "1 while the runner takes stages; 0 while it drains or its disk is too full (--min-free-disk)."},
			pool(func(p *engine.StagePool) float64 {
				if p.Draining() || p.Blocked() != "" {
					return 0
				}
				return 1
			})),
		prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "runner", Name: "info",
			Help:        "Always 1: the runner's name, version and labels.",
			ConstLabels: prometheus.Labels{"runner": info.Name, "version": info.Version, "labels": strings.Join(info.Labels, ",")}}),
	}
	cs[len(cs)-1].(prometheus.Gauge).Set(1)
	if info.DiskFree != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "runner", Name: "disk_free_bytes",
			Help: "Bytes an unprivileged user may still write on the file system of the runner's work dir."},
			func() float64 {
				free, err := info.DiskFree()
				if err != nil {
					return -1
				}
				return float64(free)
			}))
	}
	for _, c := range cs {
		reg.MustRegister(c)
	}
	return r
}

// Watch gives the series the runner's stage pool.
func (r *Runner) Watch(p *engine.StagePool) { r.pool.Store(p) }

// StepDone records a step the runner ran (engine.Activities.StepDone).
func (r *Runner) StepDone(ctx context.Context, kind string, took time.Duration, err error) {
	r.steps.WithLabelValues(kind, StepResult(ctx, err)).Observe(took.Seconds())
}

// StepResult is the result label of a step that ended with err.
func StepResult(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return ResultSucceeded
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return ResultCancelled
	}
	return ResultFailed
}
