package githubapp

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/server/githubapp/githubfake"
)

// writes counts the check run writes the fake received.
func writes(f *githubfake.Server) int {
	return f.Count("POST", "/repos/acme/web/check-runs") + f.Count("PATCH", "/repos/acme/web/check-runs/")
}

func annotations(n, from int) []Annotation {
	var out []Annotation
	for i := range n {
		out = append(out, Annotation{Path: fmt.Sprintf("src/f%03d.go", from+i), StartLine: from + i + 1, Level: "warning", Message: fmt.Sprintf("finding %d", from+i)})
	}
	return out
}

func TestCheckRunLifecycle(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})

	// A test can wait for the moment the run completes.
	done := make(chan githubfake.CheckRunState, 1)
	waitErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := f.WaitCheckRun(ctx, repo, func(st githubfake.CheckRunState) bool { return st.Status == "completed" })
		done <- st
		waitErr <- err
	}()

	id, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "sluice/build", HeadSHA: sha, ExternalID: "run-1", DetailsURL: "https://sluice.example/runs/1"})
	if err != nil {
		t.Fatal(err)
	}
	st, ok := f.CheckRun(repo, id)
	if !ok || st.Status != "queued" || st.Name != "sluice/build" || st.HeadSHA != sha || st.ExternalID != "run-1" ||
		st.DetailsURL != "https://sluice.example/runs/1" || st.AppID != f.AppID || st.Title != "" {
		t.Fatalf("after create: %+v", st)
	}

	started := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := c.UpdateCheckRun(ctx, repo, id, CheckRun{Status: "in_progress", StartedAt: started, Summary: "Running 3 jobs", Title: "Running"}); err != nil {
		t.Fatal(err)
	}
	st, _ = f.CheckRun(repo, id)
	if st.Status != "in_progress" || !st.StartedAt.Equal(started) || st.Name != "sluice/build" || st.Title != "Running" || st.Summary != "Running 3 jobs" {
		t.Fatalf("after in_progress (an update without a name keeps it): %+v", st)
	}
	select {
	case st := <-done:
		t.Fatalf("WaitCheckRun returned before completion: %+v", st)
	default:
	}

	completed := started.Add(90 * time.Second)
	actions := []Action{{Label: "Re-run", Description: "Run the pipeline again", Identifier: "rerun"}, {Label: "Cancel", Description: "Stop it", Identifier: "cancel"}}
	err = c.UpdateCheckRun(ctx, repo, id, CheckRun{Name: "sluice/build", Conclusion: "failure", CompletedAt: completed,
		Summary: "1 of 3 jobs failed", Text: "## test\nexit 1", Actions: actions, Annotations: annotations(2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	want := githubfake.CheckRunState{
		ID: id, AppID: f.AppID, Name: "sluice/build", HeadSHA: sha, ExternalID: "run-1", DetailsURL: "https://sluice.example/runs/1",
		Status: "completed", Conclusion: "failure", StartedAt: started, CompletedAt: completed,
		Title: "sluice/build", Summary: "1 of 3 jobs failed", Text: "## test\nexit 1",
		Annotations: []githubfake.Annotation{
			{Path: "src/f000.go", StartLine: 1, EndLine: 1, Level: "warning", Message: "finding 0"},
			{Path: "src/f001.go", StartLine: 2, EndLine: 2, Level: "warning", Message: "finding 1"},
		},
		Actions: []githubfake.Action{{Label: "Re-run", Description: "Run the pipeline again", Identifier: "rerun"}, {Label: "Cancel", Description: "Stop it", Identifier: "cancel"}},
		Writes:  3,
	}
	st, _ = f.CheckRun(repo, id)
	if !reflect.DeepEqual(st, want) {
		t.Errorf("after completion\n got %+v\nwant %+v (the title defaults to the name)", st, want)
	}
	if err := <-waitErr; err != nil {
		t.Fatal(err)
	}
	if got := <-done; got.ID != id || got.Conclusion != "failure" {
		t.Errorf("WaitCheckRun = %+v", got)
	}
	if n := writes(f); n != 3 {
		t.Errorf("%d writes, want 3", n)
	}
}

// TestCheckRunAnnotationsAppend: 120 annotations in three updates of at
// most 50 are all kept.
func TestCheckRunAnnotationsAppend(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	id, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "lint", HeadSHA: sha, Status: "in_progress"})
	if err != nil {
		t.Fatal(err)
	}
	all := annotations(120, 0)
	for from := 0; from < len(all); from += MaxAnnotations {
		batch := all[from:min(from+MaxAnnotations, len(all))]
		if err := c.UpdateCheckRun(ctx, repo, id, CheckRun{Name: "lint", Summary: "120 findings", Annotations: batch}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := f.CheckRun(repo, id)
	if len(st.Annotations) != 120 {
		t.Fatalf("%d annotations kept, want 120", len(st.Annotations))
	}
	for i, a := range st.Annotations {
		if a.Path != all[i].Path || a.Message != all[i].Message || a.StartLine != i+1 || a.EndLine != i+1 {
			t.Fatalf("annotation %d = %+v, want %+v", i, a, all[i])
		}
	}
	if n := f.Count("PATCH", "/repos/acme/web/check-runs/"); n != 3 {
		t.Errorf("%d updates, want 3", n)
	}
}

// TestCheckRunRefusedBeforeSending: what GitHub would refuse is an error
// naming the problem, and no request.
func TestCheckRunRefusedBeforeSending(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	id, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha})
	if err != nil {
		t.Fatal(err)
	}
	before := writes(f)
	for _, tc := range []struct {
		name string
		cr   CheckRun
		want string
	}{
		{"51 annotations", CheckRun{Name: "build", Summary: "s", Annotations: annotations(51, 0)}, "51 annotations in one request"},
		{"label over 20", CheckRun{Actions: []Action{{Label: "Re-run every failed job", Description: "d", Identifier: "x"}}}, "label \"Re-run every failed job\" is 23 characters"},
		{"label over 20 runes, 20 bytes less", CheckRun{Actions: []Action{{Label: strings.Repeat("é", 21), Description: "d", Identifier: "x"}}}, "is 21 characters"},
		{"4 actions", CheckRun{Actions: []Action{{"a", "a", "a"}, {"b", "b", "b"}, {"c", "c", "c"}, {"d", "d", "d"}}}, "4 actions"},
		{"description over 40", CheckRun{Actions: []Action{{Label: "a", Description: strings.Repeat("d", 41), Identifier: "x"}}}, "description"},
		{"identifier over 20", CheckRun{Actions: []Action{{Label: "a", Description: "d", Identifier: strings.Repeat("i", 21)}}}, "identifier"},
		{"summary of 66,000", CheckRun{Name: "build", Summary: strings.Repeat("x", 66000)}, "summary is 66000 characters"},
		{"text of 66,000", CheckRun{Name: "build", Summary: "s", Text: strings.Repeat("x", 66000)}, "text is 66000 characters"},
		{"completed without conclusion", CheckRun{Status: "completed"}, "status completed needs a conclusion"},
		{"conclusion with in_progress", CheckRun{Status: "in_progress", Conclusion: "success"}, "completes the run"},
		{"unknown conclusion", CheckRun{Conclusion: "stale"}, "conclusion \"stale\""},
		{"completed_at without conclusion", CheckRun{CompletedAt: time.Now()}, "completion time needs a conclusion"},
		{"output without title or name", CheckRun{Summary: "s"}, "needs a title"},
		{"output without summary", CheckRun{Name: "build", Annotations: annotations(1, 0)}, "needs a summary"},
		{"annotation level", CheckRun{Name: "build", Summary: "s", Annotations: []Annotation{{Path: "a", StartLine: 1, Level: "error", Message: "m"}}}, "level \"error\""},
		{"annotation lines", CheckRun{Name: "build", Summary: "s", Annotations: []Annotation{{Path: "a", StartLine: 5, EndLine: 2, Level: "notice", Message: "m"}}}, "not a range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.UpdateCheckRun(ctx, repo, id, tc.cr)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "programming error") {
				t.Errorf("err = %v, want one saying %q and that it is a programming error", err, tc.want)
			}
		})
	}
	if _, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build"}); err == nil || !strings.Contains(err.Error(), "no head SHA") {
		t.Errorf("create without a head SHA: %v", err)
	}
	if _, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha, Summary: "s", Annotations: annotations(51, 0)}); err == nil {
		t.Error("a create with 51 annotations was sent")
	}
	if n := writes(f); n != before {
		t.Errorf("%d requests were sent", n-before)
	}
	// Exactly at the limits is fine.
	err = c.UpdateCheckRun(ctx, repo, id, CheckRun{Name: "build", Summary: strings.Repeat("s", 65535), Text: strings.Repeat("é", 65535),
		Annotations: annotations(50, 0),
		Actions:     []Action{{strings.Repeat("l", 20), strings.Repeat("d", 40), strings.Repeat("i", 20)}, {"b", "b", "b"}, {"c", "c", "c"}}})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := f.CheckRun(repo, id); len(st.Annotations) != 50 || len(st.Actions) != 3 || len(st.Summary) != 65535 {
		t.Errorf("at the limits: %d annotations, %d actions, summary of %d", len(st.Annotations), len(st.Actions), len(st.Summary))
	}
}

