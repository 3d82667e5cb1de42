package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"

	"github.com/sluice-ci/sluice/internal/testing/netns"
)

// Issue 11's speed goals, measured across hosts (network namespaces of
// internal/testing/netns): sluice server --no-runner on host A, standalone
// runners on other hosts. These are benchmarks, not tests: they run only
// with SLUICE_BENCH=1 (scripts/bench/runner-pickup.sh sets it), print one
// "BENCH" line per figure and, with SLUICE_BENCH_OUT set, append them to
// that file. SLUICE_BENCH_BIN names a directory holding sluice and
// sluice-temporal to use instead of building them. By default a one-stage
// run of the same labels goes before the measured one (warmUp), so that
// it is a steady state's; SLUICE_BENCH_COLD=1 measures the first run of
// the labels instead. SLUICE_BENCH_PIN=1 puts the server on CPU 0 and the
// runners on CPU 1 (benchPin); SLUICE_BENCH_GIT_TRACE=1 times the
// runners' git processes (gits). SLUICE_BENCH_STAGES, _INSTANCES,
// _RUNNERS and _MAX_STAGES change the sizes.
//
// Clocks: every namespace shares the machine's clock, so the steps' own
// timestamps (date +%s%N), the runners' step times, the workflow's times
// and Temporal's event times are comparable to the nanosecond.

// benchSkip skips a benchmark unless SLUICE_BENCH=1.
func benchSkip(t *testing.T) {
	t.Helper()
	if os.Getenv("SLUICE_BENCH") != "1" {
		t.Skip("a benchmark: runs only with SLUICE_BENCH=1 (scripts/bench/runner-pickup.sh)")
	}
	if dir := os.Getenv("SLUICE_BENCH_BIN"); dir != "" && built == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{"sluice", "sluice-temporal"} {
			if _, err := os.Stat(filepath.Join(abs, b)); err != nil {
				t.Fatalf("SLUICE_BENCH_BIN: %v", err)
			}
		}
		built = abs
	}
}

// benchPickupPipeline is n stages in a chain, each one step that writes
// when it began.
func benchPickupPipeline(n int) string {
	return benchChainPipeline("pickup", `on "push" { branches = ["main"] }`, "", n)
}

// benchChainPipeline is pipeline name (its trigger on) of n stages in a
// chain, each one step that writes its stage, after prefix (shell words),
// and when it began to the counters' stamps.
func benchChainPipeline(name, on, prefix string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pipeline %q {\n  %s\n}\n\nvariable \"counters\" {}\n", name, on)
	for i := range n {
		fmt.Fprintf(&b, "\nstage \"s%03d\" {\n  runs_on = [\"bench\"]\n", i)
		if i > 0 {
			fmt.Fprintf(&b, "  needs   = [stage.s%03d]\n", i-1)
		}
		fmt.Fprintf(&b, "  step \"run\" \"t%03d\" {\n    script = \"echo %ss%03d $(date +%%s%%N) >> ${var.counters}/stamps\"\n  }\n}\n", i, prefix, i)
	}
	return b.String()
}

// benchFanoutPipeline is one stage of an n-instance matrix (the list
// written out) of a step that writes when it began.
func benchFanoutPipeline(n int) string {
	is := make([]string, n)
	for i := range is {
		is[i] = strconv.Itoa(i)
	}
	return `pipeline "fanout" {
  on "push" { branches = ["main"] }
}

variable "counters" {}

stage "fan" {
  runs_on = ["bench"]
  matrix {
    i = [` + strings.Join(is, ", ") + `]
  }
  step "run" "noop" {
    script = "echo ${matrix.i} $(date +%s%N) >> ${var.counters}/stamps"
  }
}
`
}

// benchEnv is a server on host A and what talks to it.
type benchEnv struct {
	t        *testing.T
	srv, cli *harness
	a        *netns.Host
	url      string
	temporal string
	token    string
	bare     string
	// pids are the processes whose CPU is counted: the server, its
	// Temporal and the runners, by name.
	pids map[string]int
	// gitTrace, when set, is where the runners' git processes write their
	// trace2 events (SLUICE_BENCH_GIT_TRACE=1).
	gitTrace string
}

