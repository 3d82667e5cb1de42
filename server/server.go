package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server/githubapp"
	"github.com/sluice-ci/sluice/server/inbox"
	"github.com/sluice-ci/sluice/server/webhook"
)

// Server is a running `sluice server`.
type Server struct {
	cfg      Config
	stack    *local.Stack
	client   client.Client
	worker   worker.Worker
	verifier *webhook.Verifier
	hookKeys [][]byte
	tokens   *Tokens
	triggers *Triggers
	log      *slog.Logger
	http     *http.Server
	ln       net.Listener
	// lastActive is when the server last had a request, in Unix
	// nanoseconds, for the idle timeout.
	lastActive    atomic.Int64
	extraWorkers  []worker.Worker
	app           *githubapp.App
	installations *installations
	// writers caches who may cancel, retry and start runs of which
	// repository (mayOperate).
	writers writerCache
	limits  *WriteLimits
	// streams are the followed logs being sent (see apiFollowLog); they
	// end when the server shuts down.
	streams streamSet
	// web is the web view (web.go).
	web *web
	// traces exports runs as traces, when the environment asks for it
	// (traces.go).
	traces *traces
	// metrics are the series of /metrics (metrics.go).
	metrics *serverMetrics
	// inbox holds the deliveries taken and not yet in Temporal, when
	// cfg.Inbox is on (see take).
	inbox *inbox.Inbox
	// closing makes Close once.
	closing sync.Once
}

// Start brings the server up: Temporal (embedded or the cluster the
// configuration names), the workers, the runner, and the HTTP listener.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Server, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Home == "" {
		return nil, errors.New("starting the server: no home directory; set SLUICE_HOME")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if err := cfg.checkTemporal(); err != nil {
		return nil, err
	}
	if err := cfg.checkInbox(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: logger}
	if len(cfg.GitHub.WebhookSecrets) > 0 {
		if s.verifier, err = webhook.NewVerifier(cfg.GitHub.WebhookSecrets); err != nil {
			return nil, err
		}
	}
	if s.hookKeys, err = hookSecrets(cfg); err != nil {
		return nil, err
	}
	if s.web, err = newWeb(cfg.Home, webFuncs); err != nil {
		return nil, err
	}
	if s.tokens, err = OpenTokens(TokensFile(cfg.Home)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Home, 0o755); err != nil {
		return nil, err
	}
	// Listen first: a second server for the same address fails before it
	// touches Temporal.
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listening on %s: %w; give another address with --listen", cfg.Listen, err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	opts := local.Options{Home: cfg.Home, TemporalAddress: cfg.TemporalAddress, TemporalListen: cfg.TemporalListen,
		TLS: cfg.TemporalTLS, APIKey: cfg.TemporalAPIKey, Namespace: cfg.Namespace, Logger: logger,
		DB: cfg.DB, Migrate: cfg.Migrate, HistoryShards: cfg.HistoryShards, TemporalNice: temporalNice(cfg)}
	if !cfg.NoRunner {
		// A team's server lists its own runner in the registry (sluice
		// runners, the runners page) beside the standalone ones; the
		// local server a command started has no one to show it to.
		opts.Runner = &local.RunnerOptions{Name: local.DefaultRunnerName(), Labels: cfg.Labels, Report: !cfg.Background, GitCredentials: s.runnerGitCredentials}
		if cfg.Build {
			b := local.BuildFromEnv(io.Discard)
			b.Optional = true
			opts.Build = b
		}
	}
	if s.metrics, err = newServerMetrics(cfg, logger); err != nil {
		return nil, err
	}
	opts.MetricsHandler = s.metrics.temporal
	if opts.Runner != nil {
		opts.Runner.StepDone = s.metrics.runner.StepDone
	}
	if s.stack, err = local.Start(ctx, opts); err != nil {
		return nil, err
	}
	s.client = s.stack.Client
	s.triggers = &Triggers{
		Client:  s.client,
		Git:     gitSource{mirrors: filepath.Join(cfg.Home, "server", "mirrors")},
		Environ: os.Environ(),
		Modules: filepath.Join(cfg.Home, "modules"),
		Log:     logger,
	}
	s.installations = openInstallations(filepath.Join(cfg.Home, "server", "installations.json"))
	if cfg.GitHub.AppID != 0 {
		if s.app, err = githubapp.LoadApp(cfg.GitHub.AppID, cfg.GitHub.PrivateKeyFile, cfg.GitHub.APIURL); err != nil {
			return nil, err
		}
		s.app.Observe = s.metrics.githubCall
		s.triggers.GitHub = newGitHubSources(s.app)
		s.triggers.App = s.app.Installation
	}
	s.limits = &WriteLimits{}
	s.triggers.Limits = s.limits
	s.triggers.PublicURL = s.publicURL()
	s.triggers.Statuses = cfg.GitHub.CommitStatuses
	s.triggers.MayApprove = s.mayApprove
	s.triggers.InstallationOf = s.installations.get
	s.worker = worker.New(s.client, Queue, worker.Options{Identity: "sluice-server/" + local.DefaultRunnerName()})
	RegisterWorkflows(s.worker)
	s.worker.RegisterActivity(s.triggers)
	redeliverer := &Redeliverer{Client: s.client, Log: logger}
	if s.app != nil {
		redeliverer.App = s.app
	}
	s.worker.RegisterActivity(redeliverer)
	s.worker.RegisterActivity(&Reporter{
		Client: s.client, GitHub: s.triggers.App, Limits: s.limits, Log: logger,
		Logs: func(run, stage, step string) (io.ReadCloser, error) { return s.stack.Logs.Open(run, stage, step) },
	})
	workers := []worker.Worker{s.worker}
	if cfg.NoRunner {
		// Without a runner of its own the server still hosts the
		// pipelines' workflows; runners host only steps.
		ww := engine.NewWorkflowWorker(s.client, worker.Options{Identity: "sluice-server/" + local.DefaultRunnerName()})
		s.extraWorkers = append(s.extraWorkers, ww)
		workers = append(workers, ww)
	}
	// The workers start at once: each asks the server about the namespace
	// before it polls.
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { errs[i] = w.Start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("starting the server's workers: %w", err)
	}
	if err := s.reconcileRedelivery(ctx); err != nil {
		return nil, err
	}
	if cfg.Inbox == InboxOn {
		if s.inbox, err = inbox.Open(filepath.Join(cfg.Home, "server", "inbox"), inbox.Options{Log: logger}); err != nil {
			return nil, err
		}
		s.metrics.watchInbox(s.inbox)
		go s.inbox.Run(inboxForwarders, s.forward)
	}
	if s.traces, err = startTraces(ctx, s.client, cfg.Home, logger); err != nil {
		return nil, err
	}
	s.touch()
	if r := s.stack.Runner(); r != nil {
		s.metrics.runner.Watch(r.Pool())
	}
	if err := s.metrics.start(s.client, s.stack.Namespace, cfg.MetricsListen); err != nil {
		return nil, err
	}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.http.RegisterOnShutdown(s.streams.end)
	go func() {
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serving HTTP", "error", err)
		}
	}()
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is how the server is reached: the public URL, or its address.
func (s *Server) URL() string {
	if u := s.publicURL(); u != "" {
		return u
	}
	return "http://" + s.Addr()
}

