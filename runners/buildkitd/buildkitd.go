package buildkitd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/buildkit/client"

	"github.com/sluice-ci/sluice/internal/proc"
)

// EnvAddress names a running buildkitd to use instead of starting one.
const EnvAddress = "BUILDKIT_HOST"

// EnvBinary names the buildkitd executable to start.
const EnvBinary = "SLUICE_BUILDKITD_BIN"

// Binary is the name of the BuildKit daemon's executable.
const Binary = "buildkitd"

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Options configures Ensure.
type Options struct {
	// Home holds the daemon's state, log, socket and published address.
	Home string
	// Address is a running buildkitd to use (BUILDKIT_HOST).
	Address string
	// Registries are host:port addresses served over plain HTTP, which
	// buildkitd pulls from and pushes to without TLS.
	Registries []string
	// Binary is the buildkitd to start; default $SLUICE_BUILDKITD_BIN,
	// next to the running executable, or on PATH.
	Binary string
	// Out receives what happens to the daemon ("buildkitd: started ...",
	// "buildkitd: exited ..."); nil discards.
	Out io.Writer
	// ReadyTimeout bounds a start; default 60s.
	ReadyTimeout time.Duration
}

// Daemon is the buildkitd the stack builds with.
type Daemon struct {
	addr     string
	external bool
	o        Options

	mu      sync.Mutex
	p       *process // the daemon this process started, if any
	closed  bool
	exits   []Exit
	borrows bool // the daemon is another sluice process's
}

// Exit records a death of a supervised buildkitd.
type Exit struct {
	PID    int
	Status string
	At     time.Time
	// LogTail is the end of its log.
	LogTail string
}

// Info is what the process that started a home's buildkitd publishes.
type Info struct {
	Address string `json:"address"`
	// PID is the sluice process that supervises it; DaemonPID is buildkitd.
	PID       int `json:"pid"`
	DaemonPID int `json:"daemon_pid"`
}

func infoFile(home string) string { return filepath.Join(home, "buildkitd.json") }

