package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/blang/semver/v4"
	"github.com/lib/pq"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/persistence"
	"go.temporal.io/server/common/persistence/serialization"
	"go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	pgschema "go.temporal.io/server/schema/postgresql/v12"
	"go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"

	"github.com/sluice-ci/sluice/engine/embedded/pgurl"
)

// DefaultPostgresShards is the number of history shards of a PostgreSQL
// database Start makes. A shard is the unit of the history service's
// concurrency: one owner writes a shard's workflows in order, with a range
// lock on its row; more shards let more workflows write at once, and each
// costs its queue processors polling the database when idle. One server
// process on a few cores gains little above four; the number is fixed for
// the life of the database (Temporal cannot reshard), so a team that
// expects to outgrow one machine starts with more (--history-shards).
const DefaultPostgresShards = 4

// ErrDatabaseInUse is returned (wrapped) by Start when another server
// already serves the PostgreSQL database in Config.DB: with static
// membership each would take every shard from the other.
var ErrDatabaseInUse = errors.New("database is in use")

// Schemas of the embedded files Start applies (go.temporal.io/server/schema).
const (
	mainSchema       = "postgresql/v12/temporal"
	visibilitySchema = "postgresql/v12/visibility"
)

// connectTimeout bounds the first connection: an unreachable database
// fails the start at once, with what to check, instead of the server's
// retries.
const connectTimeout = 5 * time.Second

// The advisory lock that keeps a second server off the database (its two
// int4 keys: "SLU", 1). PostgreSQL releases it when the session ends,
// also when the process holding it is killed.
const (
	lockClass = 0x534c55
	lockObj   = 1
)

// lockCheck is how often a running server checks the session that holds
// its lock.
var lockCheck = 30 * time.Second

// pgLock holds the advisory lock in a session of its own.
type pgLock struct {
	db   *sql.DB
	conn *sql.Conn
	// stop ends watch, which closes done.
	stop, done chan struct{}
}

// watch checks the lock's session every lockCheck while the server runs.
// The queries keep idle-connection timeouts (a firewall's, a proxy's)
// from ending the session; a session that ended all the same (PostgreSQL
// restarted, the connection was cut) released the lock, so watch takes it
// again in a new session, and says so.
func (l *pgLock) watch(u *pgurl.URL, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		tick := time.NewTicker(lockCheck)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout+time.Second)
			if err := l.conn.PingContext(ctx); err != nil {
				l.retake(ctx, u, logger, err)
			}
			cancel()
		}
	}()
}

func (l *pgLock) retake(ctx context.Context, u *pgurl.URL, logger *slog.Logger, cause error) {
	conn, err := l.db.Conn(ctx)
	var ok bool
	if err == nil {
		if err = conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1, $2)", lockClass, lockObj).Scan(&ok); err != nil || !ok {
			_ = conn.Close()
		}
	}
	switch {
	case err != nil:
		logger.Warn("the PostgreSQL session that holds this server's lock on the database ended, and taking the lock again failed; trying again", "db", u.Where(), "cause", cause, "error", err)
	case !ok:
		logger.Error("the PostgreSQL session that holds this server's lock on the database ended, and another server took the lock: stop one of them", "db", u.Where(), "cause", cause)
	default:
		_ = l.conn.Close()
		l.conn = conn
		logger.Warn("the PostgreSQL session that holds this server's lock on the database ended; took the lock again", "db", u.Where(), "cause", cause)
	}
}

func (l *pgLock) release() error {
	if l == nil || l.db == nil {
		return nil
	}
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	err := l.conn.Close()
	if cerr := l.db.Close(); err == nil {
		err = cerr
	}
	l.db = nil
	return err
}

