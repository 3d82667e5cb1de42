package embedded_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sluice-ci/sluice/engine/embedded"
	"github.com/sluice-ci/sluice/internal/binaryid"
)

const taskQueue = "embedded-test"

// Greet is the trivial workflow the tests run.
func Greet(ctx workflow.Context, name string) (string, error) {
	return "hello " + name, nil
}

// startServer starts a server and stops it when the test ends, logging how
// long the start took.
func startServer(t *testing.T, cfg embedded.Config, what string) *embedded.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	srv, err := embedded.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start (%s): %v", what, err)
	}
	t.Logf("%s: Start took %v, frontend on %s", what, time.Since(begin).Round(time.Millisecond), srv.Address())
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

func dial(t *testing.T, srv *embedded.Server) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  srv.Address(),
		Namespace: srv.Namespace(),
		Logger:    sdklog.NewStructuredLogger(testLogger(t)),
	})
	if err != nil {
		t.Fatalf("dialling %s: %v", srv.Address(), err)
	}
	t.Cleanup(c.Close)
	return c
}

func runWorker(t *testing.T, c client.Client) func() {
	t.Helper()
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(Greet)
	if err := w.Start(); err != nil {
		t.Fatalf("starting worker: %v", err)
	}
	return w.Stop
}

// testLogger sends warnings of the server to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

var (
	pipelineKey = temporal.NewSearchAttributeKeyKeyword(embedded.SearchAttrPipeline)
	repoKey     = temporal.NewSearchAttributeKeyKeyword(embedded.SearchAttrRepo)
	refKey      = temporal.NewSearchAttributeKeyKeyword(embedded.SearchAttrRef)
	shaKey      = temporal.NewSearchAttributeKeyKeyword(embedded.SearchAttrSHA)
	statusKey   = temporal.NewSearchAttributeKeyKeyword(embedded.SearchAttrStatus)
)

func TestRunPersistRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Cold start: a new database.
	srv := startServer(t, embedded.Config{DataDir: dir}, "cold start")
	if got := srv.Namespace(); got != embedded.DefaultNamespace {
		t.Errorf("Namespace() = %q, want %q", got, embedded.DefaultNamespace)
	}
	if _, err := os.Stat(filepath.Join(dir, "temporal.db")); err != nil {
		t.Fatalf("database file: %v", err)
	}
	c := dial(t, srv)
	stopWorker := runWorker(t, c)

	desc, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: srv.Namespace()})
	if err != nil {
		t.Fatalf("DescribeNamespace: %v", err)
	}
	if got := desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != embedded.Retention {
		t.Errorf("retention = %v, want %v", got, embedded.Retention)
	}

	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        "greet-1",
		TaskQueue: taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			pipelineKey.ValueSet("web"),
			repoKey.ValueSet("acme/web"),
			refKey.ValueSet("refs/heads/main"),
			shaKey.ValueSet("0123456789abcdef0123456789abcdef01234567"),
			statusKey.ValueSet("running"),
		),
	}, Greet, "sluice")
	if err != nil {
		t.Fatalf("ExecuteWorkflow: %v", err)
	}
	var greeting string
	if err := run.Get(ctx, &greeting); err != nil {
		t.Fatalf("workflow result: %v", err)
	}
	if greeting != "hello sluice" {
		t.Errorf("workflow result = %q, want %q", greeting, "hello sluice")
	}
	checkBinaryChecksum(t, ctx, c, "greet-1")
	// A workflow of another pipeline, which the query must not find.
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    "greet-other",
		TaskQueue:             taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(pipelineKey.ValueSet("api")),
	}, Greet, "other"); err != nil {
		t.Fatalf("ExecuteWorkflow: %v", err)
	}
	waitForList(t, ctx, c, `SluicePipeline = "web" AND SluiceRepo = "acme/web" AND SluiceStatus = "running"`, []string{"greet-1"})
	waitForList(t, ctx, c, `SluicePipeline = "api"`, []string{"greet-other"})

	stopWorker()
	c.Close()
	begin := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(begin).Round(time.Millisecond))

	// Restart on the same database, in the same process.
	srv = startServer(t, embedded.Config{DataDir: dir}, "restart on existing db")
	c = dial(t, srv)

	hist := c.GetWorkflowHistory(ctx, "greet-1", "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	if !hist.HasNext() {
		t.Fatalf("history of greet-1 is empty after restart")
	}
	last, err := hist.Next()
	if err != nil {
		t.Fatalf("reading history of greet-1 after restart: %v", err)
	}
	if got := last.GetEventType(); got != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED {
		t.Errorf("last event of greet-1 after restart = %v, want WorkflowExecutionCompleted", got)
	}
	waitForList(t, ctx, c, `SluicePipeline = "web"`, []string{"greet-1"})

	defer runWorker(t, c)()
	run, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet-2", TaskQueue: taskQueue}, Greet, "again")
	if err != nil {
		t.Fatalf("ExecuteWorkflow after restart: %v", err)
	}
	if err := run.Get(ctx, &greeting); err != nil {
		t.Fatalf("workflow result after restart: %v", err)
	}
	if greeting != "hello again" {
		t.Errorf("workflow result after restart = %q, want %q", greeting, "hello again")
	}
}

