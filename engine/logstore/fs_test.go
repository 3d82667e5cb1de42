package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, s Store, run, stage, step string) string {
	t.Helper()
	r, err := s.Open(run, stage, step)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriterOpen(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	w, err := s.Writer("run-1", "test[go=1.22,os=linux]", "unit")
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "line 1\n")
	// Visible before the writer closes.
	if got := readAll(t, s, "run-1", "test[go=1.22,os=linux]", "unit"); got != "line 1\n" {
		t.Errorf("log before close = %q", got)
	}
	write(t, w, "line 2\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A writer reopened after a crash or for a retry appends.
	w, err = s.Writer("run-1", "test[go=1.22,os=linux]", "unit")
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "--- attempt 2 ---\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "line 1\nline 2\n--- attempt 2 ---\n"
	if got := readAll(t, s, "run-1", "test[go=1.22,os=linux]", "unit"); got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
	if _, err := w.Write([]byte("late")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: err = %v, want os.ErrClosed", err)
	}
}

func TestOpenMissing(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	_, err := s.Open("run", "build", "missing")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("error %q does not name the step", err)
	}
	if _, err := s.List("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of unknown run: err = %v, want fs.ErrNotExist", err)
	}
}

func TestInvalidNames(t *testing.T) {
	for _, tc := range []struct {
		name             string
		s                FS
		run, stage, step string
	}{
		{name: "no dir", s: FS{}, run: "r", stage: "s", step: "x"},
		{name: "empty run", s: FS{Dir: t.TempDir()}, stage: "s", step: "x"},
		{name: "empty stage", s: FS{Dir: t.TempDir()}, run: "r", step: "x"},
		{name: "empty step", s: FS{Dir: t.TempDir()}, run: "r", stage: "s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.s.Writer(tc.run, tc.stage, tc.step); err == nil {
				t.Error("Writer: no error")
			}
			if _, err := tc.s.Open(tc.run, tc.stage, tc.step); err == nil {
				t.Error("Open: no error")
			}
			if _, err := tc.s.Follow(context.Background(), tc.run, tc.stage, tc.step); err == nil {
				t.Error("Follow: no error")
			}
		})
	}
}

func TestNamesStayInsideDir(t *testing.T) {
	dir := t.TempDir()
	s := FS{Dir: filepath.Join(dir, "logs")}
	for _, k := range []Key{
		{"..", "..", "x"},
		{"r", "../../escape", "x"},
		{"r", "s", "../../../escape"},
		{"r", ".", ".hidden"},
		{"r", "a/b", "c\\d"},
	} {
		w, err := s.Writer(k.Run, k.Stage, k.Step)
		if err != nil {
			t.Fatal(err)
		}
		write(t, w, k.Step)
		w.Close()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "logs" {
		t.Errorf("files written outside the store's directory: %v", entries)
	}
	keys, err := s.List("r")
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{{"r", ".", ".hidden"}, {"r", "../../escape", "x"}, {"r", "a/b", "c\\d"}, {"r", "s", "../../../escape"}}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestEscapeNameRoundTrip(t *testing.T) {
	for _, name := range []string{"build", "test[go=1.22,os=linux]", ".", "..", ".x", "a.b", "100%", "é", "a/b", " ", "x.log"} {
		esc := escapeName(name)
		if strings.ContainsAny(esc, "/[]=, ") || esc == "." || esc == ".." || strings.HasPrefix(esc, ".") {
			t.Errorf("escapeName(%q) = %q is not a safe path element", name, esc)
		}
		got, ok := unescapeName(esc)
		if !ok || got != name {
			t.Errorf("unescapeName(escapeName(%q)) = %q, %v", name, got, ok)
		}
	}
	for _, bad := range []string{"a[b", "%zz", "%4", ".x", "%61"} {
		if got, ok := unescapeName(bad); ok {
			t.Errorf("unescapeName(%q) = %q, want failure", bad, got)
		}
	}
}

func TestList(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	keys := []Key{
		{"run", "test[go=1.23]", "unit"},
		{"run", "build", "image"},
		{"run", "test[go=1.22]", "unit"},
		{"run", "build", "compile"},
		{"other", "build", "compile"},
	}
	for _, k := range keys {
		w, err := s.Writer(k.Run, k.Stage, k.Step)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	// Files that are not logs are ignored.
	os.WriteFile(filepath.Join(s.Dir, "run", "README"), nil, 0o644)
	os.WriteFile(filepath.Join(s.Dir, "run", "build", "notes.txt"), nil, 0o644)
	got, err := s.List("run")
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{
		{"run", "build", "compile"},
		{"run", "build", "image"},
		{"run", "test[go=1.22]", "unit"},
		{"run", "test[go=1.23]", "unit"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestConcurrentWriters(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	const steps, lines = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, steps)
	for i := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.Writer("run", "stage", fmt.Sprintf("step-%d", i))
			if err != nil {
				errs <- err
				return
			}
			defer w.Close()
			for j := range lines {
				if _, err := fmt.Fprintf(w, "step %d line %d\n", i, j); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range steps {
		var want strings.Builder
		for j := range lines {
			fmt.Fprintf(&want, "step %d line %d\n", i, j)
		}
		if got := readAll(t, s, "run", "stage", fmt.Sprintf("step-%d", i)); got != want.String() {
			t.Errorf("step-%d: log has %d bytes, want %d", i, len(got), want.Len())
		}
	}
	keys, err := s.List("run")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != steps {
		t.Errorf("List gave %d keys, want %d", len(keys), steps)
	}
}

// followed reads r in the background and reports what it read.
type followed struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan error
}

func follow(r io.Reader) *followed {
	f := &followed{done: make(chan error, 1)}
	go func() {
		p := make([]byte, 7) // small, to exercise many Reads
		for {
			n, err := r.Read(p)
			f.mu.Lock()
			f.buf.Write(p[:n])
			f.mu.Unlock()
			if err != nil {
				f.done <- err
				return
			}
		}
	}()
	return f
}

func (f *followed) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		got := f.buf.String()
		f.mu.Unlock()
		if got == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Fatalf("follower read %q, want %q", f.buf.String(), want)
}

func (f *followed) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("follower did not end")
		return nil
	}
}

func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		name string
		// poll is long for the in-process case, to show that writers wake
		// followers without waiting for a poll.
		poll time.Duration
		// otherProcess makes the writer use a different FS value whose
		// Dir is spelled differently, as another process would.
		otherProcess bool
	}{
		{name: "same process", poll: time.Hour},
		{name: "polling", poll: 10 * time.Millisecond, otherProcess: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reader := FS{Dir: dir, PollInterval: tc.poll}
			writer := reader
			if tc.otherProcess {
				writer = FS{Dir: dir + "/."}
			}
			// The follower starts before the log exists.
			r, err := reader.Follow(context.Background(), "run", "build", "compile")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			f := follow(r)

			w, err := writer.Writer("run", "build", "compile")
			if err != nil {
				t.Fatal(err)
			}
			write(t, w, "first\n")
			f.waitFor(t, "first\n")
			write(t, w, "second, a longer line\n")
			f.waitFor(t, "first\nsecond, a longer line\n")
			select {
			case err := <-f.done:
				t.Fatalf("follower ended before the writer closed: %v", err)
			default:
			}
			write(t, w, "last")
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.end(t); err != io.EOF {
				t.Fatalf("follower ended with %v, want io.EOF", err)
			}
			f.waitFor(t, "first\nsecond, a longer line\nlast")
		})
	}
}

