package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"golang.org/x/term"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
)

// sluice replay without --pipeline replays recorded workflow histories
// against this build's workflow code: the check before an upgrade
// (docs/operations.md, "Upgrading"). The histories come from the cluster
// (run IDs, or every execution of the last days), from a Sluice server's
// API (run IDs with --server), or from files (--history).

// historyFlags are sluice replay's flags for replaying histories.
type historyFlags struct {
	since    string
	files    bool
	parallel int
}

// historySource is one history to replay and how to get it.
type historySource struct {
	workflowID, runID, typ, file string
	get                          func(ctx context.Context) (*historypb.History, error)
}

// historyReport is sluice replay -o json without --pipeline.
type historyReport struct {
	Version    string                 `json:"sluice_version"`
	Executions []engine.HistoryReplay `json:"executions"`
	Summary    historySummary         `json:"summary"`
}

type historySummary struct {
	// Replayed counts the histories replayed: OK, and Failed.
	Replayed int `json:"replayed"`
	OK       int `json:"ok"`
	Failed   int `json:"failed"`
	// Unavailable counts those that could not be fetched or read.
	Unavailable int `json:"unavailable"`
}

func replayHistories(cmd *cobra.Command, e *env, sf *stackFlags, rf *remoteFlags, args []string, f historyFlags, output string) error {
	ctx := cmd.Context()
	register := e.workflows
	if register == nil {
		register = server.RegisterAllWorkflows
	}
	var sources []historySource
	if f.files {
		for _, file := range args {
			sources = append(sources, historySource{file: file, get: func(context.Context) (*historypb.History, error) {
				return readHistoryFile(file)
			}})
		}
		return replaySources(ctx, e, sources, register, f.parallel, output)
	}
	api, err := rf.client(e)
	if err != nil {
		return err
	}
	if api != nil {
		if f.since != "" {
			return usageError{errors.New("--since lists every workflow execution of the cluster (deliveries, reports and traces besides runs), which a server's API does not give: " +
				"run it with access to Temporal (the server's $SLUICE_HOME, or --temporal-address), or name the runs")}
		}
		for _, id := range args {
			sources = append(sources, historySource{workflowID: id, get: func(ctx context.Context) (*historypb.History, error) {
				var b []byte
				if err := api.do(ctx, http.MethodGet, runPath(id, "/history"), nil, &b); err != nil {
					return nil, err
				}
				return client.HistoryFromJSON(bytes.NewReader(b), client.HistoryJSONOptions{})
			}})
		}
		return replaySources(ctx, e, sources, register, f.parallel, output)
	}
	s, err := sf.attach(ctx, e)
	if err != nil {
		return err
	}
	defer s.Close()
	c := s.Client
	if f.since != "" {
		d, _ := parseSince(f.since) // checked with the arguments
		since := time.Now().Add(-d)
		list, err := server.Executions(ctx, c, since)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "%d workflow %s started or ended since %s, or still running.\n",
			len(list), plural(len(list), "execution", "executions"), since.Local().Format("2006-01-02 15:04"))
		for _, x := range list {
			sources = append(sources, historySource{workflowID: x.WorkflowID, runID: x.RunID, typ: x.Type, get: func(ctx context.Context) (*historypb.History, error) {
				return engine.FetchHistory(ctx, c, x.WorkflowID, x.RunID)
			}})
		}
	} else {
		for _, id := range args {
			sources = append(sources, historySource{workflowID: id, get: func(ctx context.Context) (*historypb.History, error) {
				return engine.FetchHistory(ctx, c, id, "")
			}})
		}
	}
	return replaySources(ctx, e, sources, register, f.parallel, output)
}

// attach connects to the Temporal of --temporal-address, or to that of the
// Sluice server that runs for $SLUICE_HOME. Unlike the other commands it
// never starts a server: one of this build would take up the workflows
// the replay is to check before any of them runs this build's code.
func (f *stackFlags) attach(ctx context.Context, e *env) (*local.Stack, error) {
	home, err := local.Home()
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(logFile(home), &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := local.Options{Home: home, TemporalAddress: f.temporalAddress, Namespace: f.namespace, Logger: logger, TLS: &f.tls, APIKey: temporalAPIKey(e)}
	if f.temporalAddress == "" {
		if _, ok := localServer(home); !ok {
			return nil, fmt.Errorf("no Sluice server runs for %s: sluice replay reads the histories through the server that runs them, and does not start one "+
				"(this build's would take up the workflows being checked); start the server whose runs to check, or give --temporal-address", home)
		}
		opts.Attach = true
	}
	return local.Start(ctx, opts)
}

// parseSince reads --since: days (7d) or a duration (36h, 90m).
func parseSince(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days float64
		days, err = strconv.ParseFloat(n, 64)
		d = time.Duration(days * 24 * float64(time.Hour))
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--since %q is not a time back from now like 7d or 36h", s)
	}
	return d, nil
}

// readHistoryFile reads a history exported as JSON (temporal workflow show
// --output json, engine/testdata).
func readHistoryFile(path string) (*historypb.History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return h, nil
}

