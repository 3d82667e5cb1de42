package logstore

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestFollowWatchesOtherProcess: on Linux a follower sees the lines and
// the end of a log written by another process at
// once, without waiting for its poll, which is an hour here.
func TestFollowWatchesOtherProcess(t *testing.T) {
	dir := t.TempDir()
	// Written as another process writes: straight to the file, which
	// wakes no follower of this process, and made read-only at the end.
	path := filepath.Join(dir, "run", "build", "compile.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, logMode)
	if err != nil {
		t.Fatal(err)
	}
	r, err := FS{Dir: dir, PollInterval: 1 << 62}.Follow(context.Background(), "run", "build", "compile")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := follow(r)
	write(t, w, "first\n")
	f.waitFor(t, "first\n")
	write(t, w, "second\n")
	f.waitFor(t, "first\nsecond\n")
	if err := w.Chmod(0o440); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.end(t); err != io.EOF {
		t.Fatalf("follower ended with %v, want io.EOF", err)
	}
}
