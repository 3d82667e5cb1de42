package server

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// BenchmarkTemporalStarts is the floor under BenchmarkWebhookLoad: the
// same server, its embedded Temporal started the same way (same store,
// same priority), taking workflow starts open-loop at the same rate with
// nothing of Sluice's in their path. Each start is the least a run can
// cost: a workflow started, with eager start, whose one workflow task a
// worker of the test process completes at once (SLUICE_BENCH_WORKER=none:
// the start alone, no worker, the workflows left waiting). A start that
// fails is sent again with backoff, as the server's forwarder does. It
// reports, as the webhook benchmark does, the latency from sending a start
// to the start time Temporal recorded (read back from its visibility
// store), and how many starts a second Temporal took.
//
//	make build   # bin/sluice-temporal
//	go test ./server -run '^$' -bench BenchmarkTemporalStarts -benchtime 1x -timeout 30m
//
// SLUICE_BENCH_RATE, SLUICE_BENCH_SECONDS and SLUICE_BENCH_DB are those of
// BenchmarkWebhookLoad.
func BenchmarkTemporalStarts(b *testing.B) {
	rate := benchEnvInt(b, "SLUICE_BENCH_RATE", 200)
	seconds := benchEnvInt(b, "SLUICE_BENCH_SECONDS", 60)
	withWorker := os.Getenv("SLUICE_BENCH_WORKER") != "none"
	useTemporalFromRepo(b)
	ctx := context.Background()
	store, srv := startBenchServer(b, b.TempDir(), Config{
		GitHub: GitHubConfig{WebhookSecrets: []string{"floor-bench-secret"}},
	})

	const queue, name = "bench-floor", "BenchFloor"
	if withWorker {
		w := worker.New(srv.client, queue, worker.Options{})
		w.RegisterWorkflowWithOptions(func(workflow.Context) error { return nil }, workflow.RegisterOptions{Name: name})
		if err := w.Start(); err != nil {
			b.Fatal(err)
		}
		defer w.Stop()
	}
	prefix := fmt.Sprintf("floor-%d-", time.Now().UnixNano())
	// start starts workflow i until Temporal has it, as the server's
	// forwarder does a delivery (backing off from 100 ms to 5 s): a start that times out may have been
	// recorded all the same, and a second finds it (the default ID
	// policy answers with the existing workflow).
	var retried atomic.Int64
	var firstErr atomic.Value
	start := func(i int) {
		wait := 100 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := srv.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID: fmt.Sprintf("%s%08d", prefix, i), TaskQueue: queue, EnableEagerStart: withWorker,
			}, name)
			cancel()
			if err == nil {
				return
			}
			retried.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			time.Sleep(wait)
			wait = min(2*wait, 5*time.Second)
		}
	}
	// Warm up, as the webhook benchmark does: pollers, connections.
	for i := range 20 {
		start(-1 - i)
	}

	n := rate * seconds
	sent := make([]time.Time, n)
	var wg sync.WaitGroup
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	began := time.Now()
	for i := range n {
		if i > 0 {
			<-tick.C
		}
		sent[i] = time.Now()
		wg.Go(func() { start(i) })
	}
	tick.Stop()
	sendSpan := time.Since(began)
	wg.Wait()
	b.StopTimer()

	// "To started" as the webhook benchmark has it: from sending to the
	// start time Temporal recorded, read back from its visibility store.
	started, err := floorStartTimes(ctx, srv, prefix, n)
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, n)
	last := began
	for i, t := range started {
		lat = append(lat, t.Sub(sent[i]))
		if t.After(last) {
			last = t
		}
	}
	slices.Sort(lat)
	perSecond := float64(n) / last.Sub(began).Seconds()
	b.ReportMetric(ms(pct(lat, 50)), "p50-started-ms")
	b.ReportMetric(ms(pct(lat, 99)), "p99-started-ms")
	b.ReportMetric(perSecond, "starts/s")
	b.ReportMetric(0, "ns/op")
	b.Logf("store: %s; worker: %v; GOMAXPROCS %d", store, withWorker, runtime.GOMAXPROCS(0))
	b.Logf("load: %d starts at %d/s for %d s (sent in %.1f s), the last started %.1f s after the first was sent: %.1f starts a second",
		n, rate, seconds, sendSpan.Seconds(), last.Sub(began).Seconds(), perSecond)
	b.Logf("to started: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
		ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99)), ms(pct(lat, 100)))
	if r := retried.Load(); r > 0 {
		b.Logf("starts tried again: %d (the first error: %v)", r, firstErr.Load())
	}
}

// floorStartTimes waits until Temporal's visibility store lists the n
// workflows whose IDs are prefix and a number (it is written a little
// after each start), and returns their start times by number.
func floorStartTimes(ctx context.Context, srv *Server, prefix string, n int) ([]time.Time, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		times := make([]time.Time, n)
		found := 0
		var token []byte
		for {
			resp, err := srv.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
				Query:         fmt.Sprintf("WorkflowId STARTS_WITH '%s'", prefix),
				PageSize:      1000,
				NextPageToken: token,
			})
			if err != nil {
				return nil, err
			}
			for _, e := range resp.GetExecutions() {
				i, err := strconv.Atoi(strings.TrimPrefix(e.GetExecution().GetWorkflowId(), prefix))
				if err != nil || i < 0 || i >= n {
					continue // a warm-up start
				}
				if times[i].IsZero() {
					found++
				}
				times[i] = e.GetStartTime().AsTime()
			}
			if token = resp.GetNextPageToken(); len(token) == 0 {
				break
			}
		}
		if found == n {
			return times, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("Temporal lists %d of the %d started workflows after 10 minutes", found, n)
		}
		time.Sleep(time.Second)
	}
}
