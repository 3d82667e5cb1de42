package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/engine/logstore"
	"github.com/sluice-ci/sluice/internal/binaryid"
	"github.com/sluice-ci/sluice/runners/artifacts"
	"github.com/sluice-ci/sluice/runners/workspace"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/run"
)

// Options configures a Stack.
type Options struct {
	// Home holds the database, logs and workspaces; see Home.
	Home string
	// TemporalAddress uses an existing Temporal cluster instead of the
	// embedded server.
	TemporalAddress string
	// Namespace on that cluster; default "sluice".
	Namespace string
	// TemporalListen is IP:PORT the embedded Temporal's frontend listens
	// on, for runners on other hosts; empty: a free loopback port.
	TemporalListen string
	// DB is the embedded Temporal's PostgreSQL database (a postgres://
	// URL); empty: SQLite in Home. Migrate creates or updates its schema,
	// and HistoryShards is the shard count of a new one (0: the default).
	DB            string
	Migrate       bool
	HistoryShards int
	// TemporalNice runs the embedded Temporal at this nice value (1 to
	// 19), below this process: a server whose answers do not wait for
	// Temporal (the inbox) keeps them quick while Temporal is busy.
	TemporalNice int
	// TLS connects to TemporalAddress over TLS (mTLS with a certificate);
	// nil connects in plain text.
	TLS *TLSOptions
	// APIKey authenticates to the cluster (Temporal Cloud's API keys);
	// it implies TLS.
	APIKey string
	// Runner starts an in-process runner with these settings; nil starts
	// none (the commands that only look at runs).
	Runner *RunnerOptions
	// Logger receives the server's and the SDK's warnings; nil discards.
	Logger *slog.Logger
	// Build brings up BuildKit and a registry (see build.go); nil brings
	// up neither.
	Build *BuildOptions
	// MetricsHandler receives the Temporal SDK's metrics (of the client
	// and every worker on it); nil drops them.
	MetricsHandler client.MetricsHandler
	// Attach connects only to the server another process publishes for
	// Home (a sluice server, see Published) and never starts the embedded
	// one: the commands that start that server in the background when
	// none runs. Without a published server, Start fails with an error
	// wrapping fs.ErrNotExist.
	Attach bool
}

// RunnerOptions configures the in-process runner.
type RunnerOptions struct {
	// Name is stable across restarts of this machine's runner, so that a
	// run resumed after a crash finds its stage's queue again.
	Name   string
	Labels []string
	// Repo is the repository workspaces are checked out from.
	Repo string
	// Dirty copies the working tree as it is instead of the commit.
	Dirty bool
	// Background starts the runner's workers while Start returns, so that
	// the caller can start its run meanwhile: tasks wait on their queues
	// until a worker polls. RunnerStarted says how the start went.
	Background bool
	// NoWorkflows leaves the pipelines' workflows to another process (the
	// local server hosts them): the runner takes only stages and steps.
	NoWorkflows bool
	// MaxStages is how many stages the runner holds at once (default 1
	// for a standalone runner; see engine.RunnerOptions.MaxStages).
	MaxStages int
	// Logs is where step logs go; nil: the stack's log store in Home.
	Logs engine.LogSink
	// Registry is where stage artifacts go when the stack brings up no
	// registry of its own: the registry runners on several hosts share.
	Registry string
	// DrainTimeout bounds how long stopping waits for running stages.
	DrainTimeout time.Duration
	// Report makes the runner report itself to the runner registry
	// (sluice runners), with Version.
	Report  bool
	Version string
	// StepDone learns of each step the runner ran, for its metrics (see
	// engine.Activities.StepDone).
	StepDone func(ctx context.Context, kind string, took time.Duration, err error)
	// GitCredentials, when set, gives credentials for fetching a run's
	// repository (by its name, owner/name) from an HTTPS URL: the
	// server's GitHub App installation token, for its own runner.
	GitCredentials func(ctx context.Context, repo, url string) (user, password string, err error)
}