// benchServer starts sluice server --no-runner on a new host A, with a
// bare repository whose hook reports pushes to it; args are more
// arguments of sluice server.
func benchServer(t *testing.T, n *netns.Net, pipeline string, args ...string) *benchEnv {
	t.Helper()
	a := n.Host("server")
	srv := newHarness(t, pipeline)
	srv.host = a
	e := &benchEnv{t: t, srv: srv, a: a, url: "http://" + net.JoinHostPort(a.IP, "8080"), temporal: net.JoinHostPort(a.IP, "7233")}
	cmd, w := srv.background(append([]string{"server", "--listen", net.JoinHostPort(a.IP, "8080"), "--temporal-listen", e.temporal, "--no-runner", "--no-build"}, args...)...)
	w.waitFor(t, `Sluice server at `+e.url, 2*time.Minute)
	e.pids = map[string]int{"server": cmd.Process.Pid, "temporal": benchFindProc(t, "sluice-temporal", srv.home)}
	benchPin(t, "0", e.pids["server"], e.pids["temporal"])
	e.token = strings.TrimSpace(srv.sluiceOut("server", "token", "create", "--user", "bench"))
	e.bare = filepath.Join(t.TempDir(), "bench.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", e.bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	srv.sluice("hook", "install", e.bare, "--server", e.url)
	e.cli = &harness{t: t, bin: srv.bin, home: t.TempDir(), repo: srv.repo, host: a}
	e.cli.env = append(srv.env[:len(srv.env):len(srv.env)], "SLUICE_HOME="+e.cli.home, "SLUICE_TOKEN="+e.token)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, f := range []string{"sluice.log", "temporal.log"} {
			b, _ := os.ReadFile(filepath.Join(srv.home, f))
			l := strings.Split(string(b), "\n")
			t.Logf("the server's %s, last lines:\n%s", f, strings.Join(l[max(len(l)-60, 0):], "\n"))
		}
	})
	if os.Getenv("SLUICE_BENCH_GIT_TRACE") == "1" {
		e.gitTrace = filepath.Join(t.TempDir(), "git-trace.json")
	}
	return e
}

// runner starts sluice runner on host h, labels bench, and waits until
// it says it is up.
func (e *benchEnv) runner(h *netns.Host, name string, maxStages int) {
	e.t.Helper()
	r := &harness{t: e.t, bin: e.srv.bin, home: e.t.TempDir(), repo: e.srv.repo, counters: e.srv.counters, host: h}
	r.env = append(e.srv.env[:len(e.srv.env):len(e.srv.env)], "SLUICE_HOME="+r.home, "SLUICE_TOKEN="+e.token)
	if e.gitTrace != "" {
		r.env = append(r.env, "GIT_TRACE2_EVENT="+e.gitTrace)
	}
	work := filepath.Join(e.t.TempDir(), name)
	cmd, w := r.background("runner", "--temporal-address", e.temporal, "--server", e.url, "--name", name, "--labels", "bench",
		"--work-dir", work, "--max-stages", strconv.Itoa(maxStages))
	e.t.Cleanup(func() {
		// What went wrong, when something did: the runner's warnings.
		if b, _ := os.ReadFile(filepath.Join(work, "sluice.log")); e.t.Failed() && len(b) > 0 {
			e.t.Logf("%s's log:\n%s", name, b)
		}
	})
	w.waitFor(e.t, `Sluice runner `+name+` `, time.Minute)
	e.pids[name] = cmd.Process.Pid
	benchPin(e.t, "1", cmd.Process.Pid)
}

// waitOnline waits until n runners are online and idle.
func (e *benchEnv) waitOnline(n int) {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		out = e.cli.sluiceOut("runners", "--server", e.url, "-o", "json")
		var rs []struct {
			Online bool   `json:"online"`
			State  string `json:"state"`
		}
		idle := 0
		if json.Unmarshal([]byte(out), &rs) == nil {
			for _, r := range rs {
				if r.Online && r.State == "idle" {
					idle++
				}
			}
		}
		if idle == n {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	e.t.Fatalf("%d runners were never online and idle:\n%s", n, out)
}

// push pushes the project's main branch to the bare repository from host
// A (its hook starts the run) and returns when the push returned.
func (e *benchEnv) push() time.Time {
	e.t.Helper()
	push := e.a.Command("git", "-C", e.srv.repo, "push", "-q", e.bare, "main")
	push.Env = append(e.srv.env[:len(e.srv.env):len(e.srv.env)], "SLUICE_TOKEN="+e.token)
	out, err := push.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "queued") {
		e.t.Fatalf("git push: %v\n%s", err, out)
	}
	return time.Now()
}

