package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
)

const serverLong = `Server is Sluice for a team: it runs pipelines by itself on every push,
pull request and tag, on one machine with nothing else installed.

It serves, on --listen (default 127.0.0.1:8080):
  POST /webhooks/github   GitHub App webhooks (push, pull_request, create,
                          check_suite/check_run rerequested, installation, ping)
  POST /hooks/git         git post-receive hooks (sluice hook install)
  /api/v1/...             the JSON API (docs/api.md), with bearer tokens
  GET  /healthz
  GET  /metrics           Prometheus metrics, unauthenticated (on
                          --metrics-listen instead when given;
                          docs/operations.md lists them)

and runs the pipelines' workflows and a runner of its own (unless
--no-runner: then runners on other machines, sluice dev --temporal-address
HOST:PORT for now, run the steps), on the embedded
Temporal server with its state in $SLUICE_HOME (default ~/.sluice), or on
the cluster --temporal-address names.

Temporal on PostgreSQL (docs/operations.md): with --db, the embedded
Temporal keeps its state in a PostgreSQL database instead of SQLite:

  sluice server --db postgres://sluice:PASSWORD@db.internal:5432/sluice --migrate

It uses two databases, DB and DB_visibility. --migrate creates them if the
user may (CREATEDB; else create them owned by the user) and sets up or
updates Temporal's schema, then starts; it is safe on every start. Without
it, an empty or older schema is refused with the versions found and
needed. The password may come from PGPASSWORD instead of the URL;
sslmode defaults to prefer. --history-shards (default 4) is fixed when the
database is first used: a different number later is refused.

A delivery is answered 202 only once it is durable: synced to the inbox in
$SLUICE_HOME/server/inbox and handed to Temporal right after (--inbox on,
the default with the embedded Temporal), or held by Temporal (--inbox off,
the default with --temporal-address), as a workflow whose ID derives from
the delivery. A redelivery starts nothing, and a server killed after
answering finishes the delivery when it starts again. Each
triggered pipeline is read at the event's commit, compiled as
sluice plan --event would, and started as a run.

Settings come from flags, then the environment, then the file --config
names (server.hcl):

  listen     = "0.0.0.0:8080"
  public_url = "https://ci.example.com"
  db         = "postgres://sluice@db.internal/sluice"  # or SLUICE_DB
  github {
    app_id           = 123456
    private_key_file = "/etc/sluice/github-app.pem"
    webhook_secrets  = ["..."]      # two during a rotation
    commit_statuses  = true         # also sluice/<pipeline> statuses
  }
  git_hook_secrets = ["..."]
  repository "web" { url = "/srv/git/web.git" }
  team "sre" { members = ["alice", "bob"] }

Environment: SLUICE_GITHUB_WEBHOOK_SECRET (comma-separated for rotation;
set but empty is refused), SLUICE_GITHUB_APP_ID,
SLUICE_GITHUB_PRIVATE_KEY_FILE, SLUICE_GIT_HOOK_SECRET, SLUICE_PUBLIC_URL,
SLUICE_TEMPORAL, SLUICE_DB (the --db URL), PGPASSWORD.

Creating the GitHub App (Settings > Developer settings > GitHub Apps > New):
  1. Homepage URL: the public URL. Webhook URL: <public URL>/webhooks/github.
  2. Webhook secret: a long random string (openssl rand -hex 32); give it
     to the server as SLUICE_GITHUB_WEBHOOK_SECRET.
  3. Repository permissions: Contents read-only, Metadata read-only,
     Pull requests read and write, Issues read and write (replies to
     /sluice comments), Checks read and write, Commit statuses read and
     write. Organization permissions: Members read-only (approvers named
     team:NAME).
  4. Subscribe to events: Push, Pull request, Create, Check run,
     Check suite, Issue comment (Installation events are sent to every
     App).
  5. Create the App, note its App ID, generate a private key (.pem), and
     install the App on the repositories Sluice should run.
  6. Start: SLUICE_GITHUB_WEBHOOK_SECRET=... sluice server \
       --github-app-id ID --github-private-key app.pem \
       --public-url https://ci.example.com --listen 0.0.0.0:8080
docs/server.md says the same with more detail.`

