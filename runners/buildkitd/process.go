package buildkitd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sluice-ci/sluice/internal/proc"
)

// process is a buildkitd this process started.
type process struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	err  error
}

// start starts buildkitd for d's home and waits until it answers.
func (d *Daemon) start(ctx context.Context) (*process, error) {
	bin, err := findBinary(d.o)
	if err != nil {
		return nil, err
	}
	if err := canRun(); err != nil {
		return nil, err
	}
	root := filepath.Join(d.o.Home, "buildkit")
	sock := socketPath(d.o.Home)
	for _, dir := range []string{root, filepath.Dir(sock)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("starting buildkitd: %w", err)
		}
	}
	cfg := filepath.Join(d.o.Home, "buildkitd.toml")
	if err := os.WriteFile(cfg, []byte(configTOML(d.o.Registries)), 0o644); err != nil {
		return nil, fmt.Errorf("starting buildkitd: %w", err)
	}
	logf, err := os.OpenFile(d.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting buildkitd: %w", err)
	}
	defer logf.Close()
	_ = os.Remove(sock) // left by a daemon that was killed
	addr := "unix://" + sock
	cmd := exec.Command(bin, "--root", root, "--addr", addr, "--config", cfg,
		"--oci-worker-snapshotter=native", "--oci-worker-binary=runc")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = proc.ChildAttrs()
	fmt.Fprintf(logf, "--- sluice (pid %d) starts %s at %s\n", os.Getpid(), bin, time.Now().Format(time.RFC3339))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &process{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	if err := p.waitReady(ctx, d.o.ReadyTimeout); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w; the end of its log (%s):\n%s", err, d.logPath(), indent(tail(d.logPath(), 2048)))
	}
	fmt.Fprintf(d.o.Out, "buildkitd: started (pid %d, %s)\n", cmd.Process.Pid, addr)
	return p, nil
}

// canRun checks what a rootful buildkitd with the runc worker needs.
func canRun() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("buildkitd needs root to run build steps here (Sluice does not set up rootless BuildKit); run sluice as root, or start a buildkitd yourself and set %s to its address", EnvAddress)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("runc is not installed: buildkitd runs build steps with it; install it with `make tools` (Debian's runc package), or set %s to a running buildkitd", EnvAddress)
	}
	return nil
}

// waitReady polls the daemon until it answers, exits or timeout passes.
func (p *process) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("buildkitd exited while starting (%s)", p.status())
		default:
		}
		err := Ping(ctx, p.addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("buildkitd did not answer at %s within %s: %w", p.addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) status() string {
	var xe *exec.ExitError
	if errors.As(p.err, &xe) {
		return xe.ProcessState.String()
	}
	if p.err != nil {
		return p.err.Error()
	}
	return "exit status 0"
}

// stop asks buildkitd to stop and waits, killing it if it hangs.
func (p *process) stop() {
	proc.Stop(p.cmd.Process, p.done, 10*time.Second)
}
