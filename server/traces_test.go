package server_test

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/testing/otlptest"
	"github.com/sluice-ci/sluice/server"
)

// otlpReceiver is an OTLP/HTTP trace receiver serving for one test.
type otlpReceiver struct {
	*httptest.Server
	*otlptest.Receiver
}

type receivedSpan = otlptest.Span

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{Receiver: &otlptest.Receiver{}}
	r.Server = httptest.NewServer(r.Receiver)
	t.Cleanup(r.Close)
	return r
}

// trace returns the spans received of the trace with the hex ID id.
func (r *otlpReceiver) trace(id string) []receivedSpan {
	var out []receivedSpan
	for _, s := range r.Spans() {
		if hex.EncodeToString(s.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

// buildHead is the head of the traced pipelines: a push to main builds.
const buildHead = `pipeline "web" {
  on "push" { branches = ["main"] }
}

stage "build" {
  step "run" "compile" {
    command = ["echo", "compiled"]
  }
}
`

// tracedPipeline has two stages; the second has a step that fails once
// and passes when retried, and a step that fails.
const tracedPipeline = buildHead + `
stage "test" {
  needs = [stage.build]
  step "run" "flaky" {
    command = ["sh", "-c", "if [ -e tried ]; then echo passed; else touch tried; echo failing; exit 1; fi"]
    retry { attempts = 2 }
  }
  step "run" "unit" {
    command = ["sh", "-c", "echo boom; exit 3"]
  }
}
`

// A run that a push starts is exported, with the OpenTelemetry
// environment set, as one trace whose ID derives from the run's: a span
// for the run, one per stage under it and one per step under its stage,
// with the times the run recorded, the run's attributes and the failures
// as errors.
func TestRunTrace(t *testing.T) {
	rcv := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer trace-token")
	t.Setenv("OTEL_SERVICE_NAME", "sluice-ci")
	e := startWith(t, func(c *server.Config) { c.NoRunner = false })
	bare := filepath.Join(t.TempDir(), "hello.git")
	head := e.commit("", map[string]string{".sluice/web.hcl": tracedPipeline})
	runID := e.pushRun(bare, "traced-1", head, "traced")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := engine.Wait(ctx, e.client, runID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != engine.StateFailed {
		t.Fatalf("the run %s, want failed: %+v", st.State, st)
	}

	traceID := engine.TraceID(runID)
	if len(traceID) != 32 || traceID != engine.TraceID(runID) {
		t.Fatalf("TraceID(%q) = %q, want 32 hex digits, the same each time", runID, traceID)
	}
	// The run page shows the trace a tracing backend has it under.
	b := newBrowser(t, e.url)
	b.signIn(e.home, "alice")
	if code, _, page := b.get("/runs/" + runID); code != http.StatusOK || !strings.Contains(page, `id="trace-id" title="OpenTelemetry trace ID">`+traceID+`<`) {
		t.Errorf("the run page (%d) does not show trace %s", code, traceID)
	}
	var spans []receivedSpan
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		spans = rcv.trace(traceID)
		if byName(spans)["run web"] != nil || time.Now().After(deadline) {
			break
		}
	}
	byID := map[string]receivedSpan{}
	var names []string
	for _, s := range spans {
		id := hex.EncodeToString(s.SpanId)
		if _, dup := byID[id]; dup {
			t.Errorf("span %s (%s) was received twice", id, s.Name)
		}
		byID[id] = s
		names = append(names, s.Name)
	}
	want := []string{"run web", "stage build", "stage test", "step compile", "step flaky", "step unit"}
	spanOf := byName(spans)
	if len(spans) != len(want) {
		t.Fatalf("trace %s has spans %q, want %q", traceID, names, want)
	}
	for _, n := range want {
		if spanOf[n] == nil {
			t.Fatalf("trace %s has spans %q, want %q", traceID, names, want)
		}
	}

	run := spanOf["run web"]
	parentOf := map[string]string{"run web": "", "stage build": "run web", "stage test": "run web",
		"step compile": "stage build", "step flaky": "stage test", "step unit": "stage test"}
	for n, p := range parentOf {
		got := hex.EncodeToString(spanOf[n].ParentSpanId)
		want := ""
		if p != "" {
			want = hex.EncodeToString(spanOf[p].SpanId)
		}
		if got != want {
			t.Errorf("span %q has parent %q, want %q (%s)", n, got, want, p)
		}
	}

	// Every span says which run of which commit it is of.
	for _, s := range spans {
		a := otlptest.Attributes(s.Attributes)
		for k, v := range map[string]string{"sluice.run_id": runID, "sluice.pipeline": "web", "sluice.repository": repo,
			"sluice.ref": "refs/heads/main", "sluice.sha": head} {
			if a[k] != v {
				t.Errorf("span %q: %s = %q, want %q", s.Name, k, a[k], v)
			}
		}
		if s.Service != "sluice-ci" {
			t.Errorf("span %q comes from service %q, want OTEL_SERVICE_NAME's sluice-ci", s.Name, s.Service)
		}
	}

	// The times are those the run recorded, each span within its parent.
	check := func(name string, start, end time.Time, failed bool, msg string, want map[string]string) {
		t.Helper()
		s := spanOf[name]
		if int64(s.StartTimeUnixNano) != start.UnixNano() || int64(s.EndTimeUnixNano) != end.UnixNano() {
			t.Errorf("span %q runs %s to %s, the run recorded %s to %s", name,
				time.Unix(0, int64(s.StartTimeUnixNano)).UTC(), time.Unix(0, int64(s.EndTimeUnixNano)).UTC(), start.UTC(), end.UTC())
		}
		if s.StartTimeUnixNano < run.StartTimeUnixNano || s.EndTimeUnixNano > run.EndTimeUnixNano || s.StartTimeUnixNano > s.EndTimeUnixNano {
			t.Errorf("span %q is not within the run's span", name)
		}
		if p, ok := byID[hex.EncodeToString(s.ParentSpanId)]; ok && (s.StartTimeUnixNano < p.StartTimeUnixNano || s.EndTimeUnixNano > p.EndTimeUnixNano) {
			t.Errorf("span %q is not within its parent %q", name, p.Name)
		}
		code := s.GetStatus().GetCode()
		if failed && (code != tracepb.Status_STATUS_CODE_ERROR || s.GetStatus().GetMessage() != msg) {
			t.Errorf("span %q has status %s %q, want an error %q", name, code, s.GetStatus().GetMessage(), msg)
		}
		if !failed && code == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("span %q is an error (%q), its part of the run succeeded", name, s.GetStatus().GetMessage())
		}
		a := otlptest.Attributes(s.Attributes)
		for k, v := range want {
			if a[k] != v {
				t.Errorf("span %q: %s = %q, want %q", name, k, a[k], v)
			}
		}
	}
	check("run web", st.Start, st.End, true, st.Error, map[string]string{"sluice.result": "failed"})
	build, _ := st.Stage("build")
	test, _ := st.Stage("test")
	if build.Runner == "" || test.Runner == "" {
		t.Fatalf("the stages record no runner: %+v", st.Stages)
	}
	check("stage build", build.Start, build.End, false, "", map[string]string{"sluice.stage": "build", "sluice.runner": build.Runner, "sluice.result": "succeeded"})
	check("stage test", test.Start, test.End, true, test.Reason, map[string]string{"sluice.stage": "test", "sluice.runner": test.Runner, "sluice.result": "failed"})
	compile, flaky, unit := build.Steps[0], test.Steps[0], test.Steps[1]
	check("step compile", compile.Start, compile.End, false, "", map[string]string{"sluice.stage": "build", "sluice.step": "compile", "sluice.attempt": "1", "sluice.runner": build.Runner, "sluice.result": "succeeded"})
	check("step flaky", flaky.Start, flaky.End, false, "", map[string]string{"sluice.stage": "test", "sluice.step": "flaky", "sluice.attempt": "2", "sluice.runner": test.Runner, "sluice.result": "succeeded"})
	check("step unit", unit.Start, unit.End, true, unit.Error, map[string]string{"sluice.stage": "test", "sluice.step": "unit", "sluice.attempt": "1", "sluice.runner": test.Runner, "sluice.result": "failed"})
	if unit.Error == "" {
		t.Error("the failed step recorded no error")
	}

	if h := rcv.Headers(); len(h) == 0 || h[0].Get("Authorization") != "Bearer trace-token" {
		t.Errorf("the exports did not carry OTEL_EXPORTER_OTLP_HEADERS")
	}
}

func byName(spans []receivedSpan) map[string]*receivedSpan {
	m := map[string]*receivedSpan{}
	for i := range spans {
		m[spans[i].Name] = &spans[i]
	}
	return m
}

// approvedPipeline builds, then waits for alice's approval to deploy.
const approvedPipeline = buildHead + `
stage "deploy" {
  needs = [stage.build]
  approval {
    approvers = ["alice"]
  }
  step "run" "ship" {
    command = ["echo", "shipped"]
  }
}
`

// A server that stops while a run waits for approval leaves its trace to
// the next: the spans exported before are not exported as different
// spans, and the rest of the trace follows when the run ends.
func TestRunTraceSurvivesTheServer(t *testing.T) {
	rcv := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	first := startWith(t, func(c *server.Config) { c.NoRunner = false })
	bare := filepath.Join(t.TempDir(), "hello.git")
	head := first.commit("", map[string]string{".sluice/web.hcl": approvedPipeline})
	runID := first.pushRun(bare, "traced-2", head, "traced")
	traceID := engine.TraceID(runID)
	waitSpans := func(names ...string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got := byName(rcv.trace(traceID))
			missing := false
			for _, n := range names {
				missing = missing || got[n] == nil
			}
			if !missing {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("trace %s has %v, want %q among them", traceID, keys(got), names)
			}
		}
	}
	waitSpans("stage build", "step compile")

	first.srv.Close()
	second := startWith(t, func(c *server.Config) { c.NoRunner = false })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		st, err := engine.Status(ctx, second.client, runID)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := st.Stage("deploy"); d.State == engine.StateWaitingApproval {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := engine.Approve(ctx, second.client, runID, "deploy", "alice", ""); err != nil {
		t.Fatal(err)
	}
	if st, err := engine.Wait(ctx, second.client, runID); err != nil || st.State != engine.StateSucceeded {
		t.Fatalf("the run: %v %+v", err, st)
	}
	waitSpans("run web", "stage deploy", "step ship")

	ids := map[string]string{}
	for _, s := range rcv.trace(traceID) {
		id := hex.EncodeToString(s.SpanId)
		if prev, ok := ids[s.Name]; ok && prev != id {
			t.Errorf("span %q was exported as %s and as %s", s.Name, prev, id)
		}
		ids[s.Name] = id
	}
	if len(ids) != 5 {
		t.Errorf("trace %s has spans %v, want the run, two stages and two steps", traceID, ids)
	}
}

func keys(m map[string]*receivedSpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
