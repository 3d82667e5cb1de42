package engine

import (
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// State is where a run, a stage or a step is in its life.
type State string

// The states. A run is queued while it waits for its concurrency group; a
// stage waits for approval before it takes a runner.
const (
	StatePending         State = "pending"
	StateQueued          State = "queued"
	StateWaitingApproval State = "waiting_approval"
	StateRunning         State = "running"
	StateSucceeded       State = "succeeded"
	StateFailed          State = "failed"
	StateSkipped         State = "skipped"
	StateCancelled       State = "cancelled"
)

// Done reports whether the state is final.
func (s State) Done() bool {
	switch s {
	case StateSucceeded, StateFailed, StateSkipped, StateCancelled:
		return true
	}
	return false
}

// RunInput is the input of the Pipeline workflow.
type RunInput struct {
	Plan plan.Plan `json:"plan"`
	// Source says where runners find the code, for runs started from a
	// developer's machine; empty means the runner's own default.
	Source *Source `json:"source,omitempty"`
	// Resume carries what an earlier attempt of the same run finished, when
	// the run is retried from a step (see Retry).
	Resume *Resume `json:"resume,omitempty"`
	// DryRun runs every step as a dry run (steps.Request.DryRun): the
	// workflow sets EnvDryRun in each step's environment, approvals do not
	// wait, and verify steps check once instead of being watched.
	DryRun bool `json:"dry_run,omitempty"`
}

// Resume is what a retried run keeps from the attempt before it.
type Resume struct {
	// From is the step the run is retried from, as the user named it.
	From string `json:"from"`
	// Previous is the Temporal run ID of the attempt resumed.
	Previous string `json:"previous"`
	// Stages lists, for each stage that keeps anything, the steps it keeps:
	// a prefix of its steps, all of them for a stage that is not run again.
	Stages []ResumedStage `json:"stages,omitempty"`
}

// ResumedStage is the part of a stage a retried run does not run again.
type ResumedStage struct {
	ID       string          `json:"id"`
	Approval *ApprovalStatus `json:"approval,omitempty"`
	Steps    []StepStatus    `json:"steps"`
	// Artifacts are those of a stage kept whole.
	Artifacts *ArtifactsStatus `json:"artifacts,omitempty"`
}

// RunRef says which run of which commit a status or a listing is about.
// It is embedded, so its fields stay at the top level of the JSON.
type RunRef struct {
	RunID    string `json:"run_id"`
	Pipeline string `json:"pipeline"`
	Repo     string `json:"repo,omitempty"`
	Ref      string `json:"ref,omitempty"`
	SHA      string `json:"sha,omitempty"`
}

// RunStatus is what the "status" query returns and what a finished run
// leaves behind (as its result, or as the details of its failure or
// cancellation).
type RunStatus struct {
	RunRef
	// Group is the concurrency group the run belongs to, if any.
	Group string    `json:"group,omitempty"`
	State State     `json:"state"`
	Error string    `json:"error,omitempty"`
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// ResumedFrom is the step a retried run resumed from.
	ResumedFrom string `json:"resumed_from,omitempty"`
	// DryRun says the run was started as a dry run.
	DryRun bool `json:"dry_run,omitempty"`
	// SupersededBy is the newer run of the same concurrency group that
	// cancelled this one (cancel_in_progress); Supersedes the runs this
	// one cancelled.
	SupersededBy string        `json:"superseded_by,omitempty"`
	Supersedes   []string      `json:"supersedes,omitempty"`
	Stages       []StageStatus `json:"stages"`
	// Trimmed says what was cut from a status too large for Temporal's
	// payloads (see StatusBudget); empty when nothing was.
	Trimmed string `json:"trimmed,omitempty"`
}

// Stage returns the status of the stage with the given ID.
func (s *RunStatus) Stage(id string) (*StageStatus, bool) {
	for i := range s.Stages {
		if s.Stages[i].ID == id {
			return &s.Stages[i], true
		}
	}
	return nil, false
}

// StageStatus is the state of one stage instance.
type StageStatus struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State State  `json:"state"`
	// Reason says why a stage was skipped or cancelled, or how it failed.
	Reason   string          `json:"reason,omitempty"`
	Runner   string          `json:"runner,omitempty"`
	Start    time.Time       `json:"start,omitzero"`
	End      time.Time       `json:"end,omitzero"`
	Approval *ApprovalStatus `json:"approval,omitempty"`
	Steps    []StepStatus    `json:"steps"`
	// Artifacts is what the stage stored for the stages after it.
	Artifacts *ArtifactsStatus `json:"artifacts,omitempty"`
	// Restarts says, for each time the stage started again on a runner
	// because the one running it was lost, which runner was lost during
	// which step, and where the stage went on.
	Restarts []string `json:"restarts,omitempty"`
}

