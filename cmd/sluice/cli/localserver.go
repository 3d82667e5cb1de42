package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
)

// The local stack is the Sluice server of $SLUICE_HOME: the commands that
// work on runs (run, runs, status, logs -f, approve, reject, cancel, retry,
// dev) use the server that runs for the home, and when none does, the
// first of them starts one in the background (`sluice server --background
// --no-runner --listen 127.0.0.1:0`), which stops by itself once idle.
//
// Starting it is guarded by a lock on $SLUICE_HOME/server.lock, held from
// "is a server up?" until the new server has published its addresses, so
// that two commands started at the same moment never both start a server:
// the second waits and finds the first's. A server that stops holds the
// same lock until its Temporal has released the database, so that a
// command started meanwhile waits for it instead of finding the database
// in use.

// envIdleTimeout overrides how long a server started in the background
// stays up with nothing to do (server.DefaultIdleTimeout): a duration
// such as 30s. Tests use it.
const envIdleTimeout = "SLUICE_SERVER_IDLE_TIMEOUT"

func homeLockFile(home string) string { return filepath.Join(home, "server.lock") }

// lockHome takes the home's server lock, waiting for another process that
// holds it until ctx ends.
func lockHome(ctx context.Context, home string) (unlock func(), err error) {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", home, err)
	}
	f, err := os.OpenFile(homeLockFile(home), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the server lock: %w", err)
	}
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", homeLockFile(home), err)
		}
		if ok {
			return func() { f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// localServer returns the server that runs for home and answers, with its
// Temporal published. Asking it counts as activity for its idle timeout.
func localServer(home string) (serverRecord, bool) {
	r, err := runningServer(home)
	if err != nil {
		return r, false
	}
	if _, err := local.Published(home); err != nil {
		return r, false
	}
	return r, pingServer(r.URL) == nil
}

var pingClient = &http.Client{Timeout: 5 * time.Second}

// pingServer asks a server's /healthz: a command that uses the server
// through Temporal alone still keeps it from stopping as idle.
func pingServer(url string) error {
	resp, err := pingClient.Get(strings.TrimSuffix(url, "/") + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/healthz answered %s", url, resp.Status)
	}
	return nil
}

// ensureServer makes sure a server runs for home: the one that does, or
// one started now in the background (said on stderr).
func ensureServer(ctx context.Context, e *env, home, namespace string) (serverRecord, error) {
	if r, ok := localServer(home); ok {
		return r, nil
	}
	unlock, err := lockHome(ctx, home)
	if err != nil {
		return serverRecord{}, err
	}
	defer unlock()
	if r, ok := localServer(home); ok {
		return r, nil
	}
	return startBackgroundServer(ctx, e, home, namespace)
}

// idleTimeout is how long a server started in the background waits with
// nothing to do before it stops.
func idleTimeout(e *env) (time.Duration, error) {
	v, ok := lookupIn(e.environ)(envIdleTimeout)
	if !ok || v == "" {
		return server.DefaultIdleTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q is not a positive duration like 15m", envIdleTimeout, v)
	}
	return d, nil
}

// startBackgroundServer starts `sluice server` detached from this command
// (its own session, output appended to $SLUICE_HOME/server.log) and waits
// until it has published its URL and its Temporal address. The caller
// holds the home's lock.
func startBackgroundServer(ctx context.Context, e *env, home, namespace string) (serverRecord, error) {
	idle, err := idleTimeout(e)
	if err != nil {
		return serverRecord{}, err
	}
	bin, err := selfBinary()
	if err != nil {
		return serverRecord{}, fmt.Errorf("finding the sluice executable to start the local server: %w", err)
	}
	logPath := filepath.Join(home, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return serverRecord{}, err
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)
	args := []string{"server", "--background", "--no-runner", "--listen", "127.0.0.1:0", "--idle-timeout", idle.String()}
	if namespace != "" {
		args = append(args, "--namespace", namespace)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = e.environ
	cmd.Dir = home
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return serverRecord{}, fmt.Errorf("starting the local Sluice server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	fail := func(why string) (serverRecord, error) {
		msg := logTail(logPath, offset)
		if msg != "" {
			msg = ":\n" + msg
		}
		return serverRecord{}, fmt.Errorf("the local Sluice server (pid %d) %s (log: %s)%s", cmd.Process.Pid, why, logPath, msg)
	}
	deadline := time.NewTimer(3 * time.Minute)
	defer deadline.Stop()
	for {
		r, err := runningServer(home)
		if err == nil && r.PID == cmd.Process.Pid {
			if _, perr := local.Published(home); perr == nil {
				fmt.Fprintf(e.stderr, "Started the local Sluice server in the background (pid %d, %s); it stops after %s with nothing to do; sluice server stop ends it.\n", r.PID, r.URL, shortDuration(idle))
				return r, nil
			}
		}
		select {
		case <-exited:
			return fail("exited before it was ready")
		case <-deadline.C:
			_ = cmd.Process.Kill()
			return fail("was not ready within 3 minutes, and was killed")
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return serverRecord{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// logTail is the end of what a log holds past offset.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	b = b[offset:]
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// selfBinary is this program's executable, as it was invoked: a copy or
// link under another name than the file it resolves to is run under that
// name.
func selfBinary() (string, error) {
	exe, err := os.Executable()
	if err == nil && filepath.Base(exe) == filepath.Base(os.Args[0]) {
		return exe, nil
	}
	if p, lerr := exec.LookPath(os.Args[0]); lerr == nil {
		return filepath.Abs(p)
	}
	return exe, err
}

// stopLocked stops a server that runs for home: under the home's lock,
// its record goes first (commands stop finding it), then close stops it;
// a command that wants a server meanwhile waits for the lock and starts a
// new one once this one's Temporal has let go of the database.
func stopLocked(home string, close func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	unlock, err := lockHome(ctx, home)
	var r serverRecord
	proc.RemoveRecord(serverRecordFile(home), &r, func() int { return r.PID })
	close()
	if err == nil {
		unlock()
	}
}

// shortDuration writes 15m rather than 15m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