// TestCheckRunRefusedByGitHub: what only GitHub knows is its error.
func TestCheckRunRefusedByGitHub(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	_, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: strings.Repeat("e", 40)})
	var re *RetryableError
	if err == nil || !strings.Contains(err.Error(), "No commit found") || errors.As(err, &re) {
		t.Errorf("unknown commit: %v", err)
	}
	other := f.AddCheckRun(repo, 99, "their-check", sha, "x")
	err = c.UpdateCheckRun(ctx, repo, other, CheckRun{Status: "in_progress"})
	if err == nil || !strings.Contains(err.Error(), "only be modified by the GitHub App that created it") {
		t.Errorf("another App's check run: %v", err)
	}
	err = c.UpdateCheckRun(ctx, repo, 123456789, CheckRun{Status: "in_progress"})
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Errorf("unknown check run: %v", err)
	}
	if st, _ := f.CheckRun(repo, other); st.Status != "queued" || st.Writes != 0 {
		t.Errorf("another App's run changed: %+v", st)
	}
}

// TestCheckRunNeedsChecksWrite: an installation without checks:write is
// refused, as GitHub refuses it, and the error is not retryable.
func TestCheckRunNeedsChecksWrite(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	f.SetPermissions(7, map[string]string{"contents": "read", "metadata": "read", "checks": "read"})
	_, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha})
	var re *RetryableError
	if err == nil || !strings.Contains(err.Error(), "Resource not accessible by integration") || errors.As(err, &re) {
		t.Fatalf("err = %v", err)
	}
	if len(f.CheckRuns(repo)) != 0 {
		t.Error("a check run was created")
	}
}

