// Package logship carries step logs from a runner to a Sluice server, so
// that the log of a step run on any host can be read, and followed live,
// from the server and from the CLI of any machine, and stays when the
// runner is gone. Logs never travel through Temporal.
//
// On the runner, a Sink is the engine.LogSink of the step activities: it
// writes every log to a spool file on the runner's disk first, so that
// nothing is lost while the server cannot be reached, and a shipper sends
// the new bytes in chunks (at most Options.Interval or Options.ChunkSize
// apart) to the server, each with the byte offset where it starts. The
// server answers with the size its log has then, which is what the runner
// knows to be shipped. After an error it asks the server for the size and
// goes on from there, so that a chunk whose answer was lost is not sent
// twice; the server skips bytes it has anyway, so nothing is written twice
// either. Secrets are masked before the sink sees a byte (the activities
// wrap its writer in logstore.NewMasker), so no secret reaches the spool
// or leaves the runner.
//
// On the server, Handler takes the chunks into a Store (logstore.FS).
//
// The protocol, under /api/v1 with the server's bearer tokens (docs/api.md):
//
//	GET  /api/v1/logs/{run}/{stage}/{step}            {"size", "complete", "exists"}
//	POST /api/v1/logs/{run}/{stage}/{step}?offset=N   the chunk's bytes; {"size", "complete"}
//	POST ...?offset=N&complete=1                      the same, and the log ends after it
//
// A chunk that starts beyond the log's size is refused with 409 and the
// size; one larger than MaxChunk with 413.
package logship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sluice-ci/sluice/engine/logstore"
)

// MaxChunk is the largest chunk a server takes in one request.
const MaxChunk = 1 << 20

// Path is where the logs endpoints are, followed by run/stage/step, each
// path-escaped.
const Path = "/api/v1/logs/"

// Store takes shipped chunks; logstore.FS is one. AppendAt must be
// idempotent by offset: bytes before the log's size are skipped, and a
// chunk beyond it is refused with an error wrapping logstore.ErrGap.
type Store interface {
	Stat(run, stage, step string) (logstore.Info, error)
	AppendAt(run, stage, step string, off int64, p []byte, last bool) (logstore.Info, error)
}

var _ Store = logstore.FS{}

// Status is the answer of the server to both requests.
type Status struct {
	Size     int64 `json:"size"`
	Complete bool  `json:"complete"`
	// Exists is false for a log the server has no byte of (GET only).
	Exists bool `json:"exists"`
	// Error says why a request was refused.
	Error string `json:"error,omitempty"`
}

// logPath is the path of a step's log endpoint.
func logPath(k logstore.Key) string {
	return Path + url.PathEscape(k.Run) + "/" + url.PathEscape(k.Stage) + "/" + url.PathEscape(k.Step)
}

// Handler serves the logs endpoints over store. It does not authenticate:
// the server mounts it behind its bearer tokens.
func Handler(store Store) http.Handler {
	mux := http.NewServeMux()
	pattern := Path + "{run}/{stage}/{step}"
	mux.HandleFunc("GET "+pattern, func(w http.ResponseWriter, r *http.Request) {
		run, stage, step := r.PathValue("run"), r.PathValue("stage"), r.PathValue("step")
		info, err := store.Stat(run, stage, step)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			reply(w, http.StatusOK, Status{})
		case err != nil:
			reply(w, http.StatusInternalServerError, Status{Error: err.Error()})
		default:
			reply(w, http.StatusOK, Status{Size: info.Size, Complete: info.Complete, Exists: true})
		}
	})
	mux.HandleFunc("POST "+pattern, func(w http.ResponseWriter, r *http.Request) {
		run, stage, step := r.PathValue("run"), r.PathValue("stage"), r.PathValue("step")
		if run == "" || stage == "" || step == "" {
			reply(w, http.StatusBadRequest, Status{Error: "name the log: " + Path + "RUN/STAGE/STEP"})
			return
		}
		q := r.URL.Query()
		off, err := strconv.ParseInt(q.Get("offset"), 10, 64)
		if err != nil || off < 0 {
			reply(w, http.StatusBadRequest, Status{Error: fmt.Sprintf("offset %q is not a byte offset: give ?offset=N, where the chunk starts in the log", q.Get("offset"))})
			return
		}
		last := false
		switch q.Get("complete") {
		case "", "0", "false":
		case "1", "true":
			last = true
		default:
			reply(w, http.StatusBadRequest, Status{Error: fmt.Sprintf("complete=%q: give complete=1 to end the log", q.Get("complete"))})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxChunk))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reply(w, http.StatusRequestEntityTooLarge, Status{Error: fmt.Sprintf("a log chunk may be at most %d bytes: send the log in smaller chunks", MaxChunk)})
			return
		}
		if err != nil {
			reply(w, http.StatusBadRequest, Status{Error: "reading the chunk: " + err.Error()})
			return
		}
		info, err := store.AppendAt(run, stage, step, off, body, last)
		switch {
		case errors.Is(err, logstore.ErrGap):
			reply(w, http.StatusConflict, Status{Size: info.Size, Complete: info.Complete, Exists: info.Size > 0, Error: fmt.Sprintf("the log holds %d bytes and the chunk starts at %d: send from %d", info.Size, off, info.Size)})
		case err != nil:
			reply(w, http.StatusInternalServerError, Status{Error: err.Error()})
		default:
			reply(w, http.StatusOK, Status{Size: info.Size, Complete: info.Complete, Exists: true})
		}
	})
	return mux
}

func reply(w http.ResponseWriter, status int, s Status) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(s)
}
