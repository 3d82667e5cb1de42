package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/runners/registry"
	"github.com/sluice-ci/sluice/server"
)

// stackFlags say which Temporal the run commands talk to.
type stackFlags struct {
	temporalAddress, namespace string
	tls                        local.TLSOptions
	// registry is an existing registry; build brings up BuildKit and a
	// registry (set by the command before start).
	registry string
	build    bool
	// buildOptional keeps the stack up when buildkitd cannot start.
	buildOptional bool
}

func (f *stackFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.temporalAddress, "temporal-address", os.Getenv("SLUICE_TEMPORAL_ADDRESS"), "host:port of an existing Temporal cluster (default: the local server of $SLUICE_HOME, started in the background when none runs)")
	cmd.Flags().StringVar(&f.namespace, "namespace", "", "Temporal namespace (default sluice)")
	tlsFlags(cmd, &f.tls)
	cmd.Flags().StringVar(&f.registry, "registry", os.Getenv(registry.EnvAddress), "host:port of an existing registry for image steps and containers (default: the one sluice serves on 127.0.0.1, port 5000 when free)")
}

// start brings up the local stack; runner is nil for commands that only
// look at runs.
func (f *stackFlags) start(ctx context.Context, e *env, runner *local.RunnerOptions) (*local.Stack, error) {
	home, err := local.Home()
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(logFile(home), &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := local.Options{Home: home, TemporalAddress: f.temporalAddress, Namespace: f.namespace, Runner: runner, Logger: logger, Build: f.buildOptions(e),
		TLS: &f.tls, APIKey: temporalAPIKey(e)}
	if f.temporalAddress == "" {
		// The home's server: the one that runs, or one started now in the
		// background (see localserver.go). It hosts the workflows; this
		// command's runner, if any, only its stages.
		if _, err := ensureServer(ctx, e, home, f.namespace); err != nil {
			return nil, err
		}
		opts.Attach = true
		if runner != nil {
			runner.NoWorkflows = true
		}
	}
	return local.Start(ctx, opts)
}

// buildOptions are the settings of buildkitd and the registry, when the
// command needs them.
func (f *stackFlags) buildOptions(e *env) *local.BuildOptions {
	if !f.build {
		return nil
	}
	o := local.BuildFromEnv(e.stderr)
	o.Registry = f.registry
	o.Optional = f.buildOptional
	return o
}

// logFile is where the server's and SDK's own warnings go, so that the
// terminal shows only the pipeline.
func logFile(home string) io.Writer {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return io.Discard
	}
	f, err := os.OpenFile(filepath.Join(home, "sluice.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	return f
}

func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func newRun(e *env) *cobra.Command {
	var flags compileFlags
	var sf stackFlags
	var rf remoteFlags
	var progress string
	var dirty bool
	var labels []string
	var runID, pipeline string
	cmd := &cobra.Command{
		Use:   "run [PATH]",
		Short: "Run a pipeline on this machine, durably",
		Long: `Run compiles the pipeline in PATH (default .sluice) for an event, exactly as
CI would, and runs it here with an in-process runner: on the local Sluice
server of $SLUICE_HOME (default ~/.sluice), which the first command starts
in the background when none runs (it stops after 15 minutes with nothing
to do; SLUICE_SERVER_IDLE_TIMEOUT sets another time, sluice server stop
ends it), or on an existing cluster with --temporal-address. It streams
every step's log with a stage/step prefix, ends with a summary, and exits
1 if the run failed.

With --server URL (or SLUICE_SERVER) it starts a manual run on that
server instead: of --repo (a repository block of the server's
server.hcl, or owner/name of a repository its GitHub App is installed on)
at --ref (or --sha), every pipeline with on "manual" or --pipeline NAME,
with --input values and --dry-run, through its API with the token of
sluice login, and follows it the same way. The flags that shape a local
run (--var, --event, --dirty, --label and the like) are refused there,
as the server compiles the pipeline with its own.

Each stage works in a checkout of the repository at the commit being run;
with --dirty it gets the working tree as it is instead. Ctrl-C cancels the
run cleanly. A run survives a crash: run the same command's follow-up,
sluice status RUN, or start sluice dev, and it goes on where it stopped.

With --dry-run nothing outside the runner's workspaces changes: image
steps build but push neither the image nor its cache (their digest is
known), scan, release and argocd steps log what they would scan, tag,
release, commit and sync ("dry run: would ..."), verify steps check their
query once, and approvals do not wait. Run and container steps run for
real, with SLUICE_DRY_RUN=true in their environment; dagger steps run as
usual. Secrets the runner does not have are empty. The summary marks
what each step only reported. A retried dry run is a dry run again. In
the pipeline, pipeline.dry_run is true: a stage that cannot work in a dry
run skips itself with when = !pipeline.dry_run.`,
		Example: `  sluice run
  sluice run examples/hello/.sluice --dirty
  sluice run --event tag --ref v1.2.0
  sluice run --event tag --ref v1.2.0 --dry-run
  sluice run --progress=plain --var registry=localhost:5000
  sluice run --temporal-address temporal.internal:7233
  sluice run --server https://ci.example.com --repo web --ref main --input target=staging
  sluice run --server https://ci.example.com --repo acme/web --ref release/1.x --dry-run`,
		Args: maxOneArg,
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
				if len(args) > 0 {
					return usageError{fmt.Errorf("with --server, the server reads the pipelines of --repo at --ref; give no path")}
				}
				if err := remoteRunFlags(cmd); err != nil {
					return err
				}
				ctx, stop := signalContext(cmd.Context())
				defer stop()
				return runRemote(ctx, e, api, flags, pipeline, mode)
			}
			if pipeline != "" {
				return usageError{fmt.Errorf("--pipeline picks one of a server repository's pipelines (with --server); here, give the directory of the pipeline to run as PATH")}
			}
			path := pipelinePath(args)
			opts, err := flags.options(e, pipelineDir(path))
			if err != nil {
				return err
			}
			p, _, err := compile(e, path, opts)
			if err != nil {
				return err
			}
			if !p.Trigger.Matched {
				fmt.Fprintf(e.stderr, "Nothing to run: pipeline %q is not started by this event: %s.\nTry another event, like --event manual, or --ref with a branch it runs on.\n", p.Pipeline, p.Trigger.Reason)
				return nil
			}
			dir, err := filepath.Abs(pipelineDir(path))
			if err != nil {
				return err
			}
			repo, isRepo := dsl.RepoRoot(dir)
			// Steps work in the directory that holds .sluice: the
			// repository's top, or the subdirectory of a project inside a
			// repository (examples/go-service).
			src := repo
			if filepath.Base(dir) == dsl.DefaultDir {
				src = filepath.Dir(dir)
			}
			if !isRepo && !dirty {
				fmt.Fprintf(e.stderr, "%s is not in a git repository; running its directory as it is (--dirty).\n", dir)
				dirty = true
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			sf.build = local.NeedsBuild(p)
			stack, err := sf.start(context.Background(), e, &local.RunnerOptions{Name: local.DefaultRunnerName(), Labels: labels, Repo: repo, Dirty: dirty, Background: true})
			if err != nil {
				return err
			}
			defer stack.Close()
			if stack.Build != nil {
				if p, err = lineUpRegistry(e, p, stack.Build.Registry, path, opts); err != nil {
					return err
				}
			}
			for _, msg := range stack.Unplaced(p) {
				fmt.Fprintln(e.stderr, msg)
			}
			runID, err := engine.Start(context.Background(), stack.Client, *p, engine.StartOptions{RunID: runID, Source: &engine.Source{Path: src, Dirty: dirty}, DryRun: flags.dryRun})
			if err != nil {
				return err
			}
			if err := stack.RunnerStarted(); err != nil {
				return fmt.Errorf("run %s started, but this machine's runner did not: %w; sluice dev or any runner can run it", runID, err)
			}
			if mode != progressJSON {
				what := "Run"
				if flags.dryRun {
					what = "Dry run"
				}
				fmt.Fprintf(e.stdout, "%s %s of pipeline %s (%s) started; Ctrl-C cancels it.\n", what, runID, p.Pipeline, eventName(p.Git))
			}
			return followToEnd(ctx, e, stack, runID, mode)
		},
	}
	flags.register(cmd)
	sf.register(cmd)
	rf.register(cmd, e)
	cmd.Flags().StringVar(&progress, "progress", progressAuto, "how to show progress: auto, tty, plain or json")
	cmd.Flags().BoolVar(&dirty, "dirty", false, "run the working tree as it is, uncommitted changes included, instead of the commit")
	cmd.Flags().StringSliceVar(&labels, "label", nil, "labels of the in-process runner, for stages with runs_on")
	cmd.Flags().BoolVar(&flags.dryRun, "dry-run", false, "change nothing outside the workspaces: build without pushing, and only report the scans, releases, commits and syncs the run would make")
	cmd.Flags().StringVar(&pipeline, "pipeline", "", "with --server: run only this pipeline of the repository (default: every one with on \"manual\")")
	cmd.Flags().StringVar(&runID, "run-id", "", "ID of the run (default: the pipeline name and a random suffix); an ID already used is refused")
	return cmd
}

// followToEnd follows a run until it ends, prints the summary and turns a
// run that did not succeed into exit status 1.
func followToEnd(ctx context.Context, e *env, s *local.Stack, runID, mode string) error {
	st, err := followRun(ctx, s.Client, s.Logs, runID, mode, e.stdout)
	if err != nil {
		return err
	}
	return endOfRun(e, st, mode)
}

// endOfRun prints the summary of a run that ended and turns a run that
// did not succeed into exit status 1.
func endOfRun(e *env, st engine.RunStatus, mode string) error {
	if mode != progressJSON {
		fmt.Fprintln(e.stdout)
		writeSummary(e.stdout, st)
	}
	if st.State != engine.StateSucceeded {
		return exitError{1}
	}
	return nil
}

// lineUpRegistry makes a pipeline that names the local registry by its
// conventional address, localhost:5000, push to and pull from the local
// stack's registry wherever it is: on another port when 5000 was taken, or
// the one --registry or SLUICE_REGISTRY names. The pipeline says so through
// its variable "registry" (set any way: default, SLUICE_VAR_registry, a var
// file or --var); a registry elsewhere is left alone. The pipeline is
// compiled again with the variable set to the registry's address.
func lineUpRegistry(e *env, p *plan.Plan, actual, path string, opts dsl.Options) (*plan.Plan, error) {
	raw, ok := p.Vars["registry"]
	if !ok {
		return p, nil
	}
	var val string
	if json.Unmarshal(raw, &val) != nil {
		return p, nil
	}
	host, rest, _ := strings.Cut(val, "/")
	if !isDefaultLocalRegistry(host) || isDefaultLocalRegistry(actual) {
		return p, nil
	}
	moved := actual
	if rest != "" {
		moved += "/" + rest
	}
	fmt.Fprintf(e.stderr, "registry: var.registry is %s, the local registry's conventional address; the local registry is %s, so this run uses var.registry = %s\n", val, actual, moved)
	opts.Vars = maps.Clone(opts.Vars)
	if opts.Vars == nil {
		opts.Vars = map[string]string{}
	}
	opts.Vars["registry"] = moved
	np, _, err := compile(e, path, opts)
	return np, err
}

// localRegistryPort is the port of the registry a compiled plan's variable
// "registry" names when it is on this machine's loopback (see
// lineUpRegistry), else 0.
func localRegistryPort(p *plan.Plan) int {
	var val string
	if raw, ok := p.Vars["registry"]; !ok || json.Unmarshal(raw, &val) != nil {
		return 0
	}
	hostport, _, _ := strings.Cut(val, "/")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || (host != "localhost" && host != "127.0.0.1" && host != "::1") {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// isDefaultLocalRegistry says whether host is the local registry's
// conventional address, port 5000 on loopback.
func isDefaultLocalRegistry(host string) bool {
	switch host {
	case "localhost:5000", "127.0.0.1:5000", "[::1]:5000":
		return true
	}
	return false
}

// remoteRunFlags refuses the flags of sluice run that a run on a server
// cannot honour, rather than starting a run other than the one asked for:
// the server reads the pipeline at --ref with its own variables, as a
// manual event, and runs it on its runners.
func remoteRunFlags(cmd *cobra.Command) error {
	honoured := map[string]bool{"server": true, "repo": true, "ref": true, "sha": true, "input": true, "dry-run": true, "progress": true, "pipeline": true}
	var refused []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if !honoured[f.Name] {
			refused = append(refused, "--"+f.Name)
		}
	})
	if len(refused) == 0 {
		return nil
	}
	with, here := "with --server", "without --server"
	if !cmd.Flags().Changed("server") {
		// The server came from the environment.
		with, here = "with "+envServer+" set", `with --server ""`
	}
	return usageError{fmt.Errorf("%s, the server compiles the pipeline of --repo at --ref (or --sha) as a manual run with its own variables, on its runners: %s cannot apply there; drop %s, or run it on this machine %s",
		with, strings.Join(refused, ", "), map[bool]string{true: "it", false: "them"}[len(refused) == 1], here)}
}

// runRemote starts a manual run on a server (POST /api/v1/runs) of the
// repository --repo at --ref or --sha, and follows each run it started.
func runRemote(ctx context.Context, e *env, api *apiClient, flags compileFlags, pipeline, mode string) error {
	if flags.repo == "" {
		return usageError{fmt.Errorf("with --server, name the repository as the server knows it with --repo, and the branch or tag with --ref")}
	}
	req := map[string]any{"repository": flags.repo, "ref": flags.ref, "sha": flags.sha, "dry_run": flags.dryRun, "pipeline": pipeline}
	if len(flags.inputs) > 0 {
		in := map[string]string{}
		for _, kv := range flags.inputs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usageError{fmt.Errorf("--input %q is not name=value", kv)}
			}
			in[k] = v
		}
		req["inputs"] = in
	}
	var res server.DeliveryResult
	if err := api.do(ctx, "POST", "/runs", req, &res); err != nil {
		return err
	}
	for _, sk := range res.Skipped {
		fmt.Fprintf(e.stderr, "Pipeline %s not started: %s\n", sk.Pipeline, sk.Reason)
	}
	for _, inv := range res.Invalid {
		dir := inv.Dir
		if dir == "" {
			dir = "the repository's top"
		}
		fmt.Fprintf(e.stderr, "The pipelines in %s are invalid:\n%s\n", dir, strings.TrimSpace(inv.Diagnostics))
	}
	if len(res.Runs) == 0 {
		switch {
		case res.Ignored != "":
			fmt.Fprintf(e.stderr, "Nothing to run: %s\n", res.Ignored)
		case len(res.Invalid) == 0 && len(res.Skipped) == 0:
			fmt.Fprintln(e.stderr, "Nothing to run: no pipeline of the repository starts on a manual run of this ref.")
		}
		return exitError{1}
	}
	var failed bool
	for _, r := range res.Runs {
		if mode != progressJSON {
			what := "Run"
			if flags.dryRun {
				what = "Dry run"
			}
			fmt.Fprintf(e.stdout, "%s %s of pipeline %s started on %s; Ctrl-C cancels it.\n", what, r.RunID, r.Pipeline, api.url)
		}
		err := followRemote(ctx, e, api, r.RunID, mode, nil, true)
		var xe exitError
		switch {
		case errors.As(err, &xe):
			failed = true
		case err != nil:
			return err
		}
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// tlsFlags are the flags of a TLS (or mTLS) connection to a Temporal
// cluster, the same on every command that talks to one.
func tlsFlags(cmd *cobra.Command, t *local.TLSOptions) {
	fl := cmd.Flags()
	fl.StringVar(&t.CA, "tls-ca", os.Getenv("SLUICE_TEMPORAL_TLS_CA"), "PEM file of the CA of Temporal's certificate (turns TLS on; SLUICE_TEMPORAL_TLS_CA)")
	fl.StringVar(&t.Cert, "tls-cert", os.Getenv("SLUICE_TEMPORAL_TLS_CERT"), "client certificate for mTLS to Temporal (SLUICE_TEMPORAL_TLS_CERT)")
	fl.StringVar(&t.Key, "tls-key", os.Getenv("SLUICE_TEMPORAL_TLS_KEY"), "client key for mTLS to Temporal (SLUICE_TEMPORAL_TLS_KEY)")
	fl.StringVar(&t.ServerName, "tls-server-name", os.Getenv("SLUICE_TEMPORAL_TLS_SERVER_NAME"), "name Temporal's certificate must have, when not the address's host")
}

// temporalAPIKey is the API key for Temporal (Temporal Cloud), read from
// the environment only, so that it never shows in a process listing.
func temporalAPIKey(e *env) string {
	v, _ := lookupIn(e.environ)("SLUICE_TEMPORAL_API_KEY")
	return v
}