func TestFindCheckRun(t *testing.T) {
	f, app, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	other := f.Commit(repo, sha, map[string]string{"a": "b"})
	// The run sought is the oldest of 150 of the same name (filter=latest
	// would list only the newest), so on the second page of 100; another
	// App has a newer run with the same external ID, and another commit
	// one too.
	want := f.AddCheckRun(repo, app.ID, "build", sha, "run-42")
	for i := range 149 {
		f.AddCheckRun(repo, app.ID, "build", sha, fmt.Sprintf("run-%d", 1000+i))
	}
	theirs := f.AddCheckRun(repo, 99, "build", sha, "run-42")
	f.AddCheckRun(repo, app.ID, "build", other, "run-42")

	id, found, err := c.FindCheckRun(ctx, repo, sha, "run-42")
	if err != nil || !found || id != want {
		t.Fatalf("FindCheckRun = %d, %v, %v; want %d (not %d, another App's)", id, found, err, want, theirs)
	}
	var queries []string
	for _, r := range f.Requests() {
		if r.Path == "/repos/acme/web/commits/"+sha+"/check-runs" {
			queries = append(queries, r.Query)
		}
	}
	if len(queries) != 2 {
		t.Fatalf("%d list requests, want 2: %q", len(queries), queries)
	}
	for _, q := range queries {
		for _, p := range []string{"app_id=1", "filter=all", "per_page=100"} {
			if !strings.Contains(q, p) {
				t.Errorf("query %q lacks %s", q, p)
			}
		}
	}

	if id, found, err := c.FindCheckRun(ctx, repo, sha, "run-none"); err != nil || found || id != 0 {
		t.Errorf("FindCheckRun of an unknown external ID = %d, %v, %v", id, found, err)
	}
	if _, _, err := c.FindCheckRun(ctx, repo, sha, ""); err == nil {
		t.Error("an empty external ID was sought")
	}
	// Once created through the client, a run is found too.
	created, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "test", HeadSHA: other, ExternalID: "run-7"})
	if err != nil {
		t.Fatal(err)
	}
	if id, found, err := c.FindCheckRun(ctx, repo, other, "run-7"); err != nil || !found || id != created {
		t.Errorf("FindCheckRun after create = %d, %v, %v; want %d", id, found, err, created)
	}
}

