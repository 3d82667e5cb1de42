package embedded

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/metrics"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/protobuf/types/known/durationpb"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sluice-ci/sluice/internal/binaryid"
)

// Names of the custom search attributes Start registers in the namespace, all
// of type Keyword. They let `sluice runs` find runs by pipeline, repository,
// ref, commit and status through a visibility query such as
// `SluicePipeline = "web" AND SluiceStatus = "failed"`.
const (
	SearchAttrPipeline = "SluicePipeline"
	SearchAttrRepo     = "SluiceRepo"
	SearchAttrRef      = "SluiceRef"
	SearchAttrSHA      = "SluiceSHA"
	SearchAttrStatus   = "SluiceStatus"
	SearchAttrEvent    = "SluiceEvent"
	SearchAttrActor    = "SluiceActor"
)

// DefaultNamespace is the namespace used when Config.Namespace is empty. It
// keeps Sluice's runs apart from anything else a user points at the same
// database with other Temporal tools.
const DefaultNamespace = "sluice"

// Retention is how long the history of a closed workflow is kept: long enough
// to look at last week's runs, short enough that the database of someone who
// runs pipelines all day stays small.
const Retention = 7 * 24 * time.Hour

// ErrDataDirInUse is returned (wrapped) by Start when another server, in this
// process or another one, already serves the database in Config.DataDir.
// SQLite itself would let a second server open the file, and the two would
// then fight over its one history shard, failing each other's writes.
var ErrDataDirInUse = errors.New("data directory is in use")

// Config says where the embedded server keeps its state and where it listens.
// The zero value is a usable in-memory server on a free loopback port.
type Config struct {
	// DataDir holds the SQLite database (DataDir/temporal.db) and its lock
	// file; it is created if missing. Empty keeps everything in memory, for
	// tests: the data is gone at Stop, but its memory is only freed when the
	// process exits, as the server's SQLite plugin never closes a database.
	DataDir string
	// IP is the address the frontend listens on; empty means 127.0.0.1.
	// The other services always listen on loopback.
	IP string
	// Port is the frontend gRPC port; 0 picks a free one.
	Port int
	// Namespace is registered at Start if missing; empty means
	// DefaultNamespace.
	Namespace string
	// Logger receives the server's warnings and errors; nil discards them.
	Logger *slog.Logger
	// DB, when set, is a PostgreSQL URL (see package pgurl): the server
	// keeps its state in that database and a second one beside it (the
	// visibility store) instead of SQLite in DataDir, which it then does
	// not use. Start refuses a database without Temporal's schema, or
	// with an older one, unless Migrate is set.
	DB string
	// Migrate creates DB's two databases if they are missing and sets up
	// or updates their schemas to this server's versions before starting.
	Migrate bool
	// HistoryShards is the number of history shards of a new PostgreSQL
	// database (0: DefaultPostgresShards). An existing database keeps the
	// number it was made with: Start refuses another. SQLite has one.
	HistoryShards int
}

// Server is a running embedded Temporal server. It serves any client that
// dials Address, in this process or another.
type Server struct {
	server    temporal.Server
	address   string
	namespace string
	store     string
	lock      releaser
	logs      *logGate

	stopOnce sync.Once
	stopErr  error
}

// startTimeout bounds the wait for the frontend when ctx has no deadline, so
// that a server that never becomes healthy makes Start fail, not hang.
const startTimeout = time.Minute

// Start starts a Temporal server and returns once its frontend accepts
// requests for the namespace, with the namespace and its search attributes
// registered. The caller must Stop the server.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if !validNamespace.MatchString(cfg.Namespace) {
		return nil, fmt.Errorf("starting Temporal: invalid namespace %q: use letters, digits, '.', '-' and '_'", cfg.Namespace)
	}
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	ip := net.ParseIP(cfg.IP)
	if ip == nil {
		return nil, fmt.Errorf("starting Temporal: invalid IP address %q", cfg.IP)
	}

	// The internal ports are chosen before the server binds them, so another
	// process can take one in between; the server then fails with "address
	// in use" and nothing of it is left running, so try again on new ports.
	if cfg.DB == "" && cfg.HistoryShards > 1 {
		return nil, fmt.Errorf("starting Temporal: SQLite keeps one history shard; more need a PostgreSQL database (--db)")
	}
	if cfg.DB == "" && cfg.Migrate {
		return nil, fmt.Errorf("starting Temporal: --migrate applies to a PostgreSQL database (--db); SQLite's schema is made and kept by itself")
	}
	// The server's own workers would otherwise read and hash this whole
	// executable before the server is ready (see package binaryid).
	binaryid.Set()
	const attempts = 4
	for attempt := 1; ; attempt++ {
		var st *store
		var err error
		if cfg.DB != "" {
			st, err = preparePostgres(ctx, cfg)
		} else {
			st, err = prepareDatabase(cfg.DataDir)
		}
		if err != nil {
			return nil, fmt.Errorf("starting Temporal: %w", err)
		}
		s, err := start(ctx, cfg, ip, st)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == attempts || ctx.Err() != nil {
			return nil, fmt.Errorf("starting Temporal: %w", err)
		}
	}
}

