package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/internal/proc"
)

// ServerBinary is the name of the embedded server's executable.
const ServerBinary = "sluice-temporal"

// ErrServerInUse says another process serves the same home's database.
var ErrServerInUse = errors.New("the local Temporal database is in use by another process")

// serverProcess is a sluice-temporal child process.
type serverProcess struct {
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	address   string
	namespace string
	store     string
	stderr    *tailBuffer
	done      chan struct{}
}

// serverDB is the embedded server's PostgreSQL database; a zero url means
// SQLite in the home.
type serverDB struct {
	url     string
	migrate bool
	shards  int
	// nice is the server's nice value; 0 leaves it as this process's.
	nice int
}

// findServer locates sluice-temporal: $SLUICE_TEMPORAL_BIN, next to the
// running executable, or on PATH.
func findServer() (string, error) {
	if p := proc.Find("SLUICE_TEMPORAL_BIN", ServerBinary); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%s, the embedded Temporal server, is not next to sluice or on PATH; build it with `make build` (or go install github.com/sluice-ci/sluice/cmd/...), or use an existing cluster with --temporal-address", ServerBinary)
}

// startServer starts sluice-temporal on home's database, or db's, and waits
// until it accepts requests.
func startServer(ctx context.Context, home, namespace, listen string, db serverDB) (*serverProcess, error) {
	bin, err := findServer()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--data-dir", filepath.Join(home, "temporal"),
		"--namespace", namespace,
		"--log", filepath.Join(home, "temporal.log")}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("the Temporal listen address %q is not IP:PORT: %w", listen, err)
		}
		args = append(args, "--ip", host, "--port", port)
	}
	if db.migrate {
		args = append(args, "--migrate")
	}
	if db.shards != 0 {
		args = append(args, "--history-shards", strconv.Itoa(db.shards))
	}
	if db.nice != 0 {
		args = append(args, "--nice", strconv.Itoa(db.nice))
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = proc.ChildAttrs()
	cmd.Env = withoutOTel(os.Environ())
	cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "SLUICE_TEMPORAL_DB=") })
	if db.url != "" {
		// In the environment, not the arguments: the URL may hold a
		// password, and anyone on the machine can read arguments.
		cmd.Env = append(cmd.Env, "SLUICE_TEMPORAL_DB="+db.url)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &serverProcess{cmd: cmd, stdin: stdin, stderr: &tailBuffer{max: 4096}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err != nil {
			ready <- fmt.Errorf("the server exited before it was ready")
			return
		}
		var info struct{ Address, Namespace, Store string }
		if err := json.Unmarshal(line, &info); err != nil || info.Address == "" {
			ready <- fmt.Errorf("the server said %q instead of its address", bytes.TrimSpace(line))
			return
		}
		p.address, p.namespace, p.store = info.Address, info.Namespace, info.Store
		ready <- nil
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timer := time.NewTimer(2 * time.Minute)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-timer.C:
		err = errors.New("the server did not become ready within 2 minutes")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		p.stop()
		<-p.done
		msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(p.stderr.String()), "sluice-temporal: "))
		msg = strings.TrimPrefix(msg, "starting Temporal: ")
		if strings.Contains(msg, "in use") && db.url == "" {
			return nil, fmt.Errorf("%w: %s", ErrServerInUse, msg)
		}
		if msg != "" {
			return nil, fmt.Errorf("starting the embedded Temporal server: %s (log: %s)", msg, filepath.Join(home, "temporal.log"))
		}
		return nil, fmt.Errorf("starting the embedded Temporal server: %w (log: %s)", err, filepath.Join(home, "temporal.log"))
	}
	return p, nil
}

// stop asks the server to stop and waits for it, killing it if it hangs.
func (p *serverProcess) stop() {
	_ = p.stdin.Close()
	proc.Stop(p.cmd.Process, p.done, 15*time.Second)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// withoutOTel is environ without the OpenTelemetry settings: they ask
// Sluice's server for a trace per run, and Temporal would take
// OTEL_TRACES_EXPORTER for itself, export its own internal spans beside
// the runs' and refuse to start with an HTTP protocol.
func withoutOTel(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}
