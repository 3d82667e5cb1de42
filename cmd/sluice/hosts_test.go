package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/testing/netns"
)

// Tests across machines (issue 11): each machine is a network namespace of
// internal/testing/netns, with the file system shared.

const hostsPipeline = `
pipeline "hosts" {
  on "push" { branches = ["main"] }
}

variable "counters" {}

stage "build" {
  step "run" "work" {
    script = "echo ${git.sha} >> ${var.counters}/runs"
  }
}
`

// TestServerAcrossHosts runs sluice server on host A, listening on A's
// address only, and uses it from host B: /healthz answers, a git push on B
// (its hook reports to A) starts a run that the server's runner on A
// runs, and sluice runs --server on B lists it as succeeded. The test's
// own namespace does not reach the server.
func TestServerAcrossHosts(t *testing.T) {
	n := netns.New(t)
	a, b := n.Host("server"), n.Host("client")
	srv := newHarness(t, hostsPipeline)
	srv.host = a
	// A has an address of its own: any port is free there.
	url := "http://" + net.JoinHostPort(a.IP, "8080")

	_, w := srv.background("server", "--listen", net.JoinHostPort(a.IP, "8080"), "--no-build")
	w.waitFor(t, `Sluice server at `+url, 2*time.Minute)
	token := strings.TrimSpace(srv.sluiceOut("server", "token", "create", "--user", "alice"))
	bare := filepath.Join(t.TempDir(), "web.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	srv.sluice("hook", "install", bare, "--server", url)

	// B reaches the server.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/healthz", nil)
	resp, err := b.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("GET /healthz from B: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /healthz from B: %s %q", resp.Status, body)
	}
	// The test's namespace does not (what answers there, if anything, is
	// not the server).
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url + "/healthz"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && string(body) == "ok\n" {
			t.Fatal("the server on A answered the root namespace")
		}
	}

	// A push on B: git runs the hook there, which reports to A.
	cli := &harness{t: t, bin: srv.bin, home: t.TempDir(), repo: srv.repo, host: b}
	cli.env = append(srv.env[:len(srv.env):len(srv.env)], "SLUICE_HOME="+cli.home, "SLUICE_TOKEN="+token)
	push := b.Command("git", "-C", srv.repo, "push", "-q", bare, "main")
	push.Env = cli.env
	out, err := push.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sluice: refs/heads/main: queued") {
		t.Fatalf("git push on B: %v\n%s", err, out)
	}

	// The run, on A's runner, is seen from B through the API.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := cli.sluice("runs", "--server", url)
		if strings.Contains(out, "succeeded") {
			break
		}
		if strings.Contains(out, "failed") || time.Now().After(deadline) {
			t.Fatalf("sluice runs --server %s on B:\n%s", url, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if got := srv.count("runs"); got != 1 {
		t.Fatalf("the step ran %d times, want 1", got)
	}
}
