package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/cmd/sluice/cli"
	"github.com/sluice-ci/sluice/engine/logstore"
	"github.com/sluice-ci/sluice/engine/logstore/logship"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
)

// heldProject makes the project of a pipeline named name whose step
// prints what script's first part does (a secret among it, from the
// environment variable secretEnv, set to secretValue), waits until the
// test writes the file release, and prints "second line".
func heldProject(t *testing.T, name, secretEnv, secretValue, script string) (dir, release, repoDir string) {
	t.Helper()
	t.Setenv(secretEnv, secretValue)
	dir = t.TempDir()
	release = filepath.Join(dir, "release")
	pipeline := fmt.Sprintf(`pipeline %q {
  on "manual" {}
}

secret "token" {
  env = %q
}

stage "build" {
  step "run" "hello" {
    command = ["sh", "-c", %q]
    env     = { TOKEN = secret.token }
  }
}
`, name, secretEnv, script+"; while [ ! -e '"+release+"' ]; do sleep 0.05; done; echo second line")
	return dir, release, gitProject(t, dir, name+".hcl", []byte(pipeline))
}

// syncBuffer is a buffer written by one goroutine and read by another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A step run by a runner on another host (its own home, no log store
// shared with the server) ships its log to the server, which the CLI
// follows live with --server: the first line shows while the step still
// runs, the command ends when the log is complete, and the secret the step
// printed is masked before it left the runner.
func TestShippedLogsFollowedFromTheCLI(t *testing.T) {
	const secretValue = "shipped-s3cr3t-value"
	dir, release, repoDir := heldProject(t, "far", "SLUICE_TEST_SHIPPED_TOKEN", secretValue, "echo first line; echo token=$TOKEN")
	e := startWith(t, func(c *server.Config) {
		c.Repositories = []server.Repository{{Name: "far", URL: repoDir}}
	})
	tok := token(t, e.home, "runner-far")

	// Without a token the server takes no log.
	resp, err := http.Post(e.url+"/api/v1/logs/r/s/x?offset=0", "application/octet-stream", strings.NewReader("forged"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a chunk without a token: %d, want 401", resp.StatusCode)
	}

	// The runner: a home of its own, the shared Temporal, logs shipped.
	var sent syncBuffer // every byte that left the runner for the server
	spool := filepath.Join(dir, "spool")
	sink, err := logship.New(logship.Options{ServerURL: e.url, Token: tok, Spool: spool,
		HTTP: &http.Client{Transport: recordBodies{&sent}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runnerHome := filepath.Join(dir, "runner-home")
	stack, err := local.Start(ctx, local.Options{
		Home: runnerHome, TemporalAddress: ts.GetFrontendHostPort(), Namespace: ts.GetDefaultNamespace(),
		Runner: &local.RunnerOptions{Name: "far-away", NoWorkflows: true, Logs: sink},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopRunner := func() {
		if stopped {
			return
		}
		stopped = true
		stack.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if err := sink.Close(cctx); err != nil {
			t.Errorf("closing the sink: %v", err)
		}
	}
	defer stopRunner()

	api := func(method, path, body string) (int, []byte, http.Header) {
		t.Helper()
		resp, b := e.authed(method, path, tok, strings.NewReader(body))
		return resp.StatusCode, b, resp.Trailer
	}
	code, b, _ := api("POST", "/api/v1/runs", `{"repository": "far", "ref": "main"}`)
	var res server.DeliveryResult
	if err := json.Unmarshal(b, &res); code != http.StatusCreated || err != nil || len(res.Runs) != 1 {
		t.Fatalf("starting the run: %d %s", code, b)
	}
	run := res.Runs[0].RunID

	t.Setenv("SLUICE_TOKEN", tok)
	t.Setenv("SLUICE_SERVER", "")
	t.Setenv("SLUICE_HOME", filepath.Join(dir, "cli-home"))
	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Main([]string{"logs", run, "build/hello", "-f", "--server", e.url}, &stdout, &stderr)
	}()
	waitOutput := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); !strings.Contains(stdout.String(), want); time.Sleep(20 * time.Millisecond) {
			select {
			case code := <-exited:
				t.Fatalf("sluice logs -f ended (exit %d) before %q:\n%s%s", code, want, stdout.String(), stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("sluice logs -f never printed %q:\n%s%s", want, stdout.String(), stderr.String())
			}
		}
	}
	// Live: the step still waits for the release.
	waitOutput("build/hello | first line\n")
	waitOutput("build/hello | token=***\n")
	if info, err := e.srv.Stack().Logs.Stat(run, "build", "hello"); err != nil || info.Complete {
		t.Errorf("the server's log while the step runs: %+v, %v", info, err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("sluice logs -f: exit %d\n%s", code, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("sluice logs -f did not end with the log:\n%s%s", stdout.String(), stderr.String())
	}
	want := "first line\ntoken=***\nsecond line\n"
	if got := stdout.String(); !strings.Contains(got, "build/hello | first line\nbuild/hello | token=***\nbuild/hello | second line\n") {
		t.Errorf("sluice logs -f printed:\n%s", got)
	}

	// The log is the server's, complete, and stays when the runner is gone.
	stopRunner()
	if info, err := e.srv.Stack().Logs.Stat(run, "build", "hello"); err != nil || info != (logstore.Info{Size: int64(len(want)), Complete: true}) {
		t.Errorf("the server's log: %+v, %v", info, err)
	}
	if code, b, trailer := api("GET", "/api/v1/runs/"+run+"/logs?step=build/hello&follow=1&offset=11", ""); code != http.StatusOK || string(b) != want[11:] || trailer.Get(server.LogCompleteTrailer) != "true" {
		t.Errorf("following the complete log from byte 11: %d %q, trailer %v", code, b, trailer)
	}
	if code, b, _ := api("GET", "/api/v1/runs/"+run+"/logs?step=hello", ""); code != http.StatusOK || string(b) != want {
		t.Errorf("the log from the API: %d %q", code, b)
	}
	if strings.Contains(sent.String(), secretValue) || !strings.Contains(sent.String(), "token=***") {
		t.Errorf("what the runner sent holds the secret, or not the masked line:\n%s", sent.String())
	}
	if _, err := os.Stat(filepath.Join(runnerHome, "logs")); !os.IsNotExist(err) {
		t.Errorf("the runner kept logs of its own: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(spool, "*.log")); len(files) != 0 {
		t.Errorf("the spool keeps %v", files)
	}
}

// recordBodies sends requests on and keeps their bodies.
type recordBodies struct{ into *syncBuffer }

func (r recordBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		r.into.Write(b)
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	return http.DefaultTransport.RoundTrip(req)
}

// A server that stops ends the streams of its followers at once, without
// saying the log is complete, instead of waiting for them.
func TestCloseEndsLogStreams(t *testing.T) {
	sharedTemporal()
	home := t.TempDir()
	tok := token(t, home, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := server.Start(ctx, server.Config{Listen: "127.0.0.1:0", Home: home, NoRunner: true,
		TemporalAddress: ts.GetFrontendHostPort(), Namespace: ts.GetDefaultNamespace()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.URL()+"/api/v1/runs/none/logs?step=build/hello&follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		srv.Close()
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	start := time.Now()
	srv.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the server took %v to stop with a follower", took)
	}
	// A stream the server did not end would be read for ever.
	cut := time.AfterFunc(10*time.Second, func() { resp.Body.Close() })
	defer cut.Stop()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("the stream did not end: %v", err)
	}
	if len(b) != 0 || resp.Trailer.Get(server.LogCompleteTrailer) != "" {
		t.Errorf("the cut stream: %q, trailer %v", b, resp.Trailer)
	}
}

// gitProject makes a git repository under dir/repo whose one commit, on
// main, holds the pipeline file .sluice/NAME, and returns its directory.
func gitProject(t *testing.T, dir, name string, pipeline []byte) string {
	t.Helper()
	repoDir := filepath.Join(dir, "repo")
	if err := os.MkdirAll(filepath.Join(repoDir, ".sluice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repoDir, ".sluice", name), pipeline, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "pipeline"}} {
		if out, err := exec.Command("git", append([]string{"-C", repoDir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return repoDir
}
