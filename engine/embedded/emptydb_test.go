package embedded

import (
	"bytes"
	"compress/gzip"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "make emptydb/temporal.db.gz again with Temporal's schema setup")

// TestEmptyDatabase checks that the database a new data directory gets
// (emptyDatabase) is the one Temporal's schema setup makes, with the
// Temporal server linked into this binary: the same tables, indexes,
// triggers and views with the same SQL, the same rows in every table, and
// the same settings. With -update (go generate) it makes the copy again
// first.
func TestEmptyDatabase(t *testing.T) {
	dir := t.TempDir()
	made := filepath.Join(dir, "setup", "temporal.db")
	if err := os.MkdirAll(filepath.Dir(made), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := makeEmptyDatabase(made); err != nil {
		t.Fatal(err)
	}
	if *update {
		raw, err := os.ReadFile(made)
		if err != nil {
			t.Fatal(err)
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		if _, err := zw.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("emptydb", "temporal.db.gz"), gz.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		emptyDatabase = gz.Bytes()
		t.Logf("wrote emptydb/temporal.db.gz: %d bytes, %d compressed", len(raw), gz.Len())
	}

	copied := filepath.Join(dir, "copy", "temporal.db")
	if err := os.MkdirAll(filepath.Dir(copied), 0o755); err != nil {
		t.Fatal(err)
	}
	// What a crashed start may have left: the copy replaces it, and the
	// log of a database that is gone is not applied to it.
	if err := os.WriteFile(copied+".new", []byte("half written"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copied+"-wal", []byte("not this database's log"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := copyEmptyDatabase(copied); err != nil {
		t.Fatalf("copyEmptyDatabase: %v", err)
	}
	for _, gone := range []string{copied + ".new", copied + "-wal"} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s is still there after copyEmptyDatabase", filepath.Base(gone))
		}
	}

	want, got := dumpDatabase(t, made), dumpDatabase(t, copied)
	if len(want) < 50 || !strings.Contains(strings.Join(want, "\n"), "CREATE TABLE executions") {
		t.Fatalf("the schema setup made a database without Temporal's tables:\n%s", strings.Join(want, "\n"))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("emptydb/temporal.db.gz differs from what Temporal's schema setup makes (-setup +copy); run go generate ./engine/embedded:\n%s", diff)
	}
}

// dumpDatabase describes a SQLite database for comparison: its settings,
// every entry of its schema with its SQL, and every row of every table.
func dumpDatabase(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	for _, p := range []string{"page_size", "encoding", "auto_vacuum", "user_version", "application_id", "journal_mode", "integrity_check"} {
		var v string
		if err := db.QueryRow("PRAGMA " + p).Scan(&v); err != nil {
			t.Fatalf("PRAGMA %s of %s: %v", p, path, err)
		}
		out = append(out, fmt.Sprintf("pragma %s = %s", p, v))
	}
	rows, err := db.Query("SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_schema ORDER BY type, name")
	if err != nil {
		t.Fatalf("reading the schema of %s: %v", path, err)
	}
	var tables []string
	for rows.Next() {
		var typ, name, table, text string
		if err := rows.Scan(&typ, &name, &table, &text); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s on %s: %s", typ, name, table, text))
		if typ == "table" && !strings.HasPrefix(strings.ToUpper(text), "CREATE VIRTUAL") {
			tables = append(tables, name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, table := range tables {
		out = append(out, dumpRows(t, db, table)...)
	}
	return out
}

// dumpRows is every row of a table, in a stable order.
func dumpRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM "` + table + `"`)
	if err != nil {
		t.Fatalf("reading table %s: %v", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fields := make([]string, len(cols))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = "x'" + hex.EncodeToString(b) + "'"
			}
			fields[i] = fmt.Sprintf("%s=%v", cols[i], v)
		}
		out = append(out, fmt.Sprintf("row of %s: %s", table, strings.Join(fields, ", ")))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