// clusterName names the one cluster; it is stored in the database, so it
// never changes.
const clusterName = "active"

var validNamespace = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// store is where a server keeps its state: its persistence configuration,
// the lock that keeps other servers off it while it runs, and how to name
// it to people.
type store struct {
	persistence config.Persistence
	// namespaceDB is the database the namespace is registered in.
	namespaceDB *config.SQL
	lock        releaser
	desc        string
	// made says the database was made for this start: the namespace is
	// registered in it with all of Sluice's search attributes, and none
	// can be missing.
	made bool
}

// releaser is a lock on a store.
type releaser interface{ release() error }

func sqliteStore(sqlConfig *config.SQL, lock *lockFile, desc string) *store {
	st := &store{
		persistence: config.Persistence{
			DefaultStore:     "sqlite",
			VisibilityStore:  "sqlite",
			NumHistoryShards: 1,
			DataStores:       map[string]config.DataStore{"sqlite": {SQL: sqlConfig}},
		},
		namespaceDB: sqlConfig,
		desc:        desc,
	}
	// A nil *lockFile in the interface would not be nil.
	if lock != nil {
		st.lock = lock
	}
	return st
}

// prepareDatabase locks and, if new, creates the SQLite database and returns
// the server's configuration for it, and the lock to hold while it runs.
func prepareDatabase(dataDir string) (_ *store, err error) {
	if dataDir == "" {
		// Each in-memory server needs its own shared-cache database name: the
		// SQLite plugin keeps one connection per name for the life of the
		// process, and so the data of a stopped server.
		name := make([]byte, 8)
		_, _ = rand.Read(name)
		st := sqliteStore(&config.SQL{
			PluginName:        sqliteplugin.PluginName,
			DatabaseName:      "sluice-" + hex.EncodeToString(name),
			ConnectAttributes: map[string]string{"mode": "memory", "cache": "shared"},
		}, nil, "memory")
		st.made = true
		return st, nil
	}

	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("resolving data directory %q: %w", dataDir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data directory %q: %w", dir, err)
	}
	lockPath := filepath.Join(dir, "temporal.db.lock")
	lock, err := acquireLock(lockPath)
	switch {
	case errors.Is(err, ErrDataDirInUse):
		return nil, err
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("data directory %q is not writable: %w", dir, err)
	case err != nil:
		return nil, fmt.Errorf("locking data directory %q: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = lock.release()
		}
	}()

	dbPath := filepath.Join(dir, "temporal.db")
	sqlConfig := sqliteConfig(dbPath)
	info, err := os.Stat(dbPath)
	made := false
	switch {
	case errors.Is(err, os.ErrNotExist) || (err == nil && info.Size() == 0):
		// A copy of the database Temporal's schema setup makes (see
		// emptydb.go).
		if err := copyEmptyDatabase(dbPath); err != nil {
			return nil, fmt.Errorf("creating database %q: %w", dbPath, err)
		}
		made = true
	case err != nil:
		return nil, fmt.Errorf("opening database: %w", err)
	}
	st := sqliteStore(sqlConfig, lock, "SQLite "+dbPath)
	st.made = made
	return st, nil
}