func newServer(e *env) *cobra.Command {
	var cfg server.Config
	var configFile string
	var noBuild bool
	var logTo string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Sluice server: webhooks and git pushes start runs",
		Long:  serverLong,
		Example: `  SLUICE_GITHUB_WEBHOOK_SECRET=... sluice server --listen 0.0.0.0:8080 --public-url https://ci.example.com
  sluice server --config /etc/sluice/server.hcl
  sluice server --no-runner --temporal-address temporal.internal:7233
  sluice server --db postgres://sluice@db.internal/sluice --migrate
  sluice hook install /srv/git/web.git --server http://ci.internal:8080`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := settle(&cfg, configFile, e.environ); err != nil {
				return err
			}
			home, err := local.Home()
			if err != nil {
				return err
			}
			cfg.Home, cfg.Build = home, !noBuild
			cfg.TemporalAPIKey = temporalAPIKey(e)
			return runServer(cmd.Context(), e, cfg, logTo)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config", os.Getenv("SLUICE_SERVER_CONFIG"), "server.hcl with the settings below (flags and the environment win)")
	fl.StringVar(&cfg.Listen, "listen", "", "address to serve HTTP on (default "+server.DefaultListen+")")
	fl.StringVar(&cfg.PublicURL, "public-url", "", "URL GitHub and browsers reach the server at (default http://LISTEN)")
	fl.StringVar(&cfg.Temporal, "temporal", "", "embedded (a Temporal server of its own, the default) or external (the cluster at --temporal-address) (SLUICE_TEMPORAL)")
	fl.StringVar(&cfg.TemporalAddress, "temporal-address", os.Getenv("SLUICE_TEMPORAL_ADDRESS"), "host:port of an existing Temporal cluster (default: the embedded server, state in $SLUICE_HOME)")
	fl.StringVar(&cfg.DB, "db", "", "the embedded Temporal's PostgreSQL database, postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...] (default: SQLite in $SLUICE_HOME) (SLUICE_DB)")
	fl.BoolVar(&cfg.Migrate, "migrate", false, "create or update --db's Temporal schema, then start")
	fl.IntVar(&cfg.HistoryShards, "history-shards", 0, "history shards of a new --db (default 4); fixed once the database is used")
	fl.StringVar(&cfg.Namespace, "namespace", "", "Temporal namespace (default sluice)")
	fl.StringVar(&cfg.TemporalListen, "temporal-listen", os.Getenv("SLUICE_TEMPORAL_LISTEN"), "IP:PORT the embedded Temporal listens on, for runners on other hosts (default: a loopback port)")
	var tlsOpts local.TLSOptions
	tlsFlags(cmd, &tlsOpts)
	cfg.TemporalTLS = &tlsOpts
	fl.BoolVar(&cfg.NoRunner, "no-runner", false, "run no steps here: runners elsewhere on the same Temporal take them")
	fl.StringSliceVar(&cfg.Labels, "label", nil, "labels of the in-process runner, for stages with runs_on")
	fl.BoolVar(&noBuild, "no-build", false, "do not bring up BuildKit and a registry for the in-process runner")
	fl.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "stop after this long with no request and no run (0: never; a server that commands start in the background uses 15m)")
	fl.Int64Var(&cfg.GitHub.AppID, "github-app-id", 0, "the GitHub App's ID (SLUICE_GITHUB_APP_ID)")
	fl.StringVar(&cfg.GitHub.PrivateKeyFile, "github-private-key", "", "the GitHub App's private key, a .pem file (SLUICE_GITHUB_PRIVATE_KEY_FILE)")
	fl.StringVar(&cfg.GitHub.APIURL, "github-api-url", "", "GitHub's REST API (default https://api.github.com/; GitHub Enterprise: https://HOST/api/v3/)")
	fl.StringVar(&cfg.GitHub.ClientID, "github-client-id", "", "the GitHub App's client ID, for signing in to the web view with GitHub; the secret comes from SLUICE_GITHUB_CLIENT_SECRET (SLUICE_GITHUB_CLIENT_ID)")
	fl.StringVar(&cfg.MetricsListen, "metrics-listen", os.Getenv("SLUICE_METRICS_LISTEN"), "serve /metrics on this HOST:PORT of its own instead of on --listen (SLUICE_METRICS_LISTEN)")
	fl.DurationVar(&cfg.MetricsInterval, "metrics-interval", server.DefaultMetricsInterval, "how often the runs, runners and queues of /metrics are read from Temporal")
	fl.BoolVar(&cfg.GitHub.CommitStatuses, "commit-statuses", false, "also post a commit status sluice/<pipeline> per run, for branch protection that requires statuses (checks are always posted)")
	fl.StringVar(&logTo, "log", os.Getenv("SLUICE_LOG"), "where the server's log goes: a file, or - for stderr (a container's log) (default $SLUICE_HOME/sluice.log) (SLUICE_LOG)")
	fl.StringVar(&cfg.Inbox, "inbox", "", "on: answer a webhook or git hook once its delivery is synced to $SLUICE_HOME/server/inbox, then hand it to Temporal; off: once Temporal has it (default: on with the embedded Temporal, off with a cluster) (SLUICE_INBOX)")
	fl.BoolVar(&cfg.Background, "background", false, "")
	_ = fl.MarkHidden("background")
	cmd.AddCommand(newServerStop(e), newServerToken(e), newServerRedeliver(e))
	return cmd
}

