package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-ci/sluice/server/ansi"
)

// The log view: a step's log as a page that follows it live, the
// server-sent events that carry its lines to the page, and the raw file.
// The step is named in the query (?stage=STAGE&step=STEP), not the path:
// a stage's ID may hold '/' and '['.
//
// The events (GET /runs/{id}/log/events): each complete line of the log is
// one event whose id is its line number, from 1, and whose data is the
// line as HTML (package ansi: escaped, its colours as spans), so that an
// EventSource that reconnects sends Last-Event-ID and gets the lines after
// it, none lost and none twice. A line still being written (no newline
// yet) is sent as an event "partial" without an id, again each time it
// grows; the page shows it in place of the next line, and the complete
// line replaces it. Since a partial event leaves the last event ID alone,
// a reconnect sends the line again, as partial or complete. When the log
// is complete, a last line without a newline is sent as a complete line
// and an event "end" says how many lines the log has. An event "waiting"
// says the step has not started writing yet. Comments keep the connection
// open through proxies while the log is quiet.
//
// The backlog (GET /runs/{id}/log/lines): the complete lines the log has
// now, as the events would carry them, one line of HTML each, in one
// plain response. A browser takes 100,000 events in seconds but the same
// lines in one response in a fraction of one, so the page reads what is
// there first and then follows the events from the line after it
// (?after=N).
// logHeartbeat is how often a quiet stream sends a comment, so that
// proxies (which often close a connection idle for 60 s) keep it. A
// variable for the tests.
var logHeartbeat = 15 * time.Second

// logRetry is how long a page's EventSource waits before reconnecting.
const logRetry = time.Second

// maxLogLine is the longest line the log view sends in one event: a longer
// one (a minified file, a program that never prints a newline) is cut into
// lines of this length, at the same places in every stream, so that the
// numbers agree between reconnects and a growing line is not sent again
// and again whole.
const maxLogLine = 64 << 10

// webLogRoutes adds the log view: the page and the raw file for a signed-in
// user (or an API token), and the events and backlog, which answer 401
// rather than send the page's script to the sign-in page.
func (s *Server) webLogRoutes(mux *http.ServeMux) {
	s.page(mux, "GET /runs/{id}/log", s.logPage)
	s.page(mux, "GET /runs/{id}/log/raw", s.logRaw)
	mux.HandleFunc("GET /runs/{id}/log/events", s.logEvents)
	mux.HandleFunc("GET /runs/{id}/log/lines", s.logLines)
}

// stepLog names the log a request asks for.
type stepLog struct {
	Run, Stage, Step string
}

func stepLogOf(r *http.Request) (stepLog, error) {
	q := r.URL.Query()
	l := stepLog{Run: r.PathValue("id"), Stage: q.Get("stage"), Step: q.Get("step")}
	if l.Stage == "" || l.Step == "" {
		return l, errors.New("name the step whose log to show: ?stage=STAGE&step=STEP")
	}
	return l, nil
}

// path is the URL path of the log view's page for the run, with suffix
// ("", "/events", "/lines", "/raw") and the step in the query.
func (l stepLog) path(suffix string) string {
	return "/runs/" + url.PathEscape(l.Run) + "/log" + suffix + "?" + url.Values{"stage": {l.Stage}, "step": {l.Step}}.Encode()
}

// logViewPath is the path of the log view of a step's log, for the pages
// that link to it.
func logViewPath(run, stage, step string) string { return stepLog{run, stage, step}.path("") }

// logPageData is what log.html gets.
type logPageData struct {
	stepLog
	RunPath, Events, Lines, Raw string
}