// start runs the server on a prepared store. It owns the store's lock: on
// failure it releases it once nothing of the server is left running.
func start(ctx context.Context, cfg Config, ip net.IP, st *store) (_ *Server, err error) {
	lock := st.lock
	if lock == nil {
		lock = noLock{}
	}
	releaseLock := true
	defer func() {
		if err != nil && releaseLock {
			_ = lock.release()
		}
	}()

	// Namespace first, straight into the database: registering it through
	// the API only once the server runs would leave a window in which the
	// frontend answers but the namespace is unknown to it.
	if err := createNamespace(st.namespaceDB, cfg.Namespace); err != nil {
		return nil, err
	}

	frontendPort := cfg.Port
	if frontendPort == 0 {
		p, err := freePort(cfg.IP)
		if err != nil {
			return nil, err
		}
		frontendPort = p
	} else if err := checkPort(cfg.IP, frontendPort); err != nil {
		return nil, err
	}
	// Others reach the frontend on loopback when it listens on all addresses.
	dialIP := cfg.IP
	if ip.IsUnspecified() {
		dialIP = "127.0.0.1"
		if ip.To4() == nil {
			dialIP = "::1"
		}
	}
	address := net.JoinHostPort(dialIP, strconv.Itoa(frontendPort))

	services := map[string]config.Service{
		string(primitives.FrontendService): {RPC: config.RPC{GRPCPort: frontendPort, BindOnIP: cfg.IP}},
	}
	hosts := map[primitives.ServiceName]static.Hosts{
		primitives.FrontendService: static.SingleLocalHost(address),
	}
	for _, name := range []primitives.ServiceName{primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		p, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		services[string(name)] = config.Service{RPC: config.RPC{GRPCPort: p, BindOnIP: "127.0.0.1"}}
		hosts[name] = static.SingleLocalHost(net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}

	serverConfig := &config.Config{
		Global: config.Global{
			Membership: config.Membership{BroadcastAddress: "127.0.0.1"},
		},
		Persistence: st.persistence,
		ClusterMetadata: &cluster.Config{
			FailoverVersionIncrement: 10,
			MasterClusterName:        clusterName,
			CurrentClusterName:       clusterName,
			ClusterInformation: map[string]cluster.ClusterInformation{
				clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: address},
			},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services:            services,
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{
			Archival: config.ArchivalNamespaceDefaults{
				History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
				Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
			},
		},
		// The server's own worker service dials the frontend here.
		PublicClient: config.PublicClient{HostPort: address},
	}

	logger := newServerLogger(cfg.Logger)
	defer func() {
		if err != nil {
			logger.gate.failed()
		}
	}()
	server, err := build(
		temporal.WithConfig(serverConfig),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithCustomMetricsHandler(metrics.NoopMetricsHandler),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// `sluice runs` lists through visibility; the default of 10
			// requests per second is easy to hit from a watch loop.
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
			// One machine needs no task queue partitions: with the default
			// four, a task may wait to be forwarded to a poller.
			dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():  1,
			dynamicconfig.MatchingNumTaskqueueWritePartitions.Key(): 1,
			// The history service hands tasks to matching from queues it
			// polls at most 20 times a second; every step needs two such
			// hand-offs, which held a pipeline of short steps to about ten
			// steps a second. A single-shard server can poll far more.
			dynamicconfig.TransferProcessorMaxPollRPS.Key(): 2000,
			dynamicconfig.TimerProcessorMaxPollRPS.Key():    2000,
			// A runner that drains stops its stage pollers; without this
			// a task the server hands a poll being shut down is taken by
			// nobody until its timeout.
			dynamicconfig.EnableCancelWorkerPollsOnShutdown.Key(): true,
		}),
	)
	if err != nil {
		return nil, err
	}

	// temporal.Server.Start blocks for as long as the services take to start
	// and cannot be interrupted: on ctx expiry, give up waiting and stop the
	// server whenever it is done starting.
	started := make(chan error, 1)
	go func() { started <- recoverFatal(server.Start) }()
	select {
	case err := <-started:
		if err != nil {
			_ = server.Stop()
			return nil, describeStartError(err)
		}
	case <-ctx.Done():
		releaseLock = false
		go func() {
			if <-started == nil {
				_ = server.Stop()
			}
			_ = lock.release()
		}()
		return nil, fmt.Errorf("waiting for the server to start: %w", context.Cause(ctx))
	}

	s := &Server{server: server, address: address, namespace: cfg.Namespace, store: st.desc, lock: lock, logs: logger.gate}
	if err := s.waitReady(ctx, !st.made); err != nil {
		_ = server.Stop()
		return nil, err
	}
	logger.gate.started()
	return s, nil
}

// build wraps temporal.NewServer, which builds every service and binds their
// ports, turning the panic of a Fatal log into an error.
func build(opts ...temporal.ServerOption) (temporal.Server, error) {
	var server temporal.Server
	err := recoverFatal(func() error {
		var err error
		server, err = temporal.NewServer(opts...)
		return err
	})
	if err != nil {
		return nil, describeStartError(fmt.Errorf("building server: %w", err))
	}
	return server, nil
}

func recoverFatal(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	return f()
}

func describeStartError(err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("a port the server needs was taken while it started; try again: %w", err)
	}
	// The server's own wiring reports a locked database only as text.
	if msg := err.Error(); strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked") {
		return fmt.Errorf("the database is locked by another program (a sqlite3 shell, a `temporal server start-dev --db-filename`?); close it and try again: %w", err)
	}
	return err
}

// createNamespace registers the namespace with the Sluice search attributes,
// unless it already exists.
func createNamespace(sqlConfig *config.SQL, name string) error {
	attrs := make(map[string]enumspb.IndexedValueType, len(searchAttrs))
	for _, a := range searchAttrs {
		attrs[a] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, name, false, attrs)
	if err != nil {
		return fmt.Errorf("registering namespace %q: %w", name, err)
	}
	ns.Detail.Config.Retention = durationpb.New(Retention)
	err = sqliteschema.CreateNamespaces(sqlConfig, ns)
	if isDBLocked(err) {
		// The lock file keeps other sluice processes out, not other programs.
		return fmt.Errorf("database %q is locked by another program (a sqlite3 shell, a `temporal server start-dev --db-filename`?); close it and try again: %w", sqlConfig.DatabaseName, err)
	}
	if err != nil {
		return fmt.Errorf("registering namespace %q: %w", name, err)
	}
	return nil
}

