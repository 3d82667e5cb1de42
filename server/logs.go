package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/sluice-ci/sluice/engine/logstore/logship"
)

// Step logs reach the server from runners on other hosts through the logs
// endpoints (package logship, docs/api.md), into the server's own store,
// where the CLI of any machine reads them and follows them live.

// LogCompleteTrailer ends a followed log's stream: "true" when the log is
// complete. A stream that ends without it was cut (the server stopping, a
// proxy), and the client asks again from the byte it had.
const LogCompleteTrailer = "Sluice-Log-Complete"

// logRoutes adds the endpoints runners ship logs to.
func (s *Server) logRoutes(h func(pattern string, f func(w http.ResponseWriter, r *http.Request, user string))) {
	ship := logship.Handler(s.stack.Logs)
	serve := func(w http.ResponseWriter, r *http.Request, _ string) { ship.ServeHTTP(w, r) }
	h("GET "+logship.Path+"{run}/{stage}/{step}", serve)
	h("POST "+logship.Path+"{run}/{stage}/{step}", serve)
}

// apiFollowLog streams one step's log (want is STAGE/STEP, or a STEP whose
// log is unique in the run) from byte offset on, as it grows, until it is
// complete or the client goes.
func (s *Server) apiFollowLog(w http.ResponseWriter, r *http.Request, run, want string) {
	var offset int64
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("offset %q is not a byte offset", v))
			return
		}
		offset = n
	}
	stage, step, ok := s.logStep(run, want)
	if !ok {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("following a log needs its step as STAGE/STEP (step=build/compile); run %q has no log of a step %q yet", run, want))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// A server shutting down ends its streams, which would keep it
	// waiting: their clients ask the next one.
	stop := context.AfterFunc(s.streams.context(), cancel)
	defer stop()
	rc, err := s.stack.Logs.Follow(ctx, run, stage, step)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: pass the lines on as they come
	w.Header().Set("Trailer", LogCompleteTrailer)
	w.WriteHeader(http.StatusOK)
	flusher := http.NewResponseController(w)
	_ = flusher.Flush()
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
			if errors.Is(err, io.EOF) {
				w.Header().Set(LogCompleteTrailer, "true")
			}
			return
		}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher.Flush() != nil {
				return
			}
			s.touch() // a follower keeps a server with an idle timeout up
		}
		if errors.Is(err, io.EOF) {
			w.Header().Set(LogCompleteTrailer, "true")
			return
		}
		if err != nil {
			return
		}
	}
}

// logStep finds the stage and step of a log named STAGE/STEP or, when its
// log exists and is the only one of that name in the run, STEP. A stage's
// ID may hold a slash (a matrix value), a step's name never does.
func (s *Server) logStep(run, want string) (stage, step string, ok bool) {
	if i := strings.LastIndexByte(want, '/'); i > 0 && i < len(want)-1 {
		return want[:i], want[i+1:], true
	}
	if want == "" {
		return "", "", false
	}
	keys, err := s.stack.Logs.List(run)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", false
	}
	n := 0
	for _, k := range keys {
		if k.Step == want {
			stage, step = k.Stage, k.Step
			n++
		}
	}
	return stage, step, n == 1
}

// streamSet ends the log streams when the server shuts down.
type streamSet struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *streamSet) init() { s.ctx, s.cancel = context.WithCancel(context.Background()) }

// context ends when the server shuts down.
func (s *streamSet) context() context.Context {
	s.once.Do(s.init)
	return s.ctx
}

// end ends every stream.
func (s *streamSet) end() {
	s.once.Do(s.init)
	s.cancel()
}
