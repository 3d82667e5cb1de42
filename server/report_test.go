package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

// checksPipeline has a stage that succeeds and reads a secret, one that
// fails after a few lines of log, one that succeeds beside it, and a
// deploy that waits for alice's approval.
// webHead is the pipeline block and the secret the pipelines of these
// tests share.
const webHead = `pipeline "web" {
  on "push" { branches = ["main"] }
  on "pull_request" { branches = ["main"] }
}

secret "token" {
  env = "SLUICE_TEST_CHECKS_TOKEN"
}

`

const checksPipeline = webHead + `stage "build" {
  step "run" "compile" {
    command = ["sh", "-c", "echo building; echo token=[$TOKEN]"]
    env     = { TOKEN = secret.token }
  }
}

stage "test" {
  needs = [stage.build]
  step "run" "unit" {
    command = ["sh", "-c", "echo first line; printf '<testsuite name=\"pkg\"><testcase classname=\"pkg\" name=\"TestA\" file=\"src/a_test.go\" line=\"3\"><failure message=\"want 1, got 2\">want 1, got 2</failure></testcase></testsuite>' > report.xml; echo boom: the widget broke; exit 3"]
    junit   = ["report.xml"]
  }
}

stage "lint" {
  needs = [stage.build]
  step "run" "vet" {
    command = ["sh", "-c", "sleep ${var.lint_sleep}"]
  }
}

variable "lint_sleep" {
  default = "0"
}

stage "deploy" {
  needs = [stage.lint]
  approval {
    approvers = ["alice"]
  }
  step "run" "ship" {
    command = ["echo", "shipped"]
  }
}
`

// startChecks brings up a server with its own runner (runs run) as the
// App of a fake GitHub whose repository runners clone from a bare
// repository exported from the fake.
func startChecks(t *testing.T) (*env, string) {
	t.Helper()
	t.Setenv("SLUICE_TEST_CHECKS_TOKEN", "s3cr3t-value-for-checks")
	// Commit statuses too, for branch protection on statuses.
	e := startWith(t, func(c *server.Config) { c.NoRunner, c.GitHub.CommitStatuses = false, true })
	e.clone = filepath.Join(t.TempDir(), "hello.git")
	return e, e.clone
}

// pushTo delivers a push of head to main (a new branch), after exporting
// the fake's repository to bare for runners to clone.
func (e *env) pushTo(bare, id, head, message string) server.DeliveryResult {
	e.t.Helper()
	e.gh.SetBranch(repo, "main", head)
	if err := e.gh.ExportGit(repo, bare); err != nil {
		e.t.Fatal(err)
	}
	body := fixture(e.t, "push/with-new-branch.payload.json", func(m map[string]any) {
		m["ref"], m["before"], m["after"] = "refs/heads/main", strings.Repeat("0", 40), head
		m["created"], m["deleted"], m["forced"] = true, false, false
		m["head_commit"] = map[string]any{"id": head, "message": message}
		m["repository"].(map[string]any)["clone_url"] = bare
	})
	if code, out := e.deliver("push", id, body); code != http.StatusAccepted {
		e.t.Fatalf("push %s: %d %s", id, code, out)
	}
	return e.result(id)
}

// pushRun is pushTo for a push that starts exactly one run: its ID.
func (e *env) pushRun(bare, id, head, message string) string {
	e.t.Helper()
	res := e.pushTo(bare, id, head, message)
	if len(res.Runs) != 1 {
		e.t.Fatalf("push %s started %+v, want one run", id, res)
	}
	return res.Runs[0].RunID
}

// check waits until the check run named name on sha satisfies done.
func (e *env) check(sha, name string, done func(githubfake.CheckRunState) bool) githubfake.CheckRunState {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := e.gh.WaitCheckRun(ctx, repo, func(c githubfake.CheckRunState) bool {
		return c.HeadSHA == sha && c.Name == name && done(c)
	})
	if err != nil {
		var all []string
		for _, c := range e.gh.CheckRuns(repo) {
			all = append(all, fmt.Sprintf("%s=%s/%s", c.Name, c.Status, c.Conclusion))
		}
		e.t.Fatalf("check %q on %.7s: %v; the checks are %s", name, sha, err, strings.Join(all, ", "))
	}
	return c
}

