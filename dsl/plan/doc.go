// Package plan defines the compiled form of a pipeline: an immutable,
// JSON-serialisable DAG of stage instances and their steps, which the dsl
// package produces and the engine executes.
//
// A plan holds plain data only. Values known when the pipeline is compiled
// are evaluated; values known only while it runs (step outputs, secrets)
// are kept as Refs inside Templates and resolved by the engine when the step
// that uses them is scheduled. The same input always encodes to the same
// bytes, and Plan.Digest identifies them.
package plan