func TestFollowCompleteLog(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	w, _ := s.Writer("run", "build", "compile")
	write(t, w, "all of it\n")
	w.Close()
	r, err := s.Follow(context.Background(), "run", "build", "compile")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "all of it\n" {
		t.Errorf("ReadAll = %q, %v", b, err)
	}
}

func TestFollowReopened(t *testing.T) {
	s := FS{Dir: t.TempDir()}
	w, _ := s.Writer("run", "build", "compile")
	write(t, w, "attempt 1\n")
	w.Close()
	// A retry reopens the log: it is no longer complete.
	w, _ = s.Writer("run", "build", "compile")
	r, err := s.Follow(context.Background(), "run", "build", "compile")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := follow(r)
	f.waitFor(t, "attempt 1\n")
	write(t, w, "--- attempt 2 ---\n")
	f.waitFor(t, "attempt 1\n--- attempt 2 ---\n")
	w.Close()
	if err := f.end(t); err != io.EOF {
		t.Errorf("follower ended with %v, want io.EOF", err)
	}
}

func TestFollowContextEnds(t *testing.T) {
	s := FS{Dir: t.TempDir(), PollInterval: time.Hour}
	w, _ := s.Writer("run", "build", "compile")
	defer w.Close()
	write(t, w, "partial")
	ctx, cancel := context.WithCancel(context.Background())
	r, err := s.Follow(ctx, "run", "build", "compile")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := follow(r)
	f.waitFor(t, "partial")
	cancel()
	if err := f.end(t); !errors.Is(err, context.Canceled) {
		t.Errorf("follower ended with %v, want context.Canceled", err)
	}
}

func TestFollowClose(t *testing.T) {
	s := FS{Dir: t.TempDir(), PollInterval: time.Hour}
	r, err := s.Follow(context.Background(), "run", "build", "never")
	if err != nil {
		t.Fatal(err)
	}
	f := follow(r)
	time.Sleep(20 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.end(t); !errors.Is(err, os.ErrClosed) {
		t.Errorf("follower ended with %v, want os.ErrClosed", err)
	}
}

// TestFollowOlderCompleteLog follows a log that an older Sluice completed
// with a .done file beside it, not by making it read-only.
func TestFollowOlderCompleteLog(t *testing.T) {
	s := FS{Dir: t.TempDir(), PollInterval: time.Hour}
	dir := filepath.Join(s.Dir, "run", "build")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "compile.log"), []byte("old\n"), 0o640)
	os.WriteFile(filepath.Join(dir, "compile.done"), nil, 0o640)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.Follow(ctx, "run", "build", "compile")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "old\n" {
		t.Errorf("ReadAll = %q, %v; want the log and its end", b, err)
	}
	// Written again, it is not complete until this writer closes it.
	w, err := s.Writer("run", "build", "compile")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "compile.done")); err == nil {
		t.Error("the old marker survived a new writer")
	}
	w.Close()
}
