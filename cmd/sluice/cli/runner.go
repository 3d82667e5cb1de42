package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/engine/logstore/logship"
	"github.com/sluice-ci/sluice/internal/metrics"
	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/runners/registry"
	"github.com/sluice-ci/sluice/server"
)

// trimAfter is how long a runner is idle before it gives back memory.
const trimAfter = 5 * time.Second

const runnerLong = `Run a self-hosted runner: a Temporal worker that takes the stages whose
runs_on labels it has, on this host, from a Sluice server's Temporal
(sluice server --temporal-listen, or any cluster).

A runner hosts steps only; the pipelines' workflows run on the server.
It takes at most --max-stages stages at once and polls for a stage only
when it has room, so a busy runner leaves stages to idle ones. Each stage
gets a workspace under --work-dir, removed when the stage ends; while that
disk has less than --min-free-disk free the runner takes no stage and says
why (caches stay).

Stopping: the first SIGTERM (or Ctrl-C) drains: the runner takes no more
stages, lets the running ones finish (up to --drain-timeout), and exits 0.
A second SIGTERM cancels the running steps (their process groups get
SIGTERM, then SIGKILL after 10 s) and exits 1; their stages start again on
another runner. --once exits after one stage (ephemeral runners and
autoscalers).

Connection: --temporal-address, --namespace, and for a cluster with TLS
--tls-ca, --tls-cert, --tls-key, --tls-server-name; an API key in
SLUICE_TEMPORAL_API_KEY (never a flag, so it stays out of process lists).
Secrets are this host's: environment variables and files, as the pipeline
declares them. With --server URL (and SLUICE_TOKEN, a runner's token from
sluice server token create --runner NAME) step logs go to the server,
readable live from any machine (sluice logs -f --server URL), kept in a
spool under the work dir while it is unreachable, and private
repositories of the server's GitHub App check out with a read-only token
the server gives (docs/runners.md, "Private repositories"). BuildKit: BUILDKIT_HOST, or a buildkitd the runner starts
when a step first needs it. --metrics-listen HOST:PORT serves Prometheus
metrics at /metrics (docs/operations.md). docs/runners.md says more.`

func newRunner(e *env) *cobra.Command {
	var (
		o            local.Options
		rf           remoteFlags
		name, labels string
		workDir      string
		maxStages    int
		drainTimeout time.Duration
		once         bool
		registryAddr string
		minFree      string
		metricsAddr  string
	)
	cmd := &cobra.Command{
		Use:   "runner --temporal-address HOST:PORT",
		Short: "Run a self-hosted runner that takes stages from a Sluice server",
		Long:  runnerLong,
		Example: `  sluice runner --temporal-address ci.internal:7233 --labels linux,docker
  sluice runner --temporal-address ci.internal:7233 --labels gpu --max-stages 2 --work-dir /var/lib/sluice
  SLUICE_TOKEN=... sluice runner --temporal-address ci.internal:7233 --server http://ci.internal:8080 --labels linux
  SLUICE_TEMPORAL_API_KEY=... sluice runner --temporal-address acme.tmprl.cloud:7233 --namespace acme.sluice --once`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.TemporalAddress == "" {
				return usageError{errors.New("a runner needs the Temporal of a Sluice server: give --temporal-address HOST:PORT (sluice server --temporal-listen IP:PORT serves its embedded one to other hosts)")}
			}
			min, err := parseSize(minFree)
			if err != nil {
				return usageError{fmt.Errorf("--min-free-disk: %w", err)}
			}
			if maxStages < 1 {
				return usageError{fmt.Errorf("--max-stages must be at least 1, not %d", maxStages)}
			}
			if workDir == "" {
				home, err := local.Home()
				if err != nil {
					return err
				}
				workDir = filepath.Join(home, "runner")
			}
			o.Home = workDir
			o.APIKey = temporalAPIKey(e)
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			o.Runner = &local.RunnerOptions{Name: name, Labels: splitLabels(labels), NoWorkflows: true, MaxStages: maxStages, Registry: registryAddr, DrainTimeout: drainTimeout, Report: true, Version: version()}
			var sink *logship.Sink
			if api != nil {
				// Step logs go to the server, through a spool that keeps
				// them while it is unreachable.
				if sink, err = logship.New(logship.Options{ServerURL: api.url, Token: api.token, Spool: filepath.Join(workDir, "log-spool")}); err != nil {
					return err
				}
				o.Runner.Logs = sink
				// Private repositories of the server's GitHub App check
				// out with a read-only token the server gives this
				// runner's token (a runner's: token create --runner).
				o.Runner.GitCredentials = server.RunnerGitCredentials(api.url, api.token, nil)
			}
			rm, stopMetrics, err := runnerMetrics(e, &o, metricsAddr)
			if err != nil {
				return err
			}
			defer stopMetrics()
			return runRunner(cmd.Context(), e, o, drainTimeout, once, sink, min, rm)
		},
	}
	rf.register(cmd, e)
	fl := cmd.Flags()
	fl.StringVar(&o.TemporalAddress, "temporal-address", os.Getenv("SLUICE_TEMPORAL_ADDRESS"), "host:port of the server's Temporal (SLUICE_TEMPORAL_ADDRESS)")
	fl.StringVar(&o.Namespace, "namespace", "", "Temporal namespace (default sluice)")
	var tlsOpts local.TLSOptions
	tlsFlags(cmd, &tlsOpts)
	o.TLS = &tlsOpts
	host, _ := os.Hostname()
	fl.StringVar(&name, "name", host, "the runner's name, unique among runners and stable across restarts (a restarted runner resumes its stages by it)")
	fl.StringVar(&labels, "labels", os.Getenv("SLUICE_RUNNER_LABELS"), "comma-separated labels this runner offers to runs_on (SLUICE_RUNNER_LABELS)")
	fl.IntVar(&maxStages, "max-stages", 1, "how many stages the runner runs at once")
	fl.StringVar(&workDir, "work-dir", "", "where workspaces, caches and logs live (default $SLUICE_HOME/runner)")
	fl.DurationVar(&drainTimeout, "drain-timeout", 30*time.Minute, "how long the first SIGTERM waits for running stages before cancelling them")
	fl.BoolVar(&once, "once", false, "exit after one stage")
	fl.StringVar(&minFree, "min-free-disk", "2GiB", "take no stage while the work dir's disk has less free (0: never refuse)")
	fl.StringVar(&metricsAddr, "metrics-listen", os.Getenv("SLUICE_METRICS_LISTEN"), "serve Prometheus metrics at http://HOST:PORT/metrics (SLUICE_METRICS_LISTEN; default: none; docs/operations.md)")
	fl.StringVar(&registryAddr, "registry", os.Getenv(registry.EnvAddress), "host:port of the registry stage artifacts go through, shared by the runners of a pipeline ("+registry.EnvAddress+")")
	return cmd
}

