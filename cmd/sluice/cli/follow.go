package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/engine/logstore"
)

// The progress modes of commands that follow a run.
const (
	progressAuto  = "auto"
	progressTTY   = "tty"
	progressPlain = "plain"
	progressJSON  = "json"
)

func resolveProgress(mode string, w io.Writer) (string, error) {
	switch mode {
	case progressTTY, progressPlain, progressJSON:
		return mode, nil
	case progressAuto, "":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
			return progressTTY, nil
		}
		return progressPlain, nil
	}
	return "", usageError{fmt.Errorf("--progress %q is not a mode; use auto, tty, plain or json", mode)}
}

// follower prints a run as it happens: every step's log lines with a
// stage/step prefix, and the changes of state.
type follower struct {
	out   io.Writer
	mode  string
	logs  logstore.Store
	runID string

	mu      sync.Mutex // serialises output
	status  string     // the tty mode's status line, redrawn under the output
	wg      sync.WaitGroup
	seen    map[string]engine.State // "stage/step" and "stage" -> last state printed
	tailing map[string]bool
	decided map[string]bool // stages whose approval decision was printed
}

func (f *follower) printf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mode != progressTTY {
		fmt.Fprintf(f.out, format, args...)
		return
	}
	// Output goes above the status line: clear it, write, draw it again.
	fmt.Fprintf(f.out, "\r\x1b[K"+format, args...)
	fmt.Fprint(f.out, f.status)
}

// setStatus redraws the tty mode's status line: what runs now and how far
// the run is.
func (f *follower) setStatus(st engine.RunStatus) {
	if f.mode != progressTTY {
		return
	}
	var running []string
	done, total := 0, 0
	for _, s := range st.Stages {
		for _, step := range s.Steps {
			total++
			switch {
			case step.State == engine.StateRunning:
				running = append(running, fmt.Sprintf("%s/%s %s", s.ID, step.Name, duration(step.Start, time.Time{})))
			case step.State.Done():
				done++
			}
		}
		if s.State == engine.StateWaitingApproval {
			running = append(running, s.ID+" waits for approval")
		}
	}
	line := fmt.Sprintf("\x1b[2m[%d/%d steps] %s\x1b[0m", done, total, strings.Join(running, ", "))
	if st.State.Done() {
		line = ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = line
	fmt.Fprint(f.out, "\r\x1b[K"+line)
}

func (f *follower) event(kind, stage, step string, fields map[string]any) {
	ev := map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano), "run": f.runID, "event": kind, "stage": stage}
	if step != "" {
		ev["step"] = step
	}
	for k, v := range fields {
		ev[k] = v
	}
	b, _ := json.Marshal(ev)
	f.printf("%s\n", b)
}

func (f *follower) prefix(stage, step string) string {
	p := stage + "/" + step
	if f.mode == progressTTY {
		return fmt.Sprintf("\x1b[%dm%s\x1b[0m", 31+int(hash(stage)%6), p)
	}
	return p
}

