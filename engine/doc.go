// Package engine runs compiled plans (package plan) as durable Temporal
// workflows.
//
// One generic workflow, Pipeline, interprets any plan: it schedules the
// stages as a DAG with bounded parallelism (Plan.MaxParallel), holds
// approval stages without taking a runner, runs the steps of a stage in
// order on one runner that shares a workspace between them, retries and
// times out steps, substitutes step outputs into later steps, and answers a
// "status" query. Runners are Temporal workers (see Runner); the activities
// they host (Activities) run the step executors of package steps and write
// logs to a log store, so that neither logs nor secrets enter workflow
// history.
//
// The client side (Start, Status, Approve, Reject, Cancel, Retry, List) is
// what the CLI and the server call.
//
// # Design
//
// Stage-to-runner pinning: the first activity of a stage goes to the shared
// queue of its runs_on labels (StageQueue); the runner that takes it
// prepares the workspace and returns its own queue (RunnerQueue), where the
// stage's steps and its cleanup follow. See the comment in stage.go.
//
// Step batches: consecutive steps of a stage without retries, none using
// an output of an earlier one in the batch, run in one RunSteps activity
// that records each finished step in a heartbeat it waits for, so that a
// crash never runs a recorded step again; see the comment in batch.go.
//
// Scheduling follows GitHub Actions: a stage runs when all its needs
// succeeded; a stage whose need failed, was skipped or was cancelled is
// skipped ("needs X which failed"), except that a failed stage with
// continue_on_error does not hold back its dependents, and a stage the plan
// skips (its when) does not either: the compiler already decided which
// stages run, and one matrix instance that runs is enough for the stages
// after it. A failed step fails
// its stage and, unless step or stage may fail, the run: running stages
// are cancelled (fail-fast) and stages not started are cancelled.
//
// Approvals: a stage with an approval block waits, before it asks for a
// runner, for the "approve" or "reject" update (validated: the stage must
// exist and be waiting) or signal, carrying who and why, or for its
// timeout, which rejects it ("approval timed out"). A rejection fails the
// stage.
//
// Concurrency groups: a lock workflow per group, asked with SignalWithStart;
// see the comment in concurrency.go.
//
// Large runs stay one workflow execution within Temporal's limits: at most
// MaxRunningStages stages run at once, the status is cut to StatusBudget,
// and runs of LargeRunStages stages or more have a longer workflow task
// timeout for their replay; see the comment in bounds.go.
//
// Retry from a step: a new execution of the same run ID whose input carries
// the steps kept from the attempt before; see Retry.
//
// Replay against a changed pipeline: ReplayPipeline takes a changed plan
// through the workflow's own decisions (the same functions the workflow
// calls, on the same run state) with the results a run recorded, and
// reports what would have been different; nothing runs. See the comment
// in pipelinereplay.go.
//
// Outputs and secrets: the workflow substitutes step outputs into a step's
// templates (plan.MapTemplates walks every plan.Template of a step) before it
// schedules the step; secret references travel as references and the
// runner resolves them (SecretResolver), masks them in the log, in errors
// and in outputs.
//
// # Determinism
//
// Workflow code in this package uses only workflow.* APIs for time,
// concurrency and waiting, never iterates a map, and is checked with
// workflowcheck:
//
//	go run go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0 ./engine/...
//
// Recorded histories in testdata/ are replayed by TestReplay. Any change to
// the behaviour of Pipeline or ConcurrencyGroup that alters the commands it
// issues must go behind workflow.GetVersion with a new change id (never
// reuse one), and a new history should be recorded with
// `go test ./engine -run TestRecordHistories -update`, after renaming the
// old files so that they stay: runs in flight still have their shape.
package engine
