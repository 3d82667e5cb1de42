package logstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"sync"
	"testing"
	"time"
)

func appendAt(t *testing.T, s FS, off int64, p string, last bool) Info {
	t.Helper()
	info, err := s.AppendAt("run-1", "test[os=linux/amd64]", "unit", off, []byte(p), last)
	if err != nil {
		t.Fatalf("AppendAt(%d, %q, %v): %v", off, p, last, err)
	}
	return info
}

// Chunks sent again, whole or overlapping what is there, are written once;
// a chunk beyond the end is refused with the size; the last one marks the
// log complete, and more bytes open it again.
func TestAppendAt(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	const run, stage, step = "run-1", "test[os=linux/amd64]", "unit"
	if _, err := s.Stat(run, stage, step); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of no log: %v, want fs.ErrNotExist", err)
	}
	// A gap in a log that does not exist does not create it.
	if _, err := s.AppendAt(run, stage, step, 5, []byte("x"), false); !errors.Is(err, ErrGap) {
		t.Fatalf("chunk at 5 of no log: %v, want ErrGap", err)
	}
	if _, err := s.Stat(run, stage, step); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused chunk created the log: %v", err)
	}
	if got := appendAt(t, s, 0, "hello ", false); got != (Info{Size: 6}) {
		t.Errorf("after the first chunk: %+v", got)
	}
	if got := appendAt(t, s, 0, "hello ", false); got != (Info{Size: 6}) {
		t.Errorf("the first chunk again: %+v", got)
	}
	if got := appendAt(t, s, 3, "lo world", false); got != (Info{Size: 11}) {
		t.Errorf("an overlapping chunk: %+v", got)
	}
	info, err := s.AppendAt(run, stage, step, 12, []byte("!"), false)
	if !errors.Is(err, ErrGap) || info != (Info{Size: 11}) {
		t.Errorf("a chunk past the end: %+v, %v; want ErrGap with size 11", info, err)
	}
	if got := appendAt(t, s, 11, "\n", true); got != (Info{Size: 12, Complete: true}) {
		t.Errorf("the last chunk: %+v", got)
	}
	if got := readAll(t, s, run, stage, step); got != "hello world\n" {
		t.Errorf("log = %q", got)
	}
	// A late copy of a chunk leaves a complete log complete.
	if got := appendAt(t, s, 6, "world", false); got != (Info{Size: 12, Complete: true}) {
		t.Errorf("a late copy: %+v", got)
	}
	// New bytes (a retried step) open it again.
	if got := appendAt(t, s, 12, "again\n", false); got != (Info{Size: 18}) {
		t.Errorf("new bytes after the end: %+v", got)
	}
	if got, _ := s.Stat(run, stage, step); got != (Info{Size: 18}) {
		t.Errorf("Stat = %+v", got)
	}
	if got := appendAt(t, s, 18, "", true); got != (Info{Size: 18, Complete: true}) {
		t.Errorf("marked complete again: %+v", got)
	}
	if got := readAll(t, s, run, stage, step); got != "hello world\nagain\n" {
		t.Errorf("log = %q", got)
	}
}

// A follower sees chunks as they come and ends when the last one marks
// the log complete.
func TestFollowChunks(t *testing.T) {
	s := FS{Dir: t.TempDir(), PollInterval: time.Hour} // woken, not polling
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.Follow(ctx, "run-1", "test[os=linux/amd64]", "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := func(want string) {
		t.Helper()
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != want {
			t.Fatalf("read %q, %v; want %q", buf, err, want)
		}
	}
	appendAt(t, s, 0, "one\n", false)
	read("one\n")
	appendAt(t, s, 4, "two\n", false)
	read("two\n")
	appendAt(t, s, 8, "", true)
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Errorf("after the end: %q, %v", b, err)
	}
}

// Several writers given the same chunks in any order (two servers behind
// one address, a runner's retries) leave the log as it was written once.
func TestAppendAtConcurrent(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	var want bytes.Buffer
	var chunks [][]byte
	for i := range 50 {
		c := bytes.Repeat([]byte{byte('a' + i%26)}, 100+i)
		chunks = append(chunks, c)
		want.Write(c)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			off := int64(0)
			for _, c := range chunks {
				if _, err := s.AppendAt("r", "s", "x", off, c, false); err != nil {
					t.Error(err)
					return
				}
				off += int64(len(c))
			}
		})
	}
	wg.Wait()
	if got := readAll(t, s, "r", "s", "x"); got != want.String() {
		t.Errorf("log of %d bytes, want %d", len(got), want.Len())
	}
}