func hash(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// tail streams one step's log until the step's writer closes it.
func (f *follower) tail(ctx context.Context, stage, step string) {
	defer f.wg.Done()
	r, err := f.logs.Follow(ctx, f.runID, stage, step)
	if err != nil {
		return
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f.mode == progressJSON {
			f.event("log", stage, step, map[string]any{"line": sc.Text()})
			continue
		}
		f.printf("%s | %s\n", f.prefix(stage, step), sc.Text())
	}
}

// update prints what changed since the last status and starts tailing the
// logs of steps that started.
func (f *follower) update(ctx context.Context, st engine.RunStatus) {
	for _, s := range st.Stages {
		if f.seen[s.ID] != s.State {
			f.seen[s.ID] = s.State
			f.stageChanged(s)
		}
		// A decision is said once, even when the wait for it was too
		// short for a poll to see (approved from another terminal at once).
		if a := s.Approval; a != nil && a.Decision != "" && f.mode != progressJSON && !f.decided[s.ID] {
			f.decided[s.ID] = true
			if a.By != engine.DryRunApprover {
				msg := fmt.Sprintf("%s %s by %s", s.ID, a.Decision, a.By)
				if a.Decision == engine.DecisionTimedOut {
					msg = s.ID + ": the approval timed out"
				}
				if a.Reason != "" && a.Decision != engine.DecisionTimedOut {
					msg += ": " + a.Reason
				}
				f.printf("%s\n", msg)
			}
		}
		for _, step := range s.Steps {
			key := s.ID + "/" + step.Name
			if step.State != engine.StatePending && step.State != engine.StateSkipped && !f.tailing[key] && !step.Resumed {
				f.tailing[key] = true
				f.wg.Add(1)
				go f.tail(ctx, s.ID, step.Name)
			}
			if f.seen[key] != step.State {
				f.seen[key] = step.State
				f.stepChanged(s.ID, step)
			}
		}
	}
}

func (f *follower) stageChanged(s engine.StageStatus) {
	if f.mode == progressJSON {
		f.event("stage", s.ID, "", map[string]any{"state": s.State, "reason": s.Reason})
		return
	}
	switch s.State {
	case engine.StateWaitingApproval:
		who := "anyone"
		if s.Approval != nil && len(s.Approval.Approvers) > 0 {
			who = strings.Join(s.Approval.Approvers, ", ")
		}
		f.printf("%s waits for approval by %s: sluice approve %s %s\n", s.ID, who, f.runID, s.ID)
	case engine.StateSkipped:
		f.printf("%s skipped: %s\n", s.ID, s.Reason)
	}
}

func (f *follower) stepChanged(stage string, s engine.StepStatus) {
	if f.mode == progressJSON {
		fields := map[string]any{"state": s.State, "attempt": s.Attempt}
		if s.Error != "" {
			fields["error"] = s.Error
		}
		f.event("step", stage, s.Name, fields)
		return
	}
	p := f.prefix(stage, s.Name)
	switch s.State {
	case engine.StateRunning:
		if s.Attempt > 1 {
			f.printf("%s retrying (attempt %d)\n", p, s.Attempt)
		}
	case engine.StateFailed:
		f.printf("%s failed: %s\n", p, s.Error)
	}
}

// runSource is where a follower reads a run's state and cancels it:
// Temporal (temporalRuns), or a server's API (apiRuns, see remote.go).
type runSource interface {
	// Progress is engine.Progress.
	Progress(ctx context.Context, runID string) (engine.RunStatus, bool, error)
	// Wait is engine.Wait: the final status, or an error that may be
	// Temporary.
	Wait(ctx context.Context, runID string) (engine.RunStatus, error)
	Cancel(ctx context.Context, runID string) error
}

// temporalRuns reads runs from Temporal.
type temporalRuns struct{ c client.Client }

func (t temporalRuns) Progress(ctx context.Context, runID string) (engine.RunStatus, bool, error) {
	return engine.Progress(ctx, t.c, runID)
}

func (t temporalRuns) Wait(ctx context.Context, runID string) (engine.RunStatus, error) {
	return engine.Wait(ctx, t.c, runID)
}

func (t temporalRuns) Cancel(ctx context.Context, runID string) error {
	return engine.Cancel(ctx, t.c, runID)
}

// followRun prints a run until it ends and returns its final status. When
// ctx is cancelled (Ctrl-C), it cancels the run and waits for it to stop.
func followRun(ctx context.Context, c client.Client, logs logstore.Store, runID, mode string, out io.Writer) (engine.RunStatus, error) {
	return follow(ctx, temporalRuns{c}, logs, runID, mode, out)
}

// follow is followRun on any source of runs.
func follow(ctx context.Context, c runSource, logs logstore.Store, runID, mode string, out io.Writer) (engine.RunStatus, error) {
	f := &follower{out: out, mode: mode, logs: logs, runID: runID, seen: map[string]engine.State{}, tailing: map[string]bool{}, decided: map[string]bool{}}
	tailCtx, stopTails := context.WithCancel(context.Background())
	defer stopTails()
	// The end of the run wakes the loop at once, not at the next tick, with
	// the run's final status.
	ended := make(chan struct{})
	var final *engine.RunStatus
	go func() {
		defer close(ended)
		for tailCtx.Err() == nil {
			st, err := c.Wait(tailCtx, runID)
			if err == nil {
				final = &st
				return
			}
			var notEnded interface{ Temporary() bool }
			if !errors.As(err, &notEnded) {
				return
			}
		}
	}()
	cancelled, hasEnded := false, false
	for {
		var st engine.RunStatus
		var ok bool
		var err error
		if hasEnded && final != nil {
			st, ok = *final, true
		} else {
			st, ok, err = c.Progress(context.Background(), runID)
		}
		// While the workflow is busy (its first task, a step just ended),
		// look again soon rather than wait on it.
		soon := time.After(250 * time.Millisecond)
		if err == nil && !ok {
			soon = time.After(20 * time.Millisecond)
		}
		if ok {
			f.update(tailCtx, st)
			f.setStatus(st)
			if st.State.Done() {
				done := make(chan struct{})
				go func() { f.wg.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(3 * time.Second):
				}
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			if !cancelled {
				cancelled = true
				if mode != progressJSON {
					f.printf("Cancelling run %s (Ctrl-C again to stop waiting)...\n", runID)
				}
				if err := c.Cancel(context.Background(), runID); err != nil {
					return st, fmt.Errorf("cancelling run %s: %w", runID, err)
				}
				ctx = context.Background()
				ctx, _ = signalContext(ctx) // a second Ctrl-C stops waiting
			} else {
				return st, errors.New("stopped waiting; the run goes on being cancelled")
			}
		case <-soon:
		case <-ended:
			ended, hasEnded = nil, true // from now on the loop reads the final status
		}
	}
}

// writeSummary prints a table of every stage and step with its state and
// duration.
func writeSummary(w io.Writer, st engine.RunStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tSTEP\tSTATUS\tDURATION")
	for _, s := range st.Stages {
		if len(s.Steps) == 0 || s.State == engine.StateSkipped {
			fmt.Fprintf(tw, "%s\t\t%s\t%s\n", s.ID, s.State, duration(s.Start, s.End))
			continue
		}
		for _, step := range s.Steps {
			status := string(step.State)
			if step.Attempt > 1 {
				status += fmt.Sprintf(" (attempt %d)", step.Attempt)
			}
			if step.Resumed {
				status += " (kept)"
			}
			if step.DryRun != "" {
				status += " (dry run: " + step.DryRun + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ID, step.Name, status, duration(step.Start, step.End))
		}
	}
	tw.Flush()
	writeTests(w, st)
	what := "Run"
	if st.DryRun {
		what = "Dry run"
	}
	fmt.Fprintf(w, "\n%s %s %s in %s.\n", what, st.RunID, st.State, duration(st.Start, st.End))
	if st.DryRun {
		fmt.Fprintln(w, "Nothing was pushed, scanned, tagged, released, committed or synced; the steps' logs say what would have been (\"dry run: would ...\"). Run and container steps ran.")
	}
	if st.Error != "" {
		fmt.Fprintf(w, "%s\n", st.Error)
	}
}

// summaryFailures is how many failed tests of a step the summary lists.
const summaryFailures = 5

// writeTests says what the test reports of the run's steps counted, and
// where the first tests of each step failed.
func writeTests(w io.Writer, st engine.RunStatus) {
	for _, s := range st.Stages {
		for _, step := range s.Steps {
			r := step.Tests
			if r == nil {
				continue
			}
			fmt.Fprintf(w, "\n%s/%s tests: %s\n", s.ID, step.Name, r.Summary())
			shown := min(len(r.Failures), summaryFailures)
			for _, f := range r.Failures[:shown] {
				fmt.Fprintf(w, "  FAIL %s\n", f)
			}
			if more := r.Failed - shown; more > 0 && shown > 0 {
				fmt.Fprintf(w, "  ... and %d more failed\n", more)
			}
		}
	}
}

func duration(start, end time.Time) string {
	if start.IsZero() {
		return "-"
	}
	if end.IsZero() {
		end = time.Now()
	}
	d := end.Sub(start)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
