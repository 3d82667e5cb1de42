package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

// cuttable is a TCP proxy to Temporal that can be cut: every connection
// through it is closed and new ones are refused, as when the Temporal
// server goes away.
type cuttable struct {
	ln     net.Listener
	to     string
	mu     sync.Mutex
	conns  []net.Conn
	cutOff bool
}

func newCuttable(t *testing.T, to string) *cuttable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttable{ln: ln, to: to}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cutOff {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", to)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cuttable) addr() string { return p.ln.Addr().String() }

func (p *cuttable) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestInboxKeepsDeliveriesTemporalCannotTake: with Temporal unreachable,
// a server with the inbox still answers 202, and its deliveries wait on
// disk; the server that starts next in the same home hands them to
// Temporal, and each starts its run once.
func TestInboxKeepsDeliveriesTemporalCannotTake(t *testing.T) {
	sharedTemporal()
	proxy := newCuttable(t, ts.GetFrontendHostPort())
	var cfg server.Config
	e := startWithGitHub(t, func(_ *githubfake.Server, c *server.Config) {
		c.TemporalAddress = proxy.addr()
		cfg = *c
	})
	base := e.commit("", map[string]string{".sluice/web.hcl": webPipeline, "README.md": "hi"})
	var heads []string
	for i := range 3 {
		heads = append(heads, e.commit(base, map[string]string{"src/main.go": fmt.Sprint("package main // ", i)}))
	}

	proxy.cut()
	for i, head := range heads {
		start := time.Now()
		code, out := e.deliver("push", fmt.Sprint("held-", i), pushPayload(t, "refs/heads/main", base, head, "m"))
		if code != http.StatusAccepted {
			t.Fatalf("push %d with Temporal away: %d %s, want 202 from the inbox", i, code, out)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("push %d answered in %v with Temporal away", i, d)
		}
	}
	// A redelivery while the first waits is a duplicate.
	if code, out := e.deliver("push", "held-1", pushPayload(t, "refs/heads/main", base, heads[1], "m")); code != http.StatusOK || !strings.Contains(out, `"duplicate": true`) {
		t.Errorf("redelivery of a delivery in the inbox: %d %s", code, out)
	}
	if n := e.srv.InboxPending(); n != 3 {
		t.Fatalf("%d deliveries in the inbox, want 3", n)
	}
	// Nothing reached Temporal.
	c := ts.GetDefaultClient()
	for i := range heads {
		_, err := c.DescribeWorkflowExecution(context.Background(), fmt.Sprint("github-held-", i), "")
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			t.Fatalf("delivery %d is in Temporal though it was cut off: %v", i, err)
		}
	}
	e.srv.Close()

	// The next server in the same home, with Temporal back.
	cfg.TemporalAddress = ts.GetFrontendHostPort()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s2, err := server.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	e.srv, e.url, e.client = s2, s2.URL(), s2.Stack().Client
	for i, head := range heads {
		res := e.result(fmt.Sprint("held-", i))
		if len(res.Runs) != 1 || res.Runs[0].Existing {
			t.Fatalf("delivery %d after the restart started %+v, want one new run", i, res)
		}
		runs, err := engine.List(ctx, e.client, fmt.Sprintf("%s = '%s'", engine.AttrSHA.GetName(), head))
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 {
			t.Errorf("commit %d has %d runs, want 1", i, len(runs))
		}
	}
	// Handed on, the deliveries are remembered: a redelivery is a
	// duplicate still.
	if code, out := e.deliver("push", "held-2", pushPayload(t, "refs/heads/main", base, heads[2], "m")); code != http.StatusOK || !strings.Contains(out, `"duplicate": true`) {
		t.Errorf("redelivery after the restart: %d %s", code, out)
	}
}
