package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/metrics"
	"github.com/sluice-ci/sluice/server/githubapp"
	"github.com/sluice-ci/sluice/server/inbox"
)

// Metrics.
//
// The server's /metrics (docs/operations.md lists every series) has
// three kinds of figures:
//
//   - what the server sees itself: webhooks and git hooks received, and
//     its requests to GitHub;
//   - what it reads from Temporal every Config.MetricsInterval: runs
//     active by state (visibility counts), runners online and queue
//     backlogs by label set (the runner registry, DescribeTaskQueue), and
//     the runs that completed (a visibility query, see countCompletions);
//   - the Temporal SDK's own metrics (temporal_*), and the in-process
//     runner's (sluice_runner_*), when the server has one.
//
// Nothing here runs in workflow code.

// DefaultMetricsInterval is how often the server reads its figures from
// Temporal.
const DefaultMetricsInterval = 15 * time.Second

// Results of a webhook, as the result label says them.
const (
	hookQueued       = "queued"       // a delivery was queued (202)
	hookDuplicate    = "duplicate"    // a redelivery of one queued before
	hookIgnored      = "ignored"      // nothing to do: an event or a ref Sluice does not act on
	hookPing         = "ping"         // GitHub's ping
	hookNoted        = "noted"        // an installation event, noted
	hookInvalid      = "invalid"      // a malformed request (4xx)
	hookUnauthorized = "unauthorized" // a bad or missing signature, an unknown repository (401, 403)
	hookError        = "error"        // Temporal could not take it (5xx): the sender retries
)

// githubEvents are the event names the event label takes; any other
// X-GitHub-Event (the header is read before the signature is checked)
// counts as "other".
var githubEvents = []string{"push", "create", "delete", "pull_request", "check_suite", "check_run", "installation", "installation_repositories", "issue_comment", "ping"}

// serverMetrics are the server's series.
type serverMetrics struct {
	reg      *prometheus.Registry
	log      *slog.Logger
	interval time.Duration
	// temporal receives the SDK's metrics; runner is the in-process
	// runner's series.
	temporal client.MetricsHandler
	runner   *metrics.Runner

	hooks, runs, ghRequests, refreshErrors *prometheus.CounterVec
	hookTime, runTime, stageTime           *prometheus.HistogramVec
	ghRemaining                            *prometheus.GaugeVec
	refreshed                              prometheus.Gauge
	// figures are the gauges read from Temporal at the last refresh.
	figures atomic.Pointer[figures]

	// completions is where the count of completed runs stands.
	mu          sync.Mutex
	completions completionState
	stateFile   string

	// listener serves /metrics when Config.MetricsListen gives one.
	listener *metrics.Server
	stop     context.CancelFunc
	done     chan struct{}
}

// runBuckets are the bounds, in seconds, of run and stage durations.
var runBuckets = []float64{1, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400, 28800, 86400}

func newServerMetrics(cfg Config, logger *slog.Logger) (*serverMetrics, error) {
	m := &serverMetrics{
		reg: metrics.NewRegistry(), log: logger, interval: cfg.MetricsInterval,
		stateFile: filepath.Join(cfg.Home, "server", "metrics-runs.json"),
	}
	if m.interval <= 0 {
		m.interval = DefaultMetricsInterval
	}
	ns := metrics.Namespace
	m.hooks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhooks_received_total",
		Help: "Webhooks (source github) and git hook requests (source git) received, by event and result."}, []string{"source", "event", "result"})
	m.hookTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "webhook_duration_seconds",
		Help:    "How long the server took to answer a webhook or a git hook request (verifying it and queueing its delivery: in the inbox, or in Temporal).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"source", "event"})
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "runs_completed_total",
		Help: "Runs that completed, by pipeline and result (succeeded, failed, cancelled), counted once per execution (a retry is another)."}, []string{"pipeline", "result"})
	m.runTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "run_duration_seconds",
		Help: "How long completed runs took, from start (queueing included) to end, by pipeline and result.", Buckets: runBuckets}, []string{"pipeline", "result"})
	m.stageTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "stage_duration_seconds",
		Help: "How long the stages of completed runs took, from their start (after their approval; waiting for a runner included) to their end, by pipeline, stage (the name, matrix instances together) and result.", Buckets: runBuckets}, []string{"pipeline", "stage", "result"})
	m.ghRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "github_api_requests_total",
		Help: "Requests to GitHub's REST API, by endpoint (a path template), method and status code (\"error\": no response)."}, []string{"endpoint", "method", "status"})
	m.ghRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "github_rate_limit_remaining",
		Help: "What GitHub last said is left of a rate limit (X-RateLimit-Remaining), by installation (\"app\": the App's own) and resource."}, []string{"installation", "resource"})
	m.refreshErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "metrics_refresh_errors_total",
		Help: "Failures to read the figures from Temporal, by part (runs_active, runners, queues, completions)."}, []string{"part"})
	m.refreshed = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "metrics_refreshed_timestamp_seconds",
		Help: "When the figures read from Temporal were last read whole (Unix time)."})
	for _, c := range []prometheus.Collector{m.hooks, m.hookTime, m.runs, m.runTime, m.stageTime, m.ghRequests, m.ghRemaining, m.refreshErrors, m.refreshed, figuresCollector{m}} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	var err error
	if m.temporal, err = metrics.Temporal(m.reg); err != nil {
		return nil, err
	}
	if !cfg.NoRunner {
		m.runner = metrics.NewRunner(m.reg, metrics.RunnerInfo{Name: "server", Labels: cfg.Labels})
	}
	return m, nil
}

