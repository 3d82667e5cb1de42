package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/testing/netns"
)

// These tests run the real binaries as a user would, crash them with
// SIGKILL, and check that runs go on where they stopped. They need a few
// minutes (a crashed step is noticed when its heartbeat times out), so they
// are skipped with -short.

type harness struct {
	t        *testing.T
	bin      string
	home     string
	repo     string
	counters string
	env      []string
	// host, when set, is the machine (internal/testing/netns) the commands run on.
	host *netns.Host
}

func newHarness(t *testing.T, pipeline string) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("durability tests start real servers and crash them; skipped with -short")
	}
	h := &harness{t: t, bin: buildBinaries(t), home: t.TempDir(), repo: t.TempDir(), counters: t.TempDir()}
	h.env = append(os.Environ(), "SLUICE_HOME="+h.home, "SLUICE_VAR_counters="+h.counters, "SLUICE_TEMPORAL_BIN="+filepath.Join(h.bin, "sluice-temporal"))
	// The first command starts the home's server in the background; the
	// test stops whatever server runs for the home when it ends.
	t.Cleanup(h.stopServer)
	os.MkdirAll(filepath.Join(h.repo, ".sluice"), 0o755)
	os.WriteFile(filepath.Join(h.repo, ".sluice", "p.hcl"), []byte(pipeline), 0o644)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "pipeline"}} {
		if out, err := exec.Command("git", append([]string{"-C", h.repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return h
}

var built string

// buildBinaries builds sluice and sluice-temporal once per test process,
// unless $SLUICE_TEST_BIN names a directory that holds both (built from
// this tree: linking sluice-temporal takes a while).
func buildBinaries(t *testing.T) string {
	t.Helper()
	if built != "" {
		return built
	}
	if dir := os.Getenv("SLUICE_TEST_BIN"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			t.Fatal(err)
		}
		built = abs
		return built
	}
	dir, err := os.MkdirTemp("", "sluice-bin-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/sluice-ci/sluice/cmd/sluice", "github.com/sluice-ci/sluice/cmd/sluice-temporal").CombinedOutput()
	if err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	built = dir
	return dir
}

func (h *harness) command(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(h.bin, "sluice"), args...)
	if h.host != nil {
		cmd = h.host.Command(filepath.Join(h.bin, "sluice"), args...)
	}
	cmd.Dir = h.repo
	cmd.Env = h.env
	return cmd
}

// sluice runs a command to completion and returns its output.
func (h *harness) sluice(args ...string) string {
	h.t.Helper()
	out, err := h.command(args...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// background starts a command and returns it with a scanner of its stdout.
func (h *harness) background(args ...string) (*exec.Cmd, *lineWaiter) {
	h.t.Helper()
	cmd := h.command(args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	w := &lineWaiter{lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	h.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	return cmd, w
}

type lineWaiter struct {
	lines chan string
	seen  []string
}

// waitFor returns the first submatch of the first line matching re.
func (w *lineWaiter) waitFor(t *testing.T, re string, timeout time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				t.Fatalf("output ended before %q:\n%s", re, strings.Join(w.seen, "\n"))
			}
			w.seen = append(w.seen, line)
			if m := rx.FindStringSubmatch(line); m != nil {
				if len(m) > 1 {
					return m[1]
				}
				return m[0]
			}
		case <-deadline:
			t.Fatalf("no line matching %q within %s:\n%s", re, timeout, strings.Join(w.seen, "\n"))
		}
	}
}

// serverPID is the pid of the server that runs for the home, or 0.
func (h *harness) serverPID() int {
	var rec struct{ PID int }
	if b, err := os.ReadFile(filepath.Join(h.home, "server", "http.json")); err == nil {
		_ = json.Unmarshal(b, &rec)
	}
	if rec.PID > 0 && syscall.Kill(rec.PID, 0) == nil {
		return rec.PID
	}
	return 0
}

// stopServer stops the home's server, as sluice server stop does, and
// kills it if it does not stop.
func (h *harness) stopServer() {
	pid := h.serverPID()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// crash kills sluice and the home's server (which the first command
// started in the background) with SIGKILL, and waits until the embedded
// Temporal server is gone too.
func (h *harness) crash(cmd *exec.Cmd) {
	h.t.Helper()
	server := h.serverPID()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if server != 0 {
		_ = syscall.Kill(server, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("pgrep", "-f", filepath.Join(h.home, "temporal")).Output()
		// The killed server is gone once init has reaped it: until then
		// its records still look alive.
		if len(bytes.TrimSpace(out)) == 0 && (server == 0 || syscall.Kill(server, 0) != nil) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatal("the embedded Temporal server outlived the sluice server that started it")
}

// count returns how many times a step recorded that it ran.
func (h *harness) count(name string) int {
	b, _ := os.ReadFile(filepath.Join(h.counters, name))
	return strings.Count(string(b), "\n")
}

func (h *harness) waitFile(name string, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(h.counters, name)); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("%s did not appear within %s", name, timeout)
}

// finish follows a run until it ends, through whatever serves it now.
func (h *harness) finish(runID string) map[string]any {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.bin, "sluice"), "logs", runID, "-f")
	cmd.Dir, cmd.Env = h.repo, h.env
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("sluice logs -f: %v\n%s", err, out)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(h.sluice("status", runID, "-o", "json")), &st); err != nil {
		h.t.Fatal(err)
	}
	return st
}

const crashPipeline = `
pipeline "crash" {}

variable "counters" {}

stage "work" {
  step "run" "one" {
    script = "echo ran >> ${var.counters}/one"
  }
  step "run" "two" {
    script = "echo ran >> ${var.counters}/two; sleep 3"
  }
  step "run" "three" {
    script = "echo ran >> ${var.counters}/three"
  }
}

stage "after" {
  step "run" "four" {
    script = "echo ran >> ${var.counters}/four"
  }
}
`

// TestKillMidStepResumes kills the process holding the runner and the
// embedded server while a step runs. Started again (here as sluice dev),
// the run resumes at that step: the steps that had completed do not run
// again, and the run completes.
func TestKillMidStepResumes(t *testing.T) {
	h := newHarness(t, crashPipeline)
	run, out := h.background("run", "--progress", "plain")
	runID := out.waitFor(t, `^Run (\S+) of pipeline`, 2*time.Minute)
	h.waitFile("two", time.Minute)
	h.crash(run)
	if h.count("three") != 0 {
		t.Fatal("step three ran before the crash; the test did not crash mid-step")
	}

	_, dev := h.background("dev")
	dev.waitFor(t, `^Sluice dev:`, 2*time.Minute)
	st := h.finish(runID)
	if st["state"] != "succeeded" {
		t.Fatalf("run state after the restart = %v; want succeeded\n%s", st["state"], h.sluice("status", runID))
	}
	for name, want := range map[string]int{"one": 1, "three": 1, "four": 1} {
		if got := h.count(name); got != want {
			t.Errorf("step %s ran %d times; want %d", name, got, want)
		}
	}
	if got := h.count("two"); got < 1 || got > 2 {
		t.Errorf("step two ran %d times; want once, or twice when the crash interrupted it", got)
	}
}

const approvalPipeline = `
pipeline "gate" {}

variable "counters" {}

stage "build" {
  step "run" "build" {
    script = "echo ran >> ${var.counters}/build"
  }
}

stage "deploy" {
  approval {
    approvers = ["team:sre"]
    timeout   = "1h"
  }
  step "run" "deploy" {
    script = "echo ran >> ${var.counters}/deploy"
  }
}
`

// TestApprovalAcrossRestart waits for an approval, crashes, restarts, and
// approves: the gate still works, and nothing before it runs again.
func TestApprovalAcrossRestart(t *testing.T) {
	h := newHarness(t, approvalPipeline)
	run, out := h.background("run", "--progress", "plain")
	runID := out.waitFor(t, `^Run (\S+) of pipeline`, 2*time.Minute)
	out.waitFor(t, `deploy waits for approval`, time.Minute)
	h.crash(run)

	_, dev := h.background("dev")
	dev.waitFor(t, `^Sluice dev:`, 2*time.Minute)
	if got := h.sluice("approve", runID, "deploy", "--by", "alice", "--reason", "CHG-1"); !strings.Contains(got, "approved by alice") {
		t.Fatalf("approve said %q", got)
	}
	st := h.finish(runID)
	if st["state"] != "succeeded" {
		t.Fatalf("run state = %v; want succeeded", st["state"])
	}
	if b, d := h.count("build"), h.count("deploy"); b != 1 || d != 1 {
		t.Errorf("build ran %d times and deploy %d; want once each", b, d)
	}
	stages := fmt.Sprint(st["stages"])
	if !strings.Contains(stages, "alice") || !strings.Contains(stages, "CHG-1") {
		t.Errorf("the approval's who and why are not in the status: %s", stages)
	}
}
