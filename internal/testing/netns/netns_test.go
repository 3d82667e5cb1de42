//go:build linux

package netns

import (
	"bufio"
	"context"
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
	"syscall"
	"testing"
	"time"
)

// The test binary is also the programs the tests run on hosts: with
// NETNS_TEST_CHILD set it is one of them instead of the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("NETNS_TEST_CHILD"); mode != "" {
		os.Exit(child(mode, os.Getenv("NETNS_TEST_ADDR")))
	}
	os.Exit(m.Run())
}

// child is a program run on a host: "echo" serves TCP on addr, answering
// each line with who it is and whom it serves; "dial" sends a line to addr
// and prints the answer.
func child(mode, addr string) int {
	switch mode {
	case "echo":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("listening")
		for {
			c, err := l.Accept()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s from %s to %s\n", sc.Text(), c.LocalAddr(), c.RemoteAddr())
				}
			}()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(c, "ping")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Print(line)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown NETNS_TEST_CHILD %q\n", mode)
	return 2
}

// self returns a command that runs the test binary on h as a child.
func self(t *testing.T, h *Host, mode, addr string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETNS_TEST_CHILD="+mode, "NETNS_TEST_ADDR="+addr)
	return cmd
}

// startEcho starts the echo server on h at addr and waits until it listens.
func startEcho(t *testing.T, h *Host, addr string) *exec.Cmd {
	t.Helper()
	cmd := self(t, h, "echo", addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "listening\n" {
		t.Fatalf("the echo server on %s did not start: %q %v", h.Name, line, err)
	}
	return cmd
}

// ask sends a line on c and returns the answer.
func ask(c net.Conn, line string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(c, line); err != nil {
		return "", err
	}
	return readLine(c)
}

func readLine(c net.Conn) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

func TestTwoHostsTCP(t *testing.T) {
	t.Parallel()
	n := New(t)
	a, b := n.Host("a"), n.Host("b")
	for _, h := range []*Host{a, b} {
		if len(h.NS) > 15 || len(n.ID+"-sw") > 15 {
			t.Errorf("names longer than 15 characters: %s, %s-sw", h.NS, n.ID)
		}
	}
	if a.IP == b.IP || !strings.HasPrefix(a.IP, "10.") {
		t.Fatalf("addresses: %s, %s", a.IP, b.IP)
	}
	addr := net.JoinHostPort(a.IP, "7000")
	startEcho(t, a, addr)

	// A process on B reaches the process on A, and A sees B's address.
	out, err := self(t, b, "dial", addr).CombinedOutput()
	if want := fmt.Sprintf("ping from %s to %s:", addr, b.IP); err != nil || !strings.HasPrefix(string(out), want) {
		t.Fatalf("dialing A from a process on B: %v\n%s\nwant %s...", err, out, want)
	}

	// So does the test itself, from B's namespace.
	c, err := b.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := ask(c, "hello", 5*time.Second); err != nil || !strings.HasPrefix(got, "hello from "+addr+" to "+b.IP+":") {
		t.Fatalf("dialing A from the test on B: %q %v", got, err)
	}

	// Names are refused: they would be looked up outside the host.
	if _, err := b.DialContext(context.Background(), "tcp", "localhost:7000"); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("dialing a name: %v", err)
	}
}

