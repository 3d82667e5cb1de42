package server_test

import (
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The log view's speed in Chromium (docs/benchmarks.md), measured only
// with SLUICE_BENCH=1:
//
//	SLUICE_BENCH=1 go test ./server -run '^TestLogViewSpeed$' -v -count 1
//
// SLUICE_BENCH_LINES sets how many lines the latency part writes (200),
// SLUICE_BENCH_ROUNDS how often the long log is opened (5).

// A line a step prints, from the store's Write returning to the line's
// row in the page: its percentiles over SLUICE_BENCH_LINES lines written
// 20 ms apart. A 100,000-line log opened anew: when its first lines and
// its end were first on the screen, from the navigation's start (the
// page's own marks), and how long a jump to its middle takes to draw.
func TestLogViewSpeed(t *testing.T) {
	if os.Getenv("SLUICE_BENCH") == "" {
		t.Skip("a measurement: SLUICE_BENCH=1 runs it")
	}
	e := start(t)
	tok := token(t, e.home, "alice")

	t.Run("latency", func(t *testing.T) {
		n := benchEnv(t, "SLUICE_BENCH_LINES", 200)
		w, err := e.srv.Stack().Logs.Writer("bench-1", "build", "live")
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		io.WriteString(w, "starting\n")
		ctx := browse(t, e.url, tok, "/runs/bench-1/log?"+logQuery("build", "live"))
		waitFor(t, ctx, "the first line", `sluiceLog.lines() === 1`, 20*time.Second)
		// Every row the page draws is seen here, when it is drawn.
		eval[bool](t, ctx, `(() => {
  window.shownAt = {};
  const seen = (row) => {
    const m = /^seq (\d+) /.exec(row.textContent);
    if (m && !(m[1] in shownAt)) shownAt[m[1]] = performance.timeOrigin + performance.now();
  };
  new MutationObserver((records) => {
    for (const r of records) for (const node of r.addedNodes) if (node.classList && node.classList.contains("log-row")) seen(node);
  }).observe(document.getElementById("log-rows"), {childList: true});
  return true;
})()`)
		written := make([]float64, n)
		for i := range n {
			fmt.Fprintf(w, "seq %d printed by the step\n", i)
			written[i] = float64(time.Now().UnixNano()) / 1e6
			time.Sleep(20 * time.Millisecond)
		}
		waitFor(t, ctx, "every line", fmt.Sprintf(`Object.keys(shownAt).length === %d`, n), 30*time.Second)
		shown := eval[map[string]float64](t, ctx, `shownAt`)
		var lat []float64
		for i := range n {
			lat = append(lat, shown[fmt.Sprint(i)]-written[i])
		}
		slices.Sort(lat)
		pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		t.Logf("a line written → shown, over %d lines: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", n, pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1])
		if pct(0.99) > 500 {
			t.Errorf("p99 %.1f ms, the goal is < 500 ms", pct(0.99))
		}
	})

	t.Run("long", func(t *testing.T) {
		const n = 100_000
		rounds := benchEnv(t, "SLUICE_BENCH_ROUNDS", 5)
		w, err := e.srv.Stack().Logs.Writer("bench-2", "build", "long")
		if err != nil {
			t.Fatal(err)
		}
		writeLines(t, w, 1, n)
		w.Close()
		info, _ := e.srv.Stack().Logs.Stat("bench-2", "build", "long")
		page := "/runs/bench-2/log?" + logQuery("build", "long")
		ctx := browse(t, e.url, tok, page)
		var first, end, jump []float64
		for range rounds {
			if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(e.url+page)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the end", `performance.getEntriesByName("sluice-log-end").length === 1`, 30*time.Second)
			first = append(first, eval[float64](t, ctx, `performance.getEntriesByName("sluice-log-first")[0].startTime`))
			end = append(end, eval[float64](t, ctx, `performance.getEntriesByName("sluice-log-end")[0].startTime`))
			// A jump to the middle: from setting scrollTop to the rows
			// drawn there.
			jump = append(jump, eval[float64](t, ctx, fmt.Sprintf(`new Promise((done) => {
  const v = document.getElementById("log-view"), t0 = performance.now();
  v.dispatchEvent(new WheelEvent("wheel", {deltaY: -100})); // the reader leaves the end
  v.scrollTop = %d * 18;
  const check = () => document.querySelector('.log-row[data-line="%d"]') ? done(performance.now() - t0) : requestAnimationFrame(check);
  requestAnimationFrame(check);
  setTimeout(() => done(-1), 5000);
})`, n/2, n/2+1), chromedp.EvalAwaitPromise))
			if jump[len(jump)-1] < 0 {
				t.Fatal("the middle of the log was not drawn in 5 s")
			}
		}
		slices.Sort(first)
		slices.Sort(end)
		slices.Sort(jump)
		t.Logf("a %d-line log (%.1f MB), %d rounds: first lines shown at %.0f ms (median; %.0f–%.0f), its end at %.0f ms (median; %.0f–%.0f); a jump to its middle drawn in %.1f ms (median; at most %.1f)",
			n, float64(info.Size)/1e6, rounds, first[len(first)/2], first[0], first[len(first)-1], end[len(end)/2], end[0], end[len(end)-1], jump[len(jump)/2], jump[len(jump)-1])
		if first[len(first)/2] > 1000 || end[len(end)/2] > 2000 {
			t.Errorf("the goal is the first lines in < 1 s and the end in < 2 s")
		}
		if dir := os.Getenv("SLUICE_SCREENSHOT_DIR"); dir != "" {
			png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			if err == nil {
				err = os.WriteFile(dir+"/log-long.png", png, 0o644)
			}
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// benchEnv is the number in the environment variable name, or def.
func benchEnv(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n <= 0 {
		t.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}