// preparePostgres checks (or with Config.Migrate, creates and updates) the
// databases of cfg.DB, takes the lock on them and returns the server's
// configuration. Every failure is one line that says what to do.
func preparePostgres(ctx context.Context, cfg Config) (_ *store, err error) {
	u, err := pgurl.Parse(cfg.DB)
	if err != nil {
		return nil, err
	}
	if u.Password == "" {
		u.Password = os.Getenv("PGPASSWORD")
		if err := pgurl.CheckPassword(u.Password); err != nil {
			return nil, fmt.Errorf("PGPASSWORD: %w", err)
		}
	}
	if cfg.HistoryShards < 0 {
		return nil, fmt.Errorf("--history-shards %d: give a positive number", cfg.HistoryShards)
	}

	main, err := connect(ctx, u, u.Database)
	if isMissingDB(err) && cfg.Migrate {
		if err = createDatabase(ctx, u, u.Database); err == nil {
			main, err = connect(ctx, u, u.Database)
		}
	}
	if isMissingDB(err) {
		return nil, fmt.Errorf("database %q does not exist on PostgreSQL at %s; create it and Temporal's schema with: %s", u.Database, u.Addr(), migrateCommand(u))
	}
	if err != nil {
		return nil, err
	}
	lock, err := takeLock(ctx, u, main)
	if err != nil {
		_ = main.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = lock.release()
		}
	}()

	exists, err := databaseExists(ctx, lock.conn, u.VisibilityDatabase)
	if err != nil {
		return nil, describeQueryError(u, err)
	}
	if !exists && cfg.Migrate {
		if err := createDatabase(ctx, u, u.VisibilityDatabase); err != nil {
			return nil, err
		}
		exists = true
	}
	mainVersion, err := schemaVersion(ctx, lock.conn, u.Database)
	if err != nil {
		return nil, describeQueryError(u, err)
	}
	visVersion := ""
	if exists {
		if visVersion, err = visibilityVersion(ctx, u); err != nil {
			return nil, err
		}
	}

	mainSQL, visSQL := sqlConfig(u, u.Database), sqlConfig(u, u.VisibilityDatabase)
	migrated := ""
	if cfg.Migrate {
		before := fmt.Sprintf("%s/%s", orNone(mainVersion), orNone(visVersion))
		if err := migrate(mainSQL, mainSchema); err != nil {
			return nil, fmt.Errorf("updating Temporal's schema in %s: %w", u.Where(), err)
		}
		if err := migrate(visSQL, visibilitySchema); err != nil {
			return nil, fmt.Errorf("updating Temporal's visibility schema in %s/%s: %w", u.Addr(), u.VisibilityDatabase, err)
		}
		if mainVersion, err = schemaVersion(ctx, lock.conn, u.Database); err != nil {
			return nil, describeQueryError(u, err)
		}
		if visVersion, err = visibilityVersion(ctx, u); err != nil {
			return nil, err
		}
		if after := mainVersion + "/" + visVersion; after != before {
			migrated = "; migrated from " + before
		}
	}
	if err := checkVersions(u, mainVersion, visVersion, exists); err != nil {
		return nil, err
	}

	shards, err := historyShards(ctx, lock.conn)
	if err != nil {
		return nil, describeQueryError(u, err)
	}
	switch {
	case shards != 0 && cfg.HistoryShards != 0 && int32(cfg.HistoryShards) != shards:
		return nil, fmt.Errorf("the database %s has %d history shards, fixed when it was first used, and Temporal cannot change them: --history-shards %d is refused; drop the flag (or give %d), or start on a new database", u.Where(), shards, cfg.HistoryShards, shards)
	case shards == 0 && cfg.HistoryShards != 0:
		shards = int32(cfg.HistoryShards)
	case shards == 0:
		shards = DefaultPostgresShards
	}

	lock.watch(u, cfg.Logger)
	return &store{
		persistence: config.Persistence{
			DefaultStore:     "postgres",
			VisibilityStore:  "postgres-visibility",
			NumHistoryShards: shards,
			DataStores: map[string]config.DataStore{
				"postgres":            {SQL: mainSQL},
				"postgres-visibility": {SQL: visSQL},
			},
		},
		namespaceDB: mainSQL,
		lock:        lock,
		desc: fmt.Sprintf("PostgreSQL %s (schema %s, visibility %s in %s%s; %d history shards%s)",
			u.Where(), mainVersion, visVersion, u.VisibilityDatabase, migrated, shards, map[bool]string{true: "; pgx driver"}[u.Driver == "pgx"]),
	}, nil
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

// sqlConfig is the server's configuration of one database.
func sqlConfig(u *pgurl.URL, database string) *config.SQL {
	attrs := make(map[string]string, len(u.Params))
	for k, v := range u.Params {
		attrs[k] = v
	}
	plugin := postgresql.PluginName
	if u.Driver == "pgx" {
		plugin = postgresql.PluginNamePGX
	}
	return &config.SQL{
		PluginName:        plugin,
		DatabaseName:      database,
		ConnectAddr:       u.Addr(),
		ConnectProtocol:   "tcp",
		User:              u.User,
		Password:          u.Password,
		ConnectAttributes: attrs,
		MaxConns:          u.MaxConns,
		MaxIdleConns:      u.MaxConns,
		MaxConnLifetime:   time.Hour,
	}
}

// dsn is lib/pq's URL of a database, with a connect timeout unless the
// URL sets one.
func dsn(u *pgurl.URL, database string) string {
	q := url.Values{}
	for k, v := range u.Params {
		q.Set(k, v)
	}
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", strconv.Itoa(int(connectTimeout/time.Second)))
	}
	host, _ := os.Hostname()
	q.Set("application_name", fmt.Sprintf("sluice-temporal pid %d on %s", os.Getpid(), host))
	v := url.URL{Scheme: "postgres", Host: u.Addr(), Path: "/" + database, RawQuery: q.Encode()}
	if u.Password != "" {
		v.User = url.UserPassword(u.User, u.Password)
	} else {
		v.User = url.User(u.User)
	}
	return v.String()
}

