package local

import (
	"context"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"

	"github.com/sluice-ci/sluice/internal/binaryid"
	"github.com/sluice-ci/sluice/internal/testing/ownprocess"
)

// TestStartNamesTheBinary: a worker made on a stack's client before any
// runner, as the server makes its own (sluice server --no-runner, the
// local server that commands start in the background), is named by
// package binaryid, not by a hash of the whole executable: Start gives
// the SDK the name before it dials. It runs in a process of its own, as
// the name is the process's: a test before it that started a runner would
// have set it.
func TestStartNamesTheBinary(t *testing.T) {
	if !ownprocess.Child(t) {
		return
	}
	// The test server's own workers name the binary by its hash first.
	srv := temporaltest.NewServer(temporaltest.WithT(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Home: t.TempDir(), TemporalAddress: srv.GetFrontendHostPort(), Namespace: srv.GetDefaultNamespace()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const queue = "names-the-binary"
	w := worker.New(s.Client, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(func(workflow.Context) error { return nil }, workflow.RegisterOptions{Name: "noop"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, "noop")
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	hist := s.Client.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for hist.HasNext() {
		ev, err := hist.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowTaskCompletedEventAttributes(); a != nil {
			// The server keeps the name as the task's build ID.
			if got, want := a.GetWorkerVersion().GetBuildId(), binaryid.ID(); got != want {
				t.Errorf("the worker named its binary %q, want %q (package binaryid)", got, want)
			}
			return
		}
	}
	t.Error("the workflow's history has no completed workflow task")
}
