//go:build unix

package embedded_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sys/unix"

	"github.com/sluice-ci/sluice/engine/embedded"
)

func quietLogger() sdklog.Logger {
	return sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
}

// recordingHandler keeps what reaches Config.Logger.
type recordingHandler struct {
	mu      sync.Mutex
	records []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Level.String()+" "+r.Message)
	return nil
}

// TestQuiet runs a workflow on an in-memory server with file descriptors 1
// and 2 redirected: a user of `sluice run` must see pipeline output only, and
// a start, a run and a stop that all go well must not log a thing.
func TestQuiet(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := [2]int{}
	for i, fd := range []int{1, 2} {
		if saved[i], err = unix.Dup(fd); err != nil {
			t.Fatal(err)
		}
		if err := unix.Dup2(int(w.Fd()), fd); err != nil {
			t.Fatal(err)
		}
	}
	captured := make(chan []byte)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r)
		captured <- b.Bytes()
	}()
	restored := false
	restore := func() []byte {
		if restored {
			return nil
		}
		restored = true
		for i, fd := range []int{1, 2} {
			_ = unix.Dup2(saved[i], fd)
			_ = unix.Close(saved[i])
		}
		w.Close()
		return <-captured
	}
	defer restore()

	logs := &recordingHandler{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Namespace: "quiet", Logger: slog.New(logs)})
	if err != nil {
		restore()
		t.Fatalf("Start: %v", err)
	}
	c, err := client.Dial(client.Options{HostPort: srv.Address(), Namespace: srv.Namespace(), Logger: quietLogger()})
	if err != nil {
		restore()
		t.Fatalf("Dial: %v", err)
	}
	wk := worker.New(c, taskQueue, worker.Options{})
	wk.RegisterWorkflow(Greet)
	if err := wk.Start(); err != nil {
		restore()
		t.Fatalf("worker: %v", err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: taskQueue}, Greet, "quietly")
	if err == nil {
		err = run.Get(ctx, nil)
	}
	wk.Stop()
	c.Close()
	stopErr := srv.Stop()
	out := restore()
	if err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if stopErr != nil {
		t.Fatalf("Stop: %v", stopErr)
	}
	if len(out) > 0 {
		t.Errorf("server wrote to stdout/stderr:\n%s", out)
	}
	if len(logs.records) > 0 {
		t.Errorf("server logged during a run that went well:\n%v", logs.records)
	}
}
