package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/server"
)

// A followed log whose stream is cut (the server restarted) is asked for
// again from the byte the CLI reached, and ends where the server says the
// log is complete.
func TestFollowRemoteLogResumes(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/api/v1/runs/web-1/logs" ||
			r.URL.Query().Get("follow") != "1" || r.URL.Query().Get("step") != "test[os=linux/amd64]/unit" {
			http.Error(w, `{"error": "unexpected request"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("offset"))
		n := len(asked)
		mu.Unlock()
		w.Header().Set("Trailer", server.LogCompleteTrailer)
		switch n {
		case 1:
			fmt.Fprint(w, "one\n") // and cut
		case 2:
			http.Error(w, `{"error": "starting"}`, http.StatusServiceUnavailable)
		default:
			fmt.Fprint(w, "two\n")
			w.Header().Set(server.LogCompleteTrailer, "true")
		}
	}))
	defer srv.Close()
	c := &apiClient{url: srv.URL, token: "tok", http: &http.Client{Timeout: time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := apiLogs{c: c}.Follow(ctx, "web-1", "test[os=linux/amd64]", "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "one\ntwo\n" {
		t.Errorf("followed %q, %v; want one and two, then the end", b, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(asked) != "[ 4 4]" {
		t.Errorf("offsets asked: %q, want none, then 4 twice", asked)
	}
}
