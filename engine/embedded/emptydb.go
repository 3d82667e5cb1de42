package embedded

import (
	"bytes"
	"compress/gzip"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"go.temporal.io/server/common/config"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

// A new home's SQLite database is not made by running Temporal's schema
// setup, about a hundred statements that took 30 to 180 ms of the first
// `sluice run` on a fresh $SLUICE_HOME, but copied from emptyDatabase:
// the database that setup makes, made by the same code (makeEmptyDatabase,
// through TestEmptyDatabase -update, which go generate runs) with the
// Temporal server this binary links. TestEmptyDatabase fails when the copy
// and what the setup makes differ in any table, index, trigger, row or
// setting, so the two cannot drift apart: after an upgrade of the Temporal
// server, go generate makes the copy again. The namespace and its search
// attributes are not in the copy: each database gets a namespace of its
// own ID, registered at the first start as before.
//
//go:generate go test -run ^TestEmptyDatabase$ -update .
//go:embed emptydb/temporal.db.gz
var emptyDatabase []byte

// copyEmptyDatabase puts a copy of emptyDatabase at path, which must not
// hold a database. The caller holds the data directory's lock.
func copyEmptyDatabase(path string) error {
	zr, err := gzip.NewReader(bytes.NewReader(emptyDatabase))
	if err != nil {
		return fmt.Errorf("reading the empty database: %w", err)
	}
	// A write-ahead log left beside a database that is gone would be
	// applied to the new one.
	for _, stale := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(stale); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// Written beside it and renamed into place, so that a process killed
	// meanwhile leaves no half-made database, only this file to overwrite.
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, zr); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// sqliteConfig is the server's configuration of the SQLite database at
// path.
func sqliteConfig(path string) *config.SQL {
	return &config.SQL{
		PluginName:   sqliteplugin.PluginName,
		DatabaseName: path,
		// WAL with synchronous=NORMAL commits without an fsync per
		// transaction; what was committed survives a crash of the process
		// (kill -9), which is what a local run must survive. The default
		// rollback journal fsyncs several times per commit and made every
		// step cost about a hundred milliseconds.
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "normal"},
	}
}

// makeEmptyDatabase makes a new database at path with Temporal's schema
// setup, as a data directory's first start did before emptyDatabase, and
// moves everything the setup wrote into the database file itself. The
// server's SQLite plugin keeps its connection to path open until the
// process exits.
func makeEmptyDatabase(path string) error {
	if err := sqliteschema.SetupSchema(sqliteConfig(path)); err != nil {
		return fmt.Errorf("setting up Temporal's schema in %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	var busy, frames, copied int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &copied); err != nil {
		return fmt.Errorf("checkpointing %s: %w", path, err)
	}
	if busy != 0 {
		return fmt.Errorf("checkpointing %s: the database is busy", path)
	}
	return nil
}