// settle completes the flags' settings in their order of precedence:
// what a flag set, then the environment, then the file (--config).
func settle(cfg *server.Config, configFile string, environ []string) error {
	if err := cfg.FromEnv(lookupIn(environ)); err != nil {
		return err
	}
	if configFile != "" {
		return cfg.LoadFile(configFile)
	}
	return nil
}

func lookupIn(environ []string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		for i := len(environ) - 1; i >= 0; i-- {
			if name, v, ok := strings.Cut(environ[i], "="); ok && name == k {
				return v, true
			}
		}
		return "", false
	}
}

// serverRecord is what a running server publishes in its home, for the
// commands that find it (sluice hook install, sluice server stop, and the
// local commands).
type serverRecord struct {
	URL        string `json:"url"`
	PID        int    `json:"pid"`
	Background bool   `json:"background,omitempty"`
}

func serverRecordFile(home string) string { return filepath.Join(home, "server", "http.json") }

// runningServer returns the server running for home, or an error wrapping
// fs.ErrNotExist.
func runningServer(home string) (serverRecord, error) {
	var r serverRecord
	err := proc.ReadRecord(serverRecordFile(home), &r, func() int { return r.PID })
	return r, err
}

// otherServer returns the server that runs for home, if another process
// than this one: a record naming this very process was left by an
// earlier one that had its PID (a container's PID 1 killed without a
// clean stop), and says nothing.
func otherServer(home string) (serverRecord, bool) {
	r, err := runningServer(home)
	return r, err == nil && r.PID != os.Getpid()
}