// publicURL is the configured public URL, or for a server on a loopback
// or wildcard address with none, its listen address.
func (s *Server) publicURL() string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/")
	}
	if s.ln != nil {
		return "http://" + s.ln.Addr().String()
	}
	return ""
}

// Stack is the Temporal connection (and runner) the server uses.
func (s *Server) Stack() *local.Stack { return s.stack }

// Close stops the HTTP listener, the workers, the runner and the embedded
// Temporal server. A second Close does nothing.
func (s *Server) Close() { s.closing.Do(s.close) }

func (s *Server) close() {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	} else if s.ln != nil {
		s.ln.Close()
	}
	if s.inbox != nil {
		// What is not forwarded yet stays on disk for the next start.
		_ = s.inbox.Close()
	}
	if s.worker != nil {
		s.worker.Stop()
	}
	for _, w := range s.extraWorkers {
		w.Stop()
	}
	s.traces.close()
	s.metrics.close()
	if s.stack != nil {
		s.stack.Close()
	}
}

// InboxPending is how many deliveries the server has answered and not yet
// handed to Temporal (0 without an inbox).
func (s *Server) InboxPending() int {
	if s.inbox == nil {
		return 0
	}
	n, _ := s.inbox.Pending()
	return n
}

func (s *Server) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// hookSecrets are the keys git hook requests are signed with: the
// configured ones, or one made for this home and kept in it.
func hookSecrets(cfg Config) ([][]byte, error) {
	secrets := cfg.GitHookSecrets
	if len(secrets) == 0 {
		s, err := LocalHookSecret(cfg.Home)
		if err != nil {
			return nil, err
		}
		secrets = []string{s}
	}
	var keys [][]byte
	for _, s := range secrets {
		if s == "" {
			return nil, errors.New("a git hook secret is empty; set SLUICE_GIT_HOOK_SECRET or git_hook_secrets in server.hcl to non-empty values")
		}
		keys = append(keys, []byte(s))
	}
	return keys, nil
}

// LocalHookSecret returns the git hook secret kept in home, making it the
// first time: what `sluice hook install` on the same machine uses when no
// secret is given.
func LocalHookSecret(home string) (string, error) {
	p := filepath.Join(home, "server", "git-hook-secret")
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LocalHookSecret(home)
	}
	if err != nil {
		return "", fmt.Errorf("keeping the git hook secret: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return "", err
	}
	return secret, nil
}

// Idle returns a channel closed once the server has had no request for
// timeout and no run is running or waiting; a zero timeout never closes
// it.
func (s *Server) Idle(ctx context.Context, timeout time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	if timeout <= 0 {
		return ch
	}
	go func() {
		tick := time.NewTicker(min(timeout/4, 30*time.Second))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if time.Since(time.Unix(0, s.lastActive.Load())) < timeout {
				continue
			}
			n, err := s.client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: "ExecutionStatus = 'Running'"})
			if err != nil || n.GetCount() > 0 {
				s.touch()
				continue
			}
			close(ch)
			return
		}
	}()
	return ch
}