func (s *Server) logPage(w http.ResponseWriter, r *http.Request, sess session) {
	l, err := stepLogOf(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pageSecurity(w) // webpages.go
	s.render(w, http.StatusOK, "log.html", sess, logPageData{
		stepLog: l,
		RunPath: "/runs/" + url.PathEscape(l.Run),
		Events:  l.path("/events"),
		Lines:   l.path("/lines"),
		Raw:     l.path("/raw"),
	})
}

// logRaw sends the log as it is in the store (secrets were masked before
// it got there), as a file to save.
func (s *Server) logRaw(w http.ResponseWriter, r *http.Request, _ session) {
	l, err := stepLogOf(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc, err := s.stack.Logs.Open(l.Run, l.Stage, l.Step)
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, fmt.Sprintf("run %q has no log of step %q of stage %q (yet)", l.Run, l.Step, l.Stage), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": logFileName(l)}))
	h.Set("Cache-Control", "no-store")
	_, _ = io.Copy(w, rc)
}

// logFileName is the name a saved log gets: run, stage and step, with
// anything but letters, digits, '.', '_' and '-' made '_'.
func logFileName(l stepLog) string {
	safe := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
				return r
			}
			return '_'
		}, s)
	}
	return safe(l.Run) + "-" + safe(l.Stage) + "-" + safe(l.Step) + ".log"
}

// lastEventID is the number of lines the client has: Last-Event-ID, which
// an EventSource sends when it reconnects, or else ?after=N, for a page
// that starts a new EventSource.
func lastEventID(r *http.Request) (int, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("the last event ID %q is not a line number", v)
	}
	return n, nil
}

// signedStepLog is the step log a request names, for a signed-in user;
// otherwise it answers 401 or 400 and ok is false.
func (s *Server) signedStepLog(w http.ResponseWriter, r *http.Request) (l stepLog, ok bool) {
	if _, ok := s.webSession(r); !ok {
		http.Error(w, "sign in first: your session has ended", http.StatusUnauthorized)
		return l, false
	}
	l, err := stepLogOf(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return l, false
	}
	return l, true
}

