// Package bktemp starts a buildkitd and an OCI registry for the tests of
// the BuildKit step executors.
//
// TEMPORARY: it stands in for the shared test helper (internal/buildtest)
// and runners/registry, runners/baseimage that another change brings; the
// tests switch to those and this package is deleted when they land.
package bktemp

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/buildkit/client"
)

// Env is a running buildkitd and registry.
type Env struct {
	// Addr is the buildkitd address (unix://...).
	Addr string
	// Registry is the registry's host:port on loopback.
	Registry string
	// Busybox is a FROM-scratch busybox image pushed to Registry.
	Busybox string
	// User and Password are the credentials the registry's "private/"
	// repositories require for writes.
	User, Password string

	cmd  *exec.Cmd
	dir  string
	srv  *httptest.Server
	done chan struct{}
}

// Kill stops buildkitd abruptly, as a crash would.
func (e *Env) Kill() { e.cmd.Process.Kill(); <-e.done }

// Close stops everything.
func (e *Env) Close() {
	if e.cmd.ProcessState == nil {
		e.cmd.Process.Signal(os.Interrupt)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			e.cmd.Process.Kill()
			<-e.done
		}
	}
	e.srv.Close()
	exec.Command("umount", "-R", filepath.Join(e.dir, "root")).Run()
	os.RemoveAll(e.dir)
}

// Start starts them. A test binary's TestMain calls it once.
func Start() (*Env, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "bin", "buildkitd")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("buildkitd not built: run `make tools` (%w)", err)
	}
	dir, err := os.MkdirTemp("", "bktemp-")
	if err != nil {
		return nil, err
	}
	e := &Env{dir: dir, User: "sluice", Password: "s3cret-pass", done: make(chan struct{})}
	e.srv = httptest.NewServer(e.auth(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	e.Registry = strings.TrimPrefix(e.srv.URL, "http://")
	sock := filepath.Join(dir, "bk.sock")
	e.Addr = "unix://" + sock
	e.cmd = exec.Command(bin, "--root", filepath.Join(dir, "root"), "--addr", e.Addr, "--oci-worker-snapshotter=native", "--oci-worker-gc=false")
	logf, _ := os.Create(filepath.Join(dir, "buildkitd.log"))
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { e.cmd.Wait(); logf.Close(); close(e.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := client.New(ctx, e.Addr)
		if err == nil {
			_, err = c.ListWorkers(ctx)
			c.Close()
			if err == nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			b, _ := os.ReadFile(filepath.Join(dir, "buildkitd.log"))
			e.Close()
			return nil, fmt.Errorf("buildkitd did not start: %v\n%s", err, b)
		case <-e.done:
			b, _ := os.ReadFile(filepath.Join(dir, "buildkitd.log"))
			e.Close()
			return nil, fmt.Errorf("buildkitd exited: %s", b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if e.Busybox, err = pushBusybox(e.Registry); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// auth makes writes to repositories under "private/" need basic auth, as a
// registry with access control does.
func (e *Env) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/private/") && r.Method != http.MethodGet && r.Method != http.MethodHead {
			u, p, ok := r.BasicAuth()
			if !ok || u != e.User || p != e.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func pushBusybox(reg string) (string, error) {
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static is needed (apt-get install busybox-static): %w", err)
	}
	out, err := exec.Command("/usr/bin/busybox", "--list").Output()
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := time.Unix(0, 0)
	for _, d := range []string{"bin/", "tmp/", "etc/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mod})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb)), ModTime: mod})
	tw.Write(bb)
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" {
			continue
		}
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: mod})
	}
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Config = v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref := reg + "/library/busybox:local"
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	return ref, nil
}

func repoRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Main runs a package's tests with an Env started once, set in *env.
func Main(m *testing.M, env **Env) int {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting buildkitd and a registry:", err)
		return 1
	}
	defer e.Close()
	*env = e
	return m.Run()
}

// Log is a step log that a test reads while BuildKit writes it.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends to the log.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