// Ensure returns a buildkitd that answers: o.Address when set, the one
// another sluice process of o.Home runs, or one it starts and supervises
// until Close.
func Ensure(ctx context.Context, o Options) (*Daemon, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Address != "" {
		if err := Ping(ctx, o.Address); err != nil {
			return nil, fmt.Errorf("using %s=%s: %w; start that buildkitd, or unset %s and Sluice starts its own", EnvAddress, o.Address, err, EnvAddress)
		}
		fmt.Fprintf(o.Out, "buildkitd: using %s=%s\n", EnvAddress, o.Address)
		return &Daemon{addr: o.Address, external: true, o: o}, nil
	}
	if o.Home == "" {
		return nil, errors.New("starting buildkitd: no home directory")
	}
	d := &Daemon{o: o}
	if err := d.ensureLocal(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Address is where the daemon listens, for client.New.
func (d *Daemon) Address() string { return d.addr }

// Ready makes sure the daemon answers before a step uses it: it waits for
// a restart under way, and starts a daemon of its own when the borrowed
// one is gone.
func (d *Daemon) Ready(ctx context.Context) error {
	if d.external {
		if err := Ping(ctx, d.addr); err != nil {
			return fmt.Errorf("%s=%s does not answer: %w; start it again, or unset %s and Sluice starts its own", EnvAddress, d.addr, err, EnvAddress)
		}
		return nil
	}
	return d.ensureLocal(ctx)
}

// Exits returns the deaths of the daemon this process supervised.
func (d *Daemon) Exits() []Exit {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Exit(nil), d.exits...)
}

// Explain turns err, from a build that began at start, into an error that
// says buildkitd died during it, when it did; otherwise it returns err.
func (d *Daemon) Explain(start time.Time, err error) error {
	if err == nil {
		return nil
	}
	// The build's connection can break before the supervisor has seen the
	// exit: wait for it while the daemon does not answer.
	for deadline := time.Now().Add(5 * time.Second); ; {
		d.mu.Lock()
		p, exits := d.p, d.exits
		d.mu.Unlock()
		for _, e := range exits {
			if !e.At.Before(start) {
				return fmt.Errorf("buildkitd (pid %d) died during the build (%s); it has been started again for the next step; the end of its log (%s):\n%s\n%w", e.PID, e.Status, d.logPath(), indent(e.LogTail), err)
			}
		}
		if p == nil || time.Now().After(deadline) || (!p.exited() && ping(p.addr, time.Second) == nil) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.borrows || d.external {
		if perr := ping(d.addr, 2*time.Second); perr != nil {
			return fmt.Errorf("buildkitd at %s stopped answering during the build (%v): %w", d.addr, perr, err)
		}
	}
	return err
}

func ping(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Ping(ctx, addr)
}

// Close stops the daemon if this process started it.
func (d *Daemon) Close() {
	d.mu.Lock()
	d.closed = true
	p := d.p
	d.p = nil
	d.mu.Unlock()
	if p != nil {
		var info Info
		proc.RemoveRecord(infoFile(d.o.Home), &info, func() int { return info.PID })
		p.stop()
		killOrphans(filepath.Join(d.o.Home, "buildkit"))
	}
}

// Ping checks that a buildkitd answers at addr.
func Ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	ws, err := c.ListWorkers(ctx)
	if err != nil {
		return err
	}
	if len(ws) == 0 {
		return errors.New("it has no workers")
	}
	return nil
}

func (d *Daemon) logPath() string { return filepath.Join(d.o.Home, "buildkitd.log") }

// ensureLocal finds or starts the home's daemon.
func (d *Daemon) ensureLocal(ctx context.Context) error {
	d.mu.Lock()
	if p := d.p; p != nil {
		d.mu.Unlock()
		err := Ping(ctx, p.addr)
		if err == nil {
			return nil
		}
		// It may have just died: the supervisor reports that and starts
		// it again, and the next look finds the new one.
		select {
		case <-p.done:
			time.Sleep(20 * time.Millisecond)
			return d.ensureLocal(ctx)
		case <-time.After(2 * time.Second):
			return fmt.Errorf("buildkitd (pid %d) does not answer at %s: %w; its log is %s", p.cmd.Process.Pid, p.addr, err, d.logPath())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("buildkitd: the local stack is closing")
	}
	unlock, err := lockHome(d.o.Home)
	if err != nil {
		return err
	}
	defer unlock()
	var info Info
	if err := proc.ReadRecord(infoFile(d.o.Home), &info, func() int { return info.PID }); err == nil && Ping(ctx, info.Address) == nil {
		if d.addr == "" {
			fmt.Fprintf(d.o.Out, "buildkitd: using the one sluice (pid %d) runs (pid %d, %s)\n", info.PID, info.DaemonPID, info.Address)
		}
		d.addr, d.borrows = info.Address, true
		return nil
	}
	if d.borrows {
		fmt.Fprintf(d.o.Out, "buildkitd: the one another sluice ran (%s) is gone; starting one here\n", d.addr)
	}
	p, err := d.start(ctx)
	if err != nil {
		return err
	}
	d.p, d.addr, d.borrows = p, p.addr, false
	go d.supervise(p)
	return proc.WriteRecord(infoFile(d.o.Home), Info{Address: p.addr, PID: os.Getpid(), DaemonPID: p.cmd.Process.Pid})
}

// supervise waits for p to exit; unless the stack is closing, it reports
// the death and starts the daemon again.
func (d *Daemon) supervise(p *process) {
	<-p.done
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.p != p {
		return
	}
	e := Exit{PID: p.cmd.Process.Pid, Status: p.status(), At: time.Now(), LogTail: tail(d.logPath(), 2048)}
	d.exits = append(d.exits, e)
	fmt.Fprintf(d.o.Out, "buildkitd: pid %d exited unexpectedly (%s); the end of its log (%s):\n%s\n", e.PID, e.Status, d.logPath(), indent(e.LogTail))
	if n := killOrphans(filepath.Join(d.o.Home, "buildkit")); n > 0 {
		fmt.Fprintf(d.o.Out, "buildkitd: stopped %d process(es) of the build steps it left running\n", n)
	}
	recent := 0
	for _, x := range d.exits {
		if time.Since(x.At) < time.Minute {
			recent++
		}
	}
	if recent > 3 {
		fmt.Fprintf(d.o.Out, "buildkitd: it died %d times within a minute; not starting it again until the next step\n", recent)
		d.p = nil
		return
	}
	np, err := d.start(context.Background())
	if err != nil {
		fmt.Fprintf(d.o.Out, "buildkitd: starting it again: %v\n", err)
		d.p = nil
		return
	}
	d.p = np
	_ = proc.WriteRecord(infoFile(d.o.Home), Info{Address: np.addr, PID: os.Getpid(), DaemonPID: np.cmd.Process.Pid})
	go d.supervise(np)
}

// socketPath is the daemon's socket: under home when the path fits in a
// unix socket address, else under the runtime directory (or /tmp) in a
// directory named after home, so the same home always gets the same one.
func socketPath(home string) string {
	p := filepath.Join(home, "buildkit", "buildkitd.sock")
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(home))
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" || len(base) > 60 {
		base = os.TempDir()
	}
	return filepath.Join(base, fmt.Sprintf("sluice-%d-%s", os.Getuid(), hex.EncodeToString(sum[:6])), "buildkitd.sock")
}

// configTOML marks the registries as plain HTTP.
func configTOML(registries []string) string {
	var b strings.Builder
	b.WriteString("# Written by sluice at every start of buildkitd.\n")
	seen := map[string]bool{}
	for _, r := range registries {
		hosts := []string{r}
		if h, port, ok := strings.Cut(r, ":"); ok && (h == "127.0.0.1" || h == "localhost") {
			hosts = []string{"127.0.0.1:" + port, "localhost:" + port}
		}
		for _, h := range hosts {
			if seen[h] {
				continue
			}
			seen[h] = true
			fmt.Fprintf(&b, "\n[registry.%q]\n  http = true\n", h)
		}
	}
	return b.String()
}

// findBinary locates buildkitd: o.Binary, or see proc.Find.
func findBinary(o Options) (string, error) {
	p := o.Binary
	if p == "" {
		p = proc.Find(EnvBinary, Binary)
	}
	if p == "" {
		return "", fmt.Errorf("%s is not next to sluice, on PATH or in $%s; build it with `make tools` (it lands in bin/ next to sluice), or set %s to a running buildkitd", Binary, EnvBinary, EnvAddress)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not at %s: %w; build it with `make tools`, or set %s to a running buildkitd", Binary, p, err, EnvAddress)
	}
	return p, nil
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	s := string(b)
	if i := strings.IndexByte(s, '\n'); len(b) == int(n) && i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimRight(s, "\n")
}

func indent(s string) string {
	if s == "" {
		return "  (empty)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
