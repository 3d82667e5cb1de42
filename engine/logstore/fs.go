package logstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultPollInterval is how often Follow looks for data when FS has no
// PollInterval. A writer in another process (a runner, while the CLI
// follows) cannot wake the follower, so this bounds how late a line shows.
const DefaultPollInterval = 100 * time.Millisecond

// FS is a Store in plain files, so that a single machine needs no service
// and several machines can share a volume. The log of a step is the file
// Dir/<run>/<stage>/<step>.log; each name is escaped into a safe path
// element (stage IDs hold `[`, `=` and `,`), reversibly, so List gives the
// original names back. A log is complete once its file is read-only: the
// writer takes the write permission away when it closes the log, which
// costs no file of its own (creating a file is the dearest thing a short
// step does here). Logs written by Sluice before that are complete while
// <step>.done exists beside them.
//
// FS holds no state besides its fields: any number of FS values, in any
// number of processes, may share a Dir.
type FS struct {
	Dir string
	// PollInterval is how often Follow looks for data written by another
	// process; zero means DefaultPollInterval. Writers in the same process
	// wake their followers at once.
	PollInterval time.Duration
}

var _ Store = FS{}

const (
	logSuffix  = ".log"
	doneSuffix = ".done"
)

// paths gives the files of a step's log.
func (s FS) paths(run, stage, step string) (dir, log, done string, err error) {
	if s.Dir == "" {
		return "", "", "", errors.New("log store has no directory")
	}
	if run == "" || stage == "" || step == "" {
		return "", "", "", fmt.Errorf("naming a log: run, stage and step must all be set (got run %q, stage %q, step %q)", run, stage, step)
	}
	dir = filepath.Join(s.Dir, escapeName(run), escapeName(stage))
	base := filepath.Join(dir, escapeName(step))
	return dir, base + logSuffix, base + doneSuffix, nil
}

// Writer implements Store. Writes go straight to the file, unbuffered, so
// readers see them at once; the returned writer is safe for concurrent use.
func (s FS) Writer(run, stage, step string) (io.WriteCloser, error) {
	dir, logPath, donePath, err := s.paths(run, stage, step)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logMode)
	if errors.Is(err, fs.ErrPermission) {
		// A complete log, written again (a retry, or a runner restarted
		// after a crash).
		if os.Chmod(logPath, logMode) == nil {
			f, err = os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	// A log written again is not complete any more: followers must keep
	// waiting.
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm()&0o200 == 0 {
		err = f.Chmod(logMode)
	}
	if err == nil {
		if err = os.Remove(donePath); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reopening log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	notify(logPath)
	return &fileWriter{f: f, path: logPath}, nil
}

// logMode is the mode of a log being written; complete, it is read-only.
const logMode = 0o640

// complete says whether the log at path is complete.
func complete(path, done string) bool {
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().Perm()&0o200 == 0 {
		return true
	}
	_, err = os.Stat(done)
	return err == nil
}

type fileWriter struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	closed bool
}

func (w *fileWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("writing log %s: %w", w.path, os.ErrClosed)
	}
	n, err := w.f.Write(p)
	if n > 0 {
		notify(w.path)
	}
	return n, err
}

// Close marks the log complete and closes the file. The mark comes after
// the last write, so a follower that sees it can see all data.
func (w *fileWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	var errDone error
	if err := w.f.Chmod(logMode &^ 0o222); err != nil {
		errDone = fmt.Errorf("marking log %s complete: %w", w.path, err)
	}
	errClose := w.f.Close()
	notify(w.path)
	return errors.Join(errDone, errClose)
}

