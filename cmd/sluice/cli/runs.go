package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/engine/logstore"
	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
)

// withStack runs f with the local stack up and no runner.
func withStack(cmd *cobra.Command, e *env, sf *stackFlags, f func(ctx context.Context, s *local.Stack) error) error {
	ctx := cmd.Context()
	s, err := sf.start(ctx, e, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	return f(ctx, s)
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %s; got %d arguments", cmd.CommandPath(), names, len(args))}
		}
		return nil
	}
}

func newRuns(e *env) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	var pipeline, status string
	var limit int
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List recent runs",
		Long:  "Runs lists runs, newest first, from Temporal's visibility store, with their pipeline, ref, commit and status.",
		Example: `  sluice runs
  sluice runs --pipeline go-service --status failed`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api != nil {
				v := url.Values{}
				for k, val := range map[string]string{"pipeline": pipeline, "status": status} {
					if val != "" {
						v.Set(k, val)
					}
				}
				if limit > 0 {
					v.Set("limit", strconv.Itoa(min(limit, 1000)))
				} else {
					v.Set("limit", "1000")
				}
				var res struct {
					Runs []engine.RunInfo `json:"runs"`
				}
				if err := api.do(cmd.Context(), http.MethodGet, "/runs?"+v.Encode(), nil, &res); err != nil {
					return err
				}
				return writeRuns(e.stdout, res.Runs, limit)
			}
			var q []string
			if pipeline != "" {
				q = append(q, fmt.Sprintf("%s = %q", engine.AttrPipeline.GetName(), pipeline))
			}
			if status != "" {
				q = append(q, fmt.Sprintf("%s = %q", engine.AttrStatus.GetName(), status))
			}
			return withStack(cmd, e, &sf, func(ctx context.Context, s *local.Stack) error {
				runs, err := engine.List(ctx, s.Client, strings.Join(q, " AND "))
				if err != nil {
					return err
				}
				return writeRuns(e.stdout, runs, limit)
			})
		},
	}
	sf.register(cmd)
	rf.register(cmd, e)
	cmd.Flags().StringVar(&pipeline, "pipeline", "", "only runs of this pipeline")
	cmd.Flags().StringVar(&status, "status", "", "only runs in this state: running, succeeded, failed, cancelled")
	cmd.Flags().IntVar(&limit, "limit", 50, "show at most this many runs (0: all)")
	return cmd
}