// checkBinaryChecksum checks that the worker that ran a workflow named its
// binary as package binaryid does: Start gives the SDK that name before
// the server makes workers of its own, which would otherwise read and hash
// the whole executable first.
func checkBinaryChecksum(t *testing.T, ctx context.Context, c client.Client, id string) {
	t.Helper()
	hist := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for hist.HasNext() {
		ev, err := hist.Next()
		if err != nil {
			t.Fatalf("reading history of %s: %v", id, err)
		}
		if a := ev.GetWorkflowTaskCompletedEventAttributes(); a != nil {
			// The server keeps the name as the task's build ID.
			if got, want := a.GetWorkerVersion().GetBuildId(), binaryid.ID(); got != want {
				t.Errorf("binary checksum of the worker that ran %s = %q, want %q (package binaryid)", id, got, want)
			}
			return
		}
	}
	t.Errorf("history of %s has no completed workflow task", id)
}

// waitForList lists workflows by query until it finds exactly want: SQLite
// visibility is written asynchronously, a little after the workflow starts.
func waitForList(t *testing.T, ctx context.Context, c client.Client, query string, want []string) {
	t.Helper()
	var got []string
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			t.Fatalf("ListWorkflow(%s): %v", query, err)
		}
		got = got[:0]
		for _, e := range resp.GetExecutions() {
			got = append(got, e.GetExecution().GetWorkflowId())
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ListWorkflow(%s) = %v, want %v", query, got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	startServer(t, embedded.Config{DataDir: dir}, "first server")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{DataDir: dir})
	if err == nil {
		_ = srv.Stop()
		t.Fatal("second Start on the same data directory succeeded")
	}
	if !errors.Is(err, embedded.ErrDataDirInUse) {
		t.Errorf("error does not wrap ErrDataDirInUse: %v", err)
	}
	for _, want := range []string{dir, "another server in this process", "stop that one first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	t.Logf("second Start: %v", err)
}

func TestDatabaseLockedByOtherProgram(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, embedded.Config{DataDir: dir}, "create the database")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// Another program holds a write lock on the database, as a sqlite3 shell
	// in the middle of a transaction does. The driver is the one the server
	// uses.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "temporal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}

	srv, err = embedded.Start(ctx, embedded.Config{DataDir: dir})
	if err == nil {
		_ = srv.Stop()
		t.Fatal("Start on a locked database succeeded")
	}
	if !strings.Contains(err.Error(), "is locked by another program") {
		t.Errorf("error %q does not say another program locks the database", err)
	}
	t.Logf("Start on a locked database: %v", err)

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	startServer(t, embedded.Config{DataDir: dir}, "after the lock is gone")
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{DataDir: dir, Port: port})
	if err == nil {
		_ = srv.Stop()
		t.Fatal("Start on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), strconv.Itoa(port)) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not say port %d is in use", err, port)
	}
	t.Logf("Start on a used port: %v", err)

	// The failed Start released the data directory.
	l.Close()
	startServer(t, embedded.Config{DataDir: dir, Port: port}, "after port freed")
}

func TestUnwritableDataDir(t *testing.T) {
	t.Run("permission", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		_, err := embedded.Start(context.Background(), embedded.Config{DataDir: dir})
		if err == nil {
			t.Fatal("Start in an unwritable directory succeeded")
		}
		if !strings.Contains(err.Error(), "is not writable") {
			t.Errorf("error %q does not say the directory is not writable", err)
		}
		t.Logf("Start in an unwritable directory: %v", err)
	})
	t.Run("file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := embedded.Start(context.Background(), embedded.Config{DataDir: filepath.Join(file, "data")})
		if err == nil {
			t.Fatal("Start under a regular file succeeded")
		}
		if !strings.Contains(err.Error(), "creating data directory") {
			t.Errorf("error %q does not say it could not create the data directory", err)
		}
		t.Logf("Start under a regular file: %v", err)
	})
}

func TestListenOnAllAddresses(t *testing.T) {
	srv := startServer(t, embedded.Config{IP: "0.0.0.0", Namespace: "everywhere"}, "in memory on 0.0.0.0")
	host, _, err := net.SplitHostPort(srv.Address())
	if err != nil {
		t.Fatal(err)
	}
	if host != "127.0.0.1" {
		t.Errorf("Address() = %q, want a loopback address a client can dial", srv.Address())
	}
	c := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "everywhere"}); err != nil {
		t.Fatalf("DescribeNamespace: %v", err)
	}
}