// start begins reading figures from Temporal, and serves /metrics on
// listen when it is set.
func (m *serverMetrics) start(c client.Client, namespace, listen string) error {
	if listen != "" {
		l, err := metrics.Listen(listen, m.reg)
		if err != nil {
			return err
		}
		m.listener = l
	}
	m.completions = loadCompletions(m.stateFile, time.Now())
	// Written at once: a server that stops before any run completes
	// still starts again from here, not from its next start.
	if err := m.completions.save(m.stateFile); err != nil {
		return fmt.Errorf("keeping where the count of completed runs stands: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stop, m.done = cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		t := time.NewTicker(m.interval)
		defer t.Stop()
		for {
			m.refresh(ctx, c, namespace)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// watchInbox exports the inbox's backlog: deliveries answered and not yet
// handed to Temporal.
func (m *serverMetrics) watchInbox(b *inbox.Inbox) {
	ns := metrics.Namespace
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "inbox_pending",
			Help: "Deliveries answered (202) and kept in the inbox, not yet handed to Temporal."},
			func() float64 { n, _ := b.Pending(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "inbox_oldest_age_seconds",
			Help: "How long the oldest delivery in the inbox has waited for Temporal (0: none waits)."},
			func() float64 {
				_, oldest := b.Pending()
				if oldest.IsZero() {
					return 0
				}
				return time.Since(oldest).Seconds()
			}),
	)
}

func (m *serverMetrics) close() {
	if m == nil {
		return
	}
	if m.stop != nil {
		m.stop()
		<-m.done
	}
	if m.listener != nil {
		_ = m.listener.Close()
	}
}

// handler serves /metrics on the server's own listener, unless
// Config.MetricsListen moved it.
func (m *serverMetrics) handler() http.Handler {
	if m.listener != nil {
		where := m.listener.URL()
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			httpError(w, http.StatusNotFound, "this server serves its metrics at "+where+" (--metrics-listen)")
		})
	}
	return metrics.Handler(m.reg)
}

// githubCall counts a request to GitHub.
func (m *serverMetrics) githubCall(c githubapp.Call) {
	status := "error"
	if c.Status != 0 {
		status = strconv.Itoa(c.Status)
	}
	m.ghRequests.WithLabelValues(c.Endpoint, c.Method, status).Inc()
	if c.Remaining >= 0 {
		inst := "app"
		if c.Installation != 0 {
			inst = strconv.FormatInt(c.Installation, 10)
		}
		m.ghRemaining.WithLabelValues(inst, cmp.Or(c.Resource, "core")).Set(float64(c.Remaining))
	}
}

// hookNote is what a hook's handler says of the request's result, when
// its status alone does not (see noteHook).
type hookNote struct{ result string }

type hookNoteKey struct{}

// noteHook records the result of the webhook or git hook request r.
func noteHook(r *http.Request, result string) {
	if n, ok := r.Context().Value(hookNoteKey{}).(*hookNote); ok {
		n.result = result
	}
}

