package buildkitd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/tonistiigi/fsutil"

	"github.com/sluice-ci/sluice/internal/testing/buildtest"
	"github.com/sluice-ci/sluice/runners/buildkitd"
)

// build builds dockerfile with the Dockerfile frontend of the daemon at
// addr and returns the files of the result.
func build(ctx context.Context, t *testing.T, addr, dockerfile string) (string, error) {
	t.Helper()
	src, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fs, err := fsutil.NewFS(src)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Solve(ctx, nil, client.SolveOpt{
		Frontend:    "dockerfile.v0",
		LocalMounts: map[string]fsutil.FS{"context": fs, "dockerfile": fs},
		Exports:     []client.ExportEntry{{Type: client.ExporterLocal, OutputDir: out}},
	}, nil)
	return out, err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestBuildFromBusybox(t *testing.T) {
	env := buildtest.Start(t)
	if !strings.Contains(env.Output(), "buildkitd: started (pid ") || !strings.Contains(env.Output(), env.Addr) {
		t.Errorf("the start was not reported with its pid and address %s:\n%s", env.Addr, env.Output())
	}
	ctx := context.Background()
	out, err := build(ctx, t, env.Addr, "FROM "+env.Busybox+"\nRUN sh -c 'echo \"hello from $(uname -s)\" > /tmp/out && ls -ld /tmp > /tmp/ls'\nFROM scratch\nCOPY --from=0 /tmp/out /tmp/ls /\n")
	if err != nil {
		t.Fatalf("building FROM busybox:local: %v", err)
	}
	if got := readFile(t, filepath.Join(out, "out")); got != "hello from Linux" {
		t.Errorf("sh -c in busybox:local wrote %q", got)
	}
	if got := readFile(t, filepath.Join(out, "ls")); !strings.HasPrefix(got, "drwxrwxrwt") {
		t.Errorf("/tmp in busybox:local is %q, want a sticky world-writable directory", got)
	}
}

func TestGoToolchainImage(t *testing.T) {
	env := buildtest.Start(t)
	golang := env.Golang(t)
	start := time.Now()
	out, err := build(context.Background(), t, env.Addr, "FROM "+golang+`
RUN go version > /version && sh -c 'go env GOROOT CGO_ENABLED GOTOOLCHAIN' > /env
FROM scratch
COPY --from=0 /version /env /
`)
	if err != nil {
		t.Fatalf("building FROM golang:local: %v", err)
	}
	t.Logf("built FROM golang:local in %s", time.Since(start).Round(time.Millisecond))
	if got, want := readFile(t, filepath.Join(out, "version")), "go version "+runtime.Version()+" linux/"+runtime.GOARCH; got != want {
		t.Errorf("go version in golang:local = %q, want %q", got, want)
	}
	if got, want := readFile(t, filepath.Join(out, "env")), "/usr/local/go\n0\nlocal"; got != want {
		t.Errorf("go env in golang:local = %q, want %q", got, want)
	}
}

func TestKilledDaemonIsReportedAndRestarted(t *testing.T) {
	env := buildtest.Start(t)
	ctx := context.Background()
	oldPID, err := env.DaemonPID()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := build(ctx, t, env.Addr, "FROM "+env.Busybox+"\nRUN touch /tmp/started && sleep 60\n")
		errc <- err
	}()
	time.Sleep(1500 * time.Millisecond) // the RUN is under way
	if err := env.Kill(); err != nil {
		t.Fatal(err)
	}
	var buildErr error
	select {
	case buildErr = <-errc:
	case <-time.After(20 * time.Second):
		t.Fatal("the build did not fail within 20s of buildkitd's death")
	}
	if buildErr == nil {
		t.Fatal("the build succeeded although buildkitd was killed")
	}
	msg := env.Daemon.Explain(start, buildErr).Error()
	if !strings.Contains(msg, "died during the build") || !strings.Contains(msg, "signal: killed") {
		t.Errorf("the failure does not say buildkitd died:\n%s", msg)
	}
	if err := env.Daemon.Ready(ctx); err != nil {
		t.Fatalf("buildkitd was not started again: %v", err)
	}
	if !strings.Contains(env.Output(), "exited unexpectedly (signal: killed)") || strings.Count(env.Output(), "buildkitd: started") != 2 {
		t.Errorf("the supervisor did not report the death and the restart:\n%s", env.Output())
	}
	if !strings.Contains(env.Output(), "stopped 1 process(es) of the build steps it left running") {
		t.Errorf("the supervisor did not stop the step that the dead daemon left running (sleep 60):\n%s", env.Output())
	}
	if newPID, _ := env.DaemonPID(); newPID == oldPID || newPID == 0 {
		t.Errorf("buildkitd's pid is %d after the restart, was %d", newPID, oldPID)
	}
	out, err := build(ctx, t, env.Addr, "FROM "+env.Busybox+"\nRUN echo again > /tmp/x\nFROM scratch\nCOPY --from=0 /tmp/x /\n")
	if err != nil {
		t.Fatalf("building after the restart: %v", err)
	}
	if got := readFile(t, filepath.Join(out, "x")); got != "again" {
		t.Errorf("the build after the restart wrote %q", got)
	}
}

func TestSecondEnsureSharesTheDaemon(t *testing.T) {
	env := buildtest.Start(t)
	var out bytes.Buffer
	d, err := buildkitd.Ensure(context.Background(), buildkitd.Options{Home: env.Home, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Address() != env.Addr {
		t.Errorf("the second Ensure uses %s, want the running daemon at %s", d.Address(), env.Addr)
	}
	if !strings.Contains(out.String(), "buildkitd: using the one sluice (pid ") {
		t.Errorf("the second Ensure did not say it uses the running daemon: %q", out.String())
	}
}

func TestBuildkitHostThatDoesNotAnswer(t *testing.T) {
	addr := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	_, err := buildkitd.Ensure(context.Background(), buildkitd.Options{Home: t.TempDir(), Address: addr})
	if err == nil || !strings.Contains(err.Error(), "BUILDKIT_HOST="+addr) || !strings.Contains(err.Error(), "unset BUILDKIT_HOST") {
		t.Errorf("error = %v, want one naming BUILDKIT_HOST=%s and what to do", err, addr)
	}
}

func TestBuildkitHostIsUsed(t *testing.T) {
	env := buildtest.Start(t)
	var out bytes.Buffer
	d, err := buildkitd.Ensure(context.Background(), buildkitd.Options{Home: t.TempDir(), Address: env.Addr, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if d.Address() != env.Addr || out.String() != "buildkitd: using BUILDKIT_HOST="+env.Addr+"\n" {
		t.Errorf("Ensure with BUILDKIT_HOST: address %s, said %q", d.Address(), out.String())
	}
}

func TestMissingBinary(t *testing.T) {
	_, err := buildkitd.Ensure(context.Background(), buildkitd.Options{Home: t.TempDir(), Binary: filepath.Join(t.TempDir(), "buildkitd")})
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("error = %v, want one saying to run make tools", err)
	}
}