func TestRootNamespaceUntouched(t *testing.T) {
	t.Parallel()
	links := func() []string {
		out, err := exec.Command("ip", "-o", "link", "show").Output()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) > 1 {
				names = append(names, strings.TrimSuffix(strings.Split(f[1], "@")[0], ":"))
			}
		}
		return names
	}
	before := links()
	n := New(t)
	a, b := n.Host("a"), n.Host("b")

	// No link of the Net's, nor its subnet, shows in the root namespace.
	for _, name := range links() {
		if !slices.Contains(before, name) && (name == "br0" || name == "eth0" || strings.HasPrefix(name, "h")) {
			t.Errorf("link %s appeared in the root namespace", name)
		}
	}
	subnet := a.IP[:strings.LastIndexByte(a.IP, '.')+1]
	for _, args := range [][]string{{"-o", "addr"}, {"route", "show", "table", "all"}, {"neigh"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		if strings.Contains(string(out), subnet) {
			t.Errorf("the Net's subnet %s0/24 shows in the root namespace's ip %v:\n%s", subnet, args, out)
		}
	}

	// A service on A is reached from B but not from the root namespace.
	addr := net.JoinHostPort(a.IP, "7000")
	startEcho(t, a, addr)
	if c, err := b.DialContext(context.Background(), "tcp", addr); err != nil {
		t.Fatalf("B does not reach A: %v", err)
	} else {
		c.Close()
	}
	// (The root namespace's default route may lead to a proxy that
	// accepts every connection: what answers tells.)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		got, _ := ask(c, "ping", time.Second)
		c.Close()
		if strings.HasPrefix(got, "ping from") {
			t.Fatalf("the root namespace reached %s", addr)
		}
	}

	// Nor do the hosts reach out: they have no route but their subnet.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, to := range rootAddrs(t) {
		if c, err := a.DialContext(ctx, "tcp", net.JoinHostPort(to, "80")); err == nil {
			c.Close()
			t.Errorf("A reached the root namespace at %s", to)
		} else if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("dialing %s from A: %v, want network unreachable", to, err)
		}
	}

	// Each host has a loopback of its own: a service on A's 127.0.0.1 is
	// not the root namespace's nor B's.
	l, err := a.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "A's loopback\n")
			c.Close()
		}
	}()
	if c, err := a.DialContext(ctx, "tcp", l.Addr().String()); err != nil {
		t.Fatalf("A does not reach its own loopback: %v", err)
	} else if got, _ := readLine(c); got != "A's loopback" {
		t.Fatalf("A's loopback answered %q", got)
	}
	reach := map[string]func() (net.Conn, error){
		"the root namespace": func() (net.Conn, error) { return net.DialTimeout("tcp", l.Addr().String(), time.Second) },
		"B":                  func() (net.Conn, error) { return b.DialContext(ctx, "tcp", l.Addr().String()) },
	}
	for who, dial := range reach {
		if c, err := dial(); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			if got, _ := readLine(c); got == "A's loopback" {
				t.Errorf("%s reached A's loopback", who)
			}
			c.Close()
		}
	}
}

// rootAddrs returns the root namespace's IPv4 addresses but loopback.
func rootAddrs(t *testing.T) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"1.1.1.1"}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

