package server

import (
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/metrics"
)

// docs/operations.md lists every series the server and a runner export
// (in backquotes, as `sluice_...`), and each label they have.
func TestOperationsDocListsEverySeries(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	m, err := newServerMetrics(Config{Home: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// One sample of each, so that every family is gathered.
	m.observeHook(ViaGit, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })(discard{}, &http.Request{Header: http.Header{}})
	m.runs.WithLabelValues("web", "succeeded").Inc()
	m.runTime.WithLabelValues("web", "succeeded").Observe(1)
	m.stageTime.WithLabelValues("web", "build", "succeeded").Observe(1)
	m.ghRequests.WithLabelValues("other", "GET", "200").Inc()
	m.ghRemaining.WithLabelValues("app", "core").Set(1)
	m.refreshErrors.WithLabelValues("runners").Inc()
	k := queueKey{"stages", ""}
	m.figures.Store(&figures{active: map[engine.State]int64{engine.StateRunning: 1},
		online: map[string]int{"": 1}, busy: map[string]int{"": 1}, slots: map[string]int{"": 1},
		backlog: map[queueKey]int64{k: 1}, age: map[queueKey]time.Duration{k: time.Second}})
	m.runner.StepDone(t.Context(), "run", time.Second, nil)
	reg := m.reg
	// A runner's own registry adds the free disk.
	runnerReg := prometheus.NewRegistry()
	metrics.NewRunner(runnerReg, metrics.RunnerInfo{Name: "r", DiskFree: func() (uint64, error) { return 1, nil }})

	for _, g := range []prometheus.Gatherer{reg, runnerReg} {
		families, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			name := f.GetName()
			if !strings.HasPrefix(name, "sluice_") {
				continue
			}
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("docs/operations.md does not list `%s` (%s)", name, f.GetHelp())
			}
			for _, mt := range f.GetMetric() {
				for _, l := range mt.GetLabel() {
					if !strings.Contains(string(doc), "`"+l.GetName()+"`") {
						t.Errorf("docs/operations.md does not say what label `%s` of %s is", l.GetName(), name)
					}
				}
			}
		}
	}
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

func TestRunnersBySet(t *testing.T) {
	runners := []engine.RunnerReport{
		{Name: "a", Labels: []string{"linux"}, MaxStages: 2, Online: true, Stages: []string{"run-1/build"}},
		{Name: "b", Labels: []string{"gpu", "linux"}, MaxStages: 1, Online: true},
		{Name: "c", Labels: []string{"gpu", "linux"}, MaxStages: 4, Online: false, Stages: []string{"run-2/train"}},
		{Name: "d", MaxStages: 0, Online: true},
	}
	online, busy, slots := runnersBySet(runners, [][]string{nil, {"linux"}, {"gpu", "linux"}, {"arm64"}})
	for _, c := range []struct {
		set                 string
		online, busy, slots int
	}{
		{"", 3, 1, 4}, // every online runner takes stages without labels; d's 0 is the default 1
		{"linux", 2, 1, 3},
		{"gpu,linux", 1, 0, 1}, // c is offline
		{"arm64", 0, 0, 0},     // present, at 0: an alert can join on it
	} {
		if online[c.set] != c.online || busy[c.set] != c.busy || slots[c.set] != c.slots {
			t.Errorf("labels %q: online %d busy %d slots %d, want %d %d %d", c.set, online[c.set], busy[c.set], slots[c.set], c.online, c.busy, c.slots)
		}
		if _, ok := online[c.set]; !ok {
			t.Errorf("labels %q: no series", c.set)
		}
	}
}

func TestHookResult(t *testing.T) {
	for status, want := range map[int]string{
		http.StatusAccepted:              hookQueued,
		http.StatusOK:                    hookIgnored,
		http.StatusBadRequest:            hookInvalid,
		http.StatusRequestEntityTooLarge: hookInvalid,
		http.StatusUnauthorized:          hookUnauthorized,
		http.StatusForbidden:             hookUnauthorized,
		http.StatusServiceUnavailable:    hookError,
	} {
		if got := hookResult(status); got != want {
			t.Errorf("hookResult(%d) = %q, want %q", status, got, want)
		}
	}
}

// Where the count of completed runs stands survives the process; a
// state file that cannot be read starts from now, never from the
// beginning of time.
func TestCompletionStateKept(t *testing.T) {
	file := t.TempDir() + "/server/metrics-runs.json"
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	st := loadCompletions(file, now)
	if !st.Since.Equal(now) || !st.From.Equal(now) || len(st.Counted) != 0 {
		t.Fatalf("first start: %+v", st)
	}
	st.Since = now.Add(time.Minute)
	st.Counted["web-1@1"] = now.Add(time.Minute)
	if err := st.save(file); err != nil {
		t.Fatal(err)
	}
	again := loadCompletions(file, now.Add(time.Hour))
	if !again.Since.Equal(st.Since) || !again.From.Equal(now) || !again.Counted["web-1@1"].Equal(st.Counted["web-1@1"]) {
		t.Errorf("loaded %+v, saved %+v", again, st)
	}
	if err := os.WriteFile(file, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if broken := loadCompletions(file, now.Add(time.Hour)); !broken.Since.Equal(now.Add(time.Hour)) {
		t.Errorf("a broken state file: %+v", broken)
	}
}