// writeRuns prints runs as a table, at most limit of them (0: all).
func writeRuns(w io.Writer, runs []engine.RunInfo, limit int) error {
	if len(runs) == 0 {
		fmt.Fprintln(w, "No runs yet. Start one with: sluice run")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tPIPELINE\tREF\tSHA\tSTATUS\tSTARTED\tDURATION")
	for i, r := range runs {
		if limit > 0 && i >= limit {
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.7s\t%s\t%s\t%s\n", r.RunID, r.Pipeline, r.Ref, r.SHA, r.Status, r.Start.Local().Format("2006-01-02 15:04:05"), duration(r.Start, r.End))
	}
	return tw.Flush()
}

func newStatus(e *env) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status RUN",
		Short: "Show every stage and step of a run",
		Example: `  sluice status web-1a2b3c4d
  sluice status web-1a2b3c4d -o json`,
		Args: exactArgs(1, "a run ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api != nil {
				st, err := api.status(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return writeStatus(e.stdout, st, output)
			}
			return withStack(cmd, e, &sf, func(ctx context.Context, s *local.Stack) error {
				st, err := engine.Status(ctx, s.Client, args[0])
				if err != nil {
					return err
				}
				return writeStatus(e.stdout, st, output)
			})
		},
	}
	sf.register(cmd)
	rf.register(cmd, e)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// writeStatus prints a run's status: the summary and what waits for
// approval, or JSON.
func writeStatus(w io.Writer, st engine.RunStatus, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	writeSummary(w, st)
	for _, stage := range st.Stages {
		if a := stage.Approval; a != nil && stage.State == engine.StateWaitingApproval {
			fmt.Fprintf(w, "%s waits for approval: sluice approve %s %s\n", stage.ID, st.RunID, stage.ID)
		}
		if stage.Reason != "" && !stage.State.Done() && stage.State != engine.StateWaitingApproval {
			fmt.Fprintf(w, "%s: %s\n", stage.ID, stage.Reason)
		}
		for _, r := range stage.Restarts {
			fmt.Fprintf(w, "%s: %s\n", stage.ID, r)
		}
	}
	if st.Trimmed != "" {
		fmt.Fprintf(w, "This status was cut to fit Temporal's limits: %s.\n", st.Trimmed)
	}
	return nil
}

func newLogs(e *env) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs RUN [STEP]",
		Short: "Print the logs of a run, or of one step",
		Long: `Logs prints the logs of every step of a run, each line prefixed with
stage/step, or of one step, named as STEP or STAGE/STEP. With -f it follows
the run until it ends. Without --server it reads this machine's logs; with
--server, the server's, which runners on every host send it as their steps
run.`,
		Example: `  sluice logs web-1a2b3c4d
  sluice logs web-1a2b3c4d unit
  sluice logs web-1a2b3c4d 'test[go=1.22]/unit' -f`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("%s takes a run ID and optionally a step", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			runID := args[0]
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api != nil {
				if follow {
					ctx, stop := signalContext(cmd.Context())
					defer stop()
					return followRemote(ctx, e, api, runID, progressPlain, stepFilter(args), false)
				}
				step := ""
				if len(args) == 2 {
					step = args[1]
				}
				b, err := api.logs(cmd.Context(), runID, step)
				if err != nil {
					return err
				}
				printAPILogs(e.stdout, b, len(args) == 1)
				return nil
			}
			home, err := local.Home()
			if err != nil {
				return err
			}
			if follow {
				return withStack(cmd, e, &sf, func(ctx context.Context, s *local.Stack) error {
					fctx, stop := signalContext(ctx)
					defer stop()
					_, err := followRun(fctx, s.Client, filteredLogs{s.Logs, stepFilter(args)}, runID, progressPlain, e.stdout)
					return err
				})
			}
			logs := local.Logs(home)
			keys, err := logs.List(runID)
			if err != nil {
				return fmt.Errorf("run %q has no logs on this machine (they stay with the runner that ran the step): %w", runID, err)
			}
			match := stepFilter(args)
			n := 0
			for _, k := range keys {
				if !match(k.Stage, k.Step) {
					continue
				}
				n++
				if err := printLog(e.stdout, logs, k.Run, k.Stage, k.Step, len(args) == 1); err != nil {
					return err
				}
			}
			if n == 0 {
				return fmt.Errorf("run %q has no step %q; its steps are: %s", runID, args[1], keyNames(keys))
			}
			return nil
		},
	}
	sf.register(cmd)
	rf.register(cmd, e)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the run until it ends")
	return cmd
}

// stepFilter matches a STEP or STAGE/STEP argument; no argument matches all.
func stepFilter(args []string) func(stage, step string) bool {
	if len(args) < 2 {
		return func(string, string) bool { return true }
	}
	want := args[1]
	return func(stage, step string) bool {
		return want == step || want == stage+"/"+step
	}
}

// filteredLogs follows only the steps a filter matches.
type filteredLogs struct {
	logstore.Store
	match func(stage, step string) bool
}

func (f filteredLogs) Follow(ctx context.Context, run, stage, step string) (io.ReadCloser, error) {
	if !f.match(stage, step) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return f.Store.Follow(ctx, run, stage, step)
}

func keyNames(keys []logstore.Key) string {
	var names []string
	for _, k := range keys {
		names = append(names, k.Stage+"/"+k.Step)
	}
	return strings.Join(names, ", ")
}

func printLog(w io.Writer, logs logstore.Store, run, stage, step string, prefix bool) error {
	r, err := logs.Open(run, stage, step)
	if err != nil {
		return err
	}
	defer r.Close()
	if !prefix {
		_, err = io.Copy(w, r)
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(w, "%s/%s | %s", stage, step, strings.TrimSuffix(line, "\n")+"\n")
		}
	}
	return nil
}

