package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Stage artifacts. A stage that declares artifacts hands files to the
// stages after it: when all its steps have succeeded, an UploadArtifacts
// activity on its runner (its own queue, where the workspace is) packs the
// matching files and stores them (package runners/artifacts: an OCI
// artifact in the run's registry, or a file in a directory); only the
// reference comes back into history. A stage that needs such a stage,
// directly or through other stages (the same stages whose step outputs it
// may read), gets their files in its workspace from a DownloadArtifacts
// activity on its own runner, after the workspace is prepared and before
// its first step, in plan order: where two producers wrote the same path,
// the later one wins.

// ArtifactStore keeps the files stages hand to one another; a runner's
// store must reach what the other runners' stores wrote (the same registry,
// or a directory they share). runners/artifacts.Store is one.
type ArtifactStore interface {
	// Upload packs the workspace's files that match patterns and returns
	// a reference to them and how many files it took.
	Upload(ctx context.Context, runID, stageID, workspace string, patterns []string) (ref string, files int, err error)
	// Download unpacks what Upload stored under ref into the workspace.
	Download(ctx context.Context, ref, workspace string) (files int, err error)
}

// ArtifactsTimeout bounds one upload or download of a stage's artifacts.
const ArtifactsTimeout = 30 * time.Minute

// ArtifactsStatus is what a stage stored as its artifacts.
type ArtifactsStatus struct {
	// Ref is where the files are: a registry reference by digest, or a
	// file of the runner's artifact directory.
	Ref   string `json:"ref"`
	Files int    `json:"files"`
}

// UploadInput asks a runner to store a stage's artifacts.
type UploadInput struct {
	RunID     string   `json:"run_id"`
	StageID   string   `json:"stage_id"`
	Workspace string   `json:"workspace"`
	Patterns  []string `json:"patterns"`
}

// DownloadInput asks a runner to put the artifacts of the stages a stage
// needs into its workspace.
type DownloadInput struct {
	RunID     string `json:"run_id"`
	StageID   string `json:"stage_id"`
	Workspace string `json:"workspace"`
	// From lists the producing stages in plan order.
	From []StageArtifacts `json:"from"`
}

// StageArtifacts names one stage's stored artifacts.
type StageArtifacts struct {
	StageID string `json:"stage_id"`
	Ref     string `json:"ref"`
}

// DownloadResult says how many files the download wrote.
type DownloadResult struct {
	Files int `json:"files"`
}

// UploadArtifacts stores the files of a stage's workspace that its
// artifacts patterns match.
func (a *Activities) UploadArtifacts(ctx context.Context, in UploadInput) (ArtifactsStatus, error) {
	ctx, stop := a.heartbeat(ctx)
	defer stop()
	if a.artifacts == nil {
		return ArtifactsStatus{}, a.noArtifactStore(in.StageID)
	}
	ref, n, err := a.artifacts.Upload(ctx, in.RunID, in.StageID, in.Workspace, in.Patterns)
	if err != nil {
		return ArtifactsStatus{}, artifactsError(ctx, fmt.Errorf("storing the artifacts of stage %s on runner %q: %w", in.StageID, a.Runner, err))
	}
	return ArtifactsStatus{Ref: ref, Files: n}, nil
}

// DownloadArtifacts unpacks the artifacts of the stages a stage needs into
// its workspace.
func (a *Activities) DownloadArtifacts(ctx context.Context, in DownloadInput) (DownloadResult, error) {
	ctx, stop := a.heartbeat(ctx)
	defer stop()
	if a.artifacts == nil {
		return DownloadResult{}, a.noArtifactStore(in.StageID)
	}
	var res DownloadResult
	for _, from := range in.From {
		n, err := a.artifacts.Download(ctx, from.Ref, in.Workspace)
		if err != nil {
			return res, artifactsError(ctx, fmt.Errorf("getting the artifacts of stage %s on runner %q: %w", from.StageID, a.Runner, err))
		}
		res.Files += n
	}
	return res, nil
}

func (a *Activities) noArtifactStore(stage string) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("stage %s hands on artifacts, but runner %q has no artifact store; give the runner a registry or an artifacts directory", stage, a.Runner), "NoArtifactStore", nil)
}

// artifactsError makes an error the workflow retries only when it may
// pass: a registry that did not answer may next time; a pattern that
// matched nothing will not (the store marks such errors Permanent).
func artifactsError(ctx context.Context, err error) error {
	var p interface{ Permanent() bool }
	if ctx.Err() == nil && errors.As(err, &p) && p.Permanent() {
		return temporal.NewNonRetryableApplicationError(err.Error(), "Artifacts", nil)
	}
	return err
}

// artifactOptions are the activity options of an upload or download on
// the stage's runner.
func artifactOptions(ctx workflow.Context, ws *PrepareResult, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              ws.Queue,
		ScheduleToStartTimeout: RunnerPickupTimeout,
		StartToCloseTimeout:    ArtifactsTimeout,
		HeartbeatTimeout:       HeartbeatTimeout,
		WaitForCancellation:    true,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
		Summary:                summary,
	})
}

// uploadArtifacts stores the artifacts of a stage whose steps all
// succeeded, and returns why the stage fails if that did not work.
func (r *run) uploadArtifacts(ctx workflow.Context, st *stageRun, ws *PrepareResult) string {
	if len(st.plan.Artifacts) == 0 || ws.Queue == "" {
		return ""
	}
	// Runs recorded before artifacts moved did not store them.
	if workflow.GetVersion(ctx, "stage-artifacts", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ""
	}
	var res ArtifactsStatus
	err := workflow.ExecuteActivity(artifactOptions(ctx, ws, "artifacts "+st.plan.ID), acts.UploadArtifacts, UploadInput{
		RunID:     r.status.RunID,
		StageID:   st.plan.ID,
		Workspace: ws.Workspace,
		Patterns:  st.plan.Artifacts,
	}).Get(ctx, &res)
	if err != nil {
		if ctx.Err() != nil {
			return ""
		}
		msg, _ := describeError(err, ws.Runner, ArtifactsTimeout)
		return "storing artifacts: " + msg
	}
	st.status.Artifacts = &res
	return ""
}

// downloadArtifacts puts the artifacts of the stages st needs into its
// freshly prepared workspace.
func (r *run) downloadArtifacts(ctx workflow.Context, st *stageRun, ws *PrepareResult) error {
	var from []StageArtifacts
	for _, a := range st.ancestors {
		if art := r.stages[a].status.Artifacts; art != nil && r.stages[a].status.State == StateSucceeded {
			from = append(from, StageArtifacts{StageID: r.stages[a].plan.ID, Ref: art.Ref})
		}
	}
	if len(from) == 0 {
		return nil
	}
	if workflow.GetVersion(ctx, "stage-artifacts", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	st.status.Reason = "getting the artifacts of the stages it needs"
	err := workflow.ExecuteActivity(artifactOptions(ctx, ws, "get artifacts "+st.plan.ID), acts.DownloadArtifacts, DownloadInput{
		RunID:     r.status.RunID,
		StageID:   st.plan.ID,
		Workspace: ws.Workspace,
		From:      from,
	}).Get(ctx, nil)
	st.status.Reason = ""
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		msg, _ := describeError(err, ws.Runner, ArtifactsTimeout)
		return fmt.Errorf("getting artifacts: %s", msg)
	}
	return nil
}
