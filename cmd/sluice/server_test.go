package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/runners/local"
)

// The server end to end, for real: a bare git repository with the hook
// sluice installs, git pushes of a project with a pipeline, the server
// running the runs with its own runner, and the server killed with
// SIGKILL right after it answered a push.

const pushPipeline = `
pipeline "web" {
  on "push" { branches = ["main"] }
  concurrency {
    group              = "web-${git.ref}"
    cancel_in_progress = true
  }
}

variable "counters" {}

stage "build" {
  step "run" "work" {
    script = <<-EOT
      echo ${git.sha} >> ${var.counters}/runs
      while [ -e ${var.counters}/hold ]; do sleep 0.1; done
    EOT
  }
}
`

type serverHarness struct {
	*harness
	bare, url, token string
	cmd              *exec.Cmd
	// args are more arguments of sluice server.
	args []string
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newServerHarness(t *testing.T, serverArgs ...string) *serverHarness {
	h := &serverHarness{harness: newHarness(t, pushPipeline), args: serverArgs}
	h.bare = filepath.Join(t.TempDir(), "web.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", h.bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	h.url = "http://" + freePort(t)
	h.startServer()
	h.sluice("hook", "install", h.bare, "--server", h.url)
	h.token = strings.TrimSpace(h.sluiceOut("server", "token", "create", "--user", "alice"))
	h.env = append(h.env, "SLUICE_TOKEN="+h.token)
	return h
}

func (h *serverHarness) startServer() {
	cmd, w := h.background(append([]string{"server", "--listen", strings.TrimPrefix(h.url, "http://"), "--no-build"}, h.args...)...)
	w.waitFor(h.t, `Sluice server at `, 2*time.Minute)
	h.cmd = cmd
}

// sluiceOut runs a command and returns its standard output only.
func (h *harness) sluiceOut(args ...string) string {
	h.t.Helper()
	cmd := h.command(args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("sluice %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// push commits a change in the project and pushes it to the bare
// repository; it returns the commit and what the hook printed.
func (h *serverHarness) push(change string) (sha, out string) {
	h.t.Helper()
	os.WriteFile(filepath.Join(h.repo, "change.txt"), []byte(change), 0o644)
	for _, args := range [][]string{{"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", change}} {
		if o, err := exec.Command("git", append([]string{"-C", h.repo}, args...)...).CombinedOutput(); err != nil {
			h.t.Fatalf("git %v: %v\n%s", args, err, o)
		}
	}
	b, err := exec.Command("git", "-C", h.repo, "rev-parse", "HEAD").Output()
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command("git", "-C", h.repo, "push", "-q", h.bare, "main")
	cmd.Env = h.env
	o, err := cmd.CombinedOutput()
	if err != nil {
		h.t.Fatalf("git push: %v\n%s", err, o)
	}
	return strings.TrimSpace(string(b)), string(o)
}

type apiRun struct {
	RunID        string `json:"run_id"`
	SHA          string `json:"sha"`
	Status       string `json:"status"`
	State        string `json:"state"`
	Error        string `json:"error"`
	SupersededBy string `json:"superseded_by"`
	Supersedes   []string
}

func (h *serverHarness) api(path string, v any) int {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			h.t.Fatalf("GET %s: %v\n%s", path, err, b)
		}
	}
	return resp.StatusCode
}

// runsOf lists the runs of a commit, as the API shows them.
func (h *serverHarness) runsOf(sha string) []apiRun {
	var list struct{ Runs []apiRun }
	h.api("/api/v1/runs?sha="+sha, &list)
	return list.Runs
}

// waitRun waits until a commit has a run in one of the states.
func (h *serverHarness) waitRun(sha string, states ...string) apiRun {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last []apiRun
	for time.Now().Before(deadline) {
		last = h.runsOf(sha)
		for _, r := range last {
			for _, s := range states {
				if r.Status == s {
					return r
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.t.Fatalf("commit %s has no run in %v within 2 minutes; runs: %+v", sha, states, last)
	return apiRun{}
}

func (h *serverHarness) status(runID string) apiRun {
	h.t.Helper()
	var st apiRun
	if code := h.api("/api/v1/runs/"+runID, &st); code != 200 {
		h.t.Fatalf("GET run %s: %d", runID, code)
	}
	return st
}

func TestServerGitPush(t *testing.T) {
	h := newServerHarness(t)
	hold := filepath.Join(h.counters, "hold")
	os.WriteFile(hold, nil, 0o644)

	// A push starts the pipeline's run; the pusher sees that it was queued.
	first, out := h.push("one")
	if !strings.Contains(out, "sluice: refs/heads/main: queued") {
		t.Fatalf("the hook did not report the push as queued:\n%s", out)
	}
	r1 := h.waitRun(first, "running")
	h.waitFile("runs", time.Minute)

	// A second quick push to the same branch cancels the first run
	// (cancel_in_progress), and both runs say so.
	second, _ := h.push("two")
	r2 := h.waitRun(second, "running", "queued", "pending")
	os.Remove(hold)
	r2 = h.waitRun(second, "succeeded")
	st1 := h.status(r1.RunID)
	if st1.State != "cancelled" || st1.SupersededBy != r2.RunID || !strings.Contains(st1.Error, "superseded by run "+r2.RunID) {
		t.Errorf("the first run is %s, superseded by %q (%s); want cancelled, superseded by %s", st1.State, st1.SupersededBy, st1.Error, r2.RunID)
	}
	if st2 := h.status(r2.RunID); len(st2.Supersedes) != 1 || st2.Supersedes[0] != r1.RunID {
		t.Errorf("the second run supersedes %q, want [%s]", st2.Supersedes, r1.RunID)
	}
	// A reviewer sees them with the CLI through the API.
	if out := h.sluiceOut("runs", "--server", h.url); !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(r2.RunID)+` +web +refs/heads/main +`+second[:7]+` +succeeded`).MatchString(out) || !strings.Contains(out, r1.RunID) {
		t.Errorf("sluice runs --server does not show %s succeeded and %s:\n%s", r2.RunID, r1.RunID, out)
	}
	// The server's own runner is listed with the standalone ones.
	if out := h.sluiceOut("runners", "--server", h.url); !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(local.DefaultRunnerName()) + ` +yes `).MatchString(out) {
		t.Errorf("sluice runners --server does not list the server's runner %s online:\n%s", local.DefaultRunnerName(), out)
	}
	// The second run ran the second commit, cloned from the bare repository.
	if b, _ := os.ReadFile(filepath.Join(h.counters, "runs")); !strings.HasSuffix(string(b), second+"\n") {
		t.Errorf("runs recorded %q; the last should be %s", b, second)
	}

	// The same push reported again (the hook run by hand) starts nothing.
	again := exec.Command(filepath.Join(h.bin, "sluice"), "hook", "post-receive")
	again.Dir, again.Env = h.bare, h.env
	again.Stdin = strings.NewReader(fmt.Sprintf("%s %s refs/heads/main\n", first, second))
	if o, err := again.CombinedOutput(); err != nil || !strings.Contains(string(o), "already received") {
		t.Errorf("reporting the push again: %v\n%s", err, o)
	}
	if runs := h.runsOf(second); len(runs) != 1 {
		t.Errorf("commit %s has %d runs after the same push was reported twice, want 1: %+v", second, len(runs), runs)
	}

	// The server killed right after it answered a push: started again, it
	// runs that push exactly once.
	third, out := h.push("three")
	if !strings.Contains(out, "queued") {
		t.Fatalf("the hook did not report the third push as queued:\n%s", out)
	}
	h.crash(h.cmd)
	h.startServer()
	r3 := h.waitRun(third, "succeeded")
	if runs := h.runsOf(third); len(runs) != 1 {
		t.Errorf("commit %s has %d runs after the server was killed and restarted, want 1: %+v", third, len(runs), runs)
	}
	b, _ := os.ReadFile(filepath.Join(h.counters, "runs"))
	if n := strings.Count(string(b), third); n != 1 {
		t.Errorf("the step of commit %s ran %d times, want 1 (run %s)", third, n, r3.RunID)
	}
}