func completed(conclusion string) func(githubfake.CheckRunState) bool {
	return func(c githubfake.CheckRunState) bool { return c.Status == "completed" && c.Conclusion == conclusion }
}

// A run's checks through a success, a failure, an approval asked, refused
// and given, and the run's end; commit statuses beside them.
func TestChecksReportARun(t *testing.T) {
	e, bare := startChecks(t)
	e.gh.SetPermission(repo, "alice", "write")
	e.gh.SetPermission(repo, "bob", "write")
	e.gh.SetPermission(repo, "mallory", "read")
	head := e.commit("", map[string]string{"src/a_test.go": "package a\n\nfunc TestA() {}\n", ".sluice/web.hcl": strings.Replace(checksPipeline, `stage "test" {`, `stage "test" {
  continue_on_error = true`, 1)})
	runID := e.pushRun(bare, "checks-1", head, "first")

	build := e.check(head, "web / build", completed("success"))
	if build.Writes > 3 || build.DetailsURL == "" || !strings.Contains(build.Summary, "compile") {
		t.Errorf("build check: %d writes, details %q, summary %q", build.Writes, build.DetailsURL, build.Summary)
	}
	if id, key, ok := server.ParseExternalID(build.ExternalID); !ok || id != runID || key != "stage:build" {
		t.Errorf("build check external_id %q does not name run %s and stage build", build.ExternalID, runID)
	}
	test := e.check(head, "web / test", completed("failure"))
	if !strings.Contains(test.Text, "boom: the widget broke") || !strings.Contains(test.Text, "first line") {
		t.Errorf("the failed stage's check does not show the end of its log:\n%s", test.Text)
	}
	if len(test.Annotations) != 2 || test.Annotations[1].Path != ".sluice/web.hcl" || test.Annotations[1].StartLine != 20 || test.Annotations[1].Level != "failure" {
		t.Errorf("the failed stage's annotations are %+v, want a failure at .sluice/web.hcl:20 (the step)", test.Annotations)
	}
	if a := test.Annotations[0]; a.Path != "src/a_test.go" || a.StartLine != 3 || a.Title != "pkg.TestA" || a.Message != "want 1, got 2" {
		t.Errorf("the failed test's annotation is %+v, want src/a_test.go:3 pkg.TestA", a)
	}
	if !strings.Contains(test.Summary, "0 passed, 1 failed") {
		t.Errorf("the stage's summary does not count the tests:\n%s", test.Summary)
	}
	if strings.Contains(test.Text+test.Summary, "s3cr3t") {
		t.Error("a secret's value reached GitHub")
	}

	// The deploy waits for approval: a completed action_required check
	// with Approve and Reject buttons.
	gate := e.check(head, "web / deploy", completed("action_required"))
	if len(gate.Actions) != 2 || gate.Actions[0].Identifier != server.ActionApprove || gate.Actions[1].Identifier != server.ActionReject {
		t.Fatalf("the approval check's buttons are %+v", gate.Actions)
	}
	click := func(id, user, identifier string) server.DeliveryResult {
		body := fixture(t, "check_run/requested_action.payload.json", func(m map[string]any) {
			cr := m["check_run"].(map[string]any)
			cr["id"], cr["external_id"], cr["head_sha"], cr["name"] = gate.ID, gate.ExternalID, head, gate.Name
			m["requested_action"] = map[string]any{"identifier": identifier}
			m["sender"].(map[string]any)["login"] = user
			m["repository"].(map[string]any)["full_name"] = repo
		})
		if code, out := e.deliver("check_run", id, body); code != http.StatusAccepted {
			t.Fatalf("click: %d %s", code, out)
		}
		return e.result(id)
	}
	// Someone without write access, and a writer who is not an approver,
	// are refused, on the check itself.
	if r := click("click-1", "mallory", server.ActionApprove); len(r.Refused) != 1 || !strings.Contains(r.Refused[0], "read access") {
		t.Errorf("mallory's click: %+v", r)
	}
	if r := click("click-2", "bob", server.ActionApprove); len(r.Refused) != 1 || !strings.Contains(r.Refused[0], "not one of the approvers") {
		t.Errorf("bob's click: %+v", r)
	}
	if c, _ := e.gh.CheckRun(repo, gate.ID); !strings.Contains(c.Summary, "not accepted") || c.Conclusion != "action_required" {
		t.Errorf("the refusal is not on the check: %s %q", c.Conclusion, c.Summary)
	}
	if st, _ := engine.Status(context.Background(), e.client, runID); st.State != engine.StateWaitingApproval && st.State != engine.StateRunning {
		t.Fatalf("after refused clicks the run is %s", st.State)
	}
	// In the pull request, bob's /sluice approve is refused the same way.
	e.gh.AddPull(repo, 4, head, []string{".sluice/web.hcl"})
	if r := e.comment("approve-c1", 4, "bob", "/sluice approve deploy"); len(r.Refused) != 1 || !strings.Contains(r.Refused[0], "not one of the approvers") {
		t.Errorf("bob's /sluice approve: %+v", r)
	}
	if c := e.gh.Comments(repo, 4); len(c) != 1 || !strings.Contains(c[0], "not one of the approvers") {
		t.Errorf("bob was answered %q", c)
	}
	if r := click("click-3", "alice", server.ActionApprove); len(r.Done) != 1 {
		t.Errorf("alice's click: %+v", r)
	}
	deploy := e.check(head, "web / deploy", completed("success"))
	if deploy.ID == gate.ID || !strings.Contains(deploy.Summary, "Approved by alice") {
		t.Errorf("the deploy after its approval is check #%d (the approval's was #%d), summary:\n%s", deploy.ID, gate.ID, deploy.Summary)
	}
	e.check(head, "web / lint", completed("success"))
	run := e.check(head, "web", completed("success"))
	for _, want := range []string{"/stages/build) | succeeded |", "/stages/test) | failed |", "/stages/deploy) | succeeded |"} {
		if !strings.Contains(run.Summary, want) {
			t.Errorf("the pipeline's check summary lacks %q:\n%s", want, run.Summary)
		}
	}

	// One commit status context for the pipeline, pending then success,
	// posted only when the run's state changed.
	var sts []githubfake.StatusState
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if sts = e.gh.Statuses(repo, head); len(sts) > 0 && sts[len(sts)-1].State == "success" {
			break
		}
	}
	if len(sts) < 2 || len(sts) > 3 || sts[0].State != "pending" || sts[len(sts)-1].State != "success" {
		t.Errorf("commit statuses %+v, want pending then success", sts)
	}
	for _, s := range sts {
		if s.Context != "sluice/web" {
			t.Errorf("a commit status has context %q, want sluice/web", s.Context)
		}
	}

	// Writes: about three a stage, never one per log line.
	writes := 0
	for _, c := range e.gh.CheckRuns(repo) {
		if c.HeadSHA == head {
			writes += c.Writes
			if c.Writes > 3 && c.ID != gate.ID { // the approval's check: also the refusals
				t.Errorf("check %q was written %d times", c.Name, c.Writes)
			}
		}
	}
	stages := 4
	if writes > 3*stages+2+2+2 { // the approval's check: asked, the refusals written on it
		t.Errorf("%d check writes for %d stages", writes, stages)
	}
	t.Logf("check writes for a 4-stage run with an approval: %d", writes)
}

