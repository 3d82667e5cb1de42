package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/testing/netns"
	"github.com/sluice-ci/sluice/runners/registry"
)

// A pipeline whose stages go to runners by label: red to either of two
// runners, blue to a third. Each step writes its workspace (which names
// the runner's work dir) to a counter file; red holds while the file
// "hold" exists.
const fleetPipeline = `
pipeline "fleet" {
  on "push" { branches = ["main"] }
}

variable "counters" {}

stage "red" {
  runs_on = ["red"]
  step "run" "first" {
    script = "echo $SLUICE_WORKSPACE >> ${var.counters}/red-first"
  }
  step "run" "work" {
    script = <<-EOT
      echo "red runs in $SLUICE_WORKSPACE"
      echo $SLUICE_WORKSPACE >> ${var.counters}/red
      while [ -e ${var.counters}/hold ]; do sleep 0.1; done
    EOT
  }
}

stage "blue" {
  runs_on = ["blue"]
  needs   = [stage.red]
  step "run" "paint" {
    script = "echo $SLUICE_WORKSPACE >> ${var.counters}/blue"
  }
}
`

// runnerOn starts sluice runner on host h with its own work dir.
func runnerOn(t *testing.T, srv *harness, h *netns.Host, temporal, url, token, name, labels string, flags ...string) (*exec.Cmd, *lineWaiter, string) {
	t.Helper()
	work := filepath.Join(t.TempDir(), name)
	r := &harness{t: t, bin: srv.bin, home: t.TempDir(), repo: srv.repo, counters: srv.counters, host: h}
	r.env = append(srv.env[:len(srv.env):len(srv.env)], "SLUICE_HOME="+r.home, "SLUICE_TOKEN="+token)
	args := append([]string{"runner", "--temporal-address", temporal, "--server", url, "--name", name, "--labels", labels, "--work-dir", work}, flags...)
	cmd, w := r.background(args...)
	w.waitFor(t, `Sluice runner `+name+` `, time.Minute)
	return cmd, w, work
}

// lines reads a counter file's lines.
func lines(h *harness, name string) []string {
	b, _ := os.ReadFile(filepath.Join(h.counters, name))
	return strings.Fields(string(b))
}

