// Package netns makes machines for tests that span several of them: each
// Host is a Linux network namespace with its own address, and the hosts of
// a Net are wired to one bridge, as machines to one switch. A test starts
// processes on a host (Host.Command), takes its network away and gives it
// back (LinkDown, LinkUp), or loses the host with all its processes
// (KillAll); it can also open sockets from a host itself (Host.DialContext,
// Host.Listen, Host.HTTPClient), since the test process's own namespace
// reaches none of them.
//
// It is test support, imported only by _test.go files.
//
// # What it needs
//
// Linux, root (CAP_SYS_ADMIN and CAP_NET_ADMIN: namespaces are made with
// `ip netns add` and entered with setns), `ip` from iproute2 and `nsenter`
// from util-linux (Debian's essential set). CI runs the tests as root on
// Debian and `make deps` installs iproute2 when `ip` is missing. New skips
// the test, saying why, only when the process is not root or `ip` is
// missing; any other failure fails the test.
//
// # Layout
//
// A Net of id sl<6 hex digits> (random, so that concurrently running test
// binaries never collide) is:
//
//   - a "switch" namespace <id>-sw holding the bridge br0;
//   - per host, a namespace <id>-<n> (n from 1) with lo up and eth0, one end
//     of a veth pair whose other end, h<n>, is a port of br0;
//   - addresses 10.X.Y.n/24, X.Y random per Net.
//
// Every link is created directly in its namespace: the root namespace's
// interfaces, routes and firewall are never touched, and it reaches none of
// the hosts (nor they it). Names are at most 15 characters.
//
// # Cleaning up
//
// t.Cleanup kills every process in a host's namespace and deletes the
// namespaces, also when the test fails or is skipped midway. A test binary
// killed before its cleanups (SIGKILL, a -timeout panic) leaves its
// namespaces behind: its processes die with it (Command sets Pdeathsig) and
// the next New, in any test binary, deletes the Nets whose owner process is
// gone (it records owners in /run/sluice-netns).
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Net is a set of hosts (network namespaces) on one bridge, made by a test
// and removed at its end.
type Net struct {
	// ID prefixes the names of the Net's namespaces.
	ID string

	t      testing.TB
	subnet string // "10.X.Y."
	sw     string // the switch namespace

	mu    sync.Mutex
	hosts []*Host
}

// Host is one machine of a Net.
type Host struct {
	// Name is the name given to Net.Host.
	Name string
	// IP is the host's address on the Net, 10.X.Y.n.
	IP string
	// NS is the network namespace's name (ip netns list, ip -n NS ...).
	NS string

	net  *Net
	port string // the switch's end of the host's veth pair

	mu   sync.Mutex
	cmds []*exec.Cmd
}

const (
	ownersDir = "/run/sluice-netns"
	netnsDir  = "/run/netns"
)

// New makes an empty Net, removed when the test ends. It skips the test
// when it does not run as root on Linux or `ip` is missing.
func New(t testing.TB) *Net {
	t.Helper()
	if err := supported(); err != nil {
		t.Skipf("netns: %v: hosts are network namespaces, which need root and iproute2 (CI runs as root; make deps installs iproute2)", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns: `ip` (iproute2) is not installed: make deps installs it")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Fatal("netns: `nsenter` (util-linux) is not installed")
	}
	collectGarbage(t)

	n := &Net{t: t}
	for {
		b := make([]byte, 5)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		n.ID = "sl" + hex.EncodeToString(b[:3])
		n.subnet = fmt.Sprintf("10.%d.%d.", b[3], b[4])
		n.sw = n.ID + "-sw"
		if _, err := os.Stat(filepath.Join(ownersDir, n.ID)); os.IsNotExist(err) {
			break
		}
	}
	if err := os.MkdirAll(ownersDir, 0o755); err != nil {
		t.Fatalf("netns: %v", err)
	}
	if err := os.WriteFile(filepath.Join(ownersDir, n.ID), []byte(ownerRecord(os.Getpid())), 0o644); err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() {
		if err := ip("netns", "del", n.sw); err != nil {
			t.Errorf("netns: %v", err)
		}
		os.Remove(filepath.Join(ownersDir, n.ID))
	})
	if err := ip("netns", "add", n.sw); err != nil {
		t.Fatalf("netns: %v", err)
	}
	for _, args := range [][]string{
		{"-n", n.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", n.sw, "link", "set", "br0", "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatalf("netns: %v", err)
		}
	}
	return n
}

