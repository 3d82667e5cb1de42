package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/testing/netns"
	"github.com/sluice-ci/sluice/internal/testing/pgtest"
)

// Issue 13's load, on each store of the embedded Temporal: 100 runs of a
// 10-stage chain of host steps, started at once through the API, on 4
// standalone runners (hosts B..E) of a sluice server --no-runner on host
// A; with PostgreSQL, the database is a host of its own ("db"). A
// benchmark like those of runners_bench_test.go: only with SLUICE_BENCH=1
// (scripts/bench/load.sh), "BENCH" lines out. SLUICE_BENCH_STORES
// (default "sqlite postgres": both, one after the other, in the same test
// process), SLUICE_BENCH_LOAD_RUNS (100), SLUICE_BENCH_LOAD_STAGES (10),
// SLUICE_BENCH_RUNNERS (4) and SLUICE_BENCH_MAX_STAGES (the runs over the
// runners: every run can hold its ready stage at once, so that what is
// measured is the system, not a queue for runner slots) change it;
// SLUICE_BENCH_SHARDS sets PostgreSQL's --history-shards, and
// SLUICE_BENCH_PG_SETTINGS adds lines to its postgresql.conf (separated by
// ";", e.g. "synchronous_commit = off"), and SLUICE_BENCH_PG_PARAMS to
// the --db URL's parameters (e.g. "driver=pgx").

// benchLoadPipeline is n stages in a chain, each one step that writes
// its run, its stage and when it began.
func benchLoadPipeline(n int) string {
	return benchChainPipeline("load", `on "manual" {}`, "$SLUICE_RUN_ID ", n)
}

const benchLoadWarm = `
pipeline "warmup" {
  on "manual" {}
}

stage "warm" {
  runs_on = ["bench"]
  step "run" "warm" {
    command = ["true"]
  }
}
`

func TestBenchLoad(t *testing.T) {
	benchSkip(t)
	stores := strings.Fields(os.Getenv("SLUICE_BENCH_STORES"))
	if len(stores) == 0 {
		stores = []string{"sqlite", "postgres"}
	}
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { benchLoad(t, store) })
	}
}

