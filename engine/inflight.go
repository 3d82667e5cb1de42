package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sluice-ci/sluice/internal/proc"
)

// A runner notes, in a file per activity under its state directory, the
// step activities it is running, and forgets them when they end. A runner
// that died leaves its notes behind; started again (same name, same
// directory) it fails those activities at once as RunnerStoppedError, so
// that their stages go on now, from the journal of their workspace, rather
// than after the heartbeat timeout. The notes hold identifiers only.

// inflightNote identifies a running activity.
type inflightNote struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	ActivityID string `json:"activity_id"`
	Step       string `json:"step,omitempty"`
	// PID is the process running it: a note of a process still alive
	// (another command of the same machine running a runner of the same
	// name) is not an orphan's.
	PID int `json:"pid"`
}

// noteRunning records the activity of ctx as running until the returned
// func is called; without a state directory it records nothing.
func (a *Activities) noteRunning(ctx context.Context, step string) (done func()) {
	if a.StateDir == "" || !activity.IsActivity(ctx) {
		return func() {}
	}
	info := activity.GetInfo(ctx)
	n := inflightNote{WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID, ActivityID: info.ActivityID, Step: step, PID: os.Getpid()}
	sum := sha256.Sum256([]byte(n.WorkflowID + "\x00" + n.RunID + "\x00" + n.ActivityID))
	dir := filepath.Join(a.StateDir, "inflight")
	path := filepath.Join(dir, hex.EncodeToString(sum[:12])+".json")
	b, _ := json.Marshal(n)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return func() {}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return func() {}
	}
	return func() { _ = os.Remove(path) }
}

// failOrphans fails the activities a previous process of this runner left
// running, and returns how many it failed.
func failOrphans(ctx context.Context, c client.Client, namespace, stateDir, runner string) (int, error) {
	if stateDir == "" {
		return 0, nil
	}
	dir := filepath.Join(stateDir, "inflight")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		var note inflightNote
		if err != nil || json.Unmarshal(b, &note) != nil {
			_ = os.Remove(path)
			continue
		}
		if note.PID != 0 && proc.Alive(note.PID) {
			continue
		}
		failure := temporal.NewApplicationError(fmt.Sprintf("runner %q was restarted while it ran step %q", runner, note.Step), RunnerStoppedError)
		err = c.CompleteActivityByID(ctx, namespace, note.WorkflowID, note.RunID, note.ActivityID, nil, failure)
		var gone *serviceerror.NotFound
		switch {
		case err == nil:
			n++
		case errors.As(err, &gone):
			// The activity ended meanwhile (its heartbeat timed out).
		default:
			errs = append(errs, fmt.Errorf("failing activity %s of run %s: %w", note.ActivityID, note.WorkflowID, err))
			continue
		}
		_ = os.Remove(path)
	}
	return n, errors.Join(errs...)
}