// observeHook counts the requests h answers, from source (github, git).
func (m *serverMetrics) observeHook(source string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		note := &hookNote{}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r.WithContext(context.WithValue(r.Context(), hookNoteKey{}, note)))
		event := "push"
		if source == ViaGitHub {
			event = r.Header.Get("X-GitHub-Event")
			if !slices.Contains(githubEvents, event) {
				event = "other"
			}
		}
		result := note.result
		if result == "" {
			result = hookResult(sw.status)
		}
		m.hooks.WithLabelValues(source, event, result).Inc()
		m.hookTime.WithLabelValues(source, event).Observe(time.Since(start).Seconds())
	}
}

// hookResult is the result of a hook request its handler did not note.
func hookResult(status int) string {
	switch {
	case status == http.StatusAccepted:
		return hookQueued
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return hookUnauthorized
	case status >= 500:
		return hookError
	case status >= 400:
		return hookInvalid
	}
	return hookIgnored
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// figures are the gauges read from Temporal.
type figures struct {
	// active counts open runs by state.
	active map[engine.State]int64
	// online, busy and slots are, per label set stages ask for (""
	// for none), the runners online that have those labels, those of
	// them running a stage, and the stages they can hold.
	online, busy, slots map[string]int
	// backlog and age are the tasks waiting on a queue and the age of
	// the oldest, by queue kind and label set.
	backlog map[queueKey]int64
	age     map[queueKey]time.Duration
}

type queueKey struct{ queue, labels string }

// activeStates are the states a run that has not ended records in
// visibility (SluiceStatus): a run waiting for approval or for runners
// is running.
var activeStates = []engine.State{engine.StatePending, engine.StateQueued, engine.StateRunning}

var (
	descActive  = prometheus.NewDesc(metrics.Namespace+"_runs_active", "Runs not ended, by state: pending (not begun), queued (for their concurrency group), running (approvals and stages waiting for runners included).", []string{"state"}, nil)
	descOnline  = prometheus.NewDesc(metrics.Namespace+"_runners_online", "Runners online (reported to the registry within 45 s) that take stages with these runs_on labels (\"\": stages without).", []string{"labels"}, nil)
	descBusy    = prometheus.NewDesc(metrics.Namespace+"_runners_busy", "Of sluice_runners_online, those running at least one stage.", []string{"labels"}, nil)
	descSlots   = prometheus.NewDesc(metrics.Namespace+"_runner_stage_slots_online", "Stages the runners of sluice_runners_online can hold at once (the sum of their --max-stages).", []string{"labels"}, nil)
	descBacklog = prometheus.NewDesc(metrics.Namespace+"_queue_backlog", "Tasks waiting on a task queue: stages waiting for a runner with these labels (queue stages), workflow tasks waiting for the server (queue workflows).", []string{"queue", "labels"}, nil)
	descAge     = prometheus.NewDesc(metrics.Namespace+"_queue_backlog_age_seconds", "How long the oldest task of sluice_queue_backlog has waited.", []string{"queue", "labels"}, nil)
)

// figuresCollector exports the figures of the last refresh, whole: a
// scrape never sees half of one refresh and half of the next.
type figuresCollector struct{ m *serverMetrics }

func (f figuresCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descOnline, descBusy, descSlots, descBacklog, descAge} {
		ch <- d
	}
}

func (f figuresCollector) Collect(ch chan<- prometheus.Metric) {
	fg := f.m.figures.Load()
	if fg == nil {
		return
	}
	for s, n := range fg.active {
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(n), string(s))
	}
	for l, n := range fg.online {
		ch <- prometheus.MustNewConstMetric(descOnline, prometheus.GaugeValue, float64(n), l)
		ch <- prometheus.MustNewConstMetric(descBusy, prometheus.GaugeValue, float64(fg.busy[l]), l)
		ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, float64(fg.slots[l]), l)
	}
	for k, n := range fg.backlog {
		ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n), k.queue, k.labels)
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, fg.age[k].Seconds(), k.queue, k.labels)
	}
}

