package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
	"github.com/sluice-ci/sluice/server/webhook"
)

// The server killed with SIGKILL while a check is in progress: the server
// that comes back carries the check to completed, without a second one.
func TestServerChecksSurviveKill(t *testing.T) {
	const ghRepo, secret = "acme/web", "checks-kill-secret"
	h := &serverHarness{harness: newHarness(t, pushPipeline)}
	gh := githubfake.New(t)
	gh.AddRepo(ghRepo, 5)
	head := gh.Commit(ghRepo, "", map[string]string{".sluice/web.hcl": pushPipeline})
	gh.SetBranch(ghRepo, "main", head)
	bare := filepath.Join(t.TempDir(), "web.git")
	if err := gh.ExportGit(ghRepo, bare); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(key, gh.PrivateKey, 0o600); err != nil {
		t.Fatal(err)
	}
	hold := filepath.Join(h.counters, "hold")
	os.WriteFile(hold, nil, 0o644)
	h.url = "http://" + freePort(t)
	h.env = append(h.env, "SLUICE_GITHUB_WEBHOOK_SECRET="+secret)
	start := func() {
		cmd, w := h.background("server", "--listen", strings.TrimPrefix(h.url, "http://"), "--no-build",
			"--github-app-id", "1", "--github-private-key", key, "--github-api-url", gh.URL())
		w.waitFor(t, `Sluice server at `, 2*time.Minute)
		h.cmd = cmd
	}
	start()

	b, err := os.ReadFile(filepath.Join("..", "..", "server", "webhook", "testdata", "push", "with-new-branch.payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	m["ref"], m["before"], m["after"], m["created"] = "refs/heads/main", strings.Repeat("0", 40), head, true
	m["head_commit"] = map[string]any{"id": head, "message": "go"}
	m["installation"] = map[string]any{"id": 5}
	r := m["repository"].(map[string]any)
	r["full_name"], r["clone_url"], r["default_branch"] = ghRepo, bare, "main"
	body, _ := json.Marshal(m)
	req, _ := http.NewRequest("POST", h.url+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "kill-1")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("push: %d", resp.StatusCode)
	}

	wait := func(name string, done func(githubfake.CheckRunState) bool) githubfake.CheckRunState {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := gh.WaitCheckRun(ctx, ghRepo, func(c githubfake.CheckRunState) bool { return c.Name == name && done(c) })
		if err != nil {
			t.Fatalf("check %s: %v; checks: %+v", name, err, gh.CheckRuns(ghRepo))
		}
		return c
	}
	running := wait("web / build", func(c githubfake.CheckRunState) bool { return c.Status == "in_progress" })
	h.crash(h.cmd)
	os.Remove(hold)
	start()
	done := wait("web / build", func(c githubfake.CheckRunState) bool { return c.Status == "completed" })
	if done.ID != running.ID || done.Conclusion != "success" {
		t.Errorf("after the restart the build check is #%d %s; want #%d success", done.ID, done.Conclusion, running.ID)
	}
	wait("web", func(c githubfake.CheckRunState) bool { return c.Conclusion == "success" })
	n := 0
	for _, c := range gh.CheckRuns(ghRepo) {
		if c.Name == "web / build" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d checks named web / build, want 1", n)
	}
}
