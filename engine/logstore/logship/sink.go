package logship

import (
	"github.com/sluice-ci/sluice/internal/proc"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-ci/sluice/engine/logstore"
)

// The defaults of Options.
const (
	DefaultInterval     = time.Second
	DefaultChunkSize    = 64 << 10
	DefaultCloseWait    = 5 * time.Second
	DefaultMaxRetryWait = 5 * time.Second
)

// Options configures a Sink.
type Options struct {
	// ServerURL is the Sluice server's URL, as the CLI's --server takes
	// it: http://ci.internal:8080.
	ServerURL string
	// Token is an API token of the server (sluice server token create),
	// sent as a bearer token.
	Token string
	// Spool is a directory of the runner that keeps each log until the
	// server has all of it. A runner started again with the same Spool
	// ships what the last one left; one Sink at a time may use it.
	Spool string
	// HTTP sends the requests; nil means a client with a 30 s timeout.
	HTTP *http.Client
	// Log receives what goes wrong (the server out of reach, or refusing
	// a chunk) and when it goes right again; nil discards.
	Log *slog.Logger

	// Interval is the longest a written byte waits before it is sent;
	// zero means DefaultInterval.
	Interval time.Duration
	// ChunkSize is the most one request carries, so that a burst goes in
	// several; zero means DefaultChunkSize. It is at most MaxChunk.
	ChunkSize int
	// CloseWait is how long closing a log waits for the server to have
	// all of it before the step goes on; the shipper goes on trying after
	// it, and Sink.Flush or Sink.Close wait for that. A log whose server
	// is out of reach does not wait. Zero means DefaultCloseWait; a
	// negative CloseWait does not wait.
	CloseWait time.Duration
	// MaxRetryWait bounds the wait between attempts to reach the server,
	// which doubles from 100 ms; zero means DefaultMaxRetryWait.
	MaxRetryWait time.Duration
}

// Sink is an engine.LogSink for a runner whose logs go to a Sluice server:
// see the package's documentation. Its methods are safe for concurrent
// use.
type Sink struct {
	opts   Options
	url    string
	client *http.Client
	log    *slog.Logger
	lock   *os.File // holds the spool's lock

	// ctx ends when Close stops the shippers.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// hurry is above zero while Flush or Close waits: shippers send what
	// they have without waiting for Interval.
	hurry atomic.Int32

	mu      sync.Mutex // guards logs and closing; taken before a spooled's mu
	logs    map[logstore.Key]*spooled
	closing bool

	cmu     sync.Mutex
	changed chan struct{} // closed at every step of progress, then replaced
}

// New opens the spool, takes its lock and starts shipping what a runner
// before left in it.
func New(opts Options) (*Sink, error) {
	u := strings.TrimSuffix(strings.TrimSpace(opts.ServerURL), "/")
	if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("shipping logs: %q is not a server URL such as http://ci.internal:8080", opts.ServerURL)
	}
	if opts.Spool == "" {
		return nil, errors.New("shipping logs: no spool directory")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	opts.ChunkSize = min(opts.ChunkSize, MaxChunk)
	if opts.CloseWait == 0 {
		opts.CloseWait = DefaultCloseWait
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = DefaultMaxRetryWait
	}
	s := &Sink{opts: opts, url: u, client: opts.HTTP, log: opts.Log, logs: map[logstore.Key]*spooled{}, changed: make(chan struct{})}
	if s.client == nil {
		s.client = &http.Client{Timeout: 30 * time.Second}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Spool, 0o700); err != nil {
		return nil, fmt.Errorf("creating the log spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(opts.Spool, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the log spool: %w", err)
	}
	if ok, err := proc.TryLock(lock); !ok {
		lock.Close()
		if err == nil {
			err = errors.New("another process ships its logs from it; give each runner a spool of its own")
		}
		return nil, fmt.Errorf("locking the log spool %s: %w", opts.Spool, err)
	}
	s.lock = lock
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.resume(); err != nil {
		s.cancel()
		lock.Close()
		return nil, err
	}
	return s, nil
}