func TestLinkDownUp(t *testing.T) {
	t.Parallel()
	n := New(t)
	a, b := n.Host("a"), n.Host("b")
	addr := net.JoinHostPort(a.IP, "7000")
	startEcho(t, a, addr)
	c, err := b.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ask(c, "one", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	a.LinkDown()
	out, _ := exec.Command("ip", "-n", a.NS, "link", "show", "eth0").CombinedOutput()
	if !strings.Contains(string(out), "NO-CARRIER") {
		t.Errorf("A's eth0 with its link down:\n%s", out)
	}
	// New connections time out, and so does an answer on the open one.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c2, err := b.DialContext(ctx, "tcp", addr); err == nil {
		c2.Close()
		t.Fatal("B reached A with A's link down")
	}
	if got, err := ask(c, "two", time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("A answered with its link down: %q %v", got, err)
	}

	// Up again, the open connection goes on: the line sent while the link
	// was down is answered.
	a.LinkUp()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if got, err := readLine(c); err != nil || !strings.HasPrefix(got, "two from ") {
		t.Fatalf("the connection did not survive the link going down and up: %q %v", got, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := self(t, b, "dial", addr).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B does not reach A with A's link up again: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive reports whether a process runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0] != "Z"
}

func pgid(t *testing.T, pid int) int {
	g, err := syscall.Getpgid(pid)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestKillAll(t *testing.T) {
	t.Parallel()
	n := New(t)
	a, b := n.Host("a"), n.Host("b")

	// On A, a shell with a child in its process group and one that left
	// for a session of its own; on B, a bystander.
	sh := a.Command("sh", "-c", `sleep 1000 & echo $!; setsid sh -c 'echo $$; exec sleep 1000' & wait`)
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	pids := []int{sh.Process.Pid}
	r := bufio.NewReader(out)
	for range 2 {
		line, err := r.ReadString('\n')
		pid, err2 := strconv.Atoi(strings.TrimSpace(line))
		if err != nil || err2 != nil {
			t.Fatalf("reading the pids: %q %v %v", line, err, err2)
		}
		pids = append(pids, pid)
	}
	if g := pgid(t, pids[0]); g != pids[0] || pgid(t, pids[1]) != g {
		t.Fatalf("the shell and its child are not in a group of their own: %d %d", g, pgid(t, pids[1]))
	}
	if pgid(t, pids[2]) == pids[0] {
		t.Fatal("the setsid child is in the shell's group")
	}
	bystander := b.Command("sleep", "1000")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range append(pids, bystander.Process.Pid) {
		if !alive(pid) {
			t.Fatalf("process %d does not run", pid)
		}
	}

	a.KillAll()
	if err := sh.Wait(); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("the shell ended with %v, want killed", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d on A outlived KillAll", pid)
		}
	}
	if !alive(bystander.Process.Pid) {
		t.Error("A's KillAll killed a process on B")
	}

	// The host stays: commands run on it again.
	if out, err := a.Command("ip", "-o", "-4", "addr", "show", "eth0").CombinedOutput(); err != nil || !strings.Contains(string(out), a.IP+"/24") {
		t.Errorf("after KillAll, A: %v\n%s", err, out)
	}
	b.KillAll()
	if err := bystander.Wait(); err == nil {
		t.Error("the bystander ended well after B's KillAll")
	}
}

func namespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	var made []string
	var id string
	var pid int
	t.Run("ends-midway", func(t *testing.T) {
		n := New(t)
		x, y := n.Host("x"), n.Host("y")
		id, made = n.ID, []string{n.ID + "-sw", x.NS, y.NS}
		cmd := x.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid = cmd.Process.Pid
		go cmd.Wait()
		for _, ns := range made {
			if !slices.Contains(namespaces(t), ns) {
				t.Fatalf("namespace %s is not in ip netns list", ns)
			}
		}
		// Ends the test the way t.Fatal does.
		t.SkipNow()
	})
	for _, ns := range namespaces(t) {
		if slices.Contains(made, ns) {
			t.Errorf("namespace %s outlived its test", ns)
		}
	}
	if alive(pid) {
		t.Errorf("process %d on a host outlived its test", pid)
	}
	if _, err := os.Stat(filepath.Join(ownersDir, id)); !os.IsNotExist(err) {
		t.Errorf("the owner record of %s outlived its test: %v", id, err)
	}
}

// TestLeftBehind kills a test binary before its cleanups run: the next
// New removes what it left.
func TestLeftBehind(t *testing.T) {
	if os.Getenv("NETNS_TEST_LEAK") != "" {
		n := New(t)
		h := n.Host("x")
		cmd := h.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("LEAK %s %s %d\n", n.ID, h.NS, cmd.Process.Pid)
		select {}
	}
	// Make sure this process may make namespaces before making a child
	// that would fail to.
	New(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestLeftBehind$")
	cmd.Env = append(os.Environ(), "NETNS_TEST_LEAK=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var id, ns string
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "LEAK %s %s %d", &id, &ns, &pid); err == nil {
			break
		}
	}
	if ns == "" {
		t.Fatal("the child made no host")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if slices.Contains(namespaces(t), ns) {
		t.Logf("the killed child left %s behind", ns)
	} else {
		// Another test binary's New was quicker.
		t.Logf("%s was removed already", ns)
	}
	New(t)
	if got := namespaces(t); slices.Contains(got, ns) || slices.Contains(got, id+"-sw") {
		t.Errorf("New left the killed child's namespaces: %v", got)
	}
	if alive(pid) {
		t.Errorf("the killed child's process %d on its host runs on", pid)
	}
	if _, err := os.Stat(filepath.Join(ownersDir, id)); !os.IsNotExist(err) {
		t.Errorf("the killed child's owner record is left: %v", err)
	}
}
