package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.uber.org/zap/zapcore"
)

// serverLogger hands the Temporal server's logs to an slog.Logger, keeping
// warnings and errors only: at info level the server writes hundreds of lines
// per start, none of them useful to someone running a pipeline.
type serverLogger struct {
	gate *logGate
	tags []tag.Tag
}

var (
	_ log.Logger     = (*serverLogger)(nil)
	_ log.WithLogger = (*serverLogger)(nil)
)

func newServerLogger(out *slog.Logger) *serverLogger {
	if out == nil {
		out = slog.New(slog.DiscardHandler)
	}
	return &serverLogger{gate: &logGate{out: out}}
}

func (l *serverLogger) Debug(string, ...tag.Tag) {}
func (l *serverLogger) Info(string, ...tag.Tag)  {}

func (l *serverLogger) Warn(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelWarn, msg, tags)
}

func (l *serverLogger) Error(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, tags)
}

func (l *serverLogger) DPanic(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, tags)
}

func (l *serverLogger) Panic(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, tags)
	panic(msg)
}

// Fatal panics instead of exiting, as the server's zap logger would: exiting
// would take the whole sluice process down without a word. The server calls
// Fatal while it is being built when a port cannot be bound, and Start
// recovers that panic into an error.
func (l *serverLogger) Fatal(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, tags)
	all := append(l.tags[:len(l.tags):len(l.tags)], tags...)
	panic(fatalError{msg: msg, detail: describeTags(all), err: tagError(all)})
}

func (l *serverLogger) With(tags ...tag.Tag) log.Logger {
	all := make([]tag.Tag, 0, len(l.tags)+len(tags))
	all = append(all, l.tags...)
	all = append(all, tags...)
	return &serverLogger{gate: l.gate, tags: all}
}

func (l *serverLogger) emit(level slog.Level, msg string, tags []tag.Tag) {
	if !l.gate.out.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(l.tags)+len(tags)+1)
	attrs = append(attrs, slog.String("component", "temporal"))
	for _, t := range l.tags {
		attrs = append(attrs, slog.Any(t.Key(), t.Value()))
	}
	for _, t := range tags {
		attrs = append(attrs, slog.Any(t.Key(), t.Value()))
	}
	l.gate.log(slog.NewRecord(time.Now(), level, msg, 0), attrs)
}

// logGate lets through only the warnings that say something about a running
// server. While the services start they dial each other before all of them
// listen, and while they stop every poller reports its cancelled request;
// both are dozens of warnings and errors on every run of `sluice run`, and
// none is a fault. Start-up logs are held back and shown only if Start fails,
// where they explain the failure; shutdown logs are dropped.
type logGate struct {
	out *slog.Logger

	mu      sync.Mutex
	state   gateState
	pending []slog.Record
}

type gateState int

const (
	gateStarting gateState = iota
	gateRunning
	gateStopping
)

// maxPending bounds what a start that goes wrong can hold in memory; the
// last records are the ones kept, as they are closest to the failure.
const maxPending = 200

func (g *logGate) log(r slog.Record, attrs []slog.Attr) {
	r.AddAttrs(attrs...)
	g.mu.Lock()
	state := g.state
	if state == gateStarting {
		if len(g.pending) == maxPending {
			g.pending = slices.Delete(g.pending, 0, 1)
		}
		g.pending = append(g.pending, r)
	}
	g.mu.Unlock()
	if state == gateRunning {
		_ = g.out.Handler().Handle(context.Background(), r)
	}
}

// started drops the start-up logs and lets later ones through.
func (g *logGate) started() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.state, g.pending = gateRunning, nil
}

// failed writes out the start-up logs, which say why the start failed, and
// drops everything after them.
func (g *logGate) failed() {
	g.mu.Lock()
	pending := g.pending
	g.state, g.pending = gateStopping, nil
	g.mu.Unlock()
	for _, r := range pending {
		_ = g.out.Handler().Handle(context.Background(), r)
	}
}

// stopping drops every log from now on.
func (g *logGate) stopping() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.state, g.pending = gateStopping, nil
}

// fatalError is what the server's Fatal calls panic with.
type fatalError struct {
	msg    string
	detail string
	err    error // the error tag's value, if there is one
}

func (e fatalError) Unwrap() error { return e.err }

func (e fatalError) Error() string {
	if e.detail == "" {
		return e.msg
	}
	return e.msg + " (" + e.detail + ")"
}

// tagError finds the error in tags logged with tag.Error, so that callers can
// test it with errors.Is.
func tagError(tags []tag.Tag) error {
	for _, t := range tags {
		zt, ok := t.(tag.ZapTag)
		if !ok || zt.Field().Type != zapcore.ErrorType {
			continue
		}
		if err, ok := zt.Field().Interface.(error); ok {
			return err
		}
	}
	return nil
}

func describeTags(tags []tag.Tag) string {
	parts := make([]string, 0, len(tags))
	for _, t := range tags {
		parts = append(parts, fmt.Sprintf("%s=%v", t.Key(), t.Value()))
	}
	return strings.Join(parts, ", ")
}