// resume starts shipping the logs a runner before left in the spool.
func (s *Sink) resume() error {
	states, err := filepath.Glob(filepath.Join(s.opts.Spool, "*"+stateSuffix))
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, file := range states {
		b, err := os.ReadFile(file)
		var st state
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil || st.Run == "" || st.Stage == "" || st.Step == "" {
			s.log.Warn("a log in the spool cannot be shipped: its state is unreadable", "file", file, "error", err)
			continue
		}
		k := logstore.Key{Run: st.Run, Stage: st.Stage, Step: st.Step}
		e := &spooled{key: k, file: strings.TrimSuffix(file, stateSuffix), wake: make(chan struct{}, 1), base: st.Base, complete: st.Complete}
		// A log left open was being written when its runner stopped: its
		// bytes are shipped, and it stays open on the server for a retry
		// of the step, as it would in a shared store.
		e.orphan = !st.Complete
		if fi, err := os.Stat(e.file + logSuffix); err == nil {
			e.size = fi.Size()
		}
		s.logs[k] = e
		s.log.Info("shipping a log left in the spool", "run", k.Run, "stage", k.Stage, "step", k.Step, "bytes", e.size)
		s.start(e)
	}
	return nil
}

const (
	logSuffix   = ".log"
	stateSuffix = ".json"
)

// state is what the spool keeps about a log beside its bytes.
type state struct {
	Run   string `json:"run"`
	Stage string `json:"stage"`
	Step  string `json:"step"`
	// Base is where the spool's first byte is in the server's log (a
	// retried step's log follows the earlier attempts'); -1 until the
	// server has said.
	Base int64 `json:"base"`
	// Complete says the writer closed the log.
	Complete bool `json:"complete"`
}

// spooled is one log in the spool and what its shipper knows.
type spooled struct {
	key  logstore.Key
	file string // the spool's files, without their suffixes
	wake chan struct{}

	mu       sync.Mutex
	f        *os.File // appended to while writers have it
	writers  int
	size     int64 // bytes in the spool
	complete bool  // the last writer closed it
	orphan   bool  // left open by a runner before
	base     int64
	// acked is how much of the spool the server has said it holds, and
	// serverComplete whether it said the log is complete.
	acked          int64
	serverComplete bool
	// since is when the oldest byte not yet sent was written.
	since    time.Time
	failing  string // the error of the last attempt, until one succeeds
	finished bool   // all shipped, and the spool's files removed
}

func spoolName(k logstore.Key) string {
	sum := sha256.Sum256([]byte(k.Run + "\x00" + k.Stage + "\x00" + k.Step))
	return hex.EncodeToString(sum[:16])
}

// saveLocked writes e's state, atomically; e.mu is held.
func (e *spooled) saveLocked() error {
	b, err := json.Marshal(state{Run: e.key.Run, Stage: e.key.Stage, Step: e.key.Step, Base: e.base, Complete: e.complete})
	if err != nil {
		return err
	}
	tmp := e.file + stateSuffix + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("saving the state of a spooled log: %w", err)
	}
	if err := os.Rename(tmp, e.file+stateSuffix); err != nil {
		return fmt.Errorf("saving the state of a spooled log: %w", err)
	}
	return nil
}

// poke wakes e's shipper.
func (e *spooled) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Writer implements engine.LogSink: it appends to the step's log in the
// spool, and the shipper sends it on. Closing the writer marks the log
// complete once the server has every byte, and waits up to
// Options.CloseWait for that. A writer opened again for a log (a retried
// step) appends to it, as logstore.FS does.
func (s *Sink) Writer(run, stage, step string) (io.WriteCloser, error) {
	if run == "" || stage == "" || step == "" {
		return nil, fmt.Errorf("naming a log: run, stage and step must all be set (got run %q, stage %q, step %q)", run, stage, step)
	}
	k := logstore.Key{Run: run, Stage: stage, Step: step}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, fmt.Errorf("creating log of step %q of stage %q in run %q: the log sink is closed", step, stage, run)
	}
	e := s.logs[k]
	if e == nil {
		e = &spooled{key: k, file: filepath.Join(s.opts.Spool, spoolName(k)), wake: make(chan struct{}, 1), base: -1}
		e.mu.Lock()
		err := e.saveLocked()
		e.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("creating log of step %q of stage %q in run %q: %w", step, stage, run, err)
		}
		s.logs[k] = e
		s.start(e)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		f, err := os.OpenFile(e.file+logSuffix, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating log of step %q of stage %q in run %q: %w", step, stage, run, err)
		}
		e.f = f
	}
	if e.complete || e.orphan {
		// Written again: the log is open until this writer closes it.
		e.complete, e.orphan = false, false
		if err := e.saveLocked(); err != nil {
			return nil, fmt.Errorf("reopening log of step %q of stage %q in run %q: %w", step, stage, run, err)
		}
	}
	e.writers++
	return &writer{s: s, e: e}, nil
}