// StepStatus is the state of one step.
type StepStatus struct {
	Name    string    `json:"name"`
	Kind    string    `json:"kind"`
	State   State     `json:"state"`
	Attempt int       `json:"attempt,omitempty"`
	Start   time.Time `json:"start,omitzero"`
	End     time.Time `json:"end,omitzero"`
	Error   string    `json:"error,omitempty"`
	// Outputs are the step's outputs, with secret values masked.
	Outputs map[string]string `json:"outputs,omitempty"`
	// OutputsDropped says that the step's outputs were left out of a
	// status too large to hold them all (see StatusBudget).
	OutputsDropped bool `json:"outputs_dropped,omitempty"`
	// Resumed is set on a step a retried run kept from an earlier attempt.
	Resumed bool `json:"resumed,omitempty"`
	// DryRun names the side effects the step only reported (see
	// steps.Result.DryRun); empty when it made all of them.
	DryRun string `json:"dry_run,omitempty"`
	// Tests sums up the JUnit XML reports of a run step that declares
	// some (junit), with secret values masked; nil for other steps and
	// when no report could be read.
	Tests *TestReport `json:"tests,omitempty"`
}

// TestReport is what a step's test reports say: counts, which are exact,
// and the first failures (see steps.MaxTestFailures for the limits).
type TestReport = steps.TestReport

// TestFailure is one failed test of a TestReport, with the file and line
// in the workspace where it failed, when known.
type TestFailure = steps.TestFailure

// ApprovalStatus is the state of a stage's approval gate.
type ApprovalStatus struct {
	Approvers   []string  `json:"approvers,omitempty"`
	Description string    `json:"description,omitempty"`
	Requested   time.Time `json:"requested,omitzero"`
	// Deadline is when the approval times out; zero means never.
	Deadline time.Time `json:"deadline,omitzero"`
	// Decision is "" while waiting, then "approved", "rejected" or
	// "timed_out".
	Decision string    `json:"decision,omitempty"`
	By       string    `json:"by,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Decided  time.Time `json:"decided,omitzero"`
}

// The decisions of an approval.
const (
	DecisionApproved = "approved"
	DecisionRejected = "rejected"
	DecisionTimedOut = "timed_out"
)

// Superseded is the argument of SignalSuperseded: By to the run that is
// cancelled, Supersedes to the run that cancelled it.
type Superseded struct {
	By         string   `json:"by,omitempty"`
	Supersedes []string `json:"supersedes,omitempty"`
}

// Decision is the argument of the approve and reject updates and signals.
type Decision struct {
	Stage string `json:"stage"`
	// By is who decided; the caller (server or CLI) has authenticated them.
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// Source is the repository a run's workspaces are made from: a directory
// on the machine that started the run (sluice run), or a URL every runner
// can clone (runs the server starts for pushes and webhooks).
type Source struct {
	// Path is the repository's directory on the machine that started the
	// run.
	Path string `json:"path,omitempty"`
	// Dirty takes the working tree as it is instead of the commit.
	Dirty bool `json:"dirty,omitempty"`
	// URL is a clone URL of the repository (a path on a shared file
	// system, file://, https:// or ssh); runners fetch the run's commit
	// from it into a mirror of their own.
	URL string `json:"url,omitempty"`
	// Dir is the directory inside the repository that holds the
	// pipeline's .sluice, where steps work; empty for the top.
	Dir string `json:"dir,omitempty"`
}

// PrepareInput asks a runner for a workspace for a stage.
type PrepareInput struct {
	RunID    string   `json:"run_id"`
	Pipeline string   `json:"pipeline"`
	StageID  string   `json:"stage_id"`
	Git      plan.Git `json:"git"`
	Source   *Source  `json:"source,omitempty"`
}

// PrepareResult says which runner took the stage and where its workspace is.
type PrepareResult struct {
	Runner string `json:"runner"`
	// Queue is the runner's own task queue: the stage's steps go there.
	Queue     string `json:"queue"`
	Workspace string `json:"workspace"`
}

// StepInput is the input of the RunStep activity. Step-output references in
// Step and Env are substituted by the workflow; secret references are left
// for the runner to resolve.
type StepInput struct {
	RunID     string                   `json:"run_id"`
	Pipeline  string                   `json:"pipeline"`
	StageID   string                   `json:"stage_id"`
	Workspace string                   `json:"workspace"`
	Step      plan.Step                `json:"step"`
	Env       map[string]plan.Template `json:"env,omitempty"`
	Git       plan.Git                 `json:"git"`
	Secrets   []plan.Secret            `json:"secrets,omitempty"`
	Attempt   int                      `json:"attempt"`
}

// StepResult is what a step hands back to the workflow.
type StepResult struct {
	Outputs map[string]string `json:"outputs,omitempty"`
	// DryRun is steps.Result.DryRun.
	DryRun string `json:"dry_run,omitempty"`
	// Tests is steps.Result.Tests, with secret values masked. A failed
	// step's travels in the details of its failure, as its outputs do.
	Tests *TestReport `json:"tests,omitempty"`
}

// ReleaseInput asks a runner to clean up a stage's workspace.
type ReleaseInput struct {
	RunID     string   `json:"run_id"`
	StageID   string   `json:"stage_id"`
	Workspace string   `json:"workspace"`
	Git       plan.Git `json:"git"`
}
