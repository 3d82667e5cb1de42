package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/sluice-ci/sluice/engine/embedded"
)

const helperEnv = "SLUICE_EMBEDDED_HELPER_DATADIR"

// TestHelperProcess is not a test: TestOtherProcess runs the test binary
// again to serve a data directory from a second process. It starts a server
// on the directory, reports "ready ADDRESS START-SECONDS" on stdout, and stops
// when its stdin is closed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestOtherProcess")
	}
	begin := time.Now()
	srv, err := embedded.Start(context.Background(), embedded.Config{DataDir: dir})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ready %s %f\n", srv.Address(), time.Since(begin).Seconds())
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := srv.Stop(); err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestOtherProcess checks what happens between two sluice processes sharing
// a data directory: the second one is refused while the first runs, sees the
// first one's workflows when it is gone, and restarts quickly on the existing
// database.
func TestOtherProcess(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// This process makes the database and runs a workflow in it.
	srv := startServer(t, embedded.Config{DataDir: dir}, "cold start")
	c := dial(t, srv)
	stopWorker := runWorker(t, c)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet-here", TaskQueue: taskQueue}, Greet, "here")
	if err != nil {
		t.Fatalf("ExecuteWorkflow: %v", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	stopWorker()
	c.Close()
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// Another process takes the database over: this process keeps an idle
	// SQLite connection to it (the server's SQLite plugin never closes them),
	// which must not get in the way.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	var ready []string
	for lines.Scan() {
		if f := strings.Fields(lines.Text()); len(f) > 0 && (f[0] == "ready" || f[0] == "error") {
			ready = f
			break
		}
	}
	if len(ready) != 3 || ready[0] != "ready" {
		t.Fatalf("helper process did not start: %q", ready)
	}
	secs, _ := strconv.ParseFloat(ready[2], 64)
	t.Logf("restart on existing db in a new process: Start took %v", time.Duration(secs*float64(time.Second)).Round(time.Millisecond))

	// While it runs, this process is refused, and told by whom.
	_, err = embedded.Start(ctx, embedded.Config{DataDir: dir})
	if !errors.Is(err, embedded.ErrDataDirInUse) {
		t.Fatalf("Start while another process serves the directory: got %v, want ErrDataDirInUse", err)
	}
	for _, want := range []string{"process " + strconv.Itoa(cmd.Process.Pid), dir, "stop that sluice process"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("Start while another process serves the directory: %v", err)

	// The other process serves what this one wrote.
	other, err := client.Dial(client.Options{HostPort: ready[1], Namespace: embedded.DefaultNamespace, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("dialling the helper process: %v", err)
	}
	desc, err := other.DescribeWorkflowExecution(ctx, "greet-here", "")
	other.Close()
	if err != nil {
		t.Fatalf("describing greet-here in the helper process: %v", err)
	}
	if got := desc.GetWorkflowExecutionInfo().GetStatus(); got != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("greet-here in the helper process: status %v, want completed", got)
	}

	// Once it has stopped, the directory is free again.
	_ = stdin.Close()
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v", err)
	}
	startServer(t, embedded.Config{DataDir: dir}, "restart after the other process")
}