func waitLines(t *testing.T, h *harness, name string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := lines(h, name); len(l) >= n {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s has %d lines after %s, want %d", name, len(lines(h, name)), timeout, n)
	return nil
}

// fleet is a sluice server on host A of a test's network, with its
// Temporal reachable by runners on the other hosts, a bare repository whose
// pushes it runs, an API token, and a CLI on A to look at it.
type fleet struct {
	t                   *testing.T
	srv, cli            *harness
	a                   *netns.Host
	url, temporal, bare string
	token               string
}

func startFleet(t *testing.T, n *netns.Net, pipeline string) *fleet {
	t.Helper()
	f := &fleet{t: t, a: n.Host("server"), srv: newHarness(t, pipeline)}
	f.srv.host = f.a
	f.url = "http://" + net.JoinHostPort(f.a.IP, "8080")
	f.temporal = net.JoinHostPort(f.a.IP, "7233")
	_, w := f.srv.background("server", "--listen", net.JoinHostPort(f.a.IP, "8080"), "--temporal-listen", f.temporal, "--no-runner", "--no-build")
	w.waitFor(t, `Sluice server at `+f.url, 2*time.Minute)
	f.token = strings.TrimSpace(f.srv.sluiceOut("server", "token", "create", "--user", "alice"))
	f.bare = filepath.Join(t.TempDir(), "project.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", f.bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	f.srv.sluice("hook", "install", f.bare, "--server", f.url)
	f.cli = &harness{t: t, bin: f.srv.bin, home: t.TempDir(), repo: f.srv.repo, host: f.a}
	f.cli.env = append(f.srv.env[:len(f.srv.env):len(f.srv.env)], "SLUICE_HOME="+f.cli.home, "SLUICE_TOKEN="+f.token)
	return f
}

// runner starts sluice runner on h (see runnerOn).
func (f *fleet) runner(h *netns.Host, name, labels string, flags ...string) (*exec.Cmd, *lineWaiter, string) {
	f.t.Helper()
	return runnerOn(f.t, f.srv, h, f.temporal, f.url, f.token, name, labels, flags...)
}

// push pushes the project: its hook reports to the server.
func (f *fleet) push() {
	f.t.Helper()
	push := f.a.Command("git", "-C", f.srv.repo, "push", "-q", f.bare, "main")
	push.Env = append(f.srv.env[:len(f.srv.env):len(f.srv.env)], "SLUICE_TOKEN="+f.token)
	if out, err := push.CombinedOutput(); err != nil || !strings.Contains(string(out), "queued") {
		f.t.Fatalf("git push: %v\n%s", err, out)
	}
}

// runOf waits for the latest run of pipeline to be in one of states (any
// state when none are given) and returns its ID.
func (f *fleet) runOf(pipeline string, timeout time.Duration, states ...string) string {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := f.cli.sluiceOut("runs", "--pipeline", pipeline, "--server", f.url)
		if l := strings.Split(out, "\n"); len(l) > 1 && strings.HasPrefix(l[0], "RUN") {
			// RUN PIPELINE REF SHA STATUS ...
			if fs := strings.Fields(l[1]); len(fs) > 4 && fs[1] == pipeline && (len(states) == 0 || slices.Contains(states, fs[4])) {
				return fs[0]
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("no run of %s in %v after %s:\n%s", pipeline, states, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// succeeded waits until the run succeeds and returns its ID.
func (f *fleet) succeeded(timeout time.Duration) string {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := f.cli.sluiceOut("runs", "--server", f.url)
		if strings.Contains(out, "succeeded") {
			for _, w := range strings.Fields(out) {
				if strings.Contains(w, "-") && len(w) > 16 {
					return w
				}
			}
			return ""
		}
		if strings.Contains(out, "failed") || time.Now().After(deadline) {
			f.t.Fatalf("the run did not succeed:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestRunnersAcrossHosts: the server and its Temporal on host A, runners
// on B and C (labels red) and D (blue). Stages go by label; the runner
// holding red is lost (every process of its host killed with SIGKILL)
// mid-step: within the heartbeat timeout the stage starts again, from its
// first step, on the other red runner, the run says so, and succeeds. A
// runner drained mid-step (SIGTERM) lets the step finish and exits 0; an
// idle one exits at once.
func TestRunnersAcrossHosts(t *testing.T) {
	n := netns.New(t)
	f := startFleet(t, n, fleetPipeline)
	srv, url, temporal, token := f.srv, f.url, f.temporal, f.token
	hosts := map[string]*netns.Host{"b": n.Host("b"), "c": n.Host("c"), "d": n.Host("d")}

	cli := f.cli
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out, _ := cli.command("runs", "--server", url).CombinedOutput()
		t.Logf("runs:\n%s", out)
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "fleet-") {
				st, _ := cli.command("status", f, "--server", url, "-o", "json").CombinedOutput()
				t.Logf("status of %s:\n%s", f, st)
			}
		}
		b, _ := os.ReadFile(filepath.Join(srv.home, "sluice.log"))
		t.Logf("server log:\n%s", b)
	})

	works := map[string]string{}
	cmds := map[string]*exec.Cmd{}
	waiters := map[string]*lineWaiter{}
	for name, labels := range map[string]string{"b": "linux,red", "c": "linux,red", "d": "linux,blue"} {
		cmds[name], waiters[name], works[name] = runnerOn(t, srv, hosts[name], temporal, url, token, "runner-"+name, labels)
	}
	runnerOf := func(workspace string) string {
		for name, dir := range works {
			if strings.HasPrefix(workspace, dir+string(filepath.Separator)) {
				return name
			}
		}
		return "?"
	}

	hold := filepath.Join(srv.counters, "hold")
	os.WriteFile(hold, nil, 0o644)
	f.push()
	first := runnerOf(waitLines(t, srv, "red", 1, 40*time.Second)[0])
	if first != "b" && first != "c" {
		t.Fatalf("red ran on runner %q, not a red runner", first)
	}
	other := map[string]string{"b": "c", "c": "b"}[first]

	// sluice runners shows the three online, and which one runs red.
	waitRunners(t, cli, url, func(rs []runnerRow) bool {
		online, busy := 0, false
		for _, r := range rs {
			if r.Online {
				online++
			}
			if r.Name == "runner-"+first && r.State == "busy" && len(r.Stages) == 1 && strings.HasSuffix(r.Stages[0], "/red") && strings.Join(r.Labels, ",") == "linux,red" {
				busy = true
			}
		}
		return online == 3 && busy
	})

	// The host of the runner holding red is lost.
	lostAt := time.Now()
	hosts[first].KillAll()
	red := waitLines(t, srv, "red", 2, 2*time.Minute)
	if runnerOf(red[1]) != other {
		t.Fatalf("after runner-%s was lost, red ran again on %q, want runner-%s", first, runnerOf(red[1]), other)
	}
	took := time.Since(lostAt)
	t.Logf("runner-%s lost: red restarted on runner-%s after %s", first, other, took.Round(time.Second))
	if took > 45*time.Second {
		t.Errorf("the lost runner's stage restarted after %s; the heartbeat timeout is 30 s", took)
	}
	// From its first step: the new runner's workspace is new.
	if f := lines(srv, "red-first"); len(f) != 2 || runnerOf(f[1]) != other {
		t.Errorf("red's first step ran on %v, want again on runner-%s", f, other)
	}

	// Drain the runner now holding red, mid-step: it takes nothing more,
	// the step finishes, and it exits 0.
	if err := cmds[other].Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waiters[other].waitFor(t, `Draining: taking no more stages; waiting up to .* for 1 running`, 30*time.Second)
	os.Remove(hold)
	waiters[other].waitFor(t, `Drained: no stage left; stopped.`, time.Minute)
	if err := cmds[other].Wait(); err != nil {
		t.Errorf("the drained runner exited with %v, want 0", err)
	}

	// The run succeeds, blue on D; the run says where red went.
	var runID string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := cli.sluiceOut("runs", "--server", url)
		if f := strings.Fields(out); strings.Contains(out, "succeeded") {
			for _, w := range f {
				if strings.HasPrefix(w, "fleet-") {
					runID = w
				}
			}
			break
		}
		if strings.Contains(out, "failed") || time.Now().After(deadline) {
			t.Fatalf("the run did not succeed:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if b := lines(srv, "blue"); len(b) != 1 || runnerOf(b[0]) != "d" {
		t.Errorf("blue ran on %v, want once on runner-d", b)
	}
	status := cli.sluiceOut("status", runID, "--server", url, "-o", "json")
	want := fmt.Sprintf(`runner \"runner-%s\" lost during step \"work\"`, first)
	if !strings.Contains(status, want) || !strings.Contains(status, fmt.Sprintf(`stage restarted on runner \"runner-%s\"`, other)) {
		t.Errorf("the run does not say red was restarted (%s):\n%s", want, status)
	}

	// The step's log, written on runner C's host, is on the server.
	if out := cli.sluiceOut("logs", runID, "red/work", "--server", url); !strings.Contains(out, "red runs in "+works[other]) {
		t.Errorf("the log of red/work on the server does not say it ran on runner-%s:\n%s", other, out)
	}

	// The lost runner goes offline; the drained one said it stopped.
	waitRunners(t, cli, url, func(rs []runnerRow) bool {
		gone, stopped := false, false
		for _, r := range rs {
			gone = gone || r.Name == "runner-"+first && !r.Online
			stopped = stopped || r.Name == "runner-"+other && r.State == "stopped" && !r.Online
		}
		return gone && stopped
	})

	// An idle runner drains at once.
	start := time.Now()
	cmds["d"].Process.Signal(os.Interrupt)
	waiters["d"].waitFor(t, `Drained: no stage left; stopped.`, 30*time.Second)
	if err := cmds["d"].Wait(); err != nil || time.Since(start) > 10*time.Second {
		t.Errorf("the idle runner exited with %v after %s", err, time.Since(start))
	}
}

const resumePipeline = `
pipeline "resume" {
  on "push" { branches = ["main"] }
}

variable "counters" {}

stage "build" {
  runs_on = ["red"]
  step "run" "one" {
    script = "echo one >> ${var.counters}/one"
  }
  step "run" "two" {
    script = <<-EOT
      date +%s.%N >> ${var.counters}/two
      while [ -e ${var.counters}/hold ]; do sleep 0.1; done
    EOT
  }
}
`

// TestRunnerRestartInPlace: a runner host crashes (every process killed
// with SIGKILL) mid-step and the runner starts again there with the same
// name and work dir: the stage goes on at once, without waiting for the
// heartbeat timeout, and the step that had finished does not run again.
func TestRunnerRestartInPlace(t *testing.T) {
	n := netns.New(t)
	f := startFleet(t, n, resumePipeline)
	srv, temporal := f.srv, f.temporal
	b := n.Host("runner")

	work := filepath.Join(t.TempDir(), "work")
	r := &harness{t: t, bin: srv.bin, home: t.TempDir(), repo: srv.repo, counters: srv.counters, host: b}
	r.env = append(srv.env[:len(srv.env):len(srv.env)], "SLUICE_HOME="+r.home)
	start := func() *lineWaiter {
		_, w := r.background("runner", "--temporal-address", temporal, "--name", "runner-b", "--labels", "red", "--work-dir", work)
		w.waitFor(t, `Sluice runner runner-b `, time.Minute)
		return w
	}
	start()
	hold := filepath.Join(srv.counters, "hold")
	os.WriteFile(hold, nil, 0o644)
	f.push()
	waitLines(t, srv, "two", 1, time.Minute)

	b.KillAll()
	restarted := time.Now()
	start()
	waitLines(t, srv, "two", 2, time.Minute)
	took := time.Since(restarted)
	t.Logf("the stage went on %s after the runner started again", took.Round(10*time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the stage went on %s after the runner started again; want under 3 s", took.Round(10*time.Millisecond))
	}
	os.Remove(hold)
	f.succeeded(time.Minute)
	if got := srv.count("one"); got != 1 {
		t.Errorf("step one ran %d times, want 1 (it had finished before the crash)", got)
	}
}

type runnerRow struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels"`
	Stages []string `json:"stages"`
	State  string   `json:"state"`
	Online bool     `json:"online"`
}

// waitRunners waits until sluice runners --server shows what ok wants.
func waitRunners(t *testing.T, cli *harness, url string, ok func([]runnerRow) bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		out = cli.sluiceOut("runners", "--server", url, "-o", "json")
		var rs []runnerRow
		if json.Unmarshal([]byte(out), &rs) == nil && ok(rs) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("sluice runners never showed what was expected:\n%s", out)
}

const partitionPipeline = `
pipeline "partition" {
  on "push" { branches = ["main"] }
}

variable "counters" {}

stage "build" {
  runs_on = ["red"]
  step "run" "long" {
    script = <<-EOT
      echo started >> ${var.counters}/long
      while [ -e ${var.counters}/hold ]; do sleep 0.1; done
      echo finished >> ${var.counters}/long-done
    EOT
  }
  step "run" "after" {
    script = "echo after >> ${var.counters}/after"
  }
}
`

// TestFrontendUnreachable: the server's host (Temporal's frontend) cut off
// from the network for a minute while a runner runs a step, which ends
// meanwhile: when the network is back the runner reconnects, the stage goes
// on from the runner's journal, the step that ended is not run again, and
// the run succeeds.
func TestFrontendUnreachable(t *testing.T) {
	n := netns.New(t)
	f := startFleet(t, n, partitionPipeline)
	srv, a, url, temporal, token := f.srv, f.a, f.url, f.temporal, f.token
	b := n.Host("runner")
	runnerOn(t, srv, b, temporal, url, token, "runner-b", "red")

	hold := filepath.Join(srv.counters, "hold")
	os.WriteFile(hold, nil, 0o644)
	f.push()
	waitLines(t, srv, "long", 1, time.Minute)

	// A minute without the server's host; the step ends in the middle.
	a.LinkDown()
	time.Sleep(20 * time.Second)
	os.Remove(hold)
	waitLines(t, srv, "long-done", 1, 10*time.Second)
	time.Sleep(40 * time.Second)
	a.LinkUp()

	f.succeeded(2 * time.Minute)
	if got := srv.count("long"); got != 1 {
		t.Errorf("the long step started %d times, want 1: it ended while the server was cut off, and its runner's journal kept that", got)
	}
	if got := srv.count("after"); got != 1 {
		t.Errorf("the step after ran %d times, want 1", got)
	}
}

// TestRunnerStopTwice: a second SIGTERM to a draining runner cancels its
// running step at once and the stage starts again on another runner
// without waiting for a heartbeat timeout; that runner, started with
// --once, exits 0 after the stage.
func TestRunnerStopTwice(t *testing.T) {
	n := netns.New(t)
	f := startFleet(t, n, resumePipeline)
	srv, url, temporal, token := f.srv, f.url, f.temporal, f.token
	b := n.Host("b")
	c := n.Host("c")
	bCmd, bOut, _ := runnerOn(t, srv, b, temporal, url, token, "runner-b", "red")

	hold := filepath.Join(srv.counters, "hold")
	os.WriteFile(hold, nil, 0o644)
	f.push()
	waitLines(t, srv, "two", 1, time.Minute)

	// runner-c, for one stage only, is up before B stops.
	r := &harness{t: t, bin: srv.bin, home: t.TempDir(), repo: srv.repo, counters: srv.counters, host: c}
	r.env = append(srv.env[:len(srv.env):len(srv.env)], "SLUICE_HOME="+r.home, "SLUICE_TOKEN="+token)
	cCmd, cOut := r.background("runner", "--temporal-address", temporal, "--server", url, "--name", "runner-c", "--labels", "red", "--work-dir", filepath.Join(t.TempDir(), "c"), "--once")
	cOut.waitFor(t, `Sluice runner runner-c `, time.Minute)

	bCmd.Process.Signal(os.Interrupt)
	bOut.waitFor(t, `Draining: taking no more stages; waiting up to .* for 1 running`, 30*time.Second)
	stopped := time.Now()
	bCmd.Process.Signal(os.Interrupt)
	bOut.waitFor(t, `Cancelling the running steps; their stages start again on another runner.`, 30*time.Second)
	if err := bCmd.Wait(); err == nil {
		t.Error("the runner stopped twice exited 0, want 1")
	}
	waitLines(t, srv, "two", 2, time.Minute)
	took := time.Since(stopped)
	t.Logf("the stage started again on runner-c %s after the second SIGTERM", took.Round(10*time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("the stage started again %s after the second SIGTERM; it should not wait for the heartbeat timeout (30 s)", took)
	}
	os.Remove(hold)
	cOut.waitFor(t, `Took a stage \(--once\)`, time.Minute)
	cOut.waitFor(t, `Drained: no stage left; stopped.`, time.Minute)
	if err := cCmd.Wait(); err != nil {
		t.Errorf("the --once runner exited with %v, want 0", err)
	}
	if got := srv.count("one"); got != 2 {
		t.Errorf("step one ran %d times, want 2 (the stage started again from its first step on another runner)", got)
	}
}

// Two pipelines of one repository (ship at its root, gpu in gpu/): ship
// makes a file on a red runner and hands it to a blue one as an artifact
// through the registry the runners share; gpu needs a label no runner has.
const shipPipeline = `
pipeline "ship" {
  on "push" { branches = ["main"] }
}

variable "counters" {}

stage "make" {
  runs_on   = ["red"]
  artifacts = ["out/*"]
  step "run" "compile" {
    script = <<-EOT
      mkdir -p out
      echo "made in $SLUICE_WORKSPACE" > out/app.txt
      echo $SLUICE_WORKSPACE >> ${var.counters}/make
    EOT
  }
}

stage "use" {
  runs_on = ["blue"]
  needs   = [stage.make]
  step "run" "unpack" {
    script = <<-EOT
      cat out/app.txt >> ${var.counters}/received
      echo $SLUICE_WORKSPACE >> ${var.counters}/use
    EOT
  }
}
`

const gpuPipeline = `
pipeline "gpu" {
  on "push" { branches = ["main"] }
}

stage "train" {
  runs_on       = ["gpu"]
  queue_timeout = "10s"
  step "run" "fit" {
    command = ["echo", "training"]
  }
}
`

// TestArtifactsAcrossHosts: a registry on host A, runners on B (red) and C
// (blue) that share it. The artifact made on B reaches C's workspace
// through the registry, where it stays tagged by run and stage. The stage
// of the other pipeline, whose label no runner has, says so while it waits
// and fails when its queue_timeout passes.
func TestArtifactsAcrossHosts(t *testing.T) {
	n := netns.New(t)
	f := startFleet(t, n, shipPipeline)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := f.cli.command("runs", "--server", f.url).CombinedOutput()
			b, _ := os.ReadFile(filepath.Join(f.srv.home, "sluice.log"))
			t.Logf("runs:\n%s\nserver log:\n%s", out, b)
		}
	})
	os.MkdirAll(filepath.Join(f.srv.repo, "gpu", ".sluice"), 0o755)
	os.WriteFile(filepath.Join(f.srv.repo, "gpu", ".sluice", "p.hcl"), []byte(gpuPipeline), 0o644)
	for _, args := range [][]string{{"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "gpu"}} {
		if out, err := exec.Command("git", append([]string{"-C", f.srv.repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}

	// The team's registry: a real one (distribution), on host A.
	regAddr := net.JoinHostPort(f.a.IP, "5000")
	ln, err := f.a.Listen("tcp", regAddr)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Serve(registry.ServeOptions{Dir: t.TempDir(), Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)

	_, _, workB := f.runner(n.Host("b"), "runner-b", "linux,red", "--registry", regAddr)
	_, _, workC := f.runner(n.Host("c"), "runner-c", "linux,blue", "--registry", regAddr)
	f.push()

	// gpu waits, and says why, while no runner has its label.
	gpu := f.runOf("gpu", time.Minute)
	waitStatus := func(id, want string, timeout time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			out := f.cli.sluiceOut("status", id, "--server", f.url)
			if strings.Contains(out, want) {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("status of %s does not say %q after %s:\n%s", id, want, timeout, out)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	waitStatus(gpu, "waiting: no runner with labels [gpu] is online", 20*time.Second)

	// ship succeeds: made on B, used on C, with B's file.
	ship := f.runOf("ship", 2*time.Minute, "succeeded", "failed")
	if out := f.cli.sluiceOut("status", ship, "--server", f.url); !strings.Contains(out, "Run "+ship+" succeeded") {
		t.Fatalf("ship did not succeed:\n%s", out)
	}
	made, used := lines(f.srv, "make"), lines(f.srv, "use")
	if len(made) != 1 || !strings.HasPrefix(made[0], workB+"/") || len(used) != 1 || !strings.HasPrefix(used[0], workC+"/") {
		t.Fatalf("make ran in %v (want under runner-b's %s), use in %v (want under runner-c's %s)", made, workB, used, workC)
	}
	got, _ := os.ReadFile(filepath.Join(f.srv.counters, "received"))
	if want := "made in " + made[0] + "\n"; string(got) != want {
		t.Fatalf("use read %q from the artifact, want %q", got, want)
	}
	// The artifact is in the shared registry, tagged by run and stage.
	resp, err := f.a.HTTPClient().Get("http://" + regAddr + "/v2/sluice/artifacts/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tags struct{ Tags []string }
	if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tags.Tags, ship+"-make") {
		t.Errorf("the registry's sluice/artifacts has tags %v, want %s-make", tags.Tags, ship)
	}

	// gpu fails when its queue_timeout passes, saying what to do.
	f.runOf("gpu", time.Minute, "succeeded", "failed")
	out := f.cli.sluiceOut("status", gpu, "--server", f.url)
	if !strings.Contains(out, "no runner with labels [gpu] took the stage within 10s (queue_timeout); start one (sluice runner --labels gpu)") {
		t.Errorf("gpu's status does not say why it failed:\n%s", out)
	}
}
