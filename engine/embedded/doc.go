// Package embedded runs a complete single-process Temporal server inside the
// sluice binary, so that `sluice run` and `sluice dev` need no other process.
//
// The server keeps its state in one SQLite file (DataDir/temporal.db), so a
// pipeline interrupted by a laptop going to sleep or by Ctrl-C can be looked
// at, and resumed, the next time sluice starts. A server started with an
// empty DataDir keeps everything in memory instead, for tests.
//
// A team's server may keep its state in PostgreSQL instead (Config.DB, a
// postgres:// URL read by package pgurl): Temporal's postgres12 plugin
// for both the main and the visibility store, in two databases, DB and
// DB_visibility. Start checks the database before Temporal touches it, so
// that what is wrong is one line that says what to do rather than the
// server's retries: it connects with a 5 s timeout and names an
// unreachable server or a refused password; it refuses a schema that is
// missing or older than this server's (naming both versions and the
// command that updates it) unless Config.Migrate asks it to create the
// databases and apply Temporal's embedded schema files with Temporal's
// own schema tool (go.temporal.io/server/tools/sql); it reads the history
// shard count the database was made with and refuses another; and it
// takes a PostgreSQL advisory lock, held for as long as the server runs,
// so that a second server on the same database is refused as a second
// one on the same SQLite file is.
//
// Start returns only once the frontend answers requests for the Sluice
// namespace, with the Sluice search attributes registered, so a caller can
// dial it and start a workflow straight away:
//
//	srv, err := embedded.Start(ctx, embedded.Config{DataDir: dir})
//	if err != nil {
//		return err
//	}
//	defer srv.Stop()
//	c, err := client.Dial(client.Options{HostPort: srv.Address(), Namespace: srv.Namespace()})
//
// Choices that matter to callers:
//
//   - Membership is static (temporal.WithStaticHosts). With the default
//     ringpop membership a restart on an existing database stalls for half a
//     minute or more, and the stall comes after the frontend already answers,
//     so no readiness check would catch it.
//   - A lock file (DataDir/temporal.db.lock, flock) keeps two servers from
//     serving the same database; the second Start fails with ErrDataDirInUse
//     and names the process that holds it (ErrDatabaseInUse on
//     PostgreSQL).
//   - History shards: one on SQLite, DefaultPostgresShards (4) on a new
//     PostgreSQL database unless Config.HistoryShards says otherwise.
//   - The server's SQLite plugin keeps one connection per database open until
//     the process exits, Stop or not. After Stop it is idle and holds no
//     SQLite lock, so another process can take the database over, and a new
//     Start in this process reuses it.
//   - The server's own logs go to Config.Logger at warn level and above, and
//     nowhere else: a user of `sluice run` sees pipeline output only. The
//     warnings of a start that works and of any stop are dropped: they are
//     the services dialling each other before all listen, and pollers
//     reporting their cancelled requests.
//   - No metrics, pprof or HTTP API listeners are opened: the frontend gRPC
//     port (Config.Port) and three loopback gRPC ports for the history,
//     matching and worker services, picked free at each Start.
package embedded