// Stack is a client connection to Temporal, maybe the embedded server
// behind it, and maybe a runner.
type Stack struct {
	Client    client.Client
	Namespace string
	Logs      *logstore.FS
	// Embedded says whether this process hosts the server.
	Embedded bool
	// Address is where the server listens.
	Address string
	// Store says where the embedded server keeps its state ("SQLite
	// PATH", "PostgreSQL HOST:PORT/DB ..."); empty when this process does
	// not host it.
	Store string
	// Build is the BuildKit daemon and registry, when Options.Build asked
	// for them.
	Build *Build

	home   string
	logger *slog.Logger
	server *serverProcess
	runner *engine.Runner
	// runnerStarted delivers the outcome of a runner started in the
	// background once; runnerErr keeps it.
	runnerStarted chan error
	runnerErr     error
	// labels are the runner's, and daggerErr why it reaches no Dagger
	// engine (see withDagger).
	labels    []string
	daggerErr error
	// lazy brings up BuildKit for a runner started without it.
	lazy lazyBuild
}

// Start brings the stack up: it connects to opts.TemporalAddress, or to the
// server another sluice process hosts for the same home, or starts the
// embedded server (sluice-temporal) as its child; then it starts the
// runner if asked.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Home == "" {
		return nil, errors.New("starting the local stack: no home directory")
	}
	if err := os.MkdirAll(opts.Home, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.Home, err)
	}
	s := &Stack{home: opts.Home, Namespace: opts.Namespace, Logs: Logs(opts.Home), logger: opts.Logger}
	if s.Namespace == "" {
		s.Namespace = "sluice"
	}
	// BuildKit and the registry come up while the server starts and the
	// client connects.
	built := make(chan error, 1)
	if opts.Build != nil {
		go func() { built <- s.startBuild(ctx, *opts.Build) }()
	} else {
		built <- nil
	}
	waitBuild := sync.OnceValue(func() error { return <-built })
	defer func() {
		if berr := waitBuild(); err == nil && berr != nil {
			err = berr
		}
		if err != nil {
			s.Close()
		}
	}()
	switch info, perr := Published(opts.Home); {
	case opts.TemporalAddress != "":
		s.Address = opts.TemporalAddress
	case perr == nil && opts.DB != "":
		return nil, fmt.Errorf("another sluice process (pid %d) hosts the Temporal server of %s; stop it before starting one on PostgreSQL (--db)", info.PID, opts.Home)
	case perr == nil:
		s.Address, s.Namespace = info.Address, info.Namespace
	case opts.Attach:
		return nil, fmt.Errorf("no Sluice server publishes its Temporal address in %s: %w", opts.Home, perr)
	default:
		srv, err := startServer(ctx, opts.Home, s.Namespace, opts.TemporalListen, serverDB{url: opts.DB, migrate: opts.Migrate, shards: opts.HistoryShards, nice: opts.TemporalNice})
		if err != nil {
			return nil, err
		}
		s.server, s.Embedded, s.Address, s.Store = srv, true, srv.address, srv.store
		if err := publish(opts.Home, ServerInfo{Address: s.Address, Namespace: s.Namespace, PID: os.Getpid()}); err != nil {
			return nil, err
		}
	}
	copts := client.Options{HostPort: s.Address, Namespace: s.Namespace, Logger: sdkLogger(opts.Logger), MetricsHandler: opts.MetricsHandler}
	if opts.TemporalAddress != "" {
		if err := connection(&copts, opts.TLS, opts.APIKey); err != nil {
			return nil, err
		}
	}
	// Workers made on this client, the runner's and the server's, are
	// named by the binary's commit instead of a hash of the executable
	// (see package binaryid).
	binaryid.Set()
	c, err := client.DialContext(ctx, copts)
	if err == nil && opts.TemporalAddress != "" {
		// An existing cluster may not know Sluice's search attributes yet
		// (an embedded server, ours or another sluice's, registers them).
		if err = engine.RegisterSearchAttributes(ctx, c, s.Namespace); err != nil {
			err = fmt.Errorf("registering Sluice's search attributes in namespace %q: %w", s.Namespace, err)
		}
	} else if err != nil {
		err = fmt.Errorf("connecting to Temporal at %s: %w", s.Address, err)
	}
	s.Client = c
	if berr := waitBuild(); err == nil {
		err = berr
	}
	if err != nil {
		return nil, err
	}
	if opts.Runner != nil {
		if err := s.startRunner(*opts.Runner); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) startRunner(o RunnerOptions) error {
	execs := steps.Registry{plan.KindRun: &run.Executor{}}
	withDelivery(execs)
	if s.Build != nil {
		s.Build.register(execs)
	} else {
		// Another runner of this machine's Temporal may have started the
		// run (sluice run of an image step beside sluice run of host
		// steps): this runner can take its stages too, bringing BuildKit
		// up when a step first needs it.
		s.lazy.register(s, execs)
	}
	s.labels, s.daggerErr = withDagger(execs, o.Labels)
	acts := &engine.Activities{
		Workspaces: workspaces{root: filepath.Join(s.home, "workspaces"), repo: o.Repo, dirty: o.Dirty, creds: o.GitCredentials},
		Executors:  execs,
		Secrets:    engine.HostSecrets{},
		Logs:       s.Logs,
		StateDir:   filepath.Join(s.home, "runner-state", o.Name),
		StepDone:   o.StepDone,
	}
	if o.Logs != nil {
		acts.Logs = o.Logs
	}
	// Stage artifacts go to the stack's registry when it brought one up,
	// else to a directory of its home.
	store := artifacts.Store{Dir: filepath.Join(s.home, "artifacts")}
	if s.Build != nil {
		store.Registry = s.Build.Registry
	} else if o.Registry != "" {
		store.Registry = o.Registry
	}
	// Zero: the runner of one machine takes every stage it is given, as
	// sluice run always has.
	maxStages := o.MaxStages
	r, err := engine.NewRunner(s.Client, engine.RunnerOptions{Name: o.Name, Labels: s.labels, Activities: acts, Artifacts: store, Workflows: !o.NoWorkflows, MaxStages: maxStages, DrainTimeout: o.DrainTimeout, Namespace: s.Namespace,
		Report: o.Report, Version: o.Version, Logger: sdkLogger(s.logger)})
	if err != nil {
		return err
	}
	s.runner = r
	if o.Background {
		s.runnerStarted = make(chan error, 1)
		go func() { s.runnerStarted <- r.Start() }()
		return nil
	}
	return r.Start()
}

