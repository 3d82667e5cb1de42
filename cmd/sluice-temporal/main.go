// Command sluice-temporal is the embedded Temporal server of the local
// stack, in a process of its own: `sluice run` and `sluice dev` start it
// when no Temporal cluster is configured, and it dies with them.
//
// It is separate from the sluice binary because the server links hundreds
// of packages whose initialisation would cost every sluice command (even
// `sluice validate`) tens of milliseconds; see docs/design.md.
//
// Its state is in SQLite (--data-dir), or in PostgreSQL when --db, or
// $SLUICE_TEMPORAL_DB (which keeps a password out of the process list),
// names a database: postgres://USER[:PASSWORD]@HOST[:PORT]/DB; see
// engine/embedded/pgurl. --migrate creates or updates its schema.
//
// When the server accepts requests it prints one JSON line to stdout,
// {"address": "127.0.0.1:7233", "namespace": "sluice", "store": "..."},
// and keeps running until it gets SIGTERM or SIGINT, or stdin is closed
// (its parent died).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-ci/sluice/engine/embedded"
	"github.com/sluice-ci/sluice/internal/proc"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory of the SQLite database (empty: in memory)")
	ip := flag.String("ip", "127.0.0.1", "address the frontend listens on")
	port := flag.Int("port", 0, "frontend gRPC port (0: a free one)")
	namespace := flag.String("namespace", embedded.DefaultNamespace, "namespace to register")
	logFile := flag.String("log", "", "file for the server's warnings (default: stderr)")
	db := flag.String("db", os.Getenv("SLUICE_TEMPORAL_DB"), "PostgreSQL URL to keep the state in instead of SQLite (default $SLUICE_TEMPORAL_DB)")
	migrate := flag.Bool("migrate", false, "create or update the PostgreSQL schema before starting")
	shards := flag.Int("history-shards", 0, "history shards of a new PostgreSQL database (0: 4)")
	nice := flag.Int("nice", 0, "lower the server's CPU priority to this nice value (0-19), below the process that takes webhooks")
	flag.Parse()
	if *nice != 0 {
		// First, while the runtime has made few threads: those it makes
		// later inherit the value.
		if err := proc.Nice(*nice); err != nil {
			fmt.Fprintf(os.Stderr, "sluice-temporal: %v\n", err)
			os.Exit(1)
		}
	}

	var logw io.Writer = os.Stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "sluice-temporal: %v\n", err)
			os.Exit(1)
		}
		logw = f
	}
	logger := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := embedded.Start(ctx, embedded.Config{DataDir: *dataDir, IP: *ip, Port: *port, Namespace: *namespace, Logger: logger,
		DB: *db, Migrate: *migrate, HistoryShards: *shards})
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluice-temporal: %v\n", err)
		os.Exit(1)
	}
	ready, _ := json.Marshal(map[string]string{"address": srv.Address(), "namespace": srv.Namespace(), "store": srv.Store()})
	fmt.Println(string(ready))

	// The parent holds our stdin open; when it goes away, so do we.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
	if err := srv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-temporal: stopping: %v\n", err)
		os.Exit(1)
	}
}