// Open implements Store.
func (s FS) Open(run, stage, step string) (io.ReadCloser, error) {
	_, logPath, _, err := s.paths(run, stage, step)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(logPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no log for step %q of stage %q in run %q (has the step started?): %w", step, stage, run, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("opening log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	return f, nil
}

// Follow implements Store.
func (s FS) Follow(ctx context.Context, run, stage, step string) (io.ReadCloser, error) {
	_, logPath, donePath, err := s.paths(run, stage, step)
	if err != nil {
		return nil, err
	}
	poll := s.PollInterval
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	return &follower{ctx: ctx, path: logPath, done: donePath, poll: poll, closed: make(chan struct{})}, nil
}

type follower struct {
	ctx       context.Context
	path      string
	done      string
	poll      time.Duration
	closed    chan struct{}
	closeOnce sync.Once

	mu sync.Mutex // guards f, changed and unwatch
	f  *os.File
	// changed wakes the follower when another process changes the file
	// (inotify on Linux; nil elsewhere, or before the file exists).
	changed <-chan struct{}
	unwatch func()
}

func (r *follower) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		// Take the wake-up channel before looking, so that a write between
		// the look and the wait is not missed.
		wake := changes(r.path)
		n, err := r.read(p)
		if n > 0 || err != nil {
			return n, err
		}
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		timer := time.NewTimer(r.poll)
		select {
		case <-wake:
		case <-changed:
		case <-timer.C:
		case <-r.ctx.Done():
			timer.Stop()
			return 0, r.ctx.Err()
		case <-r.closed:
			timer.Stop()
			return 0, fmt.Errorf("following log %s: %w", r.path, os.ErrClosed)
		}
		timer.Stop()
	}
}

// read reads what is there. It returns 0, nil when the reader should wait.
func (r *follower) read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		return 0, fmt.Errorf("following log %s: %w", r.path, os.ErrClosed)
	default:
	}
	if r.f == nil {
		f, err := os.Open(r.path)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil // the step has not started yet
		}
		if err != nil {
			return 0, fmt.Errorf("following log: %w", err)
		}
		r.f = f
		// Watched from before the first read: a change after it wakes
		// the follower.
		r.changed, r.unwatch = watch(r.path)
	}
	n, err := r.f.Read(p)
	if n > 0 {
		return n, nil
	}
	if err != nil && err != io.EOF {
		return 0, fmt.Errorf("following log: %w", err)
	}
	if !complete(r.path, r.done) {
		return 0, nil
	}
	// The marker is written after the writer's last write, so one more
	// read sees everything there will be.
	n, err = r.f.Read(p)
	if n > 0 {
		return n, nil
	}
	if err != nil && err != io.EOF {
		return 0, fmt.Errorf("following log: %w", err)
	}
	return 0, io.EOF
}

// Close stops the follower; a Read waiting for data returns at once.
func (r *follower) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	r.unwatch()
	err := r.f.Close()
	r.f, r.changed = nil, nil
	return err
}

// List implements Store.
func (s FS) List(run string) ([]Key, error) {
	if s.Dir == "" {
		return nil, errors.New("log store has no directory")
	}
	if run == "" {
		return nil, errors.New("listing logs: no run given")
	}
	runDir := filepath.Join(s.Dir, escapeName(run))
	stages, err := os.ReadDir(runDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no logs for run %q: %w", run, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("listing logs of run %q: %w", run, err)
	}
	keys := []Key{}
	for _, sd := range stages {
		if !sd.IsDir() {
			continue
		}
		stage, ok := unescapeName(sd.Name())
		if !ok {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(runDir, sd.Name()))
		if err != nil {
			return nil, fmt.Errorf("listing logs of stage %q in run %q: %w", stage, run, err)
		}
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), logSuffix)
			if !ok || !e.Type().IsRegular() {
				continue
			}
			if step, ok := unescapeName(name); ok {
				keys = append(keys, Key{Run: run, Stage: stage, Step: step})
			}
		}
	}
	slices.SortFunc(keys, func(a, b Key) int {
		return cmp.Or(strings.Compare(a.Stage, b.Stage), strings.Compare(a.Step, b.Step))
	})
	return keys, nil
}

// Writers and followers in one process meet here, so that a follower wakes
// as soon as a write returns instead of at its next poll.
var hub struct {
	mu   sync.Mutex
	wait map[string]chan struct{}
}

// changes returns a channel that is closed at the next change to path.
func changes(path string) <-chan struct{} {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.wait == nil {
		hub.wait = map[string]chan struct{}{}
	}
	ch, ok := hub.wait[path]
	if !ok {
		ch = make(chan struct{})
		hub.wait[path] = ch
	}
	return ch
}

// notify wakes everyone waiting for a change to path.
func notify(path string) {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if ch, ok := hub.wait[path]; ok {
		close(ch)
		delete(hub.wait, path)
	}
}