func newDecide(e *env, approve bool) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	var by, reason string
	verb, short := "approve", "Approve a stage that waits for approval"
	if !approve {
		verb, short = "reject", "Reject a stage that waits for approval; the run fails"
	}
	cmd := &cobra.Command{
		Use:     verb + " RUN STAGE",
		Short:   short,
		Example: fmt.Sprintf("  sluice %s web-1a2b3c4d deploy --reason \"change ticket CHG-42\"", verb),
		Args:    exactArgs(2, "a run ID and a stage"),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api != nil {
				if by != "" {
					return usageError{fmt.Errorf("--by is for runs on Temporal; a server records the user of your token (sluice login)")}
				}
				var res struct {
					By string `json:"by"`
				}
				if err := api.do(cmd.Context(), http.MethodPost, runPath(args[0], "/"+verb), map[string]string{"stage": args[1], "reason": reason}, &res); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "Stage %s of run %s %sd by %s.\n", args[1], args[0], verb, res.By)
				return nil
			}
			if by == "" {
				by = os.Getenv("USER")
			}
			return withStack(cmd, e, &sf, func(ctx context.Context, s *local.Stack) error {
				f := engine.Approve
				if !approve {
					f = engine.Reject
				}
				if err := f(ctx, s.Client, args[0], args[1], by, reason); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "Stage %s of run %s %sd by %s.\n", args[1], args[0], verb, by)
				return nil
			})
		},
	}
	sf.register(cmd)
	rf.register(cmd, e)
	cmd.Flags().StringVar(&by, "by", "", "who decides (default: $USER; with --server, the token's user)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the decision")
	return cmd
}

func newCancel(e *env) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:     "cancel RUN",
		Short:   "Cancel a run: running steps are stopped and cleaned up",
		Example: "  sluice cancel web-1a2b3c4d",
		Args:    exactArgs(1, "a run ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api != nil {
				if err := api.do(cmd.Context(), http.MethodPost, runPath(args[0], "/cancel"), nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "Run %s is being cancelled.\n", args[0])
				return nil
			}
			return withStack(cmd, e, &sf, func(ctx context.Context, s *local.Stack) error {
				if err := engine.Cancel(ctx, s.Client, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "Run %s is being cancelled.\n", args[0])
				return nil
			})
		},
	}
	sf.register(cmd)
	rf.register(cmd, e)
	return cmd
}

func newRetry(e *env) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	var from, progress string
	var dirty bool
	cmd := &cobra.Command{
		Use:   "retry RUN",
		Short: "Run a finished run again from a step, keeping what came before",
		Long: `Retry resumes a failed or cancelled run under the same run ID. With --from,
it starts again at that step (STEP or STAGE/STEP): the steps before it in
its stage and the stages before it keep their results and are not run
again. Without --from it starts again at the first step that did not
succeed. It runs here with an in-process runner and follows the run like
sluice run; with --server, the server's runners run it.`,
		Example: `  sluice retry web-1a2b3c4d
  sluice retry web-1a2b3c4d --from unit`,
		Args: exactArgs(1, "a run ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := resolveProgress(progress, e.stdout)
			if err != nil {
				return err
			}
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api != nil {
				// The server's runners run it again.
				if err := api.do(cmd.Context(), http.MethodPost, runPath(args[0], "/retry"), map[string]string{"from": from}, nil); err != nil {
					return err
				}
				ctx, stop := signalContext(cmd.Context())
				defer stop()
				return followRemote(ctx, e, api, args[0], mode, nil, true)
			}
			wd, err := e.getwd()
			if err != nil {
				return err
			}
			repo, isRepo := dsl.RepoRoot(wd)
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			s, err := sf.start(context.Background(), e, nil)
			if err != nil {
				return err
			}
			defer s.Close()
			// The runner brings up buildkitd and the registry when the
			// run's plan has image steps or containers, as sluice run does.
			p, err := engine.RunPlan(context.Background(), s.Client, args[0])
			if err != nil {
				return err
			}
			sf.build = local.NeedsBuild(&p)
			build := sf.buildOptions(e)
			if build != nil {
				// The run's images name the registry its first run
				// served; serve it there again if the port is free.
				build.RegistryPort = localRegistryPort(&p)
			}
			// On the local server, which hosts the workflows, the runner
			// takes only the stages.
			if err := s.AddRunner(context.Background(), build, local.RunnerOptions{Name: local.DefaultRunnerName(), Repo: repo, Dirty: dirty || !isRepo, NoWorkflows: sf.temporalAddress == ""}); err != nil {
				return err
			}
			if err := engine.Retry(context.Background(), s.Client, args[0], from); err != nil {
				return err
			}
			return followToEnd(ctx, e, s, args[0], mode)
		},
	}
	sf.register(cmd)
	rf.register(cmd, e)
	cmd.Flags().StringVar(&from, "from", "", "the step to start again at (STEP or STAGE/STEP)")
	cmd.Flags().StringVar(&progress, "progress", progressAuto, "how to show progress: auto, tty, plain or json")
	cmd.Flags().BoolVar(&dirty, "dirty", false, "run the working tree as it is instead of the run's commit")
	return cmd
}

