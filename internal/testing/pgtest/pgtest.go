// Package pgtest starts a PostgreSQL server of a test's own: Debian's
// postgresql package (which `make deps` installs), a new cluster made by
// initdb in a temporary directory and started by pg_ctl on a free loopback
// port, stopped and removed when the test ends.
//
// It is test support, imported only by _test.go files.
//
// PostgreSQL refuses to run as root: when the test runs as root (as CI
// does), initdb and pg_ctl run as the postgres user (runuser -u postgres),
// which owns the directory; otherwise they run as the test's own user.
//
// Access: the superuser postgres connects without a password (trust) over
// loopback and the cluster's Unix socket in its directory; every other
// role needs its password (scram-sha-256), so that a test can get a
// password wrong. CreateUser makes such a role.
//
// A test binary killed before its cleanups (SIGKILL, a -timeout panic)
// leaves its server running; the next Start, in any test binary, stops and
// removes the servers whose owner process is gone.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
)

// Superuser is the cluster's superuser, who connects without a password.
const Superuser = "postgres"

// Server is a running PostgreSQL server.
type Server struct {
	// Host and Port are where it listens: 127.0.0.1 and a free port.
	Host string
	Port int
	// Dir holds the cluster (Dir/data), its log (Dir/postgres.log) and
	// its Unix socket.
	Dir string

	bin  string
	asPG bool
	run  func(name string, args ...string) *exec.Cmd
	t    testing.TB
}

// Options change how the server runs.
type Options struct {
	// Durable keeps PostgreSQL's defaults: every commit waits for its
	// fsync. Without it, commits do not wait and nothing is fsynced
	// (fsync, synchronous_commit and full_page_writes off), which loses
	// nothing when only the clients crash, as tests make them; a
	// benchmark that compares stores wants Durable.
	Durable bool
	// Host is the address to listen on, with port 5432; empty: 127.0.0.1
	// and a free port. Clients from Host's networks (samenet) get the
	// same access as over loopback.
	Host string
	// Settings are more lines of postgresql.conf, after the others
	// ("synchronous_commit = off").
	Settings []string
	// Command runs the server's programs (initdb, pg_ctl); nil:
	// exec.Command. A host of internal/testing/netns passes its Command,
	// so that the server listens in that host's network namespace.
	Command func(name string, args ...string) *exec.Cmd
}

// Bin finds the directory of PostgreSQL's programs: $SLUICE_POSTGRES_BIN,
// the newest /usr/lib/postgresql/*/bin (Debian's layout), or the directory
// of pg_ctl on PATH.
func Bin() (string, error) {
	if d := os.Getenv("SLUICE_POSTGRES_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL: install Debian's postgresql with `make deps` (apt-get install -y postgresql), or set SLUICE_POSTGRES_BIN to the directory of initdb and pg_ctl")
}

// Start starts a server for t with the default Options.
func Start(t testing.TB) *Server { return StartOptions(t, Options{}) }