// refresh reads the figures from Temporal and counts the runs completed
// since the last refresh. A part that fails keeps its last figures.
func (m *serverMetrics) refresh(ctx context.Context, c client.Client, namespace string) {
	prev := m.figures.Load()
	if prev == nil {
		prev = &figures{}
	}
	next := *prev
	ok := true
	part := func(name string, f func(context.Context) error) {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := f(pctx); err != nil {
			ok = false
			if ctx.Err() == nil {
				m.refreshErrors.WithLabelValues(name).Inc()
				m.log.Warn("reading metrics from Temporal", "part", name, "error", err)
			}
		}
	}
	part("runs_active", func(ctx context.Context) error {
		active, err := activeRuns(ctx, c)
		if err == nil {
			next.active = active
		}
		return err
	})
	var sets [][]string
	part("runners", func(ctx context.Context) error {
		var err error
		sets, err = engine.LabelSets(ctx, c)
		if err != nil {
			return err
		}
		sets = append([][]string{nil}, sets...)
		runners, err := engine.Runners(ctx, c)
		if err != nil {
			return err
		}
		next.online, next.busy, next.slots = runnersBySet(runners, sets)
		return nil
	})
	part("queues", func(ctx context.Context) error {
		if sets == nil {
			sets = [][]string{nil}
		}
		backlog, age, err := backlogs(ctx, c, namespace, sets)
		if err == nil {
			next.backlog, next.age = backlog, age
		}
		return err
	})
	part("completions", func(ctx context.Context) error { return m.countCompletions(ctx, c) })
	m.figures.Store(&next)
	if ok {
		m.refreshed.SetToCurrentTime()
	}
}

// activeRuns counts the runs not ended, by state.
func activeRuns(ctx context.Context, c client.Client) (map[engine.State]int64, error) {
	out := map[engine.State]int64{}
	for _, s := range activeStates {
		q := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND %s = '%s'", engine.WorkflowName, engine.AttrStatus.GetName(), s)
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
		if err != nil {
			return nil, fmt.Errorf("counting runs %s: %w", s, err)
		}
		out[s] = resp.GetCount()
	}
	return out, nil
}

// runnersBySet counts, for each label set, the runners online that take
// its stages (they have every label of the set), those of them busy, and
// the stages they can hold.
func runnersBySet(runners []engine.RunnerReport, sets [][]string) (online, busy, slots map[string]int) {
	online, busy, slots = map[string]int{}, map[string]int{}, map[string]int{}
	for _, set := range sets {
		key := strings.Join(set, ",")
		online[key] = 0
		for _, r := range runners {
			if !r.Online || !hasAll(r.Labels, set) {
				continue
			}
			online[key]++
			slots[key] += max(r.MaxStages, 1)
			if len(r.Stages) > 0 {
				busy[key]++
			}
		}
	}
	return online, busy, slots
}

func hasAll(have, want []string) bool {
	for _, l := range want {
		if !slices.Contains(have, l) {
			return false
		}
	}
	return true
}

// backlogs reads the backlog of the stage queue of each label set, and
// of the workflows' queue.
func backlogs(ctx context.Context, c client.Client, namespace string, sets [][]string) (map[queueKey]int64, map[queueKey]time.Duration, error) {
	backlog, age := map[queueKey]int64{}, map[queueKey]time.Duration{}
	read := func(k queueKey, name string, typ enumspb.TaskQueueType) error {
		resp, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace:     namespace,
			TaskQueue:     &taskqueuepb.TaskQueue{Name: name, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: typ,
			ReportStats:   true,
		})
		if err != nil {
			return fmt.Errorf("describing task queue %q: %w", name, err)
		}
		backlog[k] = resp.GetStats().GetApproximateBacklogCount()
		age[k] = resp.GetStats().GetApproximateBacklogAge().AsDuration()
		return nil
	}
	var errs []error
	for _, set := range sets {
		errs = append(errs, read(queueKey{"stages", strings.Join(set, ",")}, engine.StageQueue(set), enumspb.TASK_QUEUE_TYPE_ACTIVITY))
	}
	errs = append(errs, read(queueKey{"workflows", ""}, engine.WorkflowTaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW))
	return backlog, age, errors.Join(errs...)
}

