// Package buildtest starts what tests of building steps run against: a
// real buildkitd (bin/buildkitd, built by `make tools`, started through
// runners/buildkitd) and a real registry (runners/registry) with the base
// images (runners/baseimage) pushed to it. Nothing is mocked and nothing is
// skipped: a test whose buildkitd cannot start fails and says why.
package buildtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-ci/sluice/runners/baseimage"
	"github.com/sluice-ci/sluice/runners/buildkitd"
	"github.com/sluice-ci/sluice/runners/registry"
)

// Env is a running buildkitd and registry.
type Env struct {
	// Addr is buildkitd's address (unix://...).
	Addr string
	// Daemon is the supervised buildkitd behind Addr.
	Daemon *buildkitd.Daemon
	// Registry is the registry's host:port on 127.0.0.1.
	Registry string
	// Busybox is busybox:local in Registry.
	Busybox string
	// User and Password are the credentials the registry requires for
	// pushes to repositories under "private/".
	User, Password string
	// Home is the $SLUICE_HOME the daemon and registry keep state in.
	Home string
	// Helper is a sluice-exec built for the tests (see BuildHelper).
	Helper string

	out     *Log
	reg     *registry.Registry
	golang  string
	goOnce  sync.Once
	goErr   error
	cleanup []func()
}

// Start starts an Env for one test and stops it when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	e, err := New()
	if err != nil {
		t.Fatalf("starting buildkitd and a registry: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// Main runs a package's tests with one Env, set in *env: for a TestMain
// whose tests share a daemon.
func Main(m *testing.M, env **Env) int {
	e, err := New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting buildkitd and a registry:", err)
		return 1
	}
	defer e.Close()
	*env = e
	return m.Run()
}

// New starts an Env; Close stops it.
func New() (_ *Env, err error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp("", "sluice-buildtest-")
	if err != nil {
		return nil, err
	}
	e := &Env{Home: home, User: "sluice", Password: "test-password", out: &Log{}}
	e.cleanup = append(e.cleanup, func() { _ = os.RemoveAll(home) })
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	e.reg, err = registry.Serve(registry.ServeOptions{Dir: filepath.Join(home, "registry"), Port: -1, Wrap: e.auth})
	if err != nil {
		return nil, err
	}
	e.Registry = e.reg.Host
	e.Daemon, err = buildkitd.Ensure(context.Background(), buildkitd.Options{
		Home:       home,
		Binary:     Binary(root),
		Registries: []string{e.Registry},
		Out:        e.out,
	})
	if err != nil {
		return nil, err
	}
	e.Addr = e.Daemon.Address()
	if _, err := baseimage.Push(context.Background(), baseimage.Options{Registry: e.Registry, SkipGolang: true}); err != nil {
		return nil, err
	}
	e.Busybox = e.Registry + "/" + baseimage.BusyboxName + ":" + baseimage.Tag
	if e.Helper, err = BuildHelper(home); err != nil {
		return nil, err
	}
	return e, nil
}

// BuildHelper builds sluice-exec, which container steps run their commands
// with, as make build does (static), into dir and returns its path.
func BuildHelper(dir string) (string, error) {
	out := filepath.Join(dir, "sluice-exec")
	cmd := exec.Command("go", "build", "-o", out, "github.com/sluice-ci/sluice/cmd/sluice-exec")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building sluice-exec: %v\n%s", err, b)
	}
	return out, nil
}

// Golang pushes golang:local (this machine's Go toolchain) to the registry
// on first use and returns its reference. Its layer is cached in the user's
// cache directory, so only the first test run on a machine packs it.
func (e *Env) Golang(t testing.TB) string {
	t.Helper()
	e.goOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		_, e.goErr = baseimage.Push(context.Background(), baseimage.Options{Registry: e.Registry, Cache: filepath.Join(cache, "sluice", "baseimage")})
		e.golang = e.Registry + "/" + baseimage.GolangName + ":" + baseimage.Tag
	})
	if e.goErr != nil {
		t.Fatalf("pushing golang:local: %v", e.goErr)
	}
	return e.golang
}

// Output is what the daemon's supervisor has said so far
// ("buildkitd: started ...", "exited unexpectedly ...").
func (e *Env) Output() string { return e.out.String() }

// Kill kills buildkitd with SIGKILL, as a crash would; its supervisor
// starts it again.
func (e *Env) Kill() error {
	pid, err := e.DaemonPID()
	if err != nil {
		return err
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// DaemonPID is the pid of the running buildkitd.
func (e *Env) DaemonPID() (int, error) {
	var info buildkitd.Info
	b, err := os.ReadFile(filepath.Join(e.Home, "buildkitd.json"))
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return 0, err
	}
	return info.DaemonPID, nil
}

// Close stops buildkitd and the registry and removes their state.
func (e *Env) Close() {
	if e.Daemon != nil {
		e.Daemon.Close()
	}
	if e.reg != nil {
		e.reg.Close()
	}
	// A killed daemon can leave its containers' mounts behind.
	unmountUnder(e.Home)
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

// auth makes pushes to repositories under "private/" need basic auth, as a
// registry with access control does.
func (e *Env) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Pushes to private/ and every request to pullers-only/ need the
		// test's credentials.
		if strings.HasPrefix(r.URL.Path, "/v2/private/") && r.Method != http.MethodGet && r.Method != http.MethodHead ||
			strings.HasPrefix(r.URL.Path, "/v2/pullers-only/") {
			if u, p, ok := r.BasicAuth(); !ok || u != e.User || p != e.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="sluice-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// RepoRoot is the root of the Sluice repository these tests are in.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("finding the repository root")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Binary is the buildkitd tests start: $SLUICE_BUILDKITD_BIN, or
// bin/buildkitd in the repository (`make tools` builds it).
func Binary(root string) string {
	if p := os.Getenv(buildkitd.EnvBinary); p != "" {
		return p
	}
	return filepath.Join(root, "bin", buildkitd.Binary)
}

// Log is a step log (or a daemon's output) that a test reads while it is
// being written.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends to the log.
func (s *Log) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Log) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