// TestCheckRunRateLimits: a 429 and a secondary rate limit on check run
// writes are RetryableErrors with GitHub's wait.
func TestCheckRunRateLimits(t *testing.T) {
	retryable := func(t *testing.T, err error, after time.Duration) {
		t.Helper()
		var re *RetryableError
		if !errors.As(err, &re) || re.After != after {
			t.Fatalf("err = %v (%T), want a RetryableError after %s", err, err, after)
		}
	}
	t.Run("429 on create", func(t *testing.T) {
		f, _, c := setup(t)
		sha := f.Commit(repo, "", map[string]string{"a": "a"})
		f.FailNext("/repos/acme/web/check-runs", 429, 1, map[string]string{"Retry-After": "7"})
		_, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha})
		retryable(t, err, 7*time.Second)
		if len(f.CheckRuns(repo)) != 0 {
			t.Error("the refused create made a run")
		}
		if _, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha}); err != nil {
			t.Fatalf("the retry: %v", err)
		}
	})
	t.Run("secondary rate limit on update", func(t *testing.T) {
		f, _, c := setup(t)
		sha := f.Commit(repo, "", map[string]string{"a": "a"})
		id, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha})
		if err != nil {
			t.Fatal(err)
		}
		f.FailNext("/repos/acme/web/check-runs/", 403, 1, map[string]string{"Retry-After": "7"})
		retryable(t, c.UpdateCheckRun(ctx, repo, id, CheckRun{Status: "in_progress"}), 7*time.Second)
		// go-github then holds further calls itself until the wait is
		// over: still retryable, with what is left of the wait.
		before := len(f.Requests())
		err = c.UpdateCheckRun(ctx, repo, id, CheckRun{Status: "in_progress"})
		var re *RetryableError
		if !errors.As(err, &re) || re.After <= 0 || re.After > 7*time.Second || len(f.Requests()) != before {
			t.Errorf("the call during the wait: %v, %d requests", err, len(f.Requests())-before)
		}
	})
	t.Run("429 on statuses and comments", func(t *testing.T) {
		f, _, c := setup(t)
		sha := f.Commit(repo, "", map[string]string{"a": "a"})
		f.AddPull(repo, 3, sha, nil)
		f.FailNext("/repos/acme/web/statuses/", 429, 1, map[string]string{"Retry-After": "7"})
		retryable(t, c.CreateStatus(ctx, repo, sha, Status{State: "pending", Context: "sluice"}), 7*time.Second)
		f.FailNext("/repos/acme/web/issues/", 429, 1, map[string]string{"Retry-After": "7"})
		retryable(t, c.CreateComment(ctx, repo, 3, "hi"), 7*time.Second)
	})
}