// isDBLocked reports SQLite's "database is locked": another connection holds
// a write lock on the file.
func isDBLocked(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	code := e.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

var searchAttrs = []string{SearchAttrPipeline, SearchAttrRepo, SearchAttrRef, SearchAttrSHA, SearchAttrStatus, SearchAttrEvent, SearchAttrActor}

// probe succeeds when the frontend serves the namespace and reaches the
// history service: the first workflow a caller starts then does not wait.
// One request asks both: no workflow has the probe's ID, so history
// answering "not found" is the success; a namespace the frontend does not
// know yet fails it with NamespaceNotFound instead.
func (s *Server) probe(ctx context.Context, c client.Client) error {
	_, err := c.DescribeWorkflowExecution(ctx, "sluice-readiness-probe", "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

// waitReady dials the frontend until it serves the namespace, then, with
// checkAttrs, adds any Sluice search attribute the namespace lacks (a
// database made by an older sluice). Adding is idempotent: attributes
// already there are left alone. A database made for this start has them
// all, registered with the namespace.
func (s *Server) waitReady(ctx context.Context, checkAttrs bool) error {
	var c client.Client
	var lastErr error
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if c == nil {
			c, lastErr = client.DialContext(ctx, client.Options{
				HostPort:  s.address,
				Namespace: s.namespace,
				// Its retries while the frontend comes up are noise; the
				// last error, if any, is in the one Start returns.
				Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
			})
		}
		if c != nil {
			if lastErr = s.probe(ctx, c); lastErr == nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			if c != nil {
				c.Close()
			}
			return fmt.Errorf("waiting for the frontend on %s to serve namespace %q: %w (last error: %v)", s.address, s.namespace, context.Cause(ctx), lastErr)
		case <-time.After(delay):
		}
	}
	defer c.Close()
	if !checkAttrs {
		return nil
	}

	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: s.namespace})
	if err != nil {
		return fmt.Errorf("listing search attributes of namespace %q: %w", s.namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, a := range searchAttrs {
		if _, ok := have.GetCustomAttributes()[a]; !ok {
			missing[a] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        s.namespace,
		SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		names := make([]string, 0, len(missing))
		for n := range missing {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("adding search attributes %v to namespace %q: %w", names, s.namespace, err)
	}
	return nil
}

// Address is the frontend's host:port, for client.Options.HostPort.
func (s *Server) Address() string { return s.address }

// Namespace is the namespace Start registered, for client.Options.Namespace.
func (s *Server) Namespace() string { return s.namespace }

// Store says where the server keeps its state, for people: "SQLite
// PATH", "memory", or "PostgreSQL HOST:PORT/DB (schema ...; N history
// shards)".
func (s *Server) Store() string { return s.store }

// noLock is the lock of a store that needs none (in memory).
type noLock struct{}

func (noLock) release() error { return nil }

// Stop stops the server and releases the data directory, so that another
// process, or a new Start in this one, can open the database. Workflows
// still running are not lost: they resume at the next Start on the same
// DataDir. It takes about a second, which the frontend spends draining
// requests. Calling Stop again returns the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.logs.stopping()
		err := s.server.Stop()
		if lerr := s.lock.release(); err == nil {
			err = lerr
		}
		if err != nil {
			s.stopErr = fmt.Errorf("stopping Temporal: %w", err)
		}
	})
	return s.stopErr
}

// Ports are picked below the kernels' ephemeral ranges (32768 and up on
// Linux, 49152 and up on macOS and Windows): a port from the ephemeral range
// is free only until some process's outgoing connection is given it, which
// on a busy machine (or in the server's own start, dialling its services)
// happens between picking the port and binding it.
const (
	portRangeLow  = 20000
	portRangeHigh = 32768
)

// freePort finds a port nobody listens on. Another process could still take
// it before the server binds it; Start then tries again with new ports.
func freePort(ip string) (int, error) {
	for range 64 {
		port := portRangeLow + mathrand.IntN(portRangeHigh-portRangeLow)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	// A crowded range: let the kernel choose.
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkPort fails early, with a message that names the port, when the
// frontend port is taken: the server itself reports that only as a fatal log.
func checkPort(ip string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("frontend port %d on %s is in use; stop what listens there or choose another port (0 picks a free one)", port, ip)
		}
		return fmt.Errorf("listening on %s: %w", net.JoinHostPort(ip, strconv.Itoa(port)), err)
	}
	return l.Close()
}
