package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/internal/testing/browsertest"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
	"github.com/sluice-ci/sluice/server/webhook"
)

// browserPipeline holds its build until the test lets it go (a file per
// branch), fans out a matrix, and gates the deploy on alice.
const browserPipeline = `pipeline "shop" {
  on "push" { branches = ["main", "feature"] }
  on "schedule" { cron = "0 3 * * *" }
}

stage "build" {
  step "run" "compile" {
    command = ["sh", "-c", "echo compiling; while [ ! -e '%s/go-${git.branch}' ]; do sleep 0.05; done"]
  }
}

stage "test" {
  needs = [stage.build]
  matrix { go = ["1.22", "1.23"] }
  step "run" "unit" { command = ["echo", "go ${matrix.go}"] }
}

stage "lint" {
  needs = [stage.build]
  step "run" "vet" { command = ["true"] }
}

stage "deploy" {
  needs = [stage.test, stage.lint]
  approval {
    approvers   = ["alice"]
    description = "Ships the shop to production."
  }
  step "run" "ship" { command = ["echo", "shipped"] }
}
`

// gitRepo is a git repository the test commits to and pushes from, as the
// hook of a bare repository would report.
type gitRepo struct {
	t   *testing.T
	dir string
}

func (g gitRepo) git(args ...string) string {
	g.t.Helper()
	out, err := exec.Command("git", append([]string{"-C", g.dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// push reports to the server what a post-receive hook reports for a push
// of branch at its head (a new branch), signed with the server's hook
// secret, and returns the commit.
func (g gitRepo) push(e *env, branch string) string {
	g.t.Helper()
	sha := g.git("rev-parse", branch)
	body, _ := json.Marshal(server.GitHookRequest{Repository: "shop", URL: g.dir, Pusher: "alice",
		Updates: []server.GitUpdate{{Old: strings.Repeat("0", 40), New: sha, Ref: "refs/heads/" + branch, Message: "change"}}})
	secret, err := server.LocalHookSecret(e.home)
	if err != nil {
		g.t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", e.url+"/hooks/git", bytes.NewReader(body))
	req.Header.Set(server.GitHookSignatureHeader, webhook.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		g.t.Fatalf("the hook's request for %s: %s", branch, resp.Status)
	}
	return sha
}

// The web view in Chromium, end to end: a push through the git hook
// starts a run; its page shows the stages change state without a reload,
// the gate asks alice, who approves it from the page; another run is
// cancelled from its page. With SLUICE_SCREENSHOTS=1 it saves a
// screenshot of each page to docs/images/.
func TestWebInBrowser(t *testing.T) {
	dir := t.TempDir()
	gates := filepath.Join(dir, "gates")
	repoDir := filepath.Join(dir, "shop")
	for _, d := range []string{gates, filepath.Join(repoDir, ".sluice")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repoDir, ".sluice", "shop.hcl"), fmt.Appendf(nil, browserPipeline, gates), 0o644); err != nil {
		t.Fatal(err)
	}
	g := gitRepo{t, repoDir}
	g.git("init", "-q", "-b", "main")
	g.git("add", ".")
	g.git("commit", "-qm", "the shop")
	g.git("checkout", "-q", "-b", "feature")
	if err := os.WriteFile(filepath.Join(repoDir, "feature.txt"), []byte("a feature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.git("add", ".")
	g.git("commit", "-qm", "a feature")
	g.git("checkout", "-q", "main")

	e := startWithGitHub(t, func(gh *githubfake.Server, c *server.Config) {
		c.GitHub.ClientID, c.GitHub.ClientSecret = gh.OAuthClient() // the sign-in page offers GitHub
		c.NoRunner = false
		c.Repositories = []server.Repository{{Name: "shop", URL: repoDir}}
	})
	// The shop's schedule goes with the test (the Temporal server is
	// shared).
	t.Cleanup(func() {
		list, _ := server.ListSchedules(context.Background(), e.client)
		for _, sc := range list {
			if sc.Repo == "shop" {
				_ = e.client.ScheduleClient().GetHandle(context.Background(), sc.ID).Delete(context.Background())
			}
		}
	})
	tok := token(t, e.home, "alice")

	ctx := browsertest.New(t)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	shots := os.Getenv("SLUICE_SCREENSHOTS") != ""
	// shot saves the page in a window height pixels tall.
	shot := func(name string, height int64) {
		t.Helper()
		if !shots {
			return
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, height), chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		images := filepath.Join("..", "docs", "images")
		if err := os.MkdirAll(images, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(images, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// until waits for a JavaScript predicate on the page.
	var debugRuns []string
	// A page that navigates (a form posted) ends a poll: it starts again
	// on the new page.
	until := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Until(deadline))))
			if err == nil {
				return
			}
			if time.Now().After(deadline) || ctx.Err() != nil || !strings.Contains(err.Error(), "navigated") && !strings.Contains(err.Error(), "context") && !strings.Contains(err.Error(), "Execution context") {
				for _, r := range debugRuns {
					st, err := engine.Status(context.Background(), e.client, r)
					t.Logf("run %s: %+v %v", r, st, err)
				}
				t.Fatalf("waiting for %s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	state := func(stage string) string {
		return fmt.Sprintf(`(function(){const n=[...document.querySelectorAll("svg [data-stage]")].find(n=>n.dataset.stage===%q); return n ? [...n.classList].find(c=>c.startsWith("st-")) : ""})()`, stage)
	}

	// Sign in with the token, sent back to the page asked for.
	main := g.push(e, "main")
	feature := g.push(e, "feature")
	// (Other tests' runs share the Temporal server: the runs page is
	// filtered to this repository's.)
	do("opening the runs page", chromedp.Navigate(e.url+"/runs?repo=shop"))
	if loc := eval(`location.pathname`); loc != "/login" {
		t.Fatalf("signed out, /runs shows %s", loc)
	}
	shot("login", 640)
	do("signing in", chromedp.SendKeys(chromedp.CSS("#token"), tok), chromedp.Click(chromedp.CSS(`form[action="/login"] button`)))
	until("the runs page", `location.pathname === "/runs" && location.search === "?repo=shop"`)
	until("both runs listed", fmt.Sprintf(`document.body.innerText.includes(%q) && document.body.innerText.includes(%q)`, main[:7], feature[:7]))

	runOf := func(sha string) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var list struct {
				Runs []struct {
					RunID string `json:"run_id"`
				}
			}
			req, _ := http.NewRequest("GET", e.url+"/api/v1/runs?sha="+sha, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				json.NewDecoder(resp.Body).Decode(&list)
				resp.Body.Close()
			}
			if len(list.Runs) == 1 {
				return list.Runs[0].RunID
			}
		}
		t.Fatalf("no run of %s", sha)
		return ""
	}
	mainRun, featureRun := runOf(main), runOf(feature)
	debugRuns = []string{mainRun, featureRun}

	// The run page, live: build runs, then (without a reload) the rest
	// follows up to the gate.
	do("opening the run", chromedp.Navigate(e.url+"/runs/"+mainRun))
	do("marking the page", chromedp.Evaluate[chromedp.Void](`window.sluiceNoReload = true`))
	until("build running", state("build")+` === "st-running"`)
	if got := eval(`String(document.querySelector("#retry").offsetParent === null && document.querySelector("section[data-stage=build] tbody button[name=from]").offsetParent === null && document.querySelector("#cancel").offsetParent !== null)`); got != "true" {
		t.Errorf("while the run runs, retry is offered or cancel is not")
	}
	if got := eval(state("deploy")); got != "st-pending" {
		t.Errorf("deploy is %s while build runs, want st-pending", got)
	}
	if err := os.WriteFile(filepath.Join(gates, "go-main"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	until("build succeeded", state("build")+` === "st-succeeded"`)
	until("the matrix succeeded", state("test[go=1.22]")+` === "st-succeeded" && `+state("test[go=1.23]")+` === "st-succeeded"`)
	until("the gate waiting", state("deploy")+` === "st-waiting_approval" && !document.querySelector("section[data-stage=deploy] [data-approval]").hidden`)
	if eval(`String(window.sluiceNoReload === true)`) != "true" {
		t.Fatal("the run page reloaded to show the new states")
	}
	if got := eval(`document.querySelector("section[data-stage=build] [data-field=state]").textContent + " " + document.querySelector("section[data-stage=build] tbody tr [data-field=attempt]").textContent`); got != "succeeded 1" {
		t.Errorf("build's section says %q, want its state and the step's attempt", got)
	}
	if got := eval(`document.querySelector("section[data-stage=deploy] .approval").innerText`); !strings.Contains(got, "Ships the shop to production.") || !strings.Contains(got, "Approvers: alice") {
		t.Errorf("the approval box says %q", got)
	}
	shot("run", 1100) // the graph and the gate

	// alice approves from the page; the run finishes.
	do("approving", chromedp.SendKeys(chromedp.CSS(`section[data-stage=deploy] input[name=reason]`), "ship it"),
		chromedp.Click(chromedp.CSS(`section[data-stage=deploy] button[value=approve]`)))
	until("the run succeeded", `document.getElementById("run-state") && document.getElementById("run-state").textContent === "succeeded"`)
	if got := eval(`document.querySelector("section[data-stage=deploy] [data-field=decision]").textContent`); got != "Approved by alice: ship it" {
		t.Errorf("the decision reads %q", got)
	}
	until("retry offered", `document.querySelector("section[data-stage=build] tbody button[name=from]").offsetParent !== null && document.querySelector("#cancel").offsetParent === null`)

	// A check's details link to a matrix instance opens the page there.
	do("opening a stage", chromedp.Navigate(e.url+"/runs/"+mainRun+"/stages/"+url.PathEscape("test[go=1.23]")))
	until("the stage in focus", `document.querySelector("section.stage.focus") && document.querySelector("section.stage.focus").dataset.stage === "test[go=1.23]" && document.querySelector("svg .node.focus").dataset.stage === "test[go=1.23]"`)

	// The other run is cancelled from its page.
	do("opening the other run", chromedp.Navigate(e.url+"/runs/"+featureRun))
	until("its build running", state("build")+` === "st-running"`)
	do("cancelling", chromedp.Click(chromedp.CSS(`#cancel`)))
	until("the run cancelled", `document.getElementById("run-state").textContent === "cancelled"`)

	do("the runs page", chromedp.Navigate(e.url+"/runs?repo=shop"))
	until("both runs ended", fmt.Sprintf(`[...document.querySelectorAll("tr.run-row")].filter(r => [%q, %q].includes(r.dataset.run) && /succeeded|cancelled/.test(r.innerText)).length === 2`, mainRun, featureRun))
	shot("runs", 640)
	// Runners on other hosts report to the registry (the server's own
	// runner does not).
	for _, r := range []engine.RunnerReport{
		{Name: "build-1", Labels: []string{"linux", "amd64"}, Version: "v0.9.0", MaxStages: 4, State: "busy", Stages: []string{mainRun + "/deploy"}},
		{Name: "gpu-1", Labels: []string{"linux", "gpu"}, Version: "v0.9.0", MaxStages: 1, State: "idle"},
	} {
		if err := engine.ReportRunner(ctx, e.client, r); err != nil {
			t.Fatal(err)
		}
	}
	do("the runners page", chromedp.Navigate(e.url+"/runners"))
	until("the runners", `document.querySelector('tr.runner-row[data-runner="build-1"]') && document.querySelector('tr.runner-row[data-runner="gpu-1"]')`)
	if got := eval(`document.querySelector('tr.runner-row[data-runner="build-1"]').innerText`); !strings.Contains(got, "amd64") || !strings.Contains(got, mainRun+" / deploy") || !strings.Contains(got, "v0.9.0") {
		t.Errorf("build-1's row reads %q", got)
	}
	shot("runners", 640)
	do("the schedules page", chromedp.Navigate(e.url+"/schedules"))
	until("the shop's schedule", `document.body.innerText.includes("0 3 * * *")`)
	shot("schedules", 640)
}