type writer struct {
	s      *Sink
	e      *spooled
	closed bool // guarded by e.mu
}

func (w *writer) Write(p []byte) (int, error) {
	e := w.e
	e.mu.Lock()
	if w.closed || e.f == nil {
		e.mu.Unlock()
		return 0, fmt.Errorf("writing log of step %q: %w", e.key.Step, os.ErrClosed)
	}
	n, err := e.f.Write(p)
	e.size += int64(n)
	// The shipper needs to know when the first byte waits (it sends it
	// within Interval) and when a chunk is full.
	wake := n > 0 && (e.since.IsZero() || e.size-e.acked >= int64(w.s.opts.ChunkSize))
	if n > 0 && e.since.IsZero() {
		e.since = time.Now()
	}
	e.mu.Unlock()
	if wake {
		e.poke()
	}
	if err != nil {
		return n, fmt.Errorf("writing log of step %q to the spool: %w", e.key.Step, err)
	}
	return n, nil
}

// Close marks the log complete and waits, up to Options.CloseWait, for
// the server to have all of it. A log the server does not have yet stays
// in the spool, and the shipper goes on.
func (w *writer) Close() error {
	e := w.e
	e.mu.Lock()
	if w.closed {
		e.mu.Unlock()
		return nil
	}
	w.closed = true
	e.writers--
	last := e.writers == 0
	var err error
	if last {
		err = e.f.Close()
		e.f = nil
		e.complete = true
		if serr := e.saveLocked(); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	e.mu.Unlock()
	if !last {
		return err
	}
	e.poke()
	if w.s.opts.CloseWait > 0 {
		w.s.waitShipped(e, w.s.opts.CloseWait)
	}
	if err != nil {
		return fmt.Errorf("closing log of step %q: %w", e.key.Step, err)
	}
	return nil
}

// waitShipped waits up to d for the server to have all of e and to mark it
// complete, or for an attempt to reach the server to fail.
func (s *Sink) waitShipped(e *spooled, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ch := s.changedChan()
		e.mu.Lock()
		done := e.finished || e.writers > 0 || e.acked >= e.size && e.serverComplete || e.failing != ""
		e.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Sink) changedChan() <-chan struct{} {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.changed
}

// progress wakes everyone waiting for a shipper.
func (s *Sink) progress() {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
}

// Flush waits until the server has every byte written so far to every
// log, and the logs no writer has open are complete on the server and
// gone from the spool, or until ctx ends; shippers send what they have at
// once meanwhile. What is not shipped when ctx ends stays in the spool,
// and the error says which logs wait.
func (s *Sink) Flush(ctx context.Context) error {
	s.hurry.Add(1)
	defer s.hurry.Add(-1)
	s.mu.Lock()
	targets := map[*spooled]int64{}
	for _, e := range s.logs {
		e.mu.Lock()
		targets[e] = e.size
		e.mu.Unlock()
		e.poke()
	}
	s.mu.Unlock()
	for {
		ch := s.changedChan()
		var left []string
		for e, target := range targets {
			e.mu.Lock()
			// A log no writer has open is done once it has left the
			// spool; one being written, once the server has its bytes.
			done := e.finished || e.writers > 0 && e.acked >= target
			if !done {
				what := fmt.Sprintf("%s/%s of run %s: %d of %d bytes", e.key.Stage, e.key.Step, e.key.Run, min(e.acked, target), target)
				if e.failing != "" {
					what += " (" + e.failing + ")"
				}
				left = append(left, what)
			}
			e.mu.Unlock()
		}
		if len(left) == 0 {
			return nil
		}
		slices.Sort(left)
		var err error
		select {
		case <-ch:
			continue
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.ctx.Done():
			err = errors.New("the log sink is closed")
		}
		return fmt.Errorf("the server %s does not have every log yet; they stay in the spool %s and are shipped when a runner starts with it again: %s: %w", s.url, s.opts.Spool, strings.Join(left, "; "), err)
	}
}

// Close takes no more writers, waits as Flush does until ctx ends, and
// then stops the shippers: what is not shipped stays in the spool for the
// next Sink on it.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	err := s.Flush(ctx)
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	for _, e := range s.logs {
		e.mu.Lock()
		if e.f != nil {
			e.f.Close()
			e.f = nil
		}
		e.mu.Unlock()
	}
	s.mu.Unlock()
	s.lock.Close()
	return err
}