// AddRunner starts a runner on a stack started without one, after the
// build stack when build is set (see Options).
func (s *Stack) AddRunner(ctx context.Context, build *BuildOptions, o RunnerOptions) error {
	if s.runner != nil {
		return errors.New("the stack already has a runner")
	}
	if build != nil && s.Build == nil {
		if err := s.startBuild(ctx, *build); err != nil {
			return err
		}
	}
	return s.startRunner(o)
}

// Runner is the stack's runner, nil when it has none.
func (s *Stack) Runner() *engine.Runner { return s.runner }

// RunnerStarted waits until the runner started in the background (see
// RunnerOptions.Background) has started, and says whether it could.
func (s *Stack) RunnerStarted() error {
	if s.runnerStarted != nil {
		s.runnerErr = <-s.runnerStarted
		s.runnerStarted = nil
	}
	return s.runnerErr
}

// Close stops the runner, the client and the server, in that order.
func (s *Stack) Close() {
	s.RunnerStarted()
	if s.runner != nil {
		s.runner.Stop()
	}
	if s.Client != nil {
		s.Client.Close()
	}
	s.Build.close()
	if s.server != nil {
		unpublish(s.home)
		s.server.stop()
	}
}

// workspaces checks stages out of the local repository.
type workspaces struct {
	root, repo string
	dirty      bool
	creds      func(ctx context.Context, repo, url string) (string, string, error)
}

