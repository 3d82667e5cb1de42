// Command go-service is a small HTTP service that the go-service example
// pipeline builds, tests, releases, deploys and watches. It counts requests
// by status code in the Prometheus text format, which is what the
// pipeline's verify step queries.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"sort"
	"sync"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// counter counts requests by status code.
type counter struct {
	mu     sync.Mutex
	byCode map[int]int
}

func (c *counter) add(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byCode[code]++
}

// ServeHTTP writes the counts in the Prometheus text exposition format.
func (c *counter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	codes := make([]int, 0, len(c.byCode))
	for code := range c.byCode {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE http_requests_total counter")
	for _, code := range codes {
		fmt.Fprintf(w, "http_requests_total{code=\"%d\"} %d\n", code, c.byCode[code])
	}
}

// newServer returns the service's routes: a greeting, a health check and
// the metrics.
func newServer() http.Handler {
	c := &counter{byCode: map[int]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		c.add(http.StatusOK)
		fmt.Fprintf(w, "hello, %s (version %s)\n", r.PathValue("name"), version)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", c)
	return mux
}

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	log.Printf("go-service %s listening on %s", version, addr)
	log.Fatal(http.ListenAndServe(addr, newServer()))
}