// TestCheckRunTokenExpires: the installation token is reused while it is
// fresh; once it nears expiry (ghinstallation renews a minute before) or
// has expired, the next write gets a new one from ghinstallation and
// succeeds, never sending the old token.
func TestCheckRunTokenExpires(t *testing.T) {
	tokens := "/app/installations/7/access_tokens"
	noRefusals := func(t *testing.T, f *githubfake.Server) {
		t.Helper()
		for _, r := range f.Requests() {
			if r.Status == 401 {
				t.Errorf("%s %s was refused: an expired token was used", r.Method, r.Path)
			}
		}
	}
	t.Run("renewed before expiry", func(t *testing.T) {
		f, _, c := setup(t)
		sha := f.Commit(repo, "", map[string]string{"a": "a"})
		f.SetTokenTTL(62 * time.Second) // fresh for ghinstallation for about two seconds
		id, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.UpdateCheckRun(ctx, repo, id, CheckRun{Status: "in_progress"}); err != nil {
			t.Fatal(err)
		}
		if n := f.Count("POST", tokens); n != 1 {
			t.Errorf("%d tokens minted for two writes in a row, want 1", n)
		}
		time.Sleep(2100 * time.Millisecond)
		if err := c.UpdateCheckRun(ctx, repo, id, CheckRun{Conclusion: "success"}); err != nil {
			t.Fatal(err)
		}
		if n := f.Count("POST", tokens); n != 2 {
			t.Errorf("%d tokens minted, want 2", n)
		}
		if st, _ := f.CheckRun(repo, id); st.Conclusion != "success" || st.Writes != 3 {
			t.Errorf("run %+v", st)
		}
		noRefusals(t, f)
	})
	t.Run("expired", func(t *testing.T) {
		f, _, c := setup(t)
		sha := f.Commit(repo, "", map[string]string{"a": "a"})
		f.SetTokenTTL(time.Second)
		id, err := c.CreateCheckRun(ctx, repo, CheckRun{Name: "build", HeadSHA: sha})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // the fake now refuses the first token
		if err := c.UpdateCheckRun(ctx, repo, id, CheckRun{Status: "in_progress"}); err != nil {
			t.Fatal(err)
		}
		if n := f.Count("POST", tokens); n != 2 {
			t.Errorf("%d tokens minted, want 2", n)
		}
		if st, _ := f.CheckRun(repo, id); st.Status != "in_progress" {
			t.Errorf("status %s", st.Status)
		}
		noRefusals(t, f)
	})
}