// Counting completed runs.
//
// Every refresh lists, through Temporal's visibility, the runs that
// closed since the last one, and counts each execution once: a run
// retried is a second execution, counted when it ends too. Where it
// stands (the latest close time counted, and the executions counted in
// the minute before it, which a late visibility record may list again)
// is kept in the home, so that a server started again neither counts
// again what it counted before it stopped nor misses what ended while it
// was down: those are counted at its first refresh. Only a server that
// dies between counting and writing that down (a few milliseconds a
// refresh) counts a run twice. A home's first server counts the runs that
// end after it started. Two servers on one namespace both count every
// run: scrape one, or take max() over them.

// completionOverlap is how far back a refresh looks before the latest
// close time counted, for visibility records written late.
const completionOverlap = time.Minute

// maxStageReads bounds how many completed runs' stages one refresh reads
// (one request each); the runs past it are counted without their stages.
const maxStageReads = 200

// completionState is where the count of completed runs stands.
type completionState struct {
	// From is when the home's first server started counting: runs that
	// closed before it are never counted.
	From time.Time `json:"from"`
	// Since is the latest close time counted.
	Since time.Time `json:"since"`
	// Counted are the executions counted that closed after Since less
	// completionOverlap, as RUN@CLOSE (close time in Unix nanoseconds).
	Counted map[string]time.Time `json:"counted,omitempty"`
}

func loadCompletions(file string, now time.Time) completionState {
	var st completionState
	if b, err := os.ReadFile(file); err == nil && json.Unmarshal(b, &st) == nil && !st.Since.IsZero() {
		if st.Counted == nil {
			st.Counted = map[string]time.Time{}
		}
		return st
	}
	return completionState{From: now, Since: now, Counted: map[string]time.Time{}}
}

func (st completionState) save(file string) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// countCompletions counts the runs that completed since the last call.
func (m *serverMetrics) countCompletions(ctx context.Context, c client.Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.completions
	from := st.Since.Add(-completionOverlap)
	runs, err := engine.List(ctx, c, fmt.Sprintf("CloseTime >= '%s'", from.UTC().Format(time.RFC3339Nano)))
	if err != nil {
		return err
	}
	slices.SortFunc(runs, func(a, b engine.RunInfo) int { return a.End.Compare(b.End) })
	reads, changed := 0, false
	for _, r := range runs {
		if r.End.IsZero() || r.End.Before(from) || r.End.Before(st.From) || !r.Status.Done() {
			// Open, or continued as new: not a completion.
			continue
		}
		key := r.RunID + "@" + strconv.FormatInt(r.End.UnixNano(), 10)
		if _, ok := st.Counted[key]; ok {
			continue
		}
		pipeline, result := r.Pipeline, string(r.Status)
		m.runs.WithLabelValues(pipeline, result).Inc()
		if !r.Start.IsZero() {
			m.runTime.WithLabelValues(pipeline, result).Observe(r.End.Sub(r.Start).Seconds())
		}
		if reads < maxStageReads {
			reads++
			m.countStages(ctx, c, r)
		}
		st.Counted[key] = r.End
		if r.End.After(st.Since) {
			st.Since = r.End
		}
		changed = true
	}
	for k, end := range st.Counted {
		if end.Before(st.Since.Add(-completionOverlap)) {
			delete(st.Counted, k)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := st.save(m.stateFile); err != nil {
		return fmt.Errorf("keeping where the count of completed runs stands: %w", err)
	}
	return nil
}

// countStages observes the durations of a completed run's stages.
func (m *serverMetrics) countStages(ctx context.Context, c client.Client, r engine.RunInfo) {
	st, ended, err := engine.ExecutionStatus(ctx, c, r.RunID, "")
	if err != nil || !ended {
		// Gone, or retried meanwhile: the run counts without its stages.
		return
	}
	for _, s := range st.Stages {
		if s.Start.IsZero() || s.End.IsZero() || !s.State.Done() || s.State == engine.StateSkipped {
			continue
		}
		m.stageTime.WithLabelValues(r.Pipeline, s.Name, string(s.State)).Observe(s.End.Sub(s.Start).Seconds())
	}
}

// MetricsURL is where the server serves its metrics: on its own listener,
// or on the one Config.MetricsListen gives.
func (s *Server) MetricsURL() string {
	if s.metrics != nil && s.metrics.listener != nil {
		return s.metrics.listener.URL()
	}
	return s.URL() + "/metrics"
}