// logLines sends the complete lines a log has now (see the top of this
// file); none for a log that does not exist yet. HEAD answers 401 or 200
// and reads nothing: the page asks it, when its events fail, whether the
// session has ended.
func (s *Server) logLines(w http.ResponseWriter, r *http.Request) {
	l, ok := s.signedStepLog(w, r)
	if !ok {
		return
	}
	// Complete before the reading starts: then the last line, newline or
	// not, is complete too.
	info, err := s.stack.Logs.Stat(l.Run, l.Stage, l.Step)
	var rc io.ReadCloser
	if err == nil {
		rc, err = s.stack.Logs.Open(l.Run, l.Stage, l.Step)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if rc != nil {
		defer rc.Close()
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// HEAD: the page asks whether it is still signed in.
	if rc == nil || r.Method == http.MethodHead {
		return
	}
	out := bufio.NewWriterSize(w, 64<<10)
	ls := &logStream{w: out, bare: true}
	buf := make([]byte, 64<<10)
	for {
		n, err := rc.Read(buf)
		ls.write(buf[:n])
		if err != nil {
			break
		}
	}
	if info.Complete {
		ls.end()
	}
	_ = out.Flush()
}

// logEvents streams a log as server-sent events (see the top of this
// file) until it is complete, the client goes or the server stops.
func (s *Server) logEvents(w http.ResponseWriter, r *http.Request) {
	l, ok := s.signedStepLog(w, r)
	if !ok {
		return
	}
	after, err := lastEventID(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// A server shutting down ends its streams; their pages reconnect to
	// the next one.
	stop := context.AfterFunc(s.streams.context(), cancel)
	defer stop()
	rc, err := s.stack.Logs.Follow(ctx, l.Run, l.Stage, l.Step)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	defer rc.Close()
	_, statErr := s.stack.Logs.Stat(l.Run, l.Stage, l.Step)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx: pass the events on as they come
	w.WriteHeader(http.StatusOK)
	out := bufio.NewWriterSize(w, 32<<10)
	rw := http.NewResponseController(w)
	flush := func() bool {
		if out.Flush() != nil || rw.Flush() != nil {
			return false
		}
		s.touch() // a reader keeps a server with an idle timeout up
		return true
	}
	fmt.Fprintf(out, "retry: %d\n\n", logRetry.Milliseconds())
	if errors.Is(statErr, fs.ErrNotExist) {
		out.WriteString("event: waiting\ndata:\n\n")
	}
	if !flush() {
		return
	}

	// The log is read apart from the writing, so that a burst of lines
	// goes out in few flushes: the stream flushes when it has caught up.
	type chunk struct {
		b   []byte
		err error
	}
	chunks := make(chan chunk, 8)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := rc.Read(buf)
			c := chunk{err: err}
			if n > 0 {
				c.b = bytes.Clone(buf[:n])
			}
			if n > 0 || err != nil {
				select {
				case chunks <- c:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	ev := &logStream{w: out, after: after}
	beat := time.NewTicker(logHeartbeat)
	defer beat.Stop()
	for {
		select {
		case c := <-chunks:
			ev.write(c.b)
			if errors.Is(c.err, io.EOF) {
				ev.end()
				flush()
				return
			}
			if c.err != nil {
				// Cut without an end: the page reconnects.
				flush()
				return
			}
			if len(chunks) > 0 {
				continue
			}
			ev.partial()
			if !flush() {
				return
			}
		case <-beat.C:
			out.WriteString(": keep-alive\n\n")
			if !flush() {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// logStream cuts a log into lines and writes them as events, skipping the
// lines the client has.
type logStream struct {
	w *bufio.Writer
	// bare writes the complete lines only, one line of HTML each: the
	// backlog.
	bare bool
	// after is how many lines the client has: they are not sent.
	after int
	// n is how many complete lines the log had so far.
	n int
	// style is the ANSI style in effect at the start of line n+1.
	style ansi.Style
	// line is line n+1, still being written.
	line []byte
	// sent is how much of line went out in a partial event.
	sent int
	html []byte
}

// write reads more of the log.
func (l *logStream) write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.line = append(l.line, p...)
			for len(l.line) > maxLogLine {
				k := cutLine(l.line)
				l.complete(l.line[:k])
				l.line = l.line[:copy(l.line, l.line[k:])]
			}
			return
		}
		line := p[:i]
		if len(l.line) > 0 {
			l.line = append(l.line, line...)
			line = l.line
		}
		for len(line) > maxLogLine {
			k := cutLine(line)
			l.complete(line[:k])
			line = line[k:]
		}
		l.complete(line)
		l.line = l.line[:0]
		p = p[i+1:]
	}
}

// cutLine is where a line longer than maxLogLine is cut: at the start of
// the character that crosses the limit.
func cutLine(b []byte) int {
	for k := maxLogLine; k > maxLogLine-utf8.UTFMax; k-- {
		if utf8.RuneStart(b[k]) {
			return k
		}
	}
	return maxLogLine
}

// complete sends line n+1, which is complete, unless the client has it.
func (l *logStream) complete(line []byte) {
	l.n++
	l.sent = 0
	if l.n <= l.after {
		l.style = ansi.Advance(line, l.style)
		return
	}
	l.html, l.style = ansi.Render(l.html[:0], line, l.style)
	if l.bare {
		l.w.Write(l.html)
		l.w.WriteByte('\n')
		return
	}
	l.w.WriteString("id: ")
	l.w.WriteString(strconv.Itoa(l.n))
	l.w.WriteString("\ndata: ")
	l.w.Write(l.html)
	l.w.WriteString("\n\n")
}

// partial sends the line being written, if it grew since it was last
// sent. It has no id: the client's last event ID stays the last complete
// line.
func (l *logStream) partial() {
	if l.bare || len(l.line) == l.sent || l.n < l.after {
		return
	}
	l.sent = len(l.line)
	l.html, _ = ansi.Render(l.html[:0], l.line, l.style)
	l.w.WriteString("event: partial\ndata: ")
	l.w.Write(l.html)
	l.w.WriteString("\n\n")
}

// end ends a complete log: its last line, if it had no newline, and the
// number of lines.
func (l *logStream) end() {
	if len(l.line) > 0 {
		l.complete(l.line)
		l.line = l.line[:0]
	}
	if !l.bare {
		fmt.Fprintf(l.w, "event: end\ndata: %d\n\n", l.n)
	}
}