// replaySources fetches and replays the histories, parallel at a time,
// and reports them in the order given. It fails (exit 1) when any replay
// failed or any history could not be had.
func replaySources(ctx context.Context, e *env, sources []historySource, register func(worker.WorkflowRegistry), parallel int, output string) error {
	reps := make([]engine.HistoryReplay, len(sources))
	p := newReplayProgress(e.stderr, len(sources))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(parallel, len(sources)) {
		wg.Go(func() {
			for i := range jobs {
				reps[i] = replaySource(ctx, sources[i], register)
				p.done()
			}
		})
	}
feed:
	for i := range sources {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	p.end()
	if err := ctx.Err(); err != nil {
		return err
	}

	rep := historyReport{Version: version(), Executions: reps}
	for _, r := range reps {
		switch {
		case r.Result == engine.ReplayUnavailable:
			rep.Summary.Unavailable++
		case r.Failed():
			rep.Summary.Replayed++
			rep.Summary.Failed++
		default:
			rep.Summary.Replayed++
			rep.Summary.OK++
		}
	}
	if output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeHistoryReplays(e.stdout, rep)
	}
	if rep.Summary.Failed > 0 || rep.Summary.Unavailable > 0 {
		return exitError{1}
	}
	return nil
}

func replaySource(ctx context.Context, src historySource, register func(worker.WorkflowRegistry)) engine.HistoryReplay {
	h, err := src.get(ctx)
	if err != nil {
		return engine.HistoryReplay{WorkflowID: src.workflowID, RunID: src.runID, WorkflowType: src.typ, File: src.file,
			Result: engine.ReplayUnavailable, Error: err.Error()}
	}
	rep := engine.ReplayHistory(h, register)
	rep.File = src.file
	if src.workflowID != "" {
		rep.WorkflowID = src.workflowID
	}
	if src.runID != "" {
		rep.RunID = src.runID
	}
	return rep
}

// writeHistoryReplays prints a line per execution (OK, NONDETERMINISTIC,
// FAILED, or NOT FETCHED / NOT READ), under a failure where and why, and
// the summary.
func writeHistoryReplays(w io.Writer, rep historyReport) {
	for _, r := range rep.Executions {
		var status string
		switch r.Result {
		case engine.ReplayOK:
			status = "OK"
		case engine.ReplayNondeterministic:
			status = "NONDETERMINISTIC"
		case engine.ReplayFailed:
			status = "FAILED"
		case engine.ReplayUnavailable:
			status = "NOT FETCHED"
			if r.File != "" {
				status = "NOT READ"
			}
		}
		fmt.Fprintf(w, "%-16s  %s\n", status, executionName(r))
		if d := r.Divergence; d != nil {
			fmt.Fprintf(w, "    %s\n", d.Explain())
			fmt.Fprintf(w, "    SDK: %s\n", d.SDK)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "    %s\n", r.Error)
		}
	}
	s := rep.Summary
	line := fmt.Sprintf("%d replayed, %d failed", s.Replayed, s.Failed)
	if s.Unavailable > 0 {
		how := "fetched"
		if rep.Executions[0].File != "" {
			how = "read"
		}
		line += fmt.Sprintf(", %d could not be %s", s.Unavailable, how)
	}
	fmt.Fprintf(w, "\n%s.\n", line)
	if s.Failed > 0 {
		fmt.Fprintln(w, "A worker of this build would stop the failed workflows where they diverge: keep the running version, and put the change behind workflow.GetVersion (docs/operations.md, \"Upgrading\").")
	}
}

// executionName names an execution in the report: its file, workflow ID,
// type and run.
func executionName(r engine.HistoryReplay) string {
	var s []string
	if r.File != "" {
		s = append(s, r.File)
	}
	if r.WorkflowID != "" {
		s = append(s, r.WorkflowID)
	}
	var about []string
	if r.WorkflowType != "" {
		about = append(about, r.WorkflowType)
	}
	if r.RunID != "" {
		about = append(about, "run "+r.RunID)
	}
	if r.Events > 0 {
		about = append(about, fmt.Sprintf("%d %s", r.Events, plural(r.Events, "event", "events")))
	}
	name := strings.Join(s, " ")
	if len(about) > 0 {
		name += " (" + strings.Join(about, ", ") + ")"
	}
	return name
}

// progressFrom is how many histories make a list long enough to show
// progress for.
const progressFrom = 20

// replayProgress says on stderr how far a long replay is: in place on a
// terminal, else a line at every tenth.
type replayProgress struct {
	w        io.Writer
	total    int
	terminal bool
	mu       sync.Mutex
	n        atomic.Int64
	shown    int
}

func newReplayProgress(w io.Writer, total int) *replayProgress {
	p := &replayProgress{w: w, total: total}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		p.terminal = true
	}
	return p
}

func (p *replayProgress) done() {
	n := int(p.n.Add(1))
	if p.total < progressFrom {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		fmt.Fprintf(p.w, "\rReplayed %d of %d", n, p.total)
		return
	}
	if tenth := n * 10 / p.total; tenth > p.shown {
		p.shown = tenth
		fmt.Fprintf(p.w, "Replayed %d of %d (%d%%)\n", n, p.total, n*100/p.total)
	}
}

func (p *replayProgress) end() {
	if p.total >= progressFrom && p.terminal {
		fmt.Fprintln(p.w)
	}
}