// start starts e's shipper.
func (s *Sink) start(e *spooled) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.ship(e)
	}()
}

// ship sends e to the server until the server has all of it and the log
// is finished, or the Sink closes.
func (s *Sink) ship(e *spooled) {
	var r *os.File // the spool, read
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	chunk := int64(s.opts.ChunkSize)
	retry := time.Duration(0)
	sync := true // ask the server where its log ends
	fail := func(err error) {
		retry = s.failed(e, err, retry)
		sync = true
	}
	for s.ctx.Err() == nil {
		if sync {
			st, err := s.status(e.key)
			if err == nil {
				err = s.resumeAt(e, st)
			}
			if err != nil {
				fail(err)
				continue
			}
			sync = false
		}
		e.mu.Lock()
		size, acked, complete, base, since := e.size, e.acked, e.complete, e.base, e.since
		finished := e.writers == 0 && acked >= size && (complete && e.serverComplete || e.orphan && !complete)
		endOnly := complete && acked >= size && !e.serverComplete
		e.mu.Unlock()
		pending := size - acked
		switch {
		case finished:
			if s.finish(e) {
				return
			}
			continue
		case endOnly:
			// Everything is there but the mark: sent on its own.
		case pending <= 0:
			s.wait(e, 0)
			continue
		case pending < chunk && !complete && s.hurry.Load() == 0 && time.Since(since) < s.opts.Interval:
			s.wait(e, s.opts.Interval-time.Since(since))
			continue
		}
		n := min(max(pending, 0), chunk)
		data := make([]byte, n)
		if n > 0 {
			if r == nil {
				f, err := os.Open(e.file + logSuffix)
				if err != nil {
					fail(fmt.Errorf("reading the spool: %w", err))
					continue
				}
				r = f
			}
			if _, err := r.ReadAt(data, acked); err != nil {
				fail(fmt.Errorf("reading the spool: %w", err))
				continue
			}
		}
		last := complete && acked+n >= size
		st, code, err := s.send(e.key, base+acked, data, last)
		switch {
		case err == nil:
			if err := s.resumeAt(e, st); err != nil {
				fail(err)
				continue
			}
			retry = 0
		case code == http.StatusConflict && st.Size != base+acked:
			// The server holds less (or more) than this runner thought:
			// on from where it is.
			if err := s.resumeAt(e, st); err != nil {
				fail(err)
			}
		case code == http.StatusRequestEntityTooLarge && chunk > 1<<10:
			chunk /= 2
		default:
			fail(err)
		}
	}
}

