package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// fakeExec is a steps.Executor for "run" steps whose command says what to
// do, so that test plans describe their own behaviour:
//
//	ok [k=v ...]      succeed with these outputs
//	fail [msg]        fail
//	sleep DURATION    sleep, honouring cancellation
//	flaky N [k=v ...] fail the first N calls of this stage/step, then succeed
//	wait GATE         block until the test opens GATE or the step is cancelled
//	env NAME...       succeed with outputs NAME=$NAME
//	write PATH TEXT   write TEXT to PATH in the workspace
//	read PATH         succeed with output read=<PATH's content>, or fail
//	fill NAME N       succeed with output NAME of N bytes
//	size NAME TEXT    succeed with output NAME=<the length of TEXT>
type fakeExec struct {
	mu         sync.Mutex
	calls      map[string]int // by "stage/step"
	order      []string       // "start stage/step" and "end stage/step"
	running    int
	maxRunning int
	gates      map[string]chan struct{}
	cancelled  []string
}

func newFakeExec() *fakeExec {
	return &fakeExec{calls: map[string]int{}, gates: map[string]chan struct{}{}}
}

func (f *fakeExec) gate(name string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.gates[name]
	if !ok {
		g = make(chan struct{})
		f.gates[name] = g
	}
	return g
}

func (f *fakeExec) open(name string) { close(f.gate(name)) }

// stopActivity ends the waits of the steps that activity id runs. The test
// environment tells a running activity of its cancellation only in the
// answer to a heartbeat, which the SDK holds back for most of the heartbeat
// timeout; a server answers the runner's next heartbeat (NewRunner sends
// them unthrottled).
func (f *fakeExec) stopActivity(id string) {
	c := f.gate("activity " + id)
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

func (f *fakeExec) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

func (f *fakeExec) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.order)
}

func (f *fakeExec) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	key := req.StageID + "/" + req.Step.Name
	f.mu.Lock()
	f.calls[key]++
	n := f.calls[key]
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	f.order = append(f.order, "start "+key)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.order = append(f.order, "end "+key)
		f.mu.Unlock()
	}()

	var args []string
	for _, t := range req.Step.Run.Command {
		args = append(args, t.Literal())
	}
	fmt.Fprintf(req.Log, "running %s: %s\n", key, strings.Join(args, " "))
	if len(args) == 0 {
		return steps.Result{}, errors.New("no command")
	}
	outputs := func(kvs []string) steps.Result {
		res := steps.Result{Outputs: map[string]string{}}
		for _, kv := range kvs {
			k, v, _ := strings.Cut(kv, "=")
			res.Outputs[k] = v
		}
		return res
	}
	var stopped <-chan struct{}
	if activity.IsActivity(ctx) {
		stopped = f.gate("activity " + activity.GetInfo(ctx).ActivityID)
	}
	wait := func(c <-chan struct{}) error {
		select {
		case <-c:
			return nil
		case <-stopped:
			f.mu.Lock()
			f.cancelled = append(f.cancelled, key)
			f.mu.Unlock()
			return context.Canceled
		case <-ctx.Done():
			f.mu.Lock()
			f.cancelled = append(f.cancelled, key)
			f.mu.Unlock()
			return ctx.Err()
		}
	}
	switch args[0] {
	case "ok":
		return outputs(args[1:]), nil
	case "fail":
		return steps.Result{}, fmt.Errorf("%s failed: %s", key, strings.Join(args[1:], " "))
	case "exit":
		// exit N k=v...: fails with exit code N, keeping its outputs, as
		// the host run executor does.
		res := outputs(args[2:])
		if res.Outputs == nil {
			res.Outputs = map[string]string{}
		}
		res.Outputs["exit_code"] = args[1]
		return res, fmt.Errorf("command exited with code %s", args[1])
	case "sleep":
		d, _ := time.ParseDuration(args[1])
		done := make(chan struct{})
		t := time.AfterFunc(d, func() { close(done) })
		defer t.Stop()
		if err := wait(done); err != nil {
			return steps.Result{}, err
		}
		return outputs(args[2:]), nil
	case "flaky":
		k, _ := strconv.Atoi(args[1])
		if n <= k {
			return steps.Result{}, fmt.Errorf("%s: flaky failure %d", key, n)
		}
		return outputs(args[2:]), nil
	case "wait":
		if err := wait(f.gate(args[1])); err != nil {
			return steps.Result{}, err
		}
		return outputs(args[2:]), nil
	case "write":
		p := filepath.Join(req.Workspace, args[1])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return steps.Result{}, err
		}
		return steps.Result{}, os.WriteFile(p, []byte(args[2]), 0o644)
	case "read":
		b, err := os.ReadFile(filepath.Join(req.Workspace, args[1]))
		if err != nil {
			return steps.Result{}, err
		}
		return steps.Result{Outputs: map[string]string{"read": string(b)}}, nil
	case "fill":
		n, _ := strconv.Atoi(args[2])
		return steps.Result{Outputs: map[string]string{args[1]: strings.Repeat("x", n)}}, nil
	case "size":
		return steps.Result{Outputs: map[string]string{args[1]: strconv.Itoa(len(args[2]))}}, nil
	case "env":
		res := steps.Result{Outputs: map[string]string{}}
		for _, name := range args[1:] {
			res.Outputs[name] = req.Env[name]
			fmt.Fprintf(req.Log, "%s=%s\n", name, req.Env[name])
		}
		return res, nil
	}
	return steps.Result{}, fmt.Errorf("unknown fake command %q", args[0])
}