const benchWarmPipeline = `
pipeline "warmup" {
  on "push" { branches = ["main"] }
}

stage "warm" {
  runs_on = ["bench"]
  step "run" "warm" {
    command = ["true"]
  }
}
`

// warmUp makes the measured run a steady state's (unless
// SLUICE_BENCH_COLD=1): a one-stage run of the same labels goes first, so
// that the server knows the label set and every runner polls its stage
// queue (runners learn a new set within engine.SetsPoll, 2 s), as on a
// server that has run such stages before. Then the project's pipeline
// becomes pipeline, committed and pushed by the caller.
func (e *benchEnv) warmUp(pipeline string) (cold bool) {
	e.t.Helper()
	if os.Getenv("SLUICE_BENCH_COLD") != "1" {
		e.commit(benchWarmPipeline)
		e.push()
		e.waitRun("warmup", 2*time.Minute)
		time.Sleep(3 * time.Second)
	}
	e.commit(pipeline)
	return os.Getenv("SLUICE_BENCH_COLD") == "1"
}

// commit makes pipeline the project's only one, in a new commit.
func (e *benchEnv) commit(pipeline string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.srv.repo, ".sluice", "p.hcl"), []byte(pipeline), 0o644); err != nil {
		e.t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "bench", "--allow-empty"}} {
		if out, err := exec.Command("git", append([]string{"-C", e.srv.repo}, args...)...).CombinedOutput(); err != nil {
			e.t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	e.srv.sluice("validate", filepath.Join(e.srv.repo, ".sluice"))
}

// waitRun waits until the pipeline's run ends and returns its ID.
func (e *benchEnv) waitRun(pipeline string, timeout time.Duration) string {
	e.t.Helper()
	client := e.a.HTTPClient()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/api/v1/runs?pipeline="+pipeline, nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		var res struct {
			Runs []struct {
				RunID  string `json:"run_id"`
				Status string `json:"status"`
			} `json:"runs"`
		}
		if resp, err := client.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
		}
		cancel()
		for _, r := range res.Runs {
			last = r.RunID + " " + r.Status
			switch r.Status {
			case "succeeded":
				return r.RunID
			case "failed", "cancelled":
				var st struct {
					Start time.Time `json:"start"`
					End   time.Time `json:"end"`
					Error string    `json:"error"`
				}
				_ = json.Unmarshal([]byte(e.cli.sluiceOut("status", r.RunID, "--server", e.url, "-o", "json")), &st)
				benchReport(e.t, "%s: FAILED: run %s %s %s after its start: %s", pipeline, r.RunID, r.Status, ms(st.End.Sub(st.Start)), st.Error)
				e.t.Fatalf("run %s %s:\n%s", r.RunID, r.Status, e.cli.sluiceOut("status", r.RunID, "--server", e.url))
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	e.t.Fatalf("the %s run did not end within %s (last seen: %s)", pipeline, timeout, last)
	return ""
}

type benchStatus struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Stages []struct {
		ID     string    `json:"id"`
		State  string    `json:"state"`
		Runner string    `json:"runner"`
		Start  time.Time `json:"start"`
		End    time.Time `json:"end"`
		Steps  []struct {
			State string    `json:"state"`
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"steps"`
	} `json:"stages"`
}

// status is sluice status RUN -o json --server.
func (e *benchEnv) status(runID string) benchStatus {
	e.t.Helper()
	var st benchStatus
	out := e.cli.sluiceOut("status", runID, "--server", e.url, "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("sluice status -o json: %v\n%s", err, out)
	}
	return st
}

// stamps reads the steps' timestamps: key → when the step's script began.
func (e *benchEnv) stamps() map[string]time.Time {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.srv.counters, "stamps"))
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]time.Time{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			e.t.Fatalf("stamps: bad line %q", l)
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			e.t.Fatalf("stamps: %v", err)
		}
		if _, dup := m[f[0]]; dup {
			e.t.Fatalf("stamps: %s ran twice", f[0])
		}
		m[f[0]] = time.Unix(0, ns)
	}
	return m
}

// benchActivity is a RunSteps activity of the run's history.
type benchActivity struct {
	stage                          string
	scheduled, started, completed  time.Time
	identity                       string
	completedToNextWorkflowTaskRun time.Duration
}

// activities reads the run's Temporal history (from host A: the test's
// own namespace does not reach it) and returns its activities by stage.
func (e *benchEnv) activities(runID string) map[string]*benchActivity {
	e.t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  e.temporal,
		Namespace: "sluice",
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return e.a.DialContext(ctx, "tcp", addr) }),
		}},
	})
	if err != nil {
		e.t.Fatalf("connecting to Temporal on A: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	it := c.GetWorkflowHistory(ctx, runID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	byScheduled := map[int64]*benchActivity{}
	out := map[string]*benchActivity{}
	var waiting []*benchActivity // completed, their next workflow task not started yet
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			e.t.Fatalf("reading the history of %s: %v", runID, err)
		}
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			attr := ev.GetActivityTaskScheduledEventAttributes()
			if attr.GetActivityType().GetName() != "RunSteps" {
				continue
			}
			var in struct {
				StageID string `json:"stage_id"`
			}
			if p := attr.GetInput().GetPayloads(); len(p) > 0 {
				_ = json.Unmarshal(p[0].GetData(), &in)
			}
			a := &benchActivity{stage: in.StageID, scheduled: at}
			byScheduled[ev.GetEventId()] = a
			if _, dup := out[in.StageID]; dup {
				e.t.Fatalf("stage %s was scheduled twice", in.StageID)
			}
			out[in.StageID] = a
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			attr := ev.GetActivityTaskStartedEventAttributes()
			if a := byScheduled[attr.GetScheduledEventId()]; a != nil {
				a.started, a.identity = at, attr.GetIdentity()
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if a := byScheduled[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()]; a != nil {
				a.completed = at
				waiting = append(waiting, a)
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			for _, a := range waiting {
				a.completedToNextWorkflowTaskRun = at.Sub(a.completed)
			}
			waiting = nil
		}
	}
	return out
}

// benchGit is one git process a runner ran, from its trace2 events.
type benchGit struct {
	kind       string // its subcommand: cat-file, clone, checkout...
	begin, end time.Time
}

// gits reads the runners' git processes from their trace2 events (only
// with SLUICE_BENCH_GIT_TRACE=1; nil otherwise). Only the processes the
// runners started are kept, not those git started itself. A process
// began t_abs before its start event and ended at its exit event.
func (e *benchEnv) gits() []benchGit {
	e.t.Helper()
	if e.gitTrace == "" {
		return nil
	}
	b, err := os.ReadFile(e.gitTrace)
	if err != nil {
		e.t.Fatal(err)
	}
	procs := map[string]*benchGit{}
	var order []string
	for _, l := range strings.Split(string(b), "\n") {
		var ev struct {
			Event string   `json:"event"`
			SID   string   `json:"sid"`
			Time  string   `json:"time"`
			TAbs  float64  `json:"t_abs"`
			Argv  []string `json:"argv"`
		}
		if json.Unmarshal([]byte(l), &ev) != nil || strings.Contains(ev.SID, "/") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil {
			continue
		}
		switch ev.Event {
		case "start":
			kind := "?"
			for i := 1; i < len(ev.Argv); i++ {
				if ev.Argv[i] == "-C" {
					i++
					continue
				}
				kind = ev.Argv[i]
				break
			}
			procs[ev.SID] = &benchGit{kind: kind, begin: at.Add(-time.Duration(ev.TAbs * float64(time.Second)))}
			order = append(order, ev.SID)
		case "exit", "atexit":
			if p := procs[ev.SID]; p != nil {
				p.end = at
			}
		}
	}
	var out []benchGit
	for _, sid := range order {
		if p := procs[sid]; !p.end.IsZero() {
			out = append(out, *p)
		}
	}
	return out
}

// gitSummary says, for each kind of git process, how many ran and their
// p50 and p99 durations.
func gitSummary(gs []benchGit) string {
	by := map[string]benchDist{}
	for _, g := range gs {
		by[g.kind] = append(by[g.kind], g.end.Sub(g.begin))
	}
	var parts []string
	for _, k := range slices.Sorted(mapKeys(by)) {
		parts = append(parts, fmt.Sprintf("%s x%d %s / %s", k, len(by[k]), ms(by[k].pct(50)), ms(by[k].pct(99))))
	}
	return strings.Join(parts, ", ")
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// benchFindProc returns the pid of the process whose executable is named
// exe and whose command line mentions marker.
func benchFindProc(t *testing.T, exe, marker string) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) == exe && strings.Contains(string(b), marker) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			return pid
		}
	}
	t.Fatalf("no %s process of %s", exe, marker)
	return 0
}

// benchCPU is the CPU time used so far: by each process of benchEnv.pids
// (its own, and its children's that it waited for: a runner's git, shells
// and dates) and by the whole machine (busy, whoever ran).
type benchCPU struct {
	self, children map[string]time.Duration
	machine        time.Duration
	at             time.Time
}

// ticks are USER_HZ, 100 a second on Linux.
const benchTick = 10 * time.Millisecond

func (e *benchEnv) cpu() benchCPU {
	c := benchCPU{self: map[string]time.Duration{}, children: map[string]time.Duration{}, at: time.Now()}
	for name, pid := range e.pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which may hold spaces: state is
		// field 3, utime 14, stime 15, cutime 16, cstime 17.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		n := func(i int) time.Duration {
			v, _ := strconv.ParseInt(f[i-3], 10, 64)
			return time.Duration(v) * benchTick
		}
		c.self[name], c.children[name] = n(14)+n(15), n(16)+n(17)
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		for i, v := range f[1:] {
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			x, _ := strconv.ParseInt(v, 10, 64)
			c.machine += time.Duration(x) * benchTick
		}
	}
	return c
}

// cpuSummary says where the CPU went between two snapshots.
func cpuSummary(a, b benchCPU) string {
	d := func(m, n map[string]time.Duration, k string) time.Duration { return n[k] - m[k] }
	var runners, kids time.Duration
	for k := range b.self {
		if strings.HasPrefix(k, "runner-") {
			runners += d(a.self, b.self, k)
			kids += d(a.children, b.children, k)
		}
	}
	wall := b.at.Sub(a.at)
	sec := func(x time.Duration) string { return strconv.FormatFloat(x.Seconds(), 'f', 2, 64) + " s" }
	return fmt.Sprintf("CPU over %s of wall time (2 cores: %s available): Temporal %s, sluice server %s, runners %s, their children (git, shells, date) %s; the whole machine %s busy (other work on it included)",
		sec(wall), sec(2*wall), sec(d(a.self, b.self, "temporal")), sec(d(a.self, b.self, "server")), sec(runners), sec(kids), sec(b.machine-a.machine))
}

// benchMode says whether a measured run was its label set's first.
func benchMode(cold bool) string {
	if cold {
		return "cold (the first run of its labels on a new server)"
	}
	return "steady state (the runners already poll its labels' queue)"
}

// benchCommand is the command line that gives these figures.
func benchCommand() string {
	cmd := "scripts/bench/runner-pickup.sh"
	for _, v := range [][2]string{{"SLUICE_BENCH_GIT_TRACE", "TRACE_GIT=1"}, {"SLUICE_BENCH_PIN", "PIN=1"}, {"SLUICE_BENCH_COLD", "COLD=1"}} {
		if os.Getenv(v[0]) == "1" {
			cmd = v[1] + " " + cmd
		}
	}
	return cmd
}

// benchPin, with SLUICE_BENCH_PIN=1, keeps every thread of the processes
// (and what they start later) on the given CPU: the server and its
// Temporal on CPU 0, the runners and their gits and steps on CPU 1, as if
// they were machines of their own rather than sharing both cores.
func benchPin(t *testing.T, cpu string, pids ...int) {
	t.Helper()
	if os.Getenv("SLUICE_BENCH_PIN") != "1" {
		return
	}
	for _, pid := range pids {
		if out, err := exec.Command("taskset", "-a", "-pc", cpu, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			t.Fatalf("taskset: %v\n%s", err, out)
		}
	}
}

// benchDist is a set of durations with nearest-rank percentiles.
type benchDist []time.Duration

func (d benchDist) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(k, 0)]
}

func (d benchDist) max() time.Duration { return d.pct(100) }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

func (d benchDist) summary() string {
	return fmt.Sprintf("p50 %s, p99 %s, max %s", ms(d.pct(50)), ms(d.pct(99)), ms(d.max()))
}

// report prints a result line, and appends it to $SLUICE_BENCH_OUT.
func benchReport(t *testing.T, format string, args ...any) {
	line := "BENCH " + fmt.Sprintf(format, args...)
	fmt.Println(line)
	if path := os.Getenv("SLUICE_BENCH_OUT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}

func benchInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestBenchRunnerPickup: a chain of 200 one-step stages on one idle
// runner on host B, the server on A. A stage's pickup is the time from
// the moment it was ready (the previous stage's End in the run's status:
// the workflow task that learnt it had ended; for the first stage, the
// run's Start) to its step's first command (the date +%s%N the step
// writes). That includes the workflow task that schedules the stage,
// Temporal's dispatch of its activity to the runner's poll, the runner
// preparing the workspace (a clone of the commit from its mirror, the
// checkout) and starting the step (its log, fork and exec of the shell).
// The run's history splits it into those legs. The CPU each process used
// over the run is reported beside.
func TestBenchRunnerPickup(t *testing.T) {
	benchSkip(t)
	stages := benchInt("SLUICE_BENCH_STAGES", 200)
	n := netns.New(t)
	e := benchServer(t, n, benchPickupPipeline(stages))
	e.runner(n.Host("b"), "runner-b", 1)
	e.waitOnline(1)
	cold := e.warmUp(benchPickupPipeline(stages))
	// The runner is idle, its poll waiting.
	time.Sleep(time.Second)
	cpu0 := e.cpu()
	pushed := e.push()
	runID := e.waitRun("pickup", time.Duration(stages)*3*time.Second+time.Minute)
	cpu1 := e.cpu()
	st := e.status(runID)
	stamps := e.stamps()
	acts := e.activities(runID)
	if len(st.Stages) != stages || len(stamps) != stages || len(acts) != stages {
		t.Fatalf("%d stages in the status, %d stamps, %d RunSteps activities; want %d each", len(st.Stages), len(stamps), len(acts), stages)
	}

	var pickup, wft, dispatch, prepare, start, endRelease, endWFT, cycle benchDist
	worst, worstAt := time.Duration(0), ""
	for i, s := range st.Stages {
		want := fmt.Sprintf("s%03d", i)
		if s.ID != want || s.State != "succeeded" || len(s.Steps) != 1 || s.Runner != "runner-b" {
			t.Fatalf("stage %d is %s %s on %q with %d steps; want %s succeeded on runner-b", i, s.ID, s.State, s.Runner, len(s.Steps), want)
		}
		ready := st.Start
		if i > 0 {
			ready = st.Stages[i-1].End
		}
		stamp, a := stamps[want], acts[want]
		if a == nil || a.started.IsZero() {
			t.Fatalf("no RunSteps activity of %s in the history", want)
		}
		p := stamp.Sub(ready)
		pickup = append(pickup, p)
		if p > worst {
			worst, worstAt = p, want
		}
		wft = append(wft, a.scheduled.Sub(ready))
		dispatch = append(dispatch, a.started.Sub(a.scheduled))
		prepare = append(prepare, s.Steps[0].Start.Sub(a.started))
		start = append(start, stamp.Sub(s.Steps[0].Start))
		// What a stage's end costs before the next one is ready (not in
		// its pickup): the step's end to its activity's completion
		// (release of the workspace, the completion), then to the
		// workflow task that learns of it.
		endRelease = append(endRelease, a.completed.Sub(s.Steps[0].End))
		endWFT = append(endWFT, a.completedToNextWorkflowTaskRun)
		if i > 0 {
			cycle = append(cycle, stamp.Sub(stamps[fmt.Sprintf("s%03d", i-1)]))
		}
	}
	cmd := benchCommand()
	if gs := e.gits(); gs != nil {
		// Which git processes ran in each stage's workspace leg (stages
		// run one at a time), and what of the leg they are.
		var inLeg, other benchDist
		var legGits []benchGit
		for i, s := range st.Stages {
			a := acts[s.ID]
			var sum time.Duration
			for _, g := range gs {
				if !g.begin.Before(a.started) && !g.end.After(s.Steps[0].Start) {
					sum += g.end.Sub(g.begin)
					if i > 0 {
						legGits = append(legGits, g)
					}
				}
			}
			if i > 0 {
				inLeg = append(inLeg, sum)
				other = append(other, prepare[i]-sum)
			}
		}
		benchReport(t, "pickup workspace leg, git traced (GIT_TRACE2_EVENT; stages 2..%d): git processes %s per stage, the rest of the leg (forks, the runner's own work) %s; by process (count, p50 / p99): %s",
			stages, inLeg.summary(), other.summary(), gitSummary(legGits))
	}
	benchReport(t, "pickup: stage ready -> its step's first command, idle runner on another host, %d chained stages, %s: %s (goal p50 < 50 ms: %.2fx; p99 < 200 ms: %.2fx) [%s; run %s]",
		stages, benchMode(cold), pickup.summary(), float64(pickup.pct(50))/float64(50*time.Millisecond), float64(pickup.pct(99))/float64(200*time.Millisecond), cmd, runID)
	var rest benchDist
	for i := range pickup {
		rest = append(rest, pickup[i]-prepare[i])
	}
	benchReport(t, "pickup without the workspace leg (workflow task, dispatch, step start): %s", rest.summary())
	benchReport(t, "pickup legs (p50 / p99 / max): workflow task (ready -> activity scheduled) %s / %s / %s; dispatch (scheduled -> runner took it) %s / %s / %s; workspace (taken -> step begun: mirror, clone, checkout) %s / %s / %s; step start (step begun -> its first command: log, fork/exec of the shell, date) %s / %s / %s",
		ms(wft.pct(50)), ms(wft.pct(99)), ms(wft.max()), ms(dispatch.pct(50)), ms(dispatch.pct(99)), ms(dispatch.max()),
		ms(prepare.pct(50)), ms(prepare.pct(99)), ms(prepare.max()), ms(start.pct(50)), ms(start.pct(99)), ms(start.max()))
	benchReport(t, "pickup: first stage (from the run's start; the commit's first fetch into the runner's mirror; when cold, the runner learning the label set) %s; slowest %s at %s; stage end, not in pickup (p50 / p99): step end -> activity completed (release, completion) %s / %s, completed -> the workflow task that ends the stage %s / %s; stage to stage (one step's first command to the next's) %s; push returned -> run start %s",
		ms(pickup[0]), ms(worst), worstAt, ms(endRelease.pct(50)), ms(endRelease.pct(99)), ms(endWFT.pct(50)), ms(endWFT.pct(99)), cycle.summary(), ms(st.Start.Sub(pushed)))
	benchReport(t, "pickup run: %s", cpuSummary(cpu0, cpu1))
}

// TestBenchRunnerFanout: one stage with a 256-instance matrix of a no-op
// step, over 4 runners on hosts B..E with 64 stages each (so that every
// instance can run at once: what is measured is dispatch, not waiting for
// a slot). Reported: the run's start to the first instance's first
// command, and to the run's end (every instance done, the workflow
// completed); beside them, when the instances were scheduled and taken,
// how many were held at once, and the CPU each process used.
func TestBenchRunnerFanout(t *testing.T) {
	benchSkip(t)
	instances := benchInt("SLUICE_BENCH_INSTANCES", 256)
	runners := benchInt("SLUICE_BENCH_RUNNERS", 4)
	maxStages := benchInt("SLUICE_BENCH_MAX_STAGES", (instances+runners-1)/runners)
	n := netns.New(t)
	e := benchServer(t, n, benchFanoutPipeline(instances))
	for i := range runners {
		name := fmt.Sprintf("runner-%c", 'b'+i)
		e.runner(n.Host(name[len("runner-"):]), name, maxStages)
	}
	e.waitOnline(runners)
	cold := e.warmUp(benchFanoutPipeline(instances))
	e.waitOnline(runners)
	time.Sleep(time.Second)
	cpu0 := e.cpu()
	pushed := e.push()
	runID := e.waitRun("fanout", 10*time.Minute)
	cpu1 := e.cpu()
	st := e.status(runID)
	stamps := e.stamps()
	acts := e.activities(runID)
	if len(st.Stages) != instances || len(stamps) != instances || len(acts) != instances {
		t.Fatalf("%d instances in the status, %d stamps, %d RunSteps activities; want %d each", len(st.Stages), len(stamps), len(acts), instances)
	}
	var first, last, lastEnd, lastScheduled, firstStarted, lastStarted time.Time
	var prepare, dispatch benchDist
	per := map[string]int{}
	for _, s := range st.Stages {
		if s.State != "succeeded" || len(s.Steps) != 1 {
			t.Fatalf("instance %s is %s with %d steps", s.ID, s.State, len(s.Steps))
		}
		i := strings.TrimSuffix(strings.TrimPrefix(s.ID, "fan[i="), "]")
		stamp, a := stamps[i], acts[s.ID]
		if stamp.IsZero() || a == nil {
			t.Fatalf("instance %s: no stamp or no activity", s.ID)
		}
		per[s.Runner]++
		if first.IsZero() || stamp.Before(first) {
			first = stamp
		}
		if stamp.After(last) {
			last = stamp
		}
		if s.Steps[0].End.After(lastEnd) {
			lastEnd = s.Steps[0].End
		}
		if a.scheduled.After(lastScheduled) {
			lastScheduled = a.scheduled
		}
		if firstStarted.IsZero() || a.started.Before(firstStarted) {
			firstStarted = a.started
		}
		if a.started.After(lastStarted) {
			lastStarted = a.started
		}
		prepare = append(prepare, s.Steps[0].Start.Sub(a.started))
		dispatch = append(dispatch, a.started.Sub(a.scheduled))
	}
	var spread []string
	for _, r := range slices.Sorted(mapKeys(per)) {
		spread = append(spread, fmt.Sprintf("%s %d", r, per[r]))
	}
	// How many instances were held at once (taken, not yet completed), at
	// most, and how far apart one runner's takes were: a runner polls
	// its stage queue one task at a time.
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	takes := map[string][]time.Time{}
	for _, a := range acts {
		edges = append(edges, edge{a.started, 1}, edge{a.completed, -1})
		takes[a.identity] = append(takes[a.identity], a.started)
	}
	slices.SortFunc(edges, func(x, y edge) int { return cmp.Or(x.at.Compare(y.at), x.d-y.d) })
	held, maxHeld := 0, 0
	for _, x := range edges {
		held += x.d
		maxHeld = max(maxHeld, held)
	}
	var gaps benchDist
	for _, ts := range takes {
		slices.SortFunc(ts, time.Time.Compare)
		for i := 1; i < len(ts); i++ {
			gaps = append(gaps, ts[i].Sub(ts[i-1]))
		}
	}
	toFirst, toAll := first.Sub(st.Start), st.End.Sub(st.Start)
	cmd := benchCommand()
	if gs := e.gits(); gs != nil {
		var busy time.Duration
		for _, g := range gs {
			busy += g.end.Sub(g.begin)
		}
		benchReport(t, "fan-out, git traced (GIT_TRACE2_EVENT): %d git processes, %s of their wall time summed; by process (count, p50 / p99): %s",
			len(gs), ms(busy), gitSummary(gs))
	}
	benchReport(t, "fan-out: %d-instance matrix over %d runners (--max-stages %d), %s: run start -> first instance's first command %s (goal < 1 s: %.2fx); run start -> all done (run end) %s (goal < 30 s: %.2fx) [%s, run %s]",
		instances, runners, maxStages, benchMode(cold), ms(toFirst), float64(toFirst)/float64(time.Second), ms(toAll), float64(toAll)/float64(30*time.Second), cmd, runID)
	benchReport(t, "fan-out legs from the run's start: last instance scheduled %s; first / last taken by a runner %s / %s; first / last instance's first command %s / %s; last step ended %s; run end %s; dispatch (scheduled -> taken) %s; workspace (taken -> step begun) %s; spread: %s; push returned -> run start %s",
		ms(lastScheduled.Sub(st.Start)), ms(firstStarted.Sub(st.Start)), ms(lastStarted.Sub(st.Start)), ms(toFirst), ms(last.Sub(st.Start)), ms(lastEnd.Sub(st.Start)), ms(toAll),
		dispatch.summary(), prepare.summary(), strings.Join(spread, ", "), ms(st.Start.Sub(pushed)))
	benchReport(t, "fan-out: at most %d instances held at once (of %d slots); one runner's consecutive takes %s apart; takes %.1f a second over all runners", maxHeld, runners*maxStages, gaps.summary(), float64(instances)/lastStarted.Sub(firstStarted).Seconds())
	benchReport(t, "fan-out run: %s", cpuSummary(cpu0, cpu1))
}
