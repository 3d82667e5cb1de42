package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// temporalBuckets are the bounds, in seconds, of the SDK's timers: from
// a request of a millisecond to a workflow of an hour.
var temporalBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// Temporal returns the handler that the Temporal client (and so every
// worker on it) reports the SDK's metrics to, exported into reg: the
// temporal_* series (temporal_request_total, temporal_long_request_total,
// temporal_workflow_task_execution_latency_seconds,
// temporal_activity_execution_latency_seconds, temporal_num_pollers,
// temporal_worker_task_slots_available, ...), labelled by namespace,
// task_queue, workflow_type, activity_type and operation, which are all
// bounded. sluice_temporal_metric_errors_total counts the SDK's metrics
// that could not be recorded (which never fails a worker).
func Temporal(reg prometheus.Registerer) (client.MetricsHandler, error) {
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutTargetInfo(),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("exporting the Temporal SDK's metrics: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: temporalBuckets}},
		)),
	)
	errs := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "temporal_metric_errors_total",
		Help: "Metrics of the Temporal SDK that could not be recorded."})
	if err := reg.Register(errs); err != nil {
		return nil, err
	}
	h := temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter: provider.Meter("go.temporal.io/sdk"),
		// The SDK's counters only grow: exported as counters (_total),
		// which rate() and increase() expect.
		UseMonotonicCounters: true,
		// The default panics.
		OnError: func(error) { errs.Inc() },
	})
	return h, nil
}