// quietLogger keeps the SDK's debug logging out of test output.
func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// memLogs is an in-memory LogSink.
type memLogs struct {
	mu   sync.Mutex
	logs map[string]*bytes.Buffer
}

func newMemLogs() *memLogs { return &memLogs{logs: map[string]*bytes.Buffer{}} }

func (m *memLogs) Writer(run, stage, step string) (io.WriteCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := stage + "/" + step
	b, ok := m.logs[key]
	if !ok {
		b = &bytes.Buffer{}
		m.logs[key] = b
	}
	return &memWriter{m: m, b: b}, nil
}

func (m *memLogs) get(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.logs[key]; ok {
		return b.String()
	}
	return ""
}

type memWriter struct {
	m *memLogs
	b *bytes.Buffer
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.b.Write(p)
}

func (w *memWriter) Close() error { return nil }

// countingWorkspaces wraps TempWorkspaces and counts what it does.
type countingWorkspaces struct {
	TempWorkspaces
	mu       sync.Mutex
	prepared []string
	released []string
}

func (c *countingWorkspaces) Prepare(ctx context.Context, req WorkspaceRequest) (string, error) {
	c.mu.Lock()
	c.prepared = append(c.prepared, req.StageID)
	c.mu.Unlock()
	return c.TempWorkspaces.Prepare(ctx, req)
}

func (c *countingWorkspaces) Release(ctx context.Context, req WorkspaceRequest, dir string) error {
	c.mu.Lock()
	c.released = append(c.released, req.StageID)
	c.mu.Unlock()
	return c.TempWorkspaces.Release(ctx, req, dir)
}

// settled returns the counts once every prepared workspace was released,
// or after five seconds. The test environment hands a cancelled activity's
// cancellation to the workflow at once, while the activity (a batch that
// took its stage) still releases its workspace; a server waits for it.
func (c *countingWorkspaces) settled() (int, int) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if p, r := c.counts(); r >= p {
			break
		}
	}
	return c.counts()
}

func (c *countingWorkspaces) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.prepared), len(c.released)
}

// tmpl builds a template from strings (literal text) and plan.Refs.
func tmpl(parts ...any) plan.Template {
	var t plan.Template
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			t.Append(plan.Part{Lit: p})
		case plan.Ref:
			r := p
			t.Append(plan.Part{Ref: &r})
		default:
			panic(fmt.Sprintf("tmpl: %T", p))
		}
	}
	return t
}

func out(step, output string) plan.Ref { return plan.Ref{Step: step, Output: output} }

// step is a "run" step whose command drives fakeExec.
func step(name string, cmd ...any) plan.Step {
	s := plan.Step{Name: name, Kind: plan.KindRun, Run: &plan.RunStep{}}
	for _, c := range cmd {
		switch c := c.(type) {
		case string:
			s.Run.Command = append(s.Run.Command, plan.Lit(c))
		case plan.Template:
			s.Run.Command = append(s.Run.Command, c)
			s.Refs = append(s.Refs, c.Refs()...)
		default:
			panic(fmt.Sprintf("step: %T", c))
		}
	}
	return s
}

func stage(id string, needs []string, steps ...plan.Step) plan.Stage {
	return plan.Stage{ID: id, Name: strings.SplitN(id, "[", 2)[0], Needs: needs, Steps: steps}
}

func needs(ids ...string) []string { return ids }

func testPlan(name string, stages ...plan.Stage) plan.Plan {
	p := plan.Plan{
		Pipeline: name,
		Git:      plan.Git{SHA: "0123456789abcdef0123456789abcdef01234567", Ref: "refs/heads/main", Branch: "main", Repo: "acme/web"},
		Stages:   stages,
	}
	if err := p.Seal(); err != nil {
		panic(err)
	}
	return p
}

func indexOf(t *testing.T, events []string, e string) int {
	t.Helper()
	i := slices.Index(events, e)
	if i < 0 {
		t.Fatalf("event %q missing from %q", e, events)
	}
	return i
}

func cloneJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
