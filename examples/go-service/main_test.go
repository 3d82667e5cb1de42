package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, path string) string {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return string(b)
}

func TestHelloAndMetrics(t *testing.T) {
	srv := httptest.NewServer(newServer())
	defer srv.Close()
	if got := get(t, srv, "/hello/sluice"); !strings.HasPrefix(got, "hello, sluice") {
		t.Errorf("hello = %q", got)
	}
	get(t, srv, "/hello/again")
	if got := get(t, srv, "/metrics"); !strings.Contains(got, `http_requests_total{code="200"} 2`) {
		t.Errorf("metrics = %q", got)
	}
	if got := get(t, srv, "/healthz"); got != "ok\n" {
		t.Errorf("healthz = %q", got)
	}
}
