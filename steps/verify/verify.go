// Package verify runs verify steps: it reads a Prometheus query's value
// through the client_golang API client and tells whether the value crossed
// the step's bound.
//
// The engine watches a verify step as a series of short Check activities
// with workflow timers between them (see engine/verify.go), so that a long
// watch holds no runner and survives restarts. Executor.Execute is the
// same watch in one process, for a caller that runs a step alone.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/verify/watch"
)

// QueryTimeout bounds one query when the caller's context has no earlier
// deadline.
const QueryTimeout = 20 * time.Second

// NoDataError says that a check produced no value: the query matched no
// series or its value is NaN, or Prometheus could not be reached or
// answered with a server error. A watch goes on past it; the engine tells
// it from a failure by its NoData method.
type NoDataError struct {
	Reason string
}

func (e *NoDataError) Error() string { return e.Reason }

// NoData marks the error as a missed reading rather than a failure.
func (e *NoDataError) NoData() bool { return true }

// Executor runs plan.KindVerify steps.
type Executor struct {
	// Sleep waits between the checks of Execute; nil means a timer that
	// stops with ctx.
	Sleep func(ctx context.Context, d time.Duration) error
}

var _ steps.Executor = Executor{}

// Check reads the step's query once and says whether its value crossed the
// bound. A missed reading is a *NoDataError; any other error means the
// check cannot succeed as written (a rejected query, a result of several
// series, an address that is no Prometheus) and the step should fail.
func (Executor) Check(ctx context.Context, req steps.Request) (value float64, crossed bool, err error) {
	return Check(ctx, req)
}

// Check is Executor.Check.
func Check(ctx context.Context, req steps.Request) (value float64, crossed bool, err error) {
	v := req.Step.Verify
	if v == nil {
		return 0, false, fmt.Errorf("step %q is not a verify step", req.Step.Name)
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	addr := v.Prometheus.Literal()
	query := v.Query.Literal()
	u, err := prometheusURL(addr)
	if err != nil {
		return 0, false, err
	}
	if req.DryRun {
		fmt.Fprintf(log, "dry run: would watch %q at %s every %s for %s, failing when %s\n", query, u.Redacted(), v.Interval, v.For, watch.Bound(v))
	}
	client, err := api.NewClient(api.Config{Address: u.String()})
	if err != nil {
		return 0, false, fmt.Errorf("prometheus = %q: %w", u.Redacted(), err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, QueryTimeout)
		defer cancel()
	}
	result, warnings, err := promv1.NewAPI(client).Query(ctx, query, time.Now())
	for _, w := range warnings {
		fmt.Fprintf(log, "verify: Prometheus warns about %q: %s\n", query, w)
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return 0, false, ctx.Err()
		}
		return 0, false, describeQueryError(err, u, query)
	}
	value, err = single(result, query)
	if err != nil {
		return 0, false, err
	}
	if math.IsNaN(value) {
		return 0, false, &NoDataError{Reason: fmt.Sprintf("the query %q is NaN (a ratio over no samples, as 0/0 gives); no reading this time", query)}
	}
	return value, watch.Crossed(v, value), nil
}

// prometheusURL checks the prometheus attribute.
func prometheusURL(addr string) (*url.URL, error) {
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus = %q is not an http(s) address; write the server's base URL, like \"http://prometheus:9090\"", redact(addr, u))
	}
	return u, nil
}

func redact(addr string, u *url.URL) string {
	if u != nil && u.User != nil {
		return u.Redacted()
	}
	return addr
}

// describeQueryError turns the API client's error into a missed reading
// (the server is down or struggling: the next check may get through) or a
// failure that says what to fix.
func describeQueryError(err error, u *url.URL, query string) error {
	var pe *promv1.Error
	if errors.As(err, &pe) {
		switch pe.Type {
		case promv1.ErrBadData:
			return fmt.Errorf("Prometheus at %s rejected the query %q: %s. Fix the query; Prometheus's expression browser (%s/graph) shows the same error", u.Redacted(), query, pe.Msg, strings.TrimSuffix(u.Redacted(), "/"))
		case promv1.ErrExec:
			return fmt.Errorf("Prometheus at %s could not run the query %q: %s", u.Redacted(), query, pe.Msg)
		case promv1.ErrClient, promv1.ErrBadResponse:
			return fmt.Errorf("the server at %s did not answer the query as Prometheus does (%s); is prometheus the base URL of a Prometheus server, like \"http://prometheus:9090\"?", u.Redacted(), pe.Msg)
		}
		return &NoDataError{Reason: fmt.Sprintf("Prometheus at %s failed the query %q: %s; no reading this time", u.Redacted(), query, pe.Msg)}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the address, with any password in it
	}
	return &NoDataError{Reason: fmt.Sprintf("Prometheus at %s did not answer: %v; no reading this time", u.Redacted(), err)}
}

// single reads the one number a verify query must give.
func single(v model.Value, query string) (float64, error) {
	switch r := v.(type) {
	case *model.Scalar:
		return float64(r.Value), nil
	case model.Vector:
		switch len(r) {
		case 0:
			return 0, &NoDataError{Reason: fmt.Sprintf("the query %q matched no series; no reading this time", query)}
		case 1:
			return float64(r[0].Value), nil
		}
		var series []string
		for _, s := range r {
			series = append(series, s.Metric.String())
		}
		slices.Sort(series)
		if len(series) > 3 {
			series = append(series[:3], fmt.Sprintf("and %d more", len(r)-3))
		}
		return 0, fmt.Errorf("the query %q returned %d series (%s); a verify step needs one number: aggregate them, as in sum(...) or max(...)", query, len(r), strings.Join(series, ", "))
	case model.Matrix:
		return 0, fmt.Errorf("the query %q returned a range vector; a verify step needs one number: wrap it in a function such as rate(...) and aggregate, as in sum(rate(x[5m]))", query)
	case *model.String:
		return 0, fmt.Errorf("the query %q returned a string; a verify step needs a number", query)
	}
	return 0, fmt.Errorf("the query %q returned no value Sluice can read (%T)", query, v)
}

// Execute watches the query in this process: a check every interval until
// for has passed. It fails as soon as the value crosses the bound and
// succeeds with the last value; a watch in which no check read a value
// fails. A dry run checks once and does not wait.
func (e Executor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	v := req.Step.Verify
	if v == nil {
		return steps.Result{}, fmt.Errorf("step %q is not a verify step", req.Step.Name)
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	sleep := e.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	w := watch.New(v)
	start := time.Now()
	for {
		value, crossed, err := Check(ctx, req)
		var r watch.Reading
		var nd *NoDataError
		switch {
		case errors.As(err, &nd):
			r.NoData = nd.Reason
		case err != nil:
			return steps.Result{Outputs: w.Outputs()}, err
		default:
			r.Value, r.Crossed = value, crossed
		}
		d := w.Next(time.Since(start), r)
		fmt.Fprintln(log, d.Log)
		switch {
		case d.Fail != "":
			return steps.Result{Outputs: w.Outputs()}, errors.New(d.Fail)
		case req.DryRun:
			return steps.Result{Outputs: w.Outputs(), DryRun: "watch"}, nil
		case d.Done:
			return steps.Result{Outputs: w.Outputs()}, nil
		}
		if err := sleep(ctx, d.Wait); err != nil {
			return steps.Result{Outputs: w.Outputs()}, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