func (w workspaces) Prepare(ctx context.Context, req engine.WorkspaceRequest) (string, error) {
	if req.Source != nil && req.Source.URL != "" {
		return w.prepareURL(ctx, req)
	}
	path, dirty := w.repo, w.dirty
	if req.Source != nil {
		// The run says where its code is: sluice run from any directory
		// works with the runner of a sluice dev started elsewhere.
		path, dirty = req.Source.Path, req.Source.Dirty
	}
	repo, sub := project(path)
	// A stage prepared again is one whose runner was lost: on this
	// machine, that is this runner before a crash, and its workspace holds
	// what the stage's completed steps did.
	dir, err := workspace.Prepare(ctx, workspace.Options{Root: w.root, Run: req.RunID, Stage: req.StageID, Repo: repo, SHA: req.Git.SHA, Dirty: dirty, Reuse: true})
	if err != nil || sub == "" {
		return dir, err
	}
	// The pipeline is in a subdirectory of the repository (.sluice in
	// examples/go-service): the whole repository is checked out, and the
	// steps work in that subdirectory, which is what the pipeline's paths
	// are written against.
	d := filepath.Join(dir, sub)
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("the pipeline's directory %s is not in the workspace of commit %s; commit it, or run with --dirty", filepath.ToSlash(sub), req.Git.SHA)
	}
	return d, nil
}

// prepareURL checks a stage out of a repository the runner clones: runs
// the server starts for pushes. The commit is fetched into the runner's
// mirror of the repository once, and each workspace is cloned from there.
func (w workspaces) prepareURL(ctx context.Context, req engine.WorkspaceRequest) (string, error) {
	var creds workspace.Credentials
	if w.creds != nil {
		creds = func(ctx context.Context, url string) (string, string, error) { return w.creds(ctx, req.Git.Repo, url) }
	}
	mirror, err := workspace.MirrorWith(ctx, filepath.Join(filepath.Dir(w.root), "mirrors"), req.Source.URL, req.Git.SHA, creds)
	if err != nil {
		return "", err
	}
	dir, err := workspace.Prepare(ctx, workspace.Options{Root: w.root, Run: req.RunID, Stage: req.StageID, Repo: mirror, SHA: req.Git.SHA, Reuse: true})
	if err != nil || req.Source.Dir == "" {
		return dir, err
	}
	d := filepath.Join(dir, filepath.FromSlash(req.Source.Dir))
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("the pipeline's directory %s is not in commit %s of %s", req.Source.Dir, req.Git.SHA, req.Source.URL)
	}
	return d, nil
}

func (w workspaces) Release(_ context.Context, req engine.WorkspaceRequest, dir string) error {
	// dir may be a subdirectory of the workspace (see Prepare).
	if root, err := workspace.Dir(w.root, req.RunID, req.StageID); err == nil {
		dir = root
	}
	return workspace.Remove(dir)
}

// StepJournal implements engine.StepJournals: a stage prepared again on
// this runner finds its workspace as it was (Reuse), and the journal
// beside it.
func (w workspaces) StepJournal(req engine.WorkspaceRequest, _ string) (string, error) {
	dir, err := workspace.Dir(w.root, req.RunID, req.StageID)
	if err != nil {
		return "", err
	}
	return workspace.Journal(dir), nil
}

// project splits the directory a run comes from into the repository that
// holds it and the path inside the repository where the steps work: the
// directory holding the pipeline's .sluice. A path outside any repository
// is its own project.
func project(path string) (repo, sub string) {
	if path == "" {
		return path, ""
	}
	top, ok := dsl.RepoRoot(path)
	if !ok {
		return path, ""
	}
	rel, err := filepath.Rel(top, path)
	if err != nil || rel == "." || !filepath.IsLocal(rel) {
		return path, ""
	}
	return top, rel
}

// sdkLogger passes the SDK's warnings and errors to l; nil discards them.
func sdkLogger(l *slog.Logger) sdklog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return sdklog.NewStructuredLogger(slog.New(levelFilter{l.Handler(), slog.LevelWarn}))
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

// DefaultRunnerName names this machine's runner: stable across restarts.
func DefaultRunnerName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "local"
	}
	return "local-" + h
}
