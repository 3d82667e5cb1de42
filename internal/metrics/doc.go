// Package metrics is what the server and the runners share of their
// Prometheus metrics (docs/operations.md lists every series): a registry
// with the Go runtime's and the process's collectors, the /metrics
// handler and the listener of --metrics-listen, the Temporal SDK's own
// metrics exported into the same registry (through OpenTelemetry's
// Prometheus exporter), and a runner's series (stages held, step
// durations, free disk).
//
// No series has a label whose values grow without bound: never a run ID,
// a commit or a branch; pipelines, stages, step kinds and label sets are
// bounded by what the pipelines declare.
package metrics
