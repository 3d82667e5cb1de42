package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every series Sluice defines itself.
const Namespace = "sluice"

// NewRegistry returns a registry with the Go runtime's collector (go_*)
// and the process's (process_*), as every Prometheus target is expected
// to have.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in Prometheus's text format, or OpenMetrics when
// the scraper asks for it. It needs no authentication, like /healthz:
// put a listener of its own (--metrics-listen) behind the network's
// rules when the figures should stay private.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true, Timeout: 20 * time.Second})
}

// Server serves /metrics on a listener of its own (--metrics-listen).
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen starts serving reg at /metrics on addr (HOST:PORT; port 0 picks
// a free one), and /healthz.
func Listen(addr string, reg *prometheus.Registry) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s: %w; give another address with --metrics-listen", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s := &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// The listener failed under us: the scraper notices (up == 0).
			_ = ln.Close()
		}
	}()
	return s, nil
}

// Addr is where the metrics are served.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the metrics' URL.
func (s *Server) URL() string { return "http://" + s.Addr() + "/metrics" }

// Close stops serving, letting a scrape in flight finish for a few
// seconds.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