// runServer runs the server until a signal or its idle timeout; its log
// goes to logTo ("-": stderr; empty: $SLUICE_HOME/sluice.log).
func runServer(ctx context.Context, e *env, cfg server.Config, logTo string) error {
	ctx, stop := signalContext(ctx)
	defer stop()
	unlock := func() {}
	if !cfg.Background {
		// A server started in the background starts under the lock its
		// starter holds (see localserver.go).
		var err error
		if unlock, err = lockHome(ctx, cfg.Home); err != nil {
			return err
		}
	}
	started := false
	defer func() {
		if !started {
			unlock()
		}
	}()
	if r, ok := otherServer(cfg.Home); ok {
		return fmt.Errorf("a Sluice server for %s already runs at %s (pid %d); stop it with sluice server stop, or use another SLUICE_HOME", cfg.Home, r.URL, r.PID)
	}
	logOut := logFile(cfg.Home)
	if logTo == "-" {
		logOut = e.stderr
	} else if logTo != "" {
		f, err := os.OpenFile(logTo, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--log %s: %w", logTo, err)
		}
		defer f.Close()
		logOut = f
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := server.Start(context.Background(), cfg, logger)
	if err != nil {
		return err
	}
	rec := serverRecord{URL: s.URL(), PID: os.Getpid(), Background: cfg.Background}
	if err := proc.WriteRecord(serverRecordFile(cfg.Home), rec); err != nil {
		s.Close()
		return err
	}
	started = true
	unlock()
	// Stopping, the server holds the home's lock until its Temporal has
	// let go of the database.
	defer stopLocked(cfg.Home, s.Close)
	fmt.Fprintf(e.stdout, "Sluice server at %s (Temporal %s, namespace %s; state in %s).\n", s.URL(), s.Stack().Address, s.Stack().Namespace, cfg.Home)
	if store := s.Stack().Store; store != "" && cfg.DB != "" {
		fmt.Fprintf(e.stdout, "  Temporal state:  %s\n", store)
	}
	fmt.Fprintf(e.stdout, "  GitHub webhooks: %s/webhooks/github%s\n", s.URL(), map[bool]string{true: "", false: " (off: set SLUICE_GITHUB_WEBHOOK_SECRET)"}[len(cfg.GitHub.WebhookSecrets) > 0])
	fmt.Fprintf(e.stdout, "  git pushes:      sluice hook install REPO.git --server %s\n", s.URL())
	fmt.Fprintf(e.stdout, "  API:             %s/api/v1 (sluice server token create --user NAME)\n", s.URL())
	fmt.Fprintf(e.stdout, "  metrics:         %s\n", s.MetricsURL())
	fmt.Fprintf(e.stdout, "  web view:        %s/runs (sign in with a token%s)\n", s.URL(), map[bool]string{true: " or GitHub", false: ""}[cfg.GitHub.ClientID != "" && cfg.GitHub.ClientSecret != ""])
	if cfg.NoRunner {
		fmt.Fprintln(e.stdout, "  runner:          none here (--no-runner); runs wait for a runner on this Temporal (sluice dev --temporal-address)")
	} else {
		fmt.Fprintf(e.stdout, "  runner:          %s\n", local.DefaultRunnerName())
	}
	if cfg.IdleTimeout > 0 {
		fmt.Fprintf(e.stdout, "Stops after %s with nothing to do; sluice server stop ends it.\n", cfg.IdleTimeout)
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(e.stdout, "Stopping.")
	case <-s.Idle(ctx, cfg.IdleTimeout):
		fmt.Fprintf(e.stdout, "Idle for %s: stopping.\n", cfg.IdleTimeout)
	}
	return nil
}

func newServerStop(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "stop",
		Short:   "Stop the server running for $SLUICE_HOME",
		Example: "  sluice server stop",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := local.Home()
			if err != nil {
				return err
			}
			r, err := runningServer(home)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(e.stdout, "No Sluice server runs for %s.\n", home)
				return nil
			}
			if err != nil {
				return err
			}
			p, err := os.FindProcess(r.PID)
			if err != nil {
				return err
			}
			if err := p.Signal(syscall.SIGTERM); err != nil {
				return fmt.Errorf("stopping the server (pid %d): %w", r.PID, err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				// Gone once its process is: its Temporal has then let go
				// of the database.
				if !proc.Alive(r.PID) {
					fmt.Fprintf(e.stdout, "Stopped the Sluice server at %s (pid %d).\n", r.URL, r.PID)
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return fmt.Errorf("the server (pid %d) did not stop within 60 s; kill it with kill -9 %d (runs resume when a server starts again)", r.PID, r.PID)
		},
	}
}

func newServerToken(e *env) *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "Manage the API's bearer tokens", Args: noArgs}
	var user, runner string
	create := &cobra.Command{
		Use:   "create --user NAME | --runner NAME",
		Short: "Create an API token that acts as a user, or a runner's",
		Long: `Create makes a bearer token for the JSON API and prints it once; the server
keeps only its SHA-256, in $SLUICE_HOME/server/tokens.json. The user is who
approvals, rejections and manual runs are recorded as, and whom a stage's
approvers are checked against (a GitHub login for team:NAME approvers).

A runner's token (--runner NAME) is what sluice runner on another host
gives as SLUICE_TOKEN: it ships the step logs, and it may ask the server
for a short-lived, read-only GitHub token to check out a private
repository of the GitHub App's, which a user's token may not; it acts as
no one on the rest of the API.`,
		Example: "  sluice server token create --user alice\n  sluice login http://ci.internal:8080 --token sluice_...\n  sluice server token create --runner build-1",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (user == "") == (runner == "") {
				return usageError{errors.New("give --user NAME for a person's token or --runner NAME for a runner's, one of the two")}
			}
			home, err := local.Home()
			if err != nil {
				return err
			}
			t, err := server.OpenTokens(server.TokensFile(home))
			if err != nil {
				return err
			}
			if runner != "" {
				secret, err := t.CreateRunner(runner)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, secret)
				fmt.Fprintf(e.stderr, "Token for runner %s created; it is shown only now. Give it to the runner as SLUICE_TOKEN, with --server URL.\n", runner)
				return nil
			}
			secret, err := t.Create(user)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, secret)
			fmt.Fprintf(e.stderr, "Token for %s created; it is shown only now. Use it with: sluice login URL --token %s...\n", user, secret[:12])
			return nil
		},
	}
	create.Flags().StringVar(&user, "user", "", "the user the token acts as (a GitHub login)")
	create.Flags().StringVar(&runner, "runner", "", "a runner's token, named NAME: log shipping and read-only checkouts of private GitHub repositories")
	token.AddCommand(create)
	return token
}
