package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/testing/pgtest"
)

// The server with its Temporal on PostgreSQL (issue 13), as an operator
// meets it: the refusals of a database that is not ready, each one line
// that says what to do; --migrate; runs pushed, the server killed with
// SIGKILL mid-run and started again, the run finished and the history
// kept.

// refused runs sluice server with args, which must fail fast with one
// line, and returns that line.
func refused(t *testing.T, h *harness, args ...string) string {
	t.Helper()
	begin := time.Now()
	cmd := h.command(append([]string{"server", "--listen", freePort(t), "--no-build"}, args...)...)
	out, err := cmd.CombinedOutput()
	took := time.Since(begin)
	if err == nil {
		t.Fatalf("sluice server %s started; want it refused:\n%s", strings.Join(args, " "), out)
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("sluice server exited %d, want 1", code)
	}
	line := strings.TrimSuffix(string(out), "\n")
	if strings.Contains(line, "\n") {
		t.Errorf("sluice server said more than one line:\n%s", out)
	}
	if took > 15*time.Second {
		t.Errorf("sluice server took %s to fail; want it fast", took.Round(time.Millisecond))
	}
	t.Logf("refused in %s: %s", took.Round(time.Millisecond), line)
	return line
}

func mustSay(t *testing.T, got string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(got, p) {
			t.Errorf("%q does not say %q", got, p)
		}
	}
}

func TestServerPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and real servers; skipped with -short")
	}
	pg := pgtest.Start(t)
	pg.CreateUser("sluice", "s3cret")
	// An administrator made the database, empty, for the user.
	pg.Exec("postgres", "CREATE DATABASE ci OWNER sluice")
	db := pg.URL("sluice", "s3cret", "ci")
	shown := "postgres://sluice:***@" + pg.Addr() + "/ci"

	h := newHarness(t, pushPipeline)
	// An empty database: refused, with the versions this sluice needs and
	// the command that makes the schema.
	line := refused(t, h, "--db", db)
	mustSay(t, line, "sluice: starting the embedded Temporal server: the PostgreSQL database "+pg.Addr()+"/ci has no Temporal schema (this sluice needs schema 1.19, and visibility schema 1.14 in ci_visibility); create them with: sluice server --db "+shown+" --migrate")
	if strings.Contains(line, "s3cret") {
		t.Errorf("the message shows the password: %s", line)
	}
	// The same from the environment, as a service manager would set it.
	h.env = append(h.env, "SLUICE_DB="+db)
	mustSay(t, refused(t, h), "has no Temporal schema")
	h.env = h.env[:len(h.env)-1]

	// People's mistakes: each one line, with what to check.
	mustSay(t, refused(t, h, "--db", pg.URL("sluice", "wrong", "ci")),
		"PostgreSQL at "+pg.Addr()+"/ci refused user \"sluice\": password authentication failed; check the user and password in --db")
	closed := freePort(t)
	mustSay(t, refused(t, h, "--db", "postgres://sluice@"+closed+"/ci"),
		"cannot connect to PostgreSQL at "+closed+"/ci: connection refused; check that PostgreSQL runs on "+closed)
	mustSay(t, refused(t, h, "--db", db, "--temporal-address", "127.0.0.1:7233"), "--db, --migrate and --history-shards are the embedded Temporal's")
	mustSay(t, refused(t, h, "--migrate"), "--migrate needs --db postgres://")

	// --migrate makes the schema and starts.
	s := newServerHarness(t, "--db", db, "--migrate")
	// (newServerHarness made its own harness: the first one only ever
	// failed to start.)
	hold := filepath.Join(s.counters, "hold")
	first, _ := s.push("one")
	s.waitRun(first, "succeeded")

	// A run in the middle of its step when the server (and with it its
	// Temporal and its runner) is killed: started again, without
	// --migrate, the run goes on and ends.
	os.WriteFile(hold, nil, 0o644)
	second, _ := s.push("two")
	r2 := s.waitRun(second, "running")
	for deadline := time.Now().Add(time.Minute); s.count("runs") < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second run's step did not start within a minute")
		}
	}
	// (Its Temporal, sluice-temporal, gets SIGKILL too: Pdeathsig.)
	s.crash(s.cmd)
	s.args = []string{"--db", db}
	restarted := time.Now()
	s.startServer()
	os.Remove(hold)
	if got := s.waitRun(second, "succeeded"); got.RunID != r2.RunID {
		t.Errorf("commit %s's run is %s after the restart, want %s", second, got.RunID, r2.RunID)
	}
	n := strings.Count(readFile(t, filepath.Join(s.counters, "runs")), second)
	if n < 1 || n > 2 {
		t.Errorf("the step of commit %s ran %d times; want once, or twice when the crash interrupted it", second, n)
	}
	t.Logf("after the crash: the server started again and the run ended in %s; its step ran %d times", time.Since(restarted).Round(time.Millisecond), n)
	// The history is PostgreSQL's: the first run is still there.
	if st := s.status(s.runsOf(first)[0].RunID); st.State != "succeeded" {
		t.Errorf("the first run is %q after the restart", st.State)
	}
	if out := s.sluiceOut("runs", "--server", s.url); !regexp.MustCompile(`(?m)^\S+ +web +refs/heads/main +` + first[:7] + ` +succeeded`).MatchString(out) {
		t.Errorf("sluice runs does not list the first run as succeeded:\n%s", out)
	}

	// A second server on the same database is refused while this one
	// runs.
	mustSay(t, refused(t, newHarness(t, pushPipeline), "--db", db), "database is in use: PostgreSQL database "+pg.Addr()+"/ci is served by another Sluice server")
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()

	// The shards are the database's; another number is refused.
	mustSay(t, refused(t, h, "--db", db, "--history-shards", "16"), "has 4 history shards", "--history-shards 16 is refused")

	// A schema older than this sluice's (as after an upgrade of sluice):
	// refused, naming the versions; --migrate updates it.
	pg.Exec("ci", "UPDATE schema_version SET curr_version = '1.17' WHERE db_name = 'ci'")
	pg.Exec("ci_visibility", "UPDATE schema_version SET curr_version = '1.12' WHERE db_name = 'ci_visibility'")
	mustSay(t, refused(t, h, "--db", db),
		"found schema 1.17 (needs 1.19) and visibility schema 1.12 in ci_visibility (needs 1.14); back the databases up, then update them with: sluice server --db "+shown+" --migrate")
	cmd, w := h.background("server", "--listen", freePort(t), "--no-build", "--db", db, "--migrate")
	w.waitFor(t, `^Sluice server at `, 2*time.Minute)
	w.waitFor(t, `Temporal state: +PostgreSQL `+regexp.QuoteMeta(pg.Addr())+`/ci \(schema 1\.19, visibility 1\.14 in ci_visibility; migrated from 1\.17/1\.12; 4 history shards\)`, 10*time.Second)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