type benchLoadRun struct {
	State  string    `json:"state"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Error  string    `json:"error"`
	Stages []struct {
		ID     string    `json:"id"`
		State  string    `json:"state"`
		Runner string    `json:"runner"`
		Start  time.Time `json:"start"`
		End    time.Time `json:"end"`
	} `json:"stages"`
}

func benchLoad(t *testing.T, store string) {
	runs := benchInt("SLUICE_BENCH_LOAD_RUNS", 100)
	stages := benchInt("SLUICE_BENCH_LOAD_STAGES", 10)
	runners := benchInt("SLUICE_BENCH_RUNNERS", 4)
	maxStages := benchInt("SLUICE_BENCH_MAX_STAGES", (runs+runners-1)/runners)
	n := netns.New(t)

	// The repository runs are started from (POST /api/v1/runs names it),
	// in server.hcl.
	bare := filepath.Join(t.TempDir(), "load.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	conf := filepath.Join(t.TempDir(), "server.hcl")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("repository \"bench\" { url = %q }\n", bare)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", conf}
	desc := "SQLite (the home's temporal.db, one history shard)"
	var pg *pgtest.Server
	switch store {
	case "sqlite":
	case "postgres":
		db := n.Host("db")
		var settings []string
		if v := os.Getenv("SLUICE_BENCH_PG_SETTINGS"); v != "" {
			settings = strings.Split(v, ";")
		}
		pg = pgtest.StartOptions(t, pgtest.Options{Durable: true, Host: db.IP, Command: db.Command, Settings: settings})
		pg.CreateUser("sluice", "bench")
		params := []string{"sslmode=disable"}
		if v := os.Getenv("SLUICE_BENCH_PG_PARAMS"); v != "" {
			params = append(params, v)
		}
		args = append(args, "--db", pg.URL("sluice", "bench", "sluice", params...), "--migrate")
		shards := "4 (the default)"
		if v := os.Getenv("SLUICE_BENCH_SHARDS"); v != "" {
			args = append(args, "--history-shards", v)
			shards = v
		}
		desc = "PostgreSQL 15 on a host of its own (Debian's defaults: fsync and synchronous_commit on), " + shards + " history shards"
		if len(settings) > 0 {
			desc += ", with " + strings.Join(settings, ", ")
		}
		if v := os.Getenv("SLUICE_BENCH_PG_PARAMS"); v != "" {
			desc += ", --db ...?" + v
		}
	default:
		t.Fatalf("SLUICE_BENCH_STORES: %q is not sqlite or postgres", store)
	}
	e := benchServer(t, n, benchLoadPipeline(stages), args...)
	for i := range runners {
		name := fmt.Sprintf("runner-%c", 'b'+i)
		e.runner(n.Host(name[len("runner-"):]), name, maxStages)
	}
	e.waitOnline(runners)

	// The commit: the load pipeline and a one-stage warm-up of the same
	// labels, which runs first so that the runners poll the labels' queue
	// (they learn a new set within 2 s).
	// (A directory has one pipeline: the warm-up is a project of its own.)
	if err := os.MkdirAll(filepath.Join(e.srv.repo, "warm", ".sluice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.srv.repo, "warm", ".sluice", "warm.hcl"), []byte(benchLoadWarm), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, a := range [][]string{{"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "load"}, {"push", "-q", bare, "main"}} {
		if out, err := exec.Command("git", append([]string{"-C", e.srv.repo}, a...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", a, err, out)
		}
	}
	out, err := exec.Command("git", "-C", e.srv.repo, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	sha := strings.TrimSpace(string(out))
	client := e.a.HTTPClient()
	client.Timeout = 2 * time.Minute
	warm, _, err := e.startRun(client, sha, "warmup")
	if err != nil {
		t.Fatalf("starting the warm-up run: %v", err)
	}
	if st := e.waitRuns(client, []string{warm}, 2*time.Minute)[warm]; st.State != "succeeded" {
		t.Fatalf("the warm-up run %s is %s: %s", warm, st.State, st.Error)
	}
	time.Sleep(3 * time.Second)

	// The load: every run's POST at once.
	cpu0, pg0 := e.cpu(), pgCPU(pg)
	begin := time.Now()
	ids := make([]string, runs)
	var answered benchDist
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, took, err := e.startRun(client, sha, "load")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err.Error())
				return
			}
			ids[i] = id
			answered = append(answered, took)
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		benchReport(t, "load on %s: FAILED: %d of %d runs not started: %s", store, len(failed), runs, failed[0])
		t.Fatalf("%d runs not started; the first error: %s", len(failed), failed[0])
	}
	sts := e.waitRuns(client, ids, time.Duration(runs*stages)*time.Second+5*time.Minute)
	cpu1, pg1 := e.cpu(), pgCPU(pg)
	stamps := benchLoadStamps(t, filepath.Join(e.srv.counters, "stamps"))

	var toFirst, pickup benchDist
	var first, last time.Time
	succeeded, perRunner := 0, map[string]int{}
	var bad []string
	for _, id := range ids {
		st := sts[id]
		if st.State != "succeeded" || len(st.Stages) != stages {
			bad = append(bad, fmt.Sprintf("%s %s with %d stages: %s", id, st.State, len(st.Stages), st.Error))
			continue
		}
		succeeded++
		if first.IsZero() || st.Start.Before(first) {
			first = st.Start
		}
		if st.End.After(last) {
			last = st.End
		}
		s0, ok := stamps[id+" s000"]
		if !ok {
			t.Fatalf("run %s has no stamp of its first step", id)
		}
		toFirst = append(toFirst, s0.Sub(st.Start))
		for i, sg := range st.Stages {
			perRunner[sg.Runner]++
			if i == 0 {
				continue
			}
			if at, ok := stamps[fmt.Sprintf("%s s%03d", id, i)]; ok {
				pickup = append(pickup, at.Sub(st.Stages[i-1].End))
			}
		}
	}
	if len(stamps) != succeeded*stages {
		t.Errorf("%d stamps of %d runs of %d stages", len(stamps), succeeded, stages)
	}
	var spread []string
	for _, r := range slices.Sorted(mapKeys(perRunner)) {
		spread = append(spread, fmt.Sprintf("%s %d", r, perRunner[r]))
	}
	wall := last.Sub(first)
	benchReport(t, "load on %s: %d of %d runs of %d chained host stages succeeded, started at once (POST /api/v1/runs) over %d runners (--max-stages %d)", desc, succeeded, runs, stages, runners, maxStages)
	benchReport(t, "load on %s: %.1f runs a minute (first run's start to last run's end %s; from the first POST %s); run start -> its first step's first command %s; stage ready -> its step's first command (stages 2..%d) %s; POST answered (the run started) %s; stages per runner: %s",
		store, float64(succeeded)/wall.Minutes(), ms(wall), ms(last.Sub(begin)), toFirst.summary(), stages, pickup.summary(), answered.summary(), strings.Join(spread, ", "))
	pgUsed := ""
	if pg != nil {
		pgUsed = fmt.Sprintf("; PostgreSQL (all its processes) %.2f s", (pg1 - pg0).Seconds())
	}
	benchReport(t, "load on %s: %s%s", store, cpuSummary(cpu0, cpu1), pgUsed)
	if len(bad) > 0 {
		benchReport(t, "load on %s: FAILED: %d runs did not succeed, the first: %s", store, len(bad), bad[0])
		t.Fatalf("%d of %d runs did not succeed: %s", len(bad), runs, strings.Join(bad[:min(len(bad), 5)], "; "))
	}
}

// startRun starts a run of the pipeline at sha through the API and returns
// its ID and how long the API took to answer.
func (e *benchEnv) startRun(client *http.Client, sha, pipeline string) (string, time.Duration, error) {
	body, _ := json.Marshal(map[string]string{"repository": "bench", "sha": sha, "pipeline": pipeline})
	req, _ := http.NewRequest("POST", e.url+"/api/v1/runs", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	begin := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	took := time.Since(begin)
	b, _ := io.ReadAll(resp.Body)
	var res struct {
		Runs []struct {
			RunID string `json:"run_id"`
		} `json:"runs"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &res) != nil || len(res.Runs) != 1 {
		return "", took, fmt.Errorf("POST /api/v1/runs: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return res.Runs[0].RunID, took, nil
}

// waitRuns waits until every run has ended and returns their statuses.
func (e *benchEnv) waitRuns(client *http.Client, ids []string, timeout time.Duration) map[string]benchLoadRun {
	e.t.Helper()
	out := map[string]benchLoadRun{}
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for {
			st, err := e.runStatus(client, id)
			if err == nil && (st.State == "succeeded" || st.State == "failed" || st.State == "cancelled") {
				out[id] = st
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("run %s did not end within %s (%s %v)", id, timeout, st.State, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return out
}

func (e *benchEnv) runStatus(client *http.Client, id string) (benchLoadRun, error) {
	var st benchLoadRun
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/api/v1/runs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET run %s: %s", id, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// benchLoadStamps reads the steps' stamps: "RUN STAGE" -> when it began.
func benchLoadStamps(t *testing.T, path string) map[string]time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]time.Time{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("stamps: bad line %q", l)
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("stamps: %v", err)
		}
		key := f[0] + " " + f[1]
		if _, dup := m[key]; dup {
			t.Errorf("stamps: %s ran twice", key)
		}
		m[key] = time.Unix(0, ns)
	}
	return m
}

// pgCPU is the CPU time PostgreSQL's processes have used: the postmaster,
// the backends and workers it forked (alive: their own time; gone: in
// the postmaster's children's time); 0 without a server.
func pgCPU(pg *pgtest.Server) time.Duration {
	if pg == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pm, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	var sum time.Duration
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		// Fields after the command name: state 3, ppid 4, utime 14,
		// stime 15, cutime 16, cstime 17.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		n := func(i int) time.Duration {
			v, _ := strconv.ParseInt(f[i-3], 10, 64)
			return time.Duration(v) * benchTick
		}
		ppid, _ := strconv.Atoi(f[4-3])
		switch {
		case pid == pm:
			sum += n(14) + n(15) + n(16) + n(17)
		case ppid == pm:
			sum += n(14) + n(15)
		}
	}
	return sum
}