// connect opens a database and checks that it answers, within
// connectTimeout; its errors are describeConnError's.
func connect(ctx context.Context, u *pgurl.URL, database string) (*sql.DB, error) {
	c, err := pq.NewConnector(dsn(u, database))
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL at %s/%s: %w", u.Addr(), database, err)
	}
	db := sql.OpenDB(c)
	ctx, cancel := context.WithTimeout(ctx, connectTimeout+time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		if isMissingDB(err) {
			return nil, err
		}
		return nil, describeConnError(u, database, err)
	}
	return db, nil
}

func pqCode(err error) pq.ErrorCode {
	var e *pq.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func isMissingDB(err error) bool { return pqCode(err) == "3D000" }

// describeConnError says in one line why a connection failed and what to
// check.
func describeConnError(u *pgurl.URL, database string, err error) error {
	where := u.Addr() + "/" + database
	var pe *pq.Error
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &pe) && pe.Code == "28P01":
		return fmt.Errorf("PostgreSQL at %s refused user %q: password authentication failed; check the user and password in --db (or PGPASSWORD)", where, u.User)
	case errors.As(err, &pe) && pe.Code == "28000":
		return fmt.Errorf("PostgreSQL at %s refused user %q: %s; check the user in --db and the server's pg_hba.conf", where, u.User, pe.Message)
	case errors.As(err, &pe) && pe.Code == "53300":
		return fmt.Errorf("PostgreSQL at %s has no connection left (%s); raise its max_connections or lower max_conns in --db", where, pe.Message)
	case errors.As(err, &pe):
		return fmt.Errorf("PostgreSQL at %s refused the connection: %s (SQLSTATE %s)", where, pe.Message, pe.Code)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot connect to PostgreSQL at %s: connection refused; check that PostgreSQL runs on %s and accepts TCP connections there (listen_addresses, port), and the host and port in --db", where, u.Addr())
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot connect to PostgreSQL at %s: host %q not found; check the host in --db", where, u.Host)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return fmt.Errorf("cannot connect to PostgreSQL at %s: no answer within %s; check the host and port in --db, and that no firewall drops the connection", where, connectTimeout)
	case errors.Is(err, pq.ErrSSLNotSupported):
		return fmt.Errorf("cannot connect to PostgreSQL at %s: the server does not offer TLS, which sslmode=%s requires; enable ssl on the server, or set sslmode=disable in --db", where, u.Params["sslmode"])
	default:
		return fmt.Errorf("cannot connect to PostgreSQL at %s: %v", where, err)
	}
}

// describeQueryError is a failed query on a connection that worked.
func describeQueryError(u *pgurl.URL, err error) error {
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("PostgreSQL at %s: user %q lacks a privilege Sluice needs (%s); make it the owner of the databases", u.Where(), u.User, pe.Message)
	}
	return fmt.Errorf("reading the Temporal schema of %s: %w", u.Where(), err)
}

// createDatabase makes a database owned by the URL's user, from the
// maintenance database.
func createDatabase(ctx context.Context, u *pgurl.URL, name string) error {
	var db *sql.DB
	var err error
	for _, maint := range []string{"postgres", "template1"} {
		if db, err = connect(ctx, u, maint); !isMissingDB(err) {
			break
		}
	}
	if err != nil {
		if isMissingDB(err) {
			return fmt.Errorf("database %q does not exist on PostgreSQL at %s, and neither does a maintenance database (postgres, template1) to create it from; create it yourself (CREATE DATABASE %s OWNER %s)", name, u.Addr(), pq.QuoteIdentifier(name), pq.QuoteIdentifier(u.User))
		}
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name))
	switch pqCode(err) {
	case "":
		return err
	case "42P04": // duplicate_database: made meanwhile
		return nil
	case "42501":
		owner := pq.QuoteIdentifier(u.User)
		return fmt.Errorf("creating database %q on PostgreSQL at %s: user %q may not create databases; have an administrator run CREATE DATABASE %s OWNER %s and CREATE DATABASE %s OWNER %s, or grant the user CREATEDB",
			name, u.Addr(), u.User, pq.QuoteIdentifier(u.Database), owner, pq.QuoteIdentifier(u.VisibilityDatabase), owner)
	default:
		return fmt.Errorf("creating database %q on PostgreSQL at %s: %w", name, u.Addr(), err)
	}
}

