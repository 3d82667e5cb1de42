package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/server"
)

const gatePipeline = `
pipeline "gate" {
  on "manual" {}
}

stage "build" {
  step "run" "hello" {
    command = ["echo", "hello from the server"]
  }
}

stage "deploy" {
  approval {
    approvers = ["alice"]
  }
  step "run" "ship" {
    command = ["echo", "shipped"]
  }
}
`

// sluiceMain runs the command line in this process and returns its exit
// code, stdout and stderr.
func sluiceMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestRemoteCommands runs a server with a token for bob and one for alice,
// and uses it through its API only: sluice login, run --server (a manual
// run, followed to its end), runs, status and logs --server, and approve
// --server refused for bob, who is not among the stage's approvers, with
// the server's reason, then accepted for alice.
func TestRemoteCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server on the embedded Temporal")
	}
	home := t.TempDir()
	t.Setenv("SLUICE_HOME", home)
	t.Setenv("SLUICE_TEMPORAL_BIN", buildServer(t))
	t.Setenv(envToken, "")
	t.Setenv(envServer, "")
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, ".sluice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, ".sluice", "p.hcl"), []byte(gatePipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "pipeline"}} {
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	tokens, err := server.OpenTokens(server.TokensFile(home))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := tokens.Create("bob")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := tokens.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := server.Start(ctx, server.Config{Listen: "127.0.0.1:0", Home: home, Repositories: []server.Repository{{Name: "web", URL: repo}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	url := srv.URL()
	checkTemporalNice(t, home, 10)

	// Without a token, the commands say how to get one.
	if code, _, stderr := sluiceMain("runs", "--server", url); code != 1 || !strings.Contains(stderr, "run sluice login "+url) {
		t.Fatalf("runs --server without a token: exit %d, %q", code, stderr)
	}
	// A wrong token is refused by the server, in one line.
	if code, _, stderr := sluiceMain("login", url, "--token", "sluice_wrong"); code != 1 || !strings.Contains(stderr, "401 Unauthorized from "+url) || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("login with a wrong token: exit %d, %q", code, stderr)
	}
	if code, stdout, stderr := sluiceMain("login", url, "--token", bob); code != 0 || !strings.Contains(stdout, "as bob") {
		t.Fatalf("login: exit %d, %s%s", code, stdout, stderr)
	}
	if fi, err := os.Stat(credentialsFile(home)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials.json: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}

	// A manual run, followed until it ends.
	type result struct {
		code           int
		stdout, stderr string
	}
	ran := make(chan result, 1)
	go func() {
		code, stdout, stderr := sluiceMain("run", "--server", url, "--repo", "web", "--ref", "main", "--progress", "plain")
		ran <- result{code, stdout, stderr}
	}()
	var runID string
	deadline := time.Now().Add(90 * time.Second)
	for runID == "" || !strings.Contains(must(t, "status", "--server", url, runID), "deploy waits for approval") {
		if time.Now().After(deadline) {
			t.Fatalf("no run waits for approval; runs:\n%s", must(t, "runs", "--server", url))
		}
		time.Sleep(200 * time.Millisecond)
		if m := regexp.MustCompile(`(?m)^(gate-\S+) +gate +refs/heads/main`).FindStringSubmatch(must(t, "runs", "--server", url)); m != nil {
			runID = m[1]
		}
	}
	if got := must(t, "logs", "--server", url, runID); !strings.Contains(got, "build/hello | hello from the server") {
		t.Errorf("logs --server: %q", got)
	}
	// In flight, the run's history so far replays against this build, as
	// the worker of a new server would replay it; fetched through the API.
	if got := must(t, "replay", "--server", url, runID); !strings.Contains(got, "OK                "+runID+" (sluice.Pipeline, ") {
		t.Errorf("replay --server of a run in flight:\n%s", got)
	}
	// --since lists the executions still running however long ago they
	// started: given a millisecond, those alone (the run, not the
	// delivery that started it and has ended).
	temporal := []string{"--temporal-address", srv.Stack().Address, "--namespace", srv.Stack().Namespace}
	got := must(t, append([]string{"replay", "--since", "1ms"}, temporal...)...)
	if !strings.Contains(got, "OK                "+runID+" (sluice.Pipeline, ") || strings.Contains(got, "(Delivery, ") || !strings.Contains(got, " replayed, 0 failed.") {
		t.Errorf("replay --since 1ms with a run in flight:\n%s", got)
	}

	// bob is not an approver: refused, with who may approve.
	code, _, stderr := sluiceMain("approve", "--server", url, runID, "deploy")
	if code != 1 || !strings.Contains(stderr, `bob may not approve or reject stage "deploy": its approvers are alice (403 Forbidden from `+url+")") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("approve by bob: exit %d, %q", code, stderr)
	}
	t.Setenv(envToken, alice)
	t.Setenv(envServer, url)
	if got := must(t, "approve", runID, "deploy", "--reason", "tested"); !strings.Contains(got, "Stage deploy of run "+runID+" approved by alice.") {
		t.Fatalf("approve by alice: %q", got)
	}
	select {
	case r := <-ran:
		if r.code != 0 {
			t.Fatalf("run --server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"Run " + runID + " of pipeline gate started on " + url, "build/hello | hello from the server", "deploy approved by alice: tested", "deploy/ship | shipped", "Run " + runID + " succeeded"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("run --server printed no %q:\n%s", want, r.stdout)
			}
		}
	case <-time.After(90 * time.Second):
		t.Fatal("run --server did not end after the approval")
	}
	if got := must(t, "status", runID); !regexp.MustCompile(`(?m)^deploy +ship +succeeded`).MatchString(got) {
		t.Errorf("status (SLUICE_SERVER): %q", got)
	}
	// The run replays through the API against a changed pipeline: alice's
	// approval stands, and the changed step would receive another command.
	changed := filepath.Join(t.TempDir(), ".sluice")
	if err := os.MkdirAll(changed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(changed, "p.hcl"), []byte(strings.Replace(gatePipeline, `"shipped"`, `"shipped again"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	got = must(t, "replay", runID, "--pipeline", changed)
	for _, want := range []string{"~ ship  succeeded → succeeded (assumed: its inputs changed)", `run.command: ["echo","shipped"] → ["echo","shipped again"]`, "1 approval asked (0 new)"} {
		if !strings.Contains(got, want) {
			t.Errorf("replay --server printed no %q:\n%s", want, got)
		}
	}
	// The run's recorded history replays against this build, fetched
	// through the API (GET /api/v1/runs/{id}/history); a run the server
	// does not have could not be fetched, which is not a failed replay.
	got = must(t, "replay", runID)
	for _, want := range []string{"OK                " + runID + " (sluice.Pipeline, run ", "1 replayed, 0 failed."} {
		if !strings.Contains(got, want) {
			t.Errorf("replay --server printed no %q:\n%s", want, got)
		}
	}
	code, stdout, _ := sluiceMain("replay", runID, "nosuch")
	for _, want := range []string{"NOT FETCHED       nosuch\n", `no run "nosuch" (404 Not Found from ` + url + ")", "1 replayed, 0 failed, 1 could not be fetched."} {
		if code != 1 || !strings.Contains(stdout, want) {
			t.Errorf("replay --server of a run that does not exist: exit %d, no %q:\n%s", code, want, stdout)
		}
	}
	// --since lists what the API does not give: it needs Temporal.
	if code, _, stderr := sluiceMain("replay", "--since", "1d"); code != 2 || !strings.Contains(stderr, "which a server's API does not give") {
		t.Errorf("replay --since --server: exit %d, %q", code, stderr)
	}
	// From the server's Temporal, every execution of the last hour
	// replays: the run, and the Delivery workflow that started it.
	t.Setenv(envServer, "")
	got = must(t, append([]string{"replay", "--since", "1h"}, temporal...)...)
	for _, want := range []string{"OK                " + runID + " (sluice.Pipeline, ", " (Delivery, run ", " replayed, 0 failed."} {
		if !strings.Contains(got, want) {
			t.Errorf("replay --since 1h printed no %q:\n%s", want, got)
		}
	}
	// The API gives the histories of runs, not of the server's other
	// workflows, and only with a token.
	list, err := server.Executions(ctx, srv.Stack().Client, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var delivery string
	for _, x := range list {
		if x.Type == server.DeliveryWorkflowName {
			delivery = x.WorkflowID
		}
	}
	if delivery == "" {
		t.Fatalf("no Delivery workflow among the executions of the last hour: %+v", list)
	}
	for _, c := range []struct {
		id, token string
		want      int
	}{{runID, alice, http.StatusOK}, {delivery, alice, http.StatusNotFound}, {runID, "", http.StatusUnauthorized}} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/runs/"+c.id+"/history", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET the history of %q (token %t): %s, want %d", c.id, c.token != "", resp.Status, c.want)
		}
	}
	t.Setenv(envServer, url)

	// A server that is no GitHub App has no webhook deliveries to ask for
	// again, and says so.
	if code, _, stderr := sluiceMain("server", "redeliver"); code != 1 || !strings.Contains(stderr, "this server has no GitHub App to redeliver webhooks with") {
		t.Errorf("server redeliver: exit %d, %q", code, stderr)
	}
}

// must runs a command that has to succeed and returns its stdout.
func must(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := sluiceMain(args...)
	if code != 0 {
		t.Fatalf("sluice %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// checkTemporalNice checks that every thread of the embedded Temporal
// serving home runs at nice want: a server that answers deliveries from
// its inbox puts Temporal below itself.
func checkTemporalNice(t *testing.T, home string, want int) {
	t.Helper()
	dataDir := filepath.Join(home, "temporal")
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) != "sluice-temporal" || !slices.Contains(args, dataDir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		nices, err := proc.ThreadNices(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nices {
			if n != want {
				t.Errorf("a thread of the embedded Temporal (pid %d, %d threads) has nice %d, want %d: %v", pid, len(nices), n, want, nices)
				return
			}
		}
		return
	}
	t.Errorf("no sluice-temporal process with --data-dir %s", dataDir)
}