// StartOptions starts a server for t; it stops when t ends. A missing
// PostgreSQL fails the test with how to install it.
func StartOptions(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		t.Fatal(err)
	}
	sweep(bin)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Host: "127.0.0.1", Dir: dir, bin: bin, asPG: os.Geteuid() == 0, run: exec.Command, t: t}
	if opts.Host != "" {
		s.Host = opts.Host
	}
	if opts.Command != nil {
		s.run = opts.Command
	}
	// The owner file says which process the server is for (see sweep).
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(); _ = os.RemoveAll(dir) })
	if s.asPG {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL refuses to run as root and there is no postgres user to run it as (Debian's postgresql package makes one): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := s.command("initdb", "-D", s.data(), "-U", Superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	hba := "local all all trust\n" +
		"host all " + Superuser + " 127.0.0.1/32 trust\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n"
	if opts.Host != "" {
		hba += "host all " + Superuser + " samenet trust\n" +
			"host all all samenet scram-sha-256\n"
	}
	if err := s.writeAsPG(filepath.Join(s.data(), "pg_hba.conf"), hba); err != nil {
		t.Fatal(err)
	}
	settings := []string{
		"listen_addresses = '" + s.Host + "'",
		"unix_socket_directories = '" + dir + "'",
		"max_connections = 200",
		"password_encryption = 'scram-sha-256'",
	}
	if !opts.Durable {
		settings = append(settings, "fsync = off", "synchronous_commit = off", "full_page_writes = off")
	}
	settings = append(settings, opts.Settings...)
	conf := filepath.Join(s.data(), "postgresql.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	// The port is picked free before the server binds it; another process
	// may take it in between, so try a few.
	for attempt := 1; ; attempt++ {
		s.Port = 5432
		if opts.Host == "" {
			s.Port = freePort(t)
		}
		all := string(b) + "\n" + strings.Join(append(settings, "port = "+strconv.Itoa(s.Port)), "\n") + "\n"
		if err := s.writeAsPG(conf, all); err != nil {
			t.Fatal(err)
		}
		out, err := s.command("pg_ctl", "-D", s.data(), "-l", s.logFile(), "-w", "-t", "60", "start").CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 3 || opts.Host != "" || !strings.Contains(s.log(), "could not bind") {
			t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, s.log())
		}
	}
	return s
}

func (s *Server) data() string    { return filepath.Join(s.Dir, "data") }
func (s *Server) logFile() string { return filepath.Join(s.Dir, "postgres.log") }

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logFile())
	return string(b)
}

// command runs one of PostgreSQL's programs, as postgres when the test
// runs as root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	return command(s.run, s.bin, s.asPG, s.Dir, name, args...)
}

func command(run func(string, ...string) *exec.Cmd, bin string, asPG bool, dir, name string, args ...string) *exec.Cmd {
	path := filepath.Join(bin, name)
	var cmd *exec.Cmd
	if asPG {
		cmd = run("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = run(path, args...)
	}
	cmd.Dir = dir
	// The server must not inherit the test's PG* settings.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// writeAsPG writes a file of the cluster, owned by whoever runs it.
func (s *Server) writeAsPG(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if s.asPG {
		fi, err := os.Stat(s.data())
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		return os.Chown(path, int(st.Uid), int(st.Gid))
	}
	return nil
}

// Stop stops the server now (it is also stopped when the test ends); its
// port then refuses connections.
func (s *Server) Stop() { s.stop() }

func (s *Server) stop() {
	if _, err := os.Stat(filepath.Join(s.data(), "postmaster.pid")); err != nil {
		return
	}
	if out, err := s.command("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "-t", "30", "stop").CombinedOutput(); err != nil {
		s.t.Logf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Addr is HOST:PORT.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// URL is a postgres:// URL of a database of the server, for a user with a
// password (none for Superuser) and extra parameters such as
// "sslmode=disable".
func (s *Server) URL(user, password, database string, params ...string) string {
	u := url.URL{Scheme: "postgres", Host: s.Addr(), Path: "/" + database, RawQuery: strings.Join(params, "&")}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// DB connects to a database of the server as the superuser, over the
// server's Unix socket (which any network namespace reaches); the
// connection pool is closed when the test ends.
func (s *Server) DB(database string) *sql.DB {
	s.t.Helper()
	c, err := pq.NewConnector(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=10", s.Dir, s.Port, Superuser, database))
	if err != nil {
		s.t.Fatal(err)
	}
	db := sql.OpenDB(c)
	s.t.Cleanup(func() { _ = db.Close() })
	return db
}

// Exec runs statements in a database as the superuser.
func (s *Server) Exec(database, query string, args ...any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := s.DB(database)
	defer db.Close()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
}

// CreateUser makes a role that logs in with a password and may create
// databases, as the owner of Sluice's databases would.
func (s *Server) CreateUser(name, password string) {
	s.t.Helper()
	s.Exec("postgres", fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD %s", pq.QuoteIdentifier(name), pq.QuoteLiteral(password)))
}

// freePort returns a loopback port nobody listens on.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sweep stops and removes the servers of test processes that are gone.
func sweep(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		data := filepath.Join(dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			_ = command(exec.Command, bin, os.Geteuid() == 0, dir, "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop").Run()
		}
		_ = os.RemoveAll(dir)
	}
}
