package embedded

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.temporal.io/server/common/log/tag"
)

type memHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *memHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *memHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *memHandler) WithGroup(string) slog.Handler                { return h }
func (h *memHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *memHandler) got() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.msgs, ",")
}

func TestLogGate(t *testing.T) {
	tests := []struct {
		name   string
		phases func(l *serverLogger)
		want   string
	}{
		{
			name: "start-up logs are dropped when the start works",
			phases: func(l *serverLogger) {
				l.Warn("dialing")
				l.gate.started()
				l.Info("info")
				l.Warn("running")
				l.With(tag.Service("history")).Error("failing")
				l.gate.stopping()
				l.Error("cancelled")
			},
			want: "running,failing",
		},
		{
			name: "start-up logs are shown when the start fails",
			phases: func(l *serverLogger) {
				l.Debug("debug")
				l.Warn("dialing")
				l.Error("no database")
				l.gate.failed()
				l.Error("cancelled")
			},
			want: "dialing,no database",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &memHandler{}
			tt.phases(newServerLogger(slog.New(h)))
			if got := h.got(); got != tt.want {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLogGateKeepsTheLastStartupLogs(t *testing.T) {
	h := &memHandler{}
	l := newServerLogger(slog.New(h))
	for range maxPending {
		l.Warn("early")
	}
	l.Warn("last")
	l.gate.failed()
	if n := len(h.msgs); n != maxPending {
		t.Errorf("flushed %d records, want %d", n, maxPending)
	}
	if h.msgs[len(h.msgs)-1] != "last" {
		t.Errorf("last record flushed = %q, want %q", h.msgs[len(h.msgs)-1], "last")
	}
}

func TestFatalBecomesError(t *testing.T) {
	l := newServerLogger(nil).With(tag.Service("history"))
	err := recoverFatal(func() error {
		l.Fatal("Failed to start gRPC listener", tag.Error(syscall.EADDRINUSE), tag.Address("127.0.0.1:7233"))
		return nil
	})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("recoverFatal = %v, want an error wrapping EADDRINUSE", err)
	}
	for _, want := range []string{"Failed to start gRPC listener", "service=history", "127.0.0.1:7233"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got := describeStartError(err).Error(); !strings.Contains(got, "port") {
		t.Errorf("describeStartError = %q, want a word about ports", got)
	}
}