// resumeAt takes what the server said about its log: how much of the
// spool it has, and whether the log is complete. The first answer ever
// says where the spool starts in the server's log.
func (s *Sink) resumeAt(e *spooled, st Status) error {
	e.mu.Lock()
	defer func() {
		e.mu.Unlock()
		s.progress()
	}()
	if e.base < 0 {
		// Saved before any byte is sent: a runner started again knows
		// which bytes of the server's log are its own.
		e.base = st.Size
		if err := e.saveLocked(); err != nil {
			e.base = -1
			return err
		}
	}
	rel := st.Size - e.base
	switch {
	case rel < 0:
		// The server lost bytes before this spool's (its store was
		// replaced): the spool follows what it has.
		s.log.Warn("the server holds less of a log than it did before this runner wrote to it; the runner's part follows what it has",
			"run", e.key.Run, "stage", e.key.Stage, "step", e.key.Step, "server_bytes", st.Size, "expected_at_least", e.base)
		e.base = st.Size
		if err := e.saveLocked(); err != nil {
			return err
		}
		rel = 0
	case rel > e.size:
		// More than this runner wrote: another writer of the same step.
		s.log.Warn("the server holds more of a log than this runner wrote; another runner writes it too",
			"run", e.key.Run, "stage", e.key.Stage, "step", e.key.Step, "server_bytes", st.Size, "runner_bytes", e.base+e.size)
		rel = e.size
	}
	e.acked = rel
	e.serverComplete = st.Complete
	if e.acked >= e.size {
		e.since = time.Time{}
	}
	if e.failing != "" {
		s.log.Info("shipping logs again", "server", s.url, "run", e.key.Run, "stage", e.key.Stage, "step", e.key.Step)
		e.failing = ""
	}
	return nil
}

// failed notes a failed attempt and waits before the next; it returns the
// next wait.
func (s *Sink) failed(e *spooled, err error, retry time.Duration) time.Duration {
	e.mu.Lock()
	first := e.failing != err.Error()
	e.failing = err.Error()
	e.mu.Unlock()
	s.progress()
	if first {
		s.log.Warn("shipping a step log; it stays in the spool and is sent again", "server", s.url,
			"run", e.key.Run, "stage", e.key.Stage, "step", e.key.Step, "error", err)
	}
	retry = min(max(2*retry, 100*time.Millisecond), s.opts.MaxRetryWait)
	t := time.NewTimer(retry)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
	return retry
}

// wait waits for a write to e, for d when it is above zero, or for Close.
func (s *Sink) wait(e *spooled, d time.Duration) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-e.wake:
	case <-timeout:
	case <-s.ctx.Done():
	}
}

// finish removes a log the server has all of from the spool, unless a
// writer opened it again meanwhile.
func (s *Sink) finish(e *spooled) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.writers > 0 || e.acked < e.size || !(e.complete && e.serverComplete || e.orphan && !e.complete) {
		return false
	}
	for _, suffix := range []string{logSuffix, stateSuffix} {
		if err := os.Remove(e.file + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing a shipped log from the spool", "file", e.file+suffix, "error", err)
		}
	}
	delete(s.logs, e.key)
	e.finished = true
	s.progress()
	return true
}

// status asks the server about a log.
func (s *Sink) status(k logstore.Key) (Status, error) {
	st, _, err := s.do(http.MethodGet, logPath(k), nil)
	return st, err
}

// send sends a chunk at offset off, marking the log complete after it when
// last. On an answer that is not a success, code is its status.
func (s *Sink) send(k logstore.Key, off int64, data []byte, last bool) (_ Status, code int, _ error) {
	p := logPath(k) + "?offset=" + strconv.FormatInt(off, 10)
	if last {
		p += "&complete=1"
	}
	return s.do(http.MethodPost, p, data)
}

func (s *Sink) do(method, path string, body []byte) (Status, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(s.ctx, method, s.url+path, rd)
	if err != nil {
		return Status{}, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.opts.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return Status{}, 0, fmt.Errorf("reaching the server: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Status{}, resp.StatusCode, fmt.Errorf("reading the server's answer: %w", err)
	}
	var st Status
	jerr := json.Unmarshal(b, &st)
	code := resp.StatusCode
	if jerr != nil {
		// Not a Sluice server's answer (a proxy's): a conflict without the
		// size cannot be resolved here.
		code = 0
	}
	if resp.StatusCode != http.StatusOK {
		msg := st.Error
		if msg == "" {
			msg = strings.Join(strings.Fields(string(b)), " ")
		}
		return st, code, fmt.Errorf("%s %s: %d %s: %s", method, s.url+path, resp.StatusCode, http.StatusText(resp.StatusCode), msg)
	}
	if jerr != nil {
		return st, 0, fmt.Errorf("%s %s: the answer is not what a Sluice server gives: %w", method, s.url+path, jerr)
	}
	return st, code, nil
}
