// Package promtest starts a real Prometheus server (Debian's prometheus
// package, installed by `scripts/deps.sh prometheus`) for tests, scraping
// a target whose error rate the test sets, and whatever other targets the
// test names (a server's /metrics).
package promtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// ErrorRateQuery is the target's error rate as a verify step reads it.
const ErrorRateQuery = `sum(rate(errors_total[5s])) / sum(rate(requests_total[5s]))`

// Target serves requests_total and errors_total; each scrape adds 100
// requests, of which the error rate's share are errors.
type Target struct {
	mu       sync.Mutex
	rate     float64
	requests float64
	errors   float64
	srv      *httptest.Server
}

// SetErrorRate sets the share of errors from the next scrape on.
func (t *Target) SetErrorRate(r float64) {
	t.mu.Lock()
	t.rate = r
	t.mu.Unlock()
}

func (t *Target) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	t.mu.Lock()
	t.requests += 100
	t.errors += 100 * t.rate
	body := fmt.Sprintf("# TYPE requests_total counter\nrequests_total %g\n# TYPE errors_total counter\nerrors_total %g\n", t.requests, t.errors)
	t.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, body)
}

// Job is another target for Prometheus to scrape every second, as job
// Name: http://Target/metrics.
type Job struct {
	Name string
	// Target is HOST:PORT.
	Target string
}

// Server is a running Prometheus scraping a Target every second.
type Server struct {
	// URL is Prometheus's base URL.
	URL    string
	Target *Target
}

// Start starts a target and a Prometheus scraping it and jobs; both stop
// when the test ends. It fails the test when Debian's prometheus is not
// installed.
func Start(t testing.TB, jobs ...Job) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("the prometheus command is not installed: run scripts/deps.sh prometheus (Debian's prometheus package)")
	}
	target := &Target{}
	target.srv = httptest.NewServer(target)
	t.Cleanup(target.srv.Close)

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(target.srv.URL, "http://"))
	for _, j := range jobs {
		cfg += fmt.Sprintf("  - job_name: %q\n    static_configs:\n      - targets: [%q]\n", j.Name, j.Target)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var out bytes.Buffer
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.console.templates="+dir,
		"--web.console.libraries="+dir,
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	s := &Server{URL: "http://" + addr, Target: target}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited before it was ready:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s was not ready within 30s:\n%s", addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeAddr finds a loopback port nobody listens on: Prometheus needs a
// concrete one.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// WaitFor waits until query's value (a vector of one element) satisfies
// ok, and returns it.
func (s *Server) WaitFor(t testing.TB, query string, ok func(float64) bool, within time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	last := "no answer"
	for time.Now().Before(deadline) {
		f, answer, found := s.value(t, query)
		if found && ok(f) {
			return f
		}
		last = answer
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s did not reach the expected value within %s; last: %s", query, within, last)
	return 0
}

// Value is query's value now, through Prometheus's HTTP query API, when
// it is a vector of one element.
func (s *Server) Value(t testing.TB, query string) (float64, bool) {
	t.Helper()
	f, _, found := s.value(t, query)
	return f, found
}

// value asks Prometheus for query's value; answer says what came back.
func (s *Server) value(t testing.TB, query string) (f float64, answer string, found bool) {
	t.Helper()
	client, err := api.NewClient(api.Config{Address: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, err := promv1.NewAPI(client).Query(ctx, query, time.Now())
	switch {
	case err != nil:
		return 0, err.Error(), false
	case v.Type() == model.ValVector && len(v.(model.Vector)) == 1:
		f := float64(v.(model.Vector)[0].Value)
		return f, fmt.Sprint(f), true
	}
	return 0, v.String(), false
}
