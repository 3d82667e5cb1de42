package verify

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/verify/promtest"
)

func request(url, query string, below, above *float64, forD, interval time.Duration) (steps.Request, *bytes.Buffer) {
	var log bytes.Buffer
	return steps.Request{
		RunID: "r1", StageID: "monitor",
		Step: plan.Step{Name: "errors", Kind: plan.KindVerify, Verify: &plan.VerifyStep{
			Prometheus: plan.Lit(url), Query: plan.Lit(query), Below: below, Above: above,
			For: plan.Duration(forD), Interval: plan.Duration(interval), OnFailure: "fail",
		}},
		Log: &log,
	}, &log
}

func f(v float64) *float64 { return &v }

func TestCheckRealPrometheus(t *testing.T) {
	p := promtest.Start(t)
	ctx := context.Background()
	p.Target.SetErrorRate(0.01)
	p.WaitFor(t, promtest.ErrorRateQuery, func(v float64) bool { return v > 0.005 && v < 0.015 }, 30*time.Second)

	t.Run("low error rate passes", func(t *testing.T) {
		req, _ := request(p.URL, promtest.ErrorRateQuery, f(0.05), nil, time.Minute, time.Second)
		v, crossed, err := Check(ctx, req)
		if err != nil || crossed || v < 0.005 || v > 0.015 {
			t.Fatalf("Check = %v, %v, %v; want about 0.01, not crossed", v, crossed, err)
		}
	})
	t.Run("above bound", func(t *testing.T) {
		req, _ := request(p.URL, promtest.ErrorRateQuery, nil, f(0.5), time.Minute, time.Second)
		v, crossed, err := Check(ctx, req)
		if err != nil || !crossed {
			t.Fatalf("Check = %v, %v, %v; want crossed (the value must stay above 0.5)", v, crossed, err)
		}
	})
	t.Run("scalar", func(t *testing.T) {
		req, _ := request(p.URL, "2 * 21", f(50), nil, time.Minute, time.Second)
		v, crossed, err := Check(ctx, req)
		if err != nil || crossed || v != 42 {
			t.Fatalf("Check = %v, %v, %v; want 42", v, crossed, err)
		}
	})
	t.Run("several series", func(t *testing.T) {
		req, _ := request(p.URL, `{job="app", __name__=~"requests_total|errors_total"}`, f(1), nil, time.Minute, time.Second)
		_, _, err := Check(ctx, req)
		var nd *NoDataError
		if err == nil || errors.As(err, &nd) || !strings.Contains(err.Error(), "returned 2 series") || !strings.Contains(err.Error(), "aggregate") {
			t.Fatalf("Check error = %v; want a failure asking to aggregate 2 series", err)
		}
	})
	t.Run("bad query", func(t *testing.T) {
		req, _ := request(p.URL, "sum(rate(errors_total[5s])", f(1), nil, time.Minute, time.Second)
		_, _, err := Check(ctx, req)
		var nd *NoDataError
		if err == nil || errors.As(err, &nd) || !strings.Contains(err.Error(), "rejected the query") || !strings.Contains(err.Error(), "parse error") {
			t.Fatalf("Check error = %v; want Prometheus's parse error", err)
		}
	})
	t.Run("no series", func(t *testing.T) {
		req, _ := request(p.URL, "no_such_metric_total", f(1), nil, time.Minute, time.Second)
		_, _, err := Check(ctx, req)
		var nd *NoDataError
		if !errors.As(err, &nd) || !strings.Contains(err.Error(), "matched no series") {
			t.Fatalf("Check error = %v; want no data", err)
		}
	})
	t.Run("NaN", func(t *testing.T) {
		req, _ := request(p.URL, "sum(rate(errors_total[5s])) * 0 / 0", f(1), nil, time.Minute, time.Second)
		_, _, err := Check(ctx, req)
		var nd *NoDataError
		if !errors.As(err, &nd) || !strings.Contains(err.Error(), "NaN") {
			t.Fatalf("Check error = %v; want no data for NaN", err)
		}
	})
}