// Host adds a host to the Net: a namespace with lo up and eth0 on the
// Net's bridge, at the next address. It is removed, its processes killed,
// when the test ends.
func (n *Net) Host(name string) *Host {
	n.t.Helper()
	n.mu.Lock()
	i := len(n.hosts) + 1
	if i > 253 {
		n.mu.Unlock()
		n.t.Fatal("netns: at most 253 hosts on a Net")
	}
	h := &Host{Name: name, IP: n.subnet + fmt.Sprint(i), NS: fmt.Sprintf("%s-%d", n.ID, i), net: n, port: fmt.Sprintf("h%d", i)}
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()

	if err := ip("netns", "add", h.NS); err != nil {
		n.t.Fatalf("netns: host %s: %v", name, err)
	}
	n.t.Cleanup(func() {
		h.KillAll()
		if err := ip("netns", "del", h.NS); err != nil {
			n.t.Errorf("netns: host %s: %v", name, err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", h.port, "netns", n.sw},
		{"-n", n.sw, "link", "set", h.port, "master", "br0", "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	} {
		if err := ip(args...); err != nil {
			n.t.Fatalf("netns: host %s: %v", name, err)
		}
	}
	n.t.Logf("netns: host %s is %s in namespace %s", name, h.IP, h.NS)
	return h
}

// Hosts returns the Net's hosts, in the order they were added.
func (n *Net) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Host(nil), n.hosts...)
}

// Command returns a command that runs name with args in the host's
// network namespace (through nsenter, which enters that namespace only:
// the file system, /sys/fs/cgroup included, stays the test's). Like
// exec.Command's, it inherits the test's environment unless cmd.Env is
// set, and cmd.Dir, Stdout and so on are the caller's to set.
//
// The command runs in a process group of its own and is killed with
// SIGKILL if the test process dies; KillAll kills it with everything else
// on the host. A caller that replaces cmd.SysProcAttr gives both up.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, h.NS), "--", name}, args...)...)
	cmd.SysProcAttr = procAttr()
	h.mu.Lock()
	h.cmds = append(h.cmds, cmd)
	h.mu.Unlock()
	return cmd
}

// LinkDown pulls the host's cable: the switch's end of its veth pair goes
// down. The host keeps its address and its sockets, its eth0 loses its
// carrier, and packets to and from it are dropped: connections in either
// direction time out rather than fail at once, as with a machine whose
// network is gone. Failures are reported with t.Errorf, so LinkDown may be
// called from any goroutine of the test.
func (h *Host) LinkDown() {
	if err := ip("-n", h.net.sw, "link", "set", h.port, "down"); err != nil {
		h.net.t.Errorf("netns: host %s: %v", h.Name, err)
	}
}

// LinkUp plugs the cable back in: packets flow again, and TCP connections
// that did not time out meanwhile go on.
func (h *Host) LinkUp() {
	if err := ip("-n", h.net.sw, "link", "set", h.port, "up"); err != nil {
		h.net.t.Errorf("netns: host %s: %v", h.Name, err)
	}
}

// KillAll loses the host: it kills with SIGKILL the process group of every
// command started through Command, then every process still in the host's
// network namespace (those that left their group, such as daemons with
// process groups of their own), and returns once none is left. The host
// stays, and commands can be started on it again. Processes of the test
// itself (sockets from DialContext or Listen) are not killed. Failures are
// reported with t.Errorf.
func (h *Host) KillAll() {
	h.mu.Lock()
	cmds := append([]*exec.Cmd(nil), h.cmds...)
	h.mu.Unlock()
	for _, cmd := range cmds {
		if cmd.Process != nil {
			killGroup(cmd.Process.Pid)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids, err := processesIn(filepath.Join(netnsDir, h.NS))
		if err != nil {
			h.net.t.Errorf("netns: host %s: %v", h.Name, err)
			return
		}
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.net.t.Errorf("netns: host %s: processes %v still run 30 s after SIGKILL", h.Name, pids)
			return
		}
		for _, pid := range pids {
			kill(pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DialContext connects from the host, as a process on it would: the socket
// is made in the host's namespace by a thread of the test process that
// entered it. addr must be an IP address and port (names would be looked
// up from outside the host).
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := literal(addr); err != nil {
		return nil, fmt.Errorf("netns: dial %s from host %s: %w", addr, h.Name, err)
	}
	var c net.Conn
	err := h.inside(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens on the host (for a fake service that the test process
// serves itself). addr is an IP address and port, or :port.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	if err := literal(addr); err != nil {
		return nil, fmt.Errorf("netns: listen on %s on host %s: %w", addr, h.Name, err)
	}
	var l net.Listener
	err := h.inside(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// HTTPClient is an HTTP client whose connections start from the host (see
// DialContext: URLs name IP addresses). It has no timeout of its own: a
// request to a host whose link is down waits for its context.
func (h *Host) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: h.DialContext}}
}

// inside runs fn on a thread that entered the host's namespace, and moves
// the thread back before it runs anything else.
//
// The thread must not end instead (as a goroutine that exits locked to
// its thread ends it): a child that Command started from that thread
// would get its Pdeathsig.
func (h *Host) inside(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		leave, err := enter(filepath.Join(netnsDir, h.NS))
		if err != nil {
			// Where the thread is is unknown: it ends with this
			// goroutine, still locked.
			errc <- fmt.Errorf("netns: entering host %s: %w", h.Name, err)
			return
		}
		err = fn()
		if lerr := leave(); lerr != nil {
			errc <- errors.Join(err, fmt.Errorf("netns: leaving host %s: %w", h.Name, lerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

func literal(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q is not an IP address", host)
	}
	return nil
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// collectGarbage deletes the Nets whose owner process is gone: their test
// binary was killed before its cleanups ran.
func collectGarbage(t testing.TB) {
	entries, err := os.ReadDir(ownersDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		id := e.Name()
		b, err := os.ReadFile(filepath.Join(ownersDir, id))
		if err != nil || ownerAlive(string(b)) {
			continue
		}
		nss, _ := filepath.Glob(filepath.Join(netnsDir, id+"-*"))
		for _, ns := range nss {
			if pids, err := processesIn(ns); err == nil {
				for _, pid := range pids {
					kill(pid)
				}
			}
			if err := ip("netns", "del", filepath.Base(ns)); err != nil {
				t.Logf("netns: removing a namespace left behind: %v", err)
			}
		}
		os.Remove(filepath.Join(ownersDir, id))
		t.Logf("netns: removed the namespaces %s-* that a killed test binary left behind", id)
	}
}
