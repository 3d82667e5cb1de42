package embedded_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/sluice-ci/sluice/engine/embedded"
	"github.com/sluice-ci/sluice/internal/testing/pgtest"
)

// startErr starts a server that must not start and returns why.
func startErr(t *testing.T, cfg embedded.Config) error {
	t.Helper()
	cfg.Logger = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	srv, err := embedded.Start(ctx, cfg)
	if err == nil {
		_ = srv.Stop()
		t.Fatalf("Start on %s succeeded; want an error", cfg.DB)
	}
	t.Logf("refused in %v: %v", time.Since(begin).Round(time.Millisecond), err)
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Start took %v to fail; want it to fail fast", took)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the error is more than one line:\n%v", err)
	}
	return err
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("the error does not say %q:\n%v", p, err)
		}
	}
}

// TestPostgres runs the server on a real PostgreSQL through its life: an
// empty database refused, then made with Migrate; a workflow that is still
// there after a restart; the shard count fixed; an older schema refused
// and updated; a second server on the same database refused; and the
// connection errors a person gets wrong.
func TestPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	pg.CreateUser("sluice", "s3cret")
	db := pg.URL("sluice", "s3cret", "sluice")
	shown := "postgres://sluice:***@" + pg.Addr() + "/sluice"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Nothing there yet: refused with the command that makes it.
	err := startErr(t, embedded.Config{DB: db})
	wantErr(t, err, `database "sluice" does not exist on PostgreSQL at `+pg.Addr(), "sluice server --db "+shown+" --migrate")

	// Migrate makes both databases and their schemas, then the server
	// runs a workflow.
	srv := startServer(t, embedded.Config{DB: db, Migrate: true}, "migrate")
	if got := srv.Store(); !strings.Contains(got, "PostgreSQL "+pg.Addr()+"/sluice (schema 1.19, visibility 1.14 in sluice_visibility; migrated from none/none; 4 history shards)") {
		t.Errorf("Store() = %q", got)
	}
	c := dial(t, srv)
	stopWorker := runWorker(t, c)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet-pg", TaskQueue: taskQueue}, Greet, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil || got != "hello postgres" {
		t.Fatalf("workflow: %q, %v", got, err)
	}

	// A second server on the same database is refused while this one runs.
	err = startErr(t, embedded.Config{DB: db})
	if !errors.Is(err, embedded.ErrDatabaseInUse) {
		t.Errorf("a second server: %v; want ErrDatabaseInUse", err)
	}
	wantErr(t, err, "is served by another Sluice server (sluice-temporal pid ")
	stopWorker()
	c.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// Started again without Migrate (idempotent with it too), the
	// workflow is there; the shards are the ones the database has.
	srv = startServer(t, embedded.Config{DB: db, Migrate: true}, "restart")
	if got := srv.Store(); strings.Contains(got, "migrated") || !strings.Contains(got, "4 history shards") {
		t.Errorf("Store() after a restart = %q; want no migration and 4 shards", got)
	}
	c = dial(t, srv)
	desc, err := c.DescribeWorkflowExecution(ctx, "greet-pg", "")
	if err != nil {
		t.Fatalf("the workflow after a restart: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus().String(); st != "Completed" {
		t.Errorf("the workflow after a restart is %s", st)
	}
	c.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// The shard count is the database's.
	err = startErr(t, embedded.Config{DB: db, HistoryShards: 8})
	wantErr(t, err, "has 4 history shards", "--history-shards 8 is refused")

	// An older schema: refused, naming what is there and what is needed.
	pg.Exec("sluice", "UPDATE schema_version SET curr_version = '1.18' WHERE db_name = 'sluice'")
	err = startErr(t, embedded.Config{DB: db})
	wantErr(t, err, "found schema 1.18 (needs 1.19) and visibility schema 1.14 in sluice_visibility (needs 1.14)", "sluice server --db "+shown+" --migrate")
	srv = startServer(t, embedded.Config{DB: db, Migrate: true}, "update")
	if got := srv.Store(); !strings.Contains(got, "migrated from 1.18/1.14") {
		t.Errorf("Store() after an update = %q", got)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// What people get wrong, each one line, fast.
	err = startErr(t, embedded.Config{DB: pg.URL("sluice", "wrong", "sluice")})
	wantErr(t, err, "PostgreSQL at "+pg.Addr()+"/sluice refused user \"sluice\": password authentication failed; check the user and password")
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the password: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	err = startErr(t, embedded.Config{DB: "postgres://sluice@" + closed + "/sluice"})
	wantErr(t, err, "cannot connect to PostgreSQL at "+closed+"/sluice: connection refused; check that PostgreSQL runs on "+closed)
	err = startErr(t, embedded.Config{DB: "mysql://sluice@" + closed + "/sluice"})
	wantErr(t, err, "is not a PostgreSQL URL")
}

// TestPostgresLockSession: when the session that holds a server's lock
// ends (PostgreSQL restarted, a proxy cut the connection) the server takes
// the lock again, and a second server is still refused.
func TestPostgresLockSession(t *testing.T) {
	defer embedded.SetLockCheck(200 * time.Millisecond)()
	pg := pgtest.Start(t)
	db := pg.URL(pgtest.Superuser, "", "sluice")
	startServer(t, embedded.Config{DB: db, Migrate: true}, "first")
	sdb := pg.DB("sluice")
	holder := func() int {
		var pid int
		err := sdb.QueryRow("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = 1 AND objsubid = 2").Scan(&pid)
		if err != nil {
			return 0
		}
		return pid
	}
	before := holder()
	if before == 0 {
		t.Fatal("no session holds the lock")
	}
	pg.Exec("sluice", "SELECT pg_terminate_backend($1)", before)
	deadline := time.Now().Add(10 * time.Second)
	for after := holder(); after == 0 || after == before; after = holder() {
		if time.Now().After(deadline) {
			t.Fatal("the server did not take the lock again within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := startErr(t, embedded.Config{DB: db}); !errors.Is(err, embedded.ErrDatabaseInUse) {
		t.Errorf("a second server after the lock's session ended: %v; want ErrDatabaseInUse", err)
	}
}

// TestPostgresNoCreateDB: a user who may not create databases is told
// what an administrator must do.
func TestPostgresNoCreateDB(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec("postgres", "CREATE ROLE ci LOGIN PASSWORD 'pw'")
	err := startErr(t, embedded.Config{DB: pg.URL("ci", "pw", "ci"), Migrate: true})
	wantErr(t, err, `user "ci" may not create databases; have an administrator run CREATE DATABASE "ci" OWNER "ci" and CREATE DATABASE "ci_visibility" OWNER "ci"`)

	// Made for it by an administrator, with the visibility database too:
	// the schemas need only ownership. (And with the other driver, pgx.)
	pg.Exec("postgres", "CREATE DATABASE ci OWNER ci")
	pg.Exec("postgres", "CREATE DATABASE ci_visibility OWNER ci")
	srv := startServer(t, embedded.Config{DB: pg.URL("ci", "pw", "ci", "driver=pgx"), Migrate: true, HistoryShards: 2}, "owner")
	if got := srv.Store(); !strings.Contains(got, "2 history shards; pgx driver") {
		t.Errorf("Store() = %q; want 2 history shards and the pgx driver", got)
	}
	c := dial(t, srv)
	defer runWorker(t, c)()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet-pgx", TaskQueue: taskQueue}, Greet, "pgx")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil || got != "hello pgx" {
		t.Fatalf("workflow: %q, %v", got, err)
	}
}