func TestExecuteWatch(t *testing.T) {
	p := promtest.Start(t)
	p.Target.SetErrorRate(0.01)
	p.WaitFor(t, promtest.ErrorRateQuery, func(v float64) bool { return v < 0.015 }, 30*time.Second)
	req, log := request(p.URL, promtest.ErrorRateQuery, f(0.05), nil, 3*time.Second, time.Second)
	start := time.Now()
	res, err := Executor{}.Execute(context.Background(), req)
	if err != nil {
		t.Fatalf("watch failed: %v\n%s", err, log)
	}
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("the watch took %s; want at least for = 3s", took)
	}
	if v, err := strconv.ParseFloat(res.Outputs["value"], 64); err != nil || v > 0.015 {
		t.Errorf("value = %q; want about 0.01", res.Outputs["value"])
	}
	if n := strings.Count(log.String(), "verify: check "); n < 3 || n > 5 {
		t.Errorf("%d checks in 3s at 1s intervals; want 4:\n%s", n, log)
	}

	p.Target.SetErrorRate(0.5)
	p.WaitFor(t, promtest.ErrorRateQuery, func(v float64) bool { return v >= 0.05 }, 30*time.Second)
	req, log = request(p.URL, promtest.ErrorRateQuery, f(0.05), nil, 30*time.Second, time.Second)
	start = time.Now()
	res, err = Executor{}.Execute(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "crossed its bound") || !strings.Contains(err.Error(), "reaches 0.05") {
		t.Fatalf("watch error = %v; want the bound crossed\n%s", err, log)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the failing watch took %s; it should fail at the first check over the bound", took)
	}
	if res.Outputs["value"] == "" {
		t.Error("a failed watch should still give its value")
	}
}

func TestCheckUnreachableAndWrongServer(t *testing.T) {
	ctx := context.Background()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	req, _ := request("http://user:hunter2@"+strings.TrimPrefix(deadURL, "http://"), "up", f(1), nil, time.Minute, time.Second)
	_, _, err := Check(ctx, req)
	var nd *NoDataError
	if !errors.As(err, &nd) || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("Check error = %v; want a missed reading", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("the error shows the password: %v", err)
	}

	notProm := httptest.NewServer(http.NotFoundHandler())
	defer notProm.Close()
	req, _ = request(notProm.URL, "up", f(1), nil, time.Minute, time.Second)
	_, _, err = Check(ctx, req)
	if err == nil || errors.As(err, &nd) || !strings.Contains(err.Error(), "base URL of a Prometheus server") {
		t.Fatalf("Check error = %v; want a failure naming the wrong address", err)
	}

	req, _ = request("prometheus:9090", "up", f(1), nil, time.Minute, time.Second)
	if _, _, err = Check(ctx, req); err == nil || !strings.Contains(err.Error(), "not an http(s) address") {
		t.Fatalf("Check error = %v; want the address refused", err)
	}
}

func TestExecuteDryRunWithoutPrometheus(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	req, log := request(dead.URL, "sum(rate(errors_total[5m]))", f(0.01), nil, 10*time.Minute, 30*time.Second)
	req.DryRun = true
	start := time.Now()
	res, err := (Executor{}).Execute(context.Background(), req)
	if err != nil {
		t.Fatalf("dry run failed: %v", err)
	}
	if res.DryRun != "watch" {
		t.Errorf("result's DryRun = %q, want %q", res.DryRun, "watch")
	}
	if time.Since(start) > 5*time.Second {
		t.Error("a dry run waited for the watch")
	}
	want := `dry run: would watch "sum(rate(errors_total[5m]))" at ` + dead.URL + ` every 30s for 10m, failing when the value reaches 0.01`
	if !strings.Contains(log.String(), want) {
		t.Fatalf("log = %q; want %q", log, want)
	}
}