func TestCreateStatus(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	long := strings.Repeat("é", 200)
	if err := c.CreateStatus(ctx, repo, sha, Status{State: "pending", Context: "sluice/ci", Description: long, TargetURL: "https://sluice.example/runs/1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateStatus(ctx, repo, sha, Status{State: "success", Context: "sluice/ci"}); err != nil {
		t.Fatal(err)
	}
	got := f.Statuses(repo, sha)
	if len(got) != 2 || got[0].State != "pending" || got[1].State != "success" || got[0].TargetURL != "https://sluice.example/runs/1" || got[1].Description != "" {
		t.Fatalf("statuses %+v", got)
	}
	if d := []rune(got[0].Description); len(d) != 140 || d[139] != '…' || string(d[:139]) != strings.Repeat("é", 139) {
		t.Errorf("description %q (%d runes), want 139 runes and an ellipsis", got[0].Description, len(d))
	}
	if err := c.CreateStatus(ctx, repo, sha, Status{State: "done", Context: "sluice/ci"}); err == nil || !strings.Contains(err.Error(), "state \"done\"") {
		t.Errorf("bad state: %v", err)
	}
	if err := c.CreateStatus(ctx, repo, strings.Repeat("e", 40), Status{State: "pending", Context: "sluice/ci"}); err == nil || !strings.Contains(err.Error(), "No commit found") {
		t.Errorf("unknown commit: %v", err)
	}
}

// TestStatusLimit: GitHub keeps 1,000 statuses per commit and context
// (case-insensitive), and refuses the next with a 422.
func TestStatusLimit(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	for i := range 1000 {
		if err := c.CreateStatus(ctx, repo, sha, Status{State: "pending", Context: "sluice/ci", Description: fmt.Sprint(i)}); err != nil {
			t.Fatalf("status %d: %v", i, err)
		}
	}
	for _, context := range []string{"sluice/ci", "SLUICE/CI"} {
		err := c.CreateStatus(ctx, repo, sha, Status{State: "success", Context: context})
		var re *RetryableError
		if err == nil || !strings.Contains(err.Error(), "This SHA and context has reached the maximum number of statuses.") || errors.As(err, &re) {
			t.Errorf("status 1001 in context %s: %v", context, err)
		}
	}
	if err := c.CreateStatus(ctx, repo, sha, Status{State: "success", Context: "sluice/other"}); err != nil {
		t.Errorf("another context: %v", err)
	}
	if n := len(f.Statuses(repo, sha)); n != 1001 {
		t.Errorf("%d statuses kept, want 1001", n)
	}
}

func TestCreateComment(t *testing.T) {
	f, _, c := setup(t)
	sha := f.Commit(repo, "", map[string]string{"a": "a"})
	f.AddPull(repo, 3, sha, []string{"a"})
	f.AddIssue(repo, 4)
	for _, body := range []string{"Pipeline **failed**: [logs](https://sluice.example/runs/1)", "Re-run passed"} {
		if err := c.CreateComment(ctx, repo, 3, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CreateComment(ctx, repo, 4, "on an issue"); err != nil {
		t.Fatal(err)
	}
	if got := f.Comments(repo, 3); !reflect.DeepEqual(got, []string{"Pipeline **failed**: [logs](https://sluice.example/runs/1)", "Re-run passed"}) {
		t.Errorf("comments on #3: %q", got)
	}
	if got := f.Comments(repo, 4); !reflect.DeepEqual(got, []string{"on an issue"}) {
		t.Errorf("comments on #4: %q", got)
	}
	var nf *NotFoundError
	if err := c.CreateComment(ctx, repo, 99, "x"); !errors.As(err, &nf) {
		t.Errorf("comment on a missing number: %v", err)
	}
	before := f.Count("POST", "/repos/acme/web/issues/")
	if err := c.CreateComment(ctx, repo, 3, "  \n"); err == nil {
		t.Error("an empty comment was accepted")
	}
	if err := c.CreateComment(ctx, repo, 3, strings.Repeat("x", 65537)); err == nil || !strings.Contains(err.Error(), "65536") {
		t.Errorf("a long comment: %v", err)
	}
	if n := f.Count("POST", "/repos/acme/web/issues/"); n != before {
		t.Errorf("%d refused comments were sent", n-before)
	}

	// Without issues:write, pull_requests:write still comments on a pull
	// request, not on an issue. (A new installation: tokens keep the
	// permissions they were minted with.)
	f2, _, c2 := setup(t)
	f2.SetPermissions(7, map[string]string{"metadata": "read", "pull_requests": "write"})
	f2.AddPull(repo, 3, f2.Commit(repo, "", map[string]string{"a": "a"}), nil)
	f2.AddIssue(repo, 4)
	if err := c2.CreateComment(ctx, repo, 3, "ok"); err != nil {
		t.Errorf("pull request comment with pull_requests:write: %v", err)
	}
	if err := c2.CreateComment(ctx, repo, 4, "no"); err == nil || !strings.Contains(err.Error(), "Resource not accessible by integration") {
		t.Errorf("issue comment without issues:write: %v", err)
	}
}

func TestPullRequest(t *testing.T) {
	f, _, c := setup(t)
	base := f.Commit(repo, "", map[string]string{"a": "a"})
	f.SetBranch(repo, "main", base)
	head := f.Commit(repo, base, map[string]string{"a": "b"})
	f.AddPull(repo, 5, head, []string{"a"})
	f.AddForkPull(repo, 6, "mallory/web", "patch-1", head, []string{"a"})
	// main moves on: a pull request's base is main when it was opened.
	f.SetBranch(repo, "main", f.Commit(repo, base, map[string]string{"c": "c"}))
	f.ClosePull(repo, 5)

	got, err := c.PullRequest(ctx, repo, 5)
	want := PullRequest{Number: 5, HeadSHA: head, HeadRef: "pr-5", HeadRepo: repo, BaseRef: "main", BaseSHA: base, Fork: false, Open: false}
	if err != nil || got != want {
		t.Errorf("PullRequest(5) = %+v, %v; want %+v", got, err, want)
	}
	got, err = c.PullRequest(ctx, repo, 6)
	want = PullRequest{Number: 6, HeadSHA: head, HeadRef: "patch-1", HeadRepo: "mallory/web", BaseRef: "main", BaseSHA: base, Fork: true, Open: true}
	if err != nil || got != want {
		t.Errorf("PullRequest(6) = %+v, %v; want %+v", got, err, want)
	}
	var nf *NotFoundError
	if _, err := c.PullRequest(ctx, repo, 7); !errors.As(err, &nf) {
		t.Errorf("missing pull request: %v", err)
	}
}
