package logship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/engine/logstore"
)

const token = "sluice_test"

// request is a chunk a server received.
type request struct {
	method   string
	offset   int64
	body     []byte
	complete bool
}

// server is the logs endpoints over a store, behind a token, recording
// what they receive, at an address that stays when it stops and starts
// again.
type server struct {
	t     *testing.T
	store logstore.FS
	addr  string
	// drop, when it returns true for a POST, loses its answer after the
	// chunk is stored, as a connection that breaks at that moment does.
	drop func(n int) bool

	mu   sync.Mutex
	reqs []request
	http *httptest.Server
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{t: t, store: logstore.FS{Dir: t.TempDir()}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ln.Close()
	t.Cleanup(s.stop)
	return s
}

func (s *server) url() string { return "http://" + s.addr }

// start serves a new handler over the same store, as a server started
// again does.
func (s *server) start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	// The address was this server's, or was reserved for it: it is free
	// again as soon as the last listener's socket is gone.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ln, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		s.t.Fatal(err)
	}
	h := Handler(s.store)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error": "no token"}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			off, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
			s.mu.Lock()
			s.reqs = append(s.reqs, request{method: r.Method, offset: off, body: body, complete: r.URL.Query().Get("complete") == "1"})
			n := len(s.reqs)
			s.mu.Unlock()
			if s.drop != nil && s.drop(n) {
				h.ServeHTTP(httptest.NewRecorder(), r)
				panic(http.ErrAbortHandler) // the answer is lost
			}
		}
		h.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	s.mu.Lock()
	s.http = srv
	s.mu.Unlock()
}