const forkBase = webHead + `stage "build" {
  step "run" "compile" {
    command = ["sh", "-c", "echo base pipeline token=[$TOKEN]"]
    env     = { TOKEN = secret.token }
  }
}

stage "deploy" {
  needs = [stage.build]
  approval {
    approvers = ["alice"]
  }
  step "run" "ship" {
    command = ["echo", "shipped"]
  }
}
`

// comment posts a pull request comment by user and returns what the
// delivery did.
func (e *env) comment(id string, number int, user, body string) server.DeliveryResult {
	e.t.Helper()
	payload := fixture(e.t, "issue_comment/created.payload.json", func(m map[string]any) {
		issue := m["issue"].(map[string]any)
		issue["number"] = number
		issue["pull_request"] = map[string]any{"url": fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", repo, number)}
		m["comment"].(map[string]any)["body"] = body
		m["sender"].(map[string]any)["login"] = user
		m["repository"].(map[string]any)["full_name"] = repo
		m["repository"].(map[string]any)["clone_url"] = e.clone
	})
	if code, out := e.deliver("issue_comment", id, payload); code != http.StatusAccepted {
		e.t.Fatalf("comment %s: %d %s", id, code, out)
	}
	return e.result(id)
}

// A pull request from a fork that edits .sluice: it waits for someone with
// write access; approved, it runs the base branch's pipeline with no
// secrets and no approval stage; a new push asks again; a re-run of its
// check suite (no branch, no pull request listed) runs it.
func TestForkPullRequest(t *testing.T) {
	e, bare := startChecks(t)
	e.gh.SetPermission(repo, "alice", "write")
	base := e.commit("", map[string]string{".sluice/web.hcl": forkBase})
	e.gh.SetBranch(repo, "main", base)
	evil := strings.ReplaceAll(forkBase, "echo base pipeline", "echo fork pipeline")
	head := e.commit(base, map[string]string{".sluice/web.hcl": evil, "src/a.go": "package a"})
	e.gh.AddForkPull(repo, 7, "stranger/Hello-World", "feature", head, []string{".sluice/web.hcl", "src/a.go"})
	if err := e.gh.ExportGit(repo, bare); err != nil {
		t.Fatal(err)
	}
	prEvent := func(id, sha string) server.DeliveryResult {
		body := fixture(t, "pull_request/opened.payload.json", func(m map[string]any) {
			m["number"] = 7
			pr := m["pull_request"].(map[string]any)
			pr["number"] = 7
			h, b := pr["head"].(map[string]any), pr["base"].(map[string]any)
			h["sha"], h["ref"] = sha, "feature"
			h["repo"].(map[string]any)["full_name"] = "stranger/Hello-World"
			h["repo"].(map[string]any)["id"] = 999999
			b["sha"], b["ref"] = base, "main"
			b["repo"].(map[string]any)["full_name"] = repo
			m["sender"].(map[string]any)["login"] = "stranger"
			m["repository"].(map[string]any)["full_name"] = repo
			m["repository"].(map[string]any)["clone_url"] = bare
		})
		if code, out := e.deliver("pull_request", id, body); code != http.StatusAccepted {
			t.Fatalf("pull_request: %d %s", code, out)
		}
		return e.result(id)
	}
	if res := prEvent("fork-1", head); len(res.Runs) != 0 || len(res.Gated) != 1 {
		t.Fatalf("the fork's pull request started %+v; want nothing started and web gated", res)
	}
	gate := e.check(head, "web", completed("action_required"))
	if len(gate.Actions) != 1 || gate.Actions[0].Identifier != server.ActionRun {
		t.Errorf("the gate check's buttons: %+v", gate.Actions)
	}

	// The author cannot approve their own code; alice (write) can.
	if res := e.comment("c-1", 7, "stranger", "/sluice ok-to-test"); len(res.Runs) != 0 || len(res.Refused) != 1 {
		t.Errorf("stranger's ok-to-test: %+v", res)
	}
	if c := e.gh.Comments(repo, 7); len(c) != 1 || !strings.Contains(c[0], "write access") {
		t.Errorf("stranger was answered %q", c)
	}
	res := e.comment("c-2", 7, "alice", "LGTM\n/sluice ok-to-test")
	if len(res.Runs) != 1 {
		t.Fatalf("alice's ok-to-test started %+v", res)
	}
	runID := res.Runs[0].RunID
	st, err := engine.Wait(context.Background(), e.client, runID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != engine.StateSucceeded {
		t.Fatalf("the fork's run is %s: %s", st.State, st.Error)
	}
	if d, _ := st.Stage("deploy"); d.State != engine.StateSkipped || !strings.Contains(d.Reason, "fork") {
		t.Errorf("the approval stage of a fork's run is %s (%s), want skipped for the fork", d.State, d.Reason)
	}
	rc, err := e.srv.Stack().Logs.Open(runID, "build", "compile")
	if err != nil {
		t.Fatal(err)
	}
	b := new(strings.Builder)
	_, _ = fmt.Fprint(b, readAll(t, rc))
	if log := b.String(); !strings.Contains(log, "base pipeline token=[]") || strings.Contains(log, "fork pipeline") || strings.Contains(log, "s3cr3t") {
		t.Errorf("the fork's run did not run the base pipeline without secrets:\n%s", log)
	}
	e.check(head, "web", completed("success"))

	// A new push to the fork asks again.
	head2 := e.commit(head, map[string]string{"src/a.go": "package a // 2"})
	e.gh.AddForkPull(repo, 7, "stranger/Hello-World", "feature", head2, []string{".sluice/web.hcl", "src/a.go"})
	if err := e.gh.ExportGit(repo, bare); err != nil {
		t.Fatal(err)
	}
	if res := prEvent("fork-2", head2); len(res.Runs) != 0 || len(res.Gated) != 1 {
		t.Fatalf("a new push to the fork started %+v; want it gated again", res)
	}
	e.check(head2, "web", completed("action_required"))

	// Re-run all checks, by alice, on the fork's suite: GitHub lists no
	// pull request and no branch for it.
	body := fixture(t, "check_suite/rerequested.payload.json", func(m map[string]any) {
		cs := m["check_suite"].(map[string]any)
		cs["head_sha"], cs["head_branch"], cs["pull_requests"] = head2, nil, []any{}
		m["sender"].(map[string]any)["login"] = "alice"
		m["repository"].(map[string]any)["full_name"] = repo
		m["repository"].(map[string]any)["clone_url"] = bare
	})
	if code, out := e.deliver("check_suite", "fork-suite-1", body); code != http.StatusAccepted {
		t.Fatalf("check_suite: %d %s", code, out)
	}
	if res := e.result("fork-suite-1"); len(res.Runs) != 1 {
		t.Fatalf("re-running the fork's suite started %+v", res)
	}
	e.check(head2, "web", completed("success"))
}

func readAll(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Commands from a pull request's comments and GitHub's rate limit: a
// reader's /sluice cancel is answered, a writer's cancels the run, whose
// checks say cancelled; /sluice retry runs it again with new checks; a
// 429 on the checks delays the checks, not the run. Re-running the failed
// stage's check retries it.
func TestCheckCommands(t *testing.T) {
	e, bare := startChecks(t)
	e.gh.SetPermission(repo, "alice", "write")
	e.gh.SetPermission(repo, "mallory", "read")
	hold := filepath.Join(t.TempDir(), "hold")
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pipeline := fmt.Sprintf(`pipeline "web" {
  on "push" { branches = ["main"] }
}

stage "build" {
  step "run" "wait" {
    command = ["sh", "-c", "echo waiting; while [ -f %s ]; do sleep 0.1; done"]
  }
}

stage "test" {
  needs = [stage.build]
  step "run" "unit" {
    command = ["sh", "-c", "test -f %s.pass || { echo failing; exit 1; }"]
  }
}
`, hold, hold)
	head := e.commit("", map[string]string{".sluice/web.hcl": pipeline})
	e.gh.AddPull(repo, 3, head, []string{".sluice/web.hcl"})
	e.gh.FailNext("/repos/"+repo+"/check-runs", http.StatusTooManyRequests, 1, map[string]string{"Retry-After": "2"})
	runID := e.pushRun(bare, "cmd-1", head, "wait")
	// The run goes on while GitHub holds the checks back.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		st, err := engine.Status(ctx, e.client, runID)
		if err == nil && st.State == engine.StateRunning {
			if s, _ := st.Stage("build"); s.State == engine.StateRunning {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the run does not start its first stage: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.check(head, "web / build", func(c githubfake.CheckRunState) bool { return c.Status == "in_progress" })
	limited := 0
	for _, r := range e.gh.Requests() {
		if r.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 1 {
		t.Errorf("%d requests were rate limited, want the 1 injected", limited)
	}

	if r := e.comment("cmd-c1", 3, "mallory", "/sluice cancel"); len(r.Refused) != 1 {
		t.Errorf("mallory's cancel: %+v", r)
	}
	if st, _ := engine.Status(context.Background(), e.client, runID); st.State.Done() {
		t.Fatalf("a reader's /sluice cancel ended the run: %s", st.State)
	}
	if r := e.comment("cmd-c2", 3, "alice", "/sluice cancel"); len(r.Done) != 1 {
		t.Fatalf("alice's cancel: %+v", r)
	}
	first := e.check(head, "web / build", completed("cancelled"))
	e.check(head, "web", completed("cancelled"))
	if c := e.gh.Comments(repo, 3); len(c) != 2 || !strings.Contains(c[0], "write access") || !strings.Contains(c[1], "cancelling "+runID) {
		t.Errorf("the replies are %q", c)
	}

	// /sluice retry: a new execution, with new checks.
	os.Remove(hold)
	if r := e.comment("cmd-c3", 3, "alice", "/sluice retry"); len(r.Done) != 1 {
		t.Fatalf("alice's retry: %+v", r)
	}
	second := e.check(head, "web / build", func(c githubfake.CheckRunState) bool { return c.ID != first.ID && c.Conclusion == "success" })
	failed := e.check(head, "web / test", completed("failure"))
	e.check(head, "web", func(c githubfake.CheckRunState) bool { return c.Conclusion == "failure" })
	if second.ExternalID == first.ExternalID {
		t.Errorf("the retry's check has the first's external_id %q", first.ExternalID)
	}

	// Re-run of the failed stage's check: the run is retried from it.
	if err := os.WriteFile(hold+".pass", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	body := fixture(t, "check_run/rerequested.payload.json", func(m map[string]any) {
		cr := m["check_run"].(map[string]any)
		cr["id"], cr["name"], cr["external_id"], cr["head_sha"] = failed.ID, failed.Name, failed.ExternalID, head
		m["sender"].(map[string]any)["login"] = "alice"
		m["repository"].(map[string]any)["full_name"] = repo
	})
	if code, out := e.deliver("check_run", "cmd-rerun-1", body); code != http.StatusAccepted {
		t.Fatalf("rerequested: %d %s", code, out)
	}
	if r := e.result("cmd-rerun-1"); len(r.Done) != 1 || !strings.Contains(r.Done[0], runID) {
		t.Fatalf("re-running the failed check: %+v", r)
	}
	e.check(head, "web / test", func(c githubfake.CheckRunState) bool { return c.ID != failed.ID && c.Conclusion == "success" })
	st, err := engine.Wait(context.Background(), e.client, runID)
	if err != nil || st.State != engine.StateSucceeded || st.ResumedFrom == "" {
		t.Errorf("after the re-run the run is %s (resumed from %q): %v", st.State, st.ResumedFrom, err)
	}
	if b, _ := st.Stage("build"); len(b.Steps) != 1 || !b.Steps[0].Resumed {
		t.Errorf("the re-run ran build again: %+v", b)
	}
}