func newDev(e *env) *cobra.Command {
	var sf stackFlags
	var labels []string
	var dirty bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Keep the local server and a runner up in the foreground",
		Long: `Dev keeps the local stack up until Ctrl-C, with a runner of its own,
buildkitd (or BUILDKIT_HOST) and a registry (or --registry), so that
several commands (sluice run, status, approve, logs) share them from other
terminals, and runs that wait on approvals or were interrupted go on here.
buildkitd is supervised: when it dies, dev says so and starts it again.

When the local server of $SLUICE_HOME already runs (one that a command
started in the background), dev says so, uses it and keeps it from
stopping as idle while dev runs. Otherwise dev is that server, in the
foreground: the embedded Temporal server, the workflows and the HTTP API
on 127.0.0.1 (a free port), stopped with dev.`,
		Example: `  sluice dev
  sluice dev --label docker`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			wd, err := e.getwd()
			if err != nil {
				return err
			}
			repo, isRepo := dsl.RepoRoot(wd)
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			home, err := local.Home()
			if err != nil {
				return err
			}
			sf.build, sf.buildOptional = true, true
			runner := local.RunnerOptions{Name: local.DefaultRunnerName(), Labels: labels, Repo: repo, Dirty: dirty || !isRepo}
			if sf.temporalAddress != "" {
				s, err := sf.start(context.Background(), e, &runner)
				if err != nil {
					return err
				}
				defer s.Close()
				return devReady(ctx, e, s, home, "")
			}
			unlock, err := lockHome(ctx, home)
			if err != nil {
				return err
			}
			if r, ok := localServer(home); ok {
				unlock()
				fmt.Fprintf(e.stdout, "The local Sluice server already runs at %s (pid %d); dev uses it and keeps it up while dev runs.\n", r.URL, r.PID)
				s, err := sf.start(context.Background(), e, &runner)
				if err != nil {
					return err
				}
				defer s.Close()
				go keepAlive(ctx, r.URL)
				return devReady(ctx, e, s, home, r.URL)
			}
			// No server: dev is the server, in the foreground.
			runner.NoWorkflows = true
			srv, err := startDevServer(home, sf.namespace)
			if err != nil {
				unlock()
				return err
			}
			unlock()
			defer stopLocked(home, srv.Close)
			if err := srv.Stack().AddRunner(context.Background(), sf.buildOptions(e), runner); err != nil {
				return err
			}
			return devReady(ctx, e, srv.Stack(), home, srv.URL())
		},
	}
	sf.register(cmd)
	cmd.Flags().StringSliceVar(&labels, "label", nil, "labels of the runner, for stages with runs_on")
	cmd.Flags().BoolVar(&dirty, "dirty", false, "run the working tree as it is instead of each run's commit")
	return cmd
}

// devReady says what sluice dev runs and waits for Ctrl-C.
func devReady(ctx context.Context, e *env, s *local.Stack, home, url string) error {
	at := ""
	if url != "" {
		at = "server " + url + ", "
	}
	fmt.Fprintf(e.stdout, "Sluice dev: %sTemporal at %s (namespace %s), runner %s, BuildKit at %s, registry %s, state in %s.\nPress Ctrl-C to stop.\n", at, s.Address, s.Namespace, local.DefaultRunnerName(), s.Build.BuildKitAddress(), s.Build.Registry, filepath.Clean(home))
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "Stopping.")
	return nil
}

// keepAlive asks a server's /healthz every second until ctx ends, so that
// it does not stop as idle under sluice dev, however short its idle
// timeout.
func keepAlive(ctx context.Context, url string) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = pingServer(url)
		}
	}
}

// startDevServer starts the server of sluice dev in this process, for the
// other commands to find: the caller holds the home's lock.
func startDevServer(home, namespace string) (*server.Server, error) {
	logger := slog.New(slog.NewTextHandler(logFile(home), &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := server.Config{Home: home, Listen: "127.0.0.1:0", Namespace: namespace, NoRunner: true}
	srv, err := server.Start(context.Background(), cfg, logger)
	if err != nil {
		return nil, err
	}
	if err := proc.WriteRecord(serverRecordFile(home), serverRecord{URL: srv.URL(), PID: os.Getpid()}); err != nil {
		srv.Close()
		return nil, err
	}
	return srv, nil
}