// stop stops the server; the sink's connections break.
func (s *server) stop() {
	s.mu.Lock()
	srv := s.http
	s.http = nil
	s.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (s *server) posts() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// waitFor waits until the server's log of k satisfies ok.
func (s *server) waitFor(k logstore.Key, what string, ok func(logstore.Info) bool) logstore.Info {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := s.store.Stat(k.Run, k.Stage, k.Step)
		if err == nil && ok(info) {
			return info
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the server's log of %v never got %s: %+v, %v", k, what, info, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *server) log(k logstore.Key) string {
	s.t.Helper()
	r, err := s.store.Open(k.Run, k.Stage, k.Step)
	if err != nil {
		s.t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

func newSink(t *testing.T, srv *server, spool string, set ...func(*Options)) *Sink {
	t.Helper()
	o := Options{ServerURL: srv.url(), Token: token, Spool: spool, MaxRetryWait: 200 * time.Millisecond}
	for _, f := range set {
		f(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func open(t *testing.T, s *Sink, k logstore.Key) io.WriteCloser {
	t.Helper()
	w, err := s.Writer(k.Run, k.Stage, k.Step)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func write(t *testing.T, w io.Writer, b []byte) {
	t.Helper()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flush(t *testing.T, s *Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// spoolFiles lists the files of the spool besides its lock.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != "lock" {
			names = append(names, e.Name())
		}
	}
	return names
}

func noise(n int) []byte {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

// The key of the tests' log: a matrix stage whose ID holds a slash.
var key = logstore.Key{Run: "web-1a2b", Stage: "build[platform=linux/amd64]", Step: "compile"}

// A burst goes in chunks of at most 64 KiB, one after the other; the log
// is complete on the server once the writer closes, byte for byte, and
// leaves the spool.
func TestBurstInChunks(t *testing.T) {
	srv := newServer(t)
	srv.start()
	spool := t.TempDir()
	sink := newSink(t, srv, spool, func(o *Options) { o.Interval = time.Hour })
	w := open(t, sink, key)
	data := noise(200 << 10)
	write(t, w, data)
	// Whole chunks go at once, not after Interval.
	srv.waitFor(key, "three full chunks", func(i logstore.Info) bool { return i.Size >= 3*DefaultChunkSize })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the server.
	if info, _ := srv.store.Stat(key.Run, key.Stage, key.Step); info != (logstore.Info{Size: int64(len(data)), Complete: true}) {
		t.Errorf("after Close the server has %+v, want all %d bytes, complete", info, len(data))
	}
	if got := srv.log(key); got != string(data) {
		t.Errorf("the server's log differs from what was written (%d bytes, want %d)", len(got), len(data))
	}
	posts := srv.posts()
	var off int64
	for i, p := range posts {
		if len(p.body) > DefaultChunkSize {
			t.Errorf("request %d carries %d bytes, more than %d", i, len(p.body), DefaultChunkSize)
		}
		if p.offset != off {
			t.Errorf("request %d starts at %d, want %d", i, p.offset, off)
		}
		off += int64(len(p.body))
	}
	if len(posts) != 4 || !posts[3].complete {
		t.Errorf("%d requests, want 4 (64+64+64+8 KiB, the last completing the log)", len(posts))
	}
	flush(t, sink)
	if left := spoolFiles(t, spool); len(left) != 0 {
		t.Errorf("the spool keeps %v after the log was shipped", left)
	}
}

// A slow trickle goes within Interval of its first byte, in few requests.
func TestTrickle(t *testing.T) {
	srv := newServer(t)
	srv.start()
	sink := newSink(t, srv, t.TempDir())
	w := open(t, sink, key)
	start := time.Now()
	var want bytes.Buffer
	for i := range 5 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		write(t, w, []byte(line))
		time.Sleep(20 * time.Millisecond)
	}
	srv.waitFor(key, "the lines", func(i logstore.Info) bool { return i.Size == int64(want.Len()) })
	if took := time.Since(start); took > DefaultInterval+time.Second {
		t.Errorf("the lines reached the server after %v; want about %v", took, DefaultInterval)
	}
	if n := len(srv.posts()); n > 2 {
		t.Errorf("5 lines in 100 ms took %d requests; want them gathered", n)
	}
	// A line a while later goes on its own, within Interval again.
	write(t, w, []byte("later\n"))
	start = time.Now()
	srv.waitFor(key, "the later line", func(i logstore.Info) bool { return i.Size == int64(want.Len())+6 })
	if took := time.Since(start); took > DefaultInterval+time.Second {
		t.Errorf("the later line reached the server after %v", took)
	}
	if info, _ := srv.store.Stat(key.Run, key.Stage, key.Step); info.Complete {
		t.Error("the log is complete while its writer is open")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := srv.log(key); got != want.String()+"later\n" {
		t.Errorf("log %q", got)
	}
}

// The server stops in the middle of a stream and starts again over the
// same store; answers are lost after chunks were stored. The log on the
// server is what was written, once.
func TestServerRestartMidStream(t *testing.T) {
	srv := newServer(t)
	// Every third chunk is stored and its answer lost.
	srv.drop = func(n int) bool { return n%3 == 0 }
	srv.start()
	spool := t.TempDir()
	sink := newSink(t, srv, spool, func(o *Options) { o.Interval = 20 * time.Millisecond; o.ChunkSize = 4 << 10 })
	w := open(t, sink, key)
	data := noise(300 << 10)
	rest := data
	next := func(n int) {
		for n > 0 && len(rest) > 0 {
			c := min(1000, n, len(rest))
			write(t, w, rest[:c])
			rest, n = rest[c:], n-c
		}
	}
	next(100 << 10)
	srv.waitFor(key, "64 KiB", func(i logstore.Info) bool { return i.Size >= 64<<10 })
	srv.stop()
	next(100 << 10) // while it is down
	srv.start()
	srv.waitFor(key, "200 KiB", func(i logstore.Info) bool { return i.Size >= 200<<10 })
	srv.stop()
	next(len(rest))
	srv.start()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	flush(t, sink)
	if info, _ := srv.store.Stat(key.Run, key.Stage, key.Step); info != (logstore.Info{Size: int64(len(data)), Complete: true}) {
		t.Errorf("the server has %+v, want %d bytes, complete", info, len(data))
	}
	if got := srv.log(key); got != string(data) {
		t.Errorf("the server's log differs from what was written (%d bytes, want %d)", len(got), len(data))
	}
	// The bytes of a chunk whose answer was lost are not sent again: the
	// sink asks the server where its log ends. Only a chunk cut off when
	// the server stopped (twice) may go twice.
	sent, lost := 0, 0
	for i, p := range srv.posts() {
		sent += len(p.body)
		if srv.drop(i + 1) {
			lost++
		}
	}
	if sent > len(data)+2*(4<<10) || lost < 5 {
		t.Errorf("%d bytes sent for a log of %d, %d answers lost", sent, len(data), lost)
	}
	if left := spoolFiles(t, spool); len(left) != 0 {
		t.Errorf("the spool keeps %v", left)
	}
}

// A server out of reach when the step ends: closing the log does not keep
// the step waiting, and the log is shipped and completed once the server
// is there.
func TestServerUnreachableAtEnd(t *testing.T) {
	srv := newServer(t) // not started
	spool := t.TempDir()
	sink := newSink(t, srv, spool)
	w := open(t, sink, key)
	write(t, w, []byte("built\n"))
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > DefaultCloseWait+time.Second {
		t.Errorf("Close took %v with the server out of reach", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := sink.Flush(ctx); err == nil || !strings.Contains(err.Error(), key.Stage+"/"+key.Step+" of run "+key.Run+": 0 of 6 bytes") {
		t.Errorf("Flush with the server out of reach: %v", err)
	}
	if left := spoolFiles(t, spool); len(left) != 2 {
		t.Errorf("the spool holds %v, want the log and its state", left)
	}
	srv.start()
	flush(t, sink)
	if info, _ := srv.store.Stat(key.Run, key.Stage, key.Step); info != (logstore.Info{Size: 6, Complete: true}) {
		t.Errorf("the server has %+v", info)
	}
	if got := srv.log(key); got != "built\n" {
		t.Errorf("log %q", got)
	}
	if left := spoolFiles(t, spool); len(left) != 0 {
		t.Errorf("the spool keeps %v", left)
	}
}

// A runner stopped before its logs were shipped ships them when it starts
// again with the same spool: a closed log is completed, one left open
// (the runner died in the step) is shipped and left open.
func TestRunnerRestartShipsTheSpool(t *testing.T) {
	srv := newServer(t)
	spool := t.TempDir()
	sink := newSink(t, srv, spool)
	closed := key
	left := logstore.Key{Run: key.Run, Stage: key.Stage, Step: "test"}
	w := open(t, sink, closed)
	write(t, w, []byte("done\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2 := open(t, sink, left)
	write(t, w2, []byte("half"))
	// Another runner may not use the spool meanwhile.
	if _, err := New(Options{ServerURL: srv.url(), Spool: spool}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("a second sink on the spool: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := sink.Close(ctx); err == nil {
		t.Error("Close says all was shipped to a server that is not there")
	}
	if _, err := w2.Write([]byte("more")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("a write after the sink closed: %v", err)
	}

	srv.start()
	again := newSink(t, srv, spool)
	flush(t, again)
	if info, _ := srv.store.Stat(closed.Run, closed.Stage, closed.Step); info != (logstore.Info{Size: 5, Complete: true}) {
		t.Errorf("the closed log: %+v", info)
	}
	if info, _ := srv.store.Stat(left.Run, left.Stage, left.Step); info != (logstore.Info{Size: 4}) {
		t.Errorf("the log left open: %+v", info)
	}
	if got := srv.log(left); got != "half" {
		t.Errorf("log %q", got)
	}
	if files := spoolFiles(t, spool); len(files) != 0 {
		t.Errorf("the spool keeps %v", files)
	}
	// The step retried: its log follows what the server has.
	w3 := open(t, again, left)
	write(t, w3, []byte("\nretried\n"))
	if err := w3.Close(); err != nil {
		t.Fatal(err)
	}
	if got := srv.log(left); got != "half\nretried\n" {
		t.Errorf("log %q", got)
	}
}

// A retried step's log goes after the earlier attempt's, which another
// runner wrote.
func TestRetriedStepAppends(t *testing.T) {
	srv := newServer(t)
	srv.start()
	fw, err := srv.store.Writer(key.Run, key.Stage, key.Step)
	if err != nil {
		t.Fatal(err)
	}
	write(t, fw, []byte("attempt 1\n"))
	fw.Close()
	sink := newSink(t, srv, t.TempDir())
	w := open(t, sink, key)
	write(t, w, []byte("attempt 2\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := srv.log(key); got != "attempt 1\nattempt 2\n" {
		t.Errorf("log %q", got)
	}
	if info, _ := srv.store.Stat(key.Run, key.Stage, key.Step); !info.Complete {
		t.Error("not complete")
	}
	// A step that writes nothing has an empty, complete log.
	empty := logstore.Key{Run: key.Run, Stage: key.Stage, Step: "quiet"}
	if err := open(t, sink, empty).Close(); err != nil {
		t.Fatal(err)
	}
	if info, err := srv.store.Stat(empty.Run, empty.Stage, empty.Step); err != nil || info != (logstore.Info{Complete: true}) {
		t.Errorf("the log of a quiet step: %+v, %v", info, err)
	}
}

// The server's answers: the size, a gap refused with it, a chunk too
// large, a bad offset.
func TestHandler(t *testing.T) {
	store := logstore.FS{Dir: t.TempDir()}
	srv := httptest.NewServer(Handler(store))
	defer srv.Close()
	u := srv.URL + logPath(key)
	call := func(method, query string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, u+query, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	for _, c := range []struct {
		method, query string
		body          []byte
		code          int
		answer        string
	}{
		{"GET", "", nil, 200, `{"size":0,"complete":false,"exists":false}`},
		{"POST", "?offset=0", []byte("abc"), 200, `{"size":3,"complete":false,"exists":true}`},
		{"POST", "?offset=1", []byte("bcd"), 200, `{"size":4,"complete":false,"exists":true}`},
		{"POST", "?offset=9", []byte("x"), 409, `{"size":4,"complete":false,"exists":true,"error":"the log holds 4 bytes and the chunk starts at 9: send from 4"}`},
		{"POST", "", []byte("x"), 400, `offset`},
		{"POST", "?offset=4&complete=yes", nil, 400, `complete=1`},
		{"POST", "?offset=4", make([]byte, MaxChunk+1), 413, `at most 1048576 bytes`},
		{"POST", "?offset=4&complete=1", nil, 200, `{"size":4,"complete":true,"exists":true}`},
		{"GET", "", nil, 200, `{"size":4,"complete":true,"exists":true}`},
	} {
		code, answer := call(c.method, c.query, c.body)
		if code != c.code || !strings.Contains(answer, c.answer) {
			t.Errorf("%s %s: %d %s; want %d %s", c.method, c.query, code, answer, c.code, c.answer)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(store.Dir, "web-1a2b", "build%5Bplatform%3Dlinux%2Famd64%5D", "compile.log")); string(b) != "abcd" {
		t.Errorf("the store holds %q", b)
	}
}