func splitLabels(s string) []string {
	var out []string
	for _, l := range strings.Split(s, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// runnerMetrics serves the runner's metrics on addr, when it is given:
// the Temporal SDK's, and the runner's own (see package metrics).
func runnerMetrics(e *env, o *local.Options, addr string) (*metrics.Runner, func(), error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	reg := metrics.NewRegistry()
	h, err := metrics.Temporal(reg)
	if err != nil {
		return nil, nil, err
	}
	o.MetricsHandler = h
	ro := o.Runner
	dir := o.Home
	rm := metrics.NewRunner(reg, metrics.RunnerInfo{Name: ro.Name, Version: ro.Version, Labels: ro.Labels,
		DiskFree: func() (uint64, error) { return diskFree(dir) }})
	ro.StepDone = rm.StepDone
	srv, err := metrics.Listen(addr, reg)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(e.stdout, "Metrics at %s.\n", srv.URL())
	return rm, func() { _ = srv.Close() }, nil
}

func runRunner(ctx context.Context, e *env, o local.Options, drainTimeout time.Duration, once bool, sink *logship.Sink, minFree uint64, rm *metrics.Runner) error {
	if sink != nil {
		defer func() {
			// What the server has not acknowledged stays in the spool and
			// goes with the runner's next start.
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := sink.Close(sctx); err != nil {
				fmt.Fprintf(e.stderr, "sluice: some step logs are not on the server yet (%v); they stay in the spool and go with the runner's next start\n", err)
			}
		}()
	}
	if err := os.MkdirAll(o.Home, 0o755); err != nil {
		return fmt.Errorf("making the work dir: %w", err)
	}
	o.Logger = slog.New(slog.NewTextHandler(logFile(o.Home), &slog.HandlerOptions{Level: slog.LevelWarn}))
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	s, err := local.Start(ctx, o)
	if err != nil {
		return err
	}
	r := s.Runner()
	if rm != nil {
		rm.Watch(r.Pool())
	}
	ro := o.Runner
	labels := "none"
	if len(ro.Labels) > 0 {
		labels = strings.Join(ro.Labels, ",")
	}
	fmt.Fprintf(e.stdout, "Sluice runner %s (labels: %s) on Temporal %s, namespace %s; up to %d stage(s) at once; work dir %s.\n",
		ro.Name, labels, s.Address, s.Namespace, ro.MaxStages, o.Home)
	if sink != nil {
		fmt.Fprintln(e.stdout, "Step logs go to the server (--server).")
	} else {
		fmt.Fprintln(e.stdout, "Step logs stay in the work dir: give --server URL (and SLUICE_TOKEN) to send them to the server.")
	}

	pool := r.Pool()
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go watchDisk(wctx, e, pool, o.Home, minFree, 10*time.Second)
	// Idle, the runner gives back the memory start-up and its last
	// stages left behind (docs/runners.md, "Memory").
	go pool.WhenIdle(wctx, trimAfter, func() { proc.Trim() })
	var onceDone <-chan struct{}
	if once {
		ch := make(chan struct{})
		onceDone = ch
		go func() {
			for pool.Taken() == 0 {
				<-pool.Changed()
			}
			close(ch)
		}()
	}
	select {
	case <-sigs:
		fmt.Fprintf(e.stdout, "Draining: taking no more stages; waiting up to %s for %d running. Send SIGTERM again to cancel them.\n", drainTimeout, pool.Busy())
	case <-onceDone:
		fmt.Fprintln(e.stdout, "Took a stage (--once): taking no more; exiting when it ends.")
	case <-ctx.Done():
	}
	r.Drain()
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- r.Wait(dctx) }()
	select {
	case err := <-drained:
		if err == nil {
			s.Close()
			fmt.Fprintln(e.stdout, "Drained: no stage left; stopped.")
			return nil
		}
		fmt.Fprintf(e.stdout, "Drain timeout (%s) passed: cancelling the running steps; their stages start again on another runner.\n", drainTimeout)
	case <-sigs:
		fmt.Fprintln(e.stdout, "Cancelling the running steps; their stages start again on another runner.")
	}
	r.Abort()
	s.Close()
	return exitError{code: 1}
}