// takeLock takes the advisory lock in a session of db's that it keeps,
// or says who holds it; on failure the caller closes db.
func takeLock(ctx context.Context, u *pgurl.URL, db *sql.DB) (*pgLock, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, describeConnError(u, u.Database, err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1, $2)", lockClass, lockObj).Scan(&ok); err != nil {
		_ = conn.Close()
		return nil, describeQueryError(u, err)
	}
	if ok {
		return &pgLock{db: db, conn: conn}, nil
	}
	defer conn.Close()
	// Who holds it, when this user may see (other users' sessions show
	// no application name).
	var holder, from string
	_ = conn.QueryRowContext(ctx, `SELECT coalesce(a.application_name, ''), coalesce(host(a.client_addr), '')
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2`, lockClass, lockObj).Scan(&holder, &from)
	who := "another Sluice server"
	if holder != "" {
		who += " (" + holder
		if from != "" {
			who += ", from " + from
		}
		who += ")"
	}
	return nil, fmt.Errorf("%w: PostgreSQL database %s is served by %s; stop that server, or give this one another database", ErrDatabaseInUse, u.Where(), who)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func databaseExists(ctx context.Context, q querier, name string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// schemaVersion reads the schema version Temporal's tools recorded in a
// database; "" when it has none (an empty database).
func schemaVersion(ctx context.Context, q querier, database string) (string, error) {
	var v string
	err := q.QueryRowContext(ctx, "SELECT curr_version FROM schema_version WHERE version_partition = 0 AND db_name = $1", database).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) || pqCode(err) == "42P01" { // undefined_table
		return "", nil
	}
	return v, err
}

// checkVersions refuses schemas older than this server's, naming what it
// found and what it needs. Newer ones are fine: Temporal only makes
// backward-compatible schema changes, so an older sluice runs on them.
func checkVersions(u *pgurl.URL, mainVersion, visVersion string, visExists bool) error {
	older := func(found, need string) bool {
		if found == "" {
			return true
		}
		f, err1 := semver.ParseTolerant(found)
		n, err2 := semver.ParseTolerant(need)
		return err1 != nil || err2 != nil || f.LT(n)
	}
	mainOld, visOld := older(mainVersion, pgschema.Version), older(visVersion, pgschema.VisibilityVersion)
	if !mainOld && !visOld {
		return nil
	}
	if mainVersion == "" && visVersion == "" {
		return fmt.Errorf("the PostgreSQL database %s has no Temporal schema (this sluice needs schema %s, and visibility schema %s in %s); create them with: %s",
			u.Where(), pgschema.Version, pgschema.VisibilityVersion, u.VisibilityDatabase, migrateCommand(u))
	}
	found := func(v string) string {
		if v == "" {
			return "none"
		}
		return v
	}
	vis := u.VisibilityDatabase
	if !visExists {
		vis += " (missing)"
	}
	return fmt.Errorf("the Temporal schema in PostgreSQL %s is older than this sluice needs: found schema %s (needs %s) and visibility schema %s in %s (needs %s); back the databases up, then update them with: %s",
		u.Where(), found(mainVersion), pgschema.Version, found(visVersion), vis, pgschema.VisibilityVersion, migrateCommand(u))
}

func migrateCommand(u *pgurl.URL) string {
	return "sluice server --db " + u.String() + " --migrate"
}

// migrate sets a database's schema up if it has none and updates it to
// the newest version of the files embedded in the server module, with
// Temporal's own schema tool: what temporal-sql-tool setup-schema -v 0.0
// and update-schema do. Both steps are idempotent.
func migrate(cfg *config.SQL, schemaName string) error {
	conn, err := sqltool.NewConnection(cfg, log.NewNoopLogger())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, log.NewNoopLogger()).Run(); err != nil {
		return fmt.Errorf("setting up the version tables: %w", err)
	}
	return schema.NewUpdateSchemaTask(conn, &schema.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: schemaName}, log.NewNoopLogger()).Run()
}

// historyShards reads the shard count the cluster's metadata recorded
// when the server first ran on the database; 0 before that.
func historyShards(ctx context.Context, q querier) (int32, error) {
	var data []byte
	var encoding string
	err := q.QueryRowContext(ctx, "SELECT data, data_encoding FROM cluster_metadata_info WHERE metadata_partition = 0 AND cluster_name = $1", clusterName).Scan(&data, &encoding)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	md, err := serialization.NewSerializer().DeserializeClusterMetadata(persistence.NewDataBlob(data, encoding))
	if err != nil {
		return 0, fmt.Errorf("decoding the cluster metadata: %w", err)
	}
	return md.GetHistoryShardCount(), nil
}

// visibilityVersion reads the schema version of u's visibility database.
func visibilityVersion(ctx context.Context, u *pgurl.URL) (string, error) {
	vis, err := connect(ctx, u, u.VisibilityDatabase)
	if err != nil {
		return "", err
	}
	defer vis.Close()
	v, err := schemaVersion(ctx, vis, u.VisibilityDatabase)
	if err != nil {
		return "", describeQueryError(u, err)
	}
	return v, nil
}
