package scan

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/scan/harbortest"
)

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var today = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func executor(env map[string]string) *Executor {
	return &Executor{
		PollInterval: 10 * time.Millisecond,
		Getenv:       func(k string) string { return env[k] },
		Now:          func() time.Time { return today },
	}
}

// step is a scan step of ref against the fake, with its credentials.
func step(s *harbortest.Server, ref string, mod func(*plan.ScanStep)) plan.Step {
	ss := &plan.ScanStep{
		Image: plan.Lit(ref), FailOn: "critical",
		Harbor: plan.Lit(s.URL), Username: plan.Lit("robot$ci"), Password: plan.Lit("s3cret"),
	}
	if mod != nil {
		mod(ss)
	}
	return plan.Step{Name: "api-scan", Kind: plan.KindScan, Scan: ss}
}

func run(t *testing.T, e *Executor, st plan.Step, dry bool) (steps.Result, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return runCtx(ctx, e, st, dry)
}

func runCtx(ctx context.Context, e *Executor, st plan.Step, dry bool) (steps.Result, string, error) {
	log := &logBuf{}
	res, err := e.Execute(ctx, steps.Request{RunID: "r1", StageID: "build", Step: st, Log: log, DryRun: dry})
	return res, log.String(), err
}

var findings = []harbortest.Finding{
	{ID: "CVE-2024-45337", Package: "golang.org/x/crypto", Version: "v0.30.0", FixVersion: "0.31.0", Severity: "Critical"},
	{ID: "CVE-2024-24790", Package: "stdlib", Version: "1.22.3", FixVersion: "1.22.4", Severity: "High"},
	{ID: "CVE-2023-0001", Package: "busybox", Version: "1.36.1", Severity: "Medium"},
	{ID: "CVE-2023-0002", Package: "busybox", Version: "1.36.1", Severity: "Low"},
	{ID: "CVE-2023-0003", Package: "busybox", Version: "1.36.1", Severity: "Negligible"},
	{ID: "CVE-2023-0004", Package: "busybox", Version: "1.36.1", Severity: "Unknown"},
}

func wantOutputs(t *testing.T, res steps.Result, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if res.Outputs[k] != v {
			t.Errorf("output %s = %q, want %q (outputs %v)", k, res.Outputs[k], v, res.Outputs)
		}
	}
}

func TestScanPasses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		findings []harbortest.Finding
		mod      func(*plan.ScanStep)
		want     map[string]string
		log      []string
	}{
		{
			name: "no findings", want: map[string]string{"critical": "0", "high": "0", "total": "0"},
			log: []string{"scan requested", "scan Success", "0 critical, 0 high, 0 medium, 0 low, 0 unknown (0 in all)"},
		},
		{
			name: "only allowed findings at or above fail_on", findings: findings,
			mod: func(ss *plan.ScanStep) {
				ss.FailOn = "high"
				ss.Allow = []plan.Allow{
					{ID: "CVE-2024-45337", Until: "2026-06-15", Reason: "not reachable"},
					{ID: "cve-2024-24790"},
				}
			},
			want: map[string]string{"critical": "1", "high": "1", "medium": "1", "low": "2", "unknown": "1", "total": "6"},
			log:  []string{"allowed CVE-2024-45337 in golang.org/x/crypto v0.30.0 (critical)", "allowed CVE-2024-24790"},
		},
		{
			name: "findings below fail_on", findings: findings[2:],
			want: map[string]string{"critical": "0", "medium": "1", "total": "4"},
		},
		{
			name: "fail_on none", findings: findings, mod: func(ss *plan.ScanStep) { ss.FailOn = "none" },
			want: map[string]string{"critical": "1", "total": "6"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := harbortest.New(t, harbortest.Options{Findings: tc.findings, ScanDuration: 50 * time.Millisecond})
			ref := s.Push(t, "web/api")
			res, log, err := run(t, executor(nil), step(s, ref, tc.mod), false)
			if err != nil {
				t.Fatalf("scan failed: %v\nlog:\n%s", err, log)
			}
			wantOutputs(t, res, tc.want)
			for _, l := range tc.log {
				if !strings.Contains(log, l) {
					t.Errorf("log lacks %q:\n%s", l, log)
				}
			}
			if s.Scans() != 1 {
				t.Errorf("%d scans started, want 1", s.Scans())
			}
		})
	}
}

func TestScanFailsOnHigh(t *testing.T) {
	s := harbortest.New(t, harbortest.Options{Findings: findings})
	ref := s.Push(t, "web/team/api") // a repository with a slash: encoded twice
	res, log, err := run(t, executor(nil), step(s, ref, func(ss *plan.ScanStep) { ss.FailOn = "high" }), false)
	t.Logf("log:\n%s\nerror: %v", log, err)
	if err == nil {
		t.Fatalf("scan passed with a critical and a high finding at fail_on = high; log:\n%s", log)
	}
	for _, want := range []string{"2 finding(s) at or above high are not allowed", "CVE-2024-45337, CVE-2024-24790", "allow block"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// The log's table lists each blocking finding with its fixed version;
	// findings below fail_on are not in it.
	for _, row := range [][]string{
		{"CVE-2024-45337", "golang.org/x/crypto", "v0.30.0", "0.31.0", "critical"},
		{"CVE-2024-24790", "stdlib", "1.22.3", "1.22.4", "high"},
	} {
		if !strings.Contains(log, strings.Join(row, "  ")) && !containsFields(log, row) {
			t.Errorf("log has no row %q:\n%s", row, log)
		}
	}
	if strings.Contains(log, "CVE-2023-0001") {
		t.Errorf("log lists a medium finding as blocking:\n%s", log)
	}
	wantOutputs(t, res, map[string]string{"critical": "1", "high": "1", "medium": "1", "low": "2", "unknown": "1", "total": "6"})
}

// containsFields reports whether a line of log has exactly these fields.
func containsFields(log string, fields []string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func TestExpiredAllowBlocks(t *testing.T) {
	s := harbortest.New(t, harbortest.Options{Findings: findings[:1]})
	ref := s.Push(t, "web/api")
	_, log, err := run(t, executor(nil), step(s, ref, func(ss *plan.ScanStep) {
		ss.Allow = []plan.Allow{{ID: "CVE-2024-45337", Until: "2026-06-14", Reason: "waiting for a release"}}
	}), false)
	if err == nil || !strings.Contains(err.Error(), "CVE-2024-45337") {
		t.Fatalf("err = %v, want the expired finding to block; log:\n%s", err, log)
	}
	if !strings.Contains(log, "the allow entry for CVE-2024-45337 expired after 2026-06-14") {
		t.Errorf("log does not report the expired allow entry:\n%s", log)
	}
	if !containsFields(log, []string{"CVE-2024-45337", "golang.org/x/crypto", "v0.30.0", "0.31.0", "critical"}) {
		t.Errorf("log does not list the finding:\n%s", log)
	}
}

func TestScanErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts harbortest.Options
		mod  func(*plan.ScanStep)
		push string // repository pushed; the step scans web/api
		want []string
	}{
		{
			name: "unknown artifact", push: "web/other",
			want: []string{"has no artifact", "was the image pushed to this Harbor?"},
		},
		{
			name: "wrong credentials", push: "web/api", mod: func(ss *plan.ScanStep) { ss.Password = plan.Lit("wrong") },
			want: []string{`refused the credentials of "robot$ci"`, "401"},
		},
		{
			name: "no scan permission", push: "web/api", opts: harbortest.Options{ReadOnly: true},
			want: []string{`"robot$ci" may not scan artifacts of project "web"`, "Create Scan"},
		},
		{
			name: "no scanner", push: "web/api", opts: harbortest.Options{NoScanner: true},
			want: []string{"cannot scan in project \"web\"", "no available scanner", "Interrogation Services"},
		},
		{
			name: "scan error", push: "web/api", opts: harbortest.Options{ScanError: "2026-06-15T12:00:00Z [ERROR] trivy: database download failed"},
			want: []string{"ended with status Error", "/scan/5f62c830", "/log", "database download failed"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := harbortest.New(t, tc.opts)
			ref := s.Push(t, tc.push)
			ref = strings.Replace(ref, tc.push, "web/api", 1)
			_, log, err := run(t, executor(nil), step(s, ref, tc.mod), false)
			if err == nil {
				t.Fatalf("scan passed; log:\n%s", log)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(log, "s3cret") {
				t.Errorf("the password leaked: %v\n%s", err, log)
			}
		})
	}
}

func TestTimeoutWhilePolling(t *testing.T) {
	s := harbortest.New(t, harbortest.Options{ScanDuration: time.Hour})
	ref := s.Push(t, "web/api")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, log, err := runCtx(ctx, executor(nil), step(s, ref, nil), false)
	if err == nil {
		t.Fatalf("scan passed; log:\n%s", log)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the step took %s past a 300ms deadline", took)
	}
	for _, w := range []string{"did not finish within", "last status: Running", "raise the step's timeout"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// TestRetryAfterTriggeredScan: an attempt that started a scan and died is
// retried; the retry waits for the running scan instead of failing on
// Harbor's 409, and a retry after the scan finished scans again.
func TestRetryAfterTriggeredScan(t *testing.T) {
	s := harbortest.New(t, harbortest.Options{Findings: findings[1:2], ScanDuration: 400 * time.Millisecond})
	ref := s.Push(t, "web/api")
	e := executor(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := runCtx(ctx, e, step(s, ref, nil), false); err == nil {
		t.Fatal("the first attempt finished before its deadline; the test needs it to time out")
	}
	res, log, err := run(t, e, step(s, ref, nil), false)
	if err != nil {
		t.Fatalf("retry failed: %v\nlog:\n%s", err, log)
	}
	if !strings.Contains(log, "already under way") {
		t.Errorf("log does not say the retry joined the running scan:\n%s", log)
	}
	if s.Scans() != 1 {
		t.Errorf("%d scans started, want 1: the retry must not start another", s.Scans())
	}
	wantOutputs(t, res, map[string]string{"high": "1", "total": "1"})

	// The scan is done: another run scans again and passes.
	res, log, err = run(t, e, step(s, ref, nil), false)
	if err != nil || s.Scans() != 2 {
		t.Fatalf("run after a finished scan: err %v, %d scans (want 2)\n%s", err, s.Scans(), log)
	}
	wantOutputs(t, res, map[string]string{"high": "1", "total": "1"})
}

func TestDryRun(t *testing.T) {
	s := harbortest.New(t, harbortest.Options{Findings: findings})
	ref := s.Push(t, "web/api")
	before := len(s.Requests())
	res, log, err := run(t, executor(nil), step(s, ref, func(ss *plan.ScanStep) { ss.FailOn = "high" }), true)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Requests()[before:]; len(got) != 0 {
		t.Errorf("a dry run sent %q", got)
	}
	want := "dry run: would scan " + ref + " in Harbor " + s.URL + " and fail on high+\n"
	if log != want {
		t.Errorf("log = %q, want %q", log, want)
	}
	if len(res.Outputs) != 0 || res.DryRun != "scan" {
		t.Errorf("outputs %v, dry run %q; want none, and the scan reported as a dry run", res.Outputs, res.DryRun)
	}
}

// TestResolve covers where the Harbor server and the credentials come
// from, and the steps that are reported as a dry run because no Harbor is
// configured.
func TestResolve(t *testing.T) {
	const dig = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name    string
		ss      plan.ScanStep
		env     map[string]string
		harbor  string // "" when no Harbor is configured
		user    string
		project string
		repo    string
		err     string
	}{
		{name: "step's harbor", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/web/api" + dig), Harbor: plan.Lit("https://h.example.com/"), Username: plan.Lit("robot$a"), Password: plan.Lit("p")},
			harbor: "https://h.example.com", user: "robot$a", project: "web", repo: "api"},
		{name: "runner's environment", ss: plan.ScanStep{Image: plan.Lit("localhost:5000/web/team/api" + dig)},
			env:    map[string]string{EnvURL: "http://127.0.0.1:8080", EnvUsername: "robot$env", EnvPassword: "p"},
			harbor: "http://127.0.0.1:8080", user: "robot$env", project: "web", repo: "team/api"},
		{name: "registry host with credentials", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/web/api" + dig)},
			env:    map[string]string{EnvUsername: "robot$env", EnvPassword: "p"},
			harbor: "https://harbor.example.com", user: "robot$env", project: "web", repo: "api"},
		{name: "local registry", ss: plan.ScanStep{Image: plan.Lit("localhost:5000/go-service/api" + dig)},
			env: map[string]string{EnvUsername: "robot$env", EnvPassword: "p"}, project: "go-service", repo: "api"},
		{name: "nothing configured", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/web/api" + dig)}, project: "web", repo: "api"},
		{name: "tag, not digest", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/web/api:1.0")}, err: "not pinned by digest"},
		{name: "no project", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/api" + dig)}, err: "has no Harbor project"},
		{name: "token from the step, name from the runner", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/web/api" + dig), Password: plan.Lit("token")},
			env:    map[string]string{EnvUsername: "robot$env"},
			harbor: "https://harbor.example.com", user: "robot$env", project: "web", repo: "api"},
		{name: "half credentials", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/web/api" + dig), Password: plan.Lit("token")}, project: "web", repo: "api"},
		{name: "local registry with half credentials", ss: plan.ScanStep{Image: plan.Lit("localhost:5000/go-service/api" + dig), Password: plan.Lit("token")}, project: "go-service", repo: "api"},
		{name: "bad harbor URL", ss: plan.ScanStep{Image: plan.Lit("harbor.example.com/web/api" + dig), Harbor: plan.Lit("harbor.example.com")}, err: "is not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := executor(tc.env).resolve(&tc.ss)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := ""
			if got.harbor != nil {
				h = got.harbor.String()
			} else if got.why == "" {
				t.Error("no Harbor and no reason why")
			}
			if h != tc.harbor || (h != "" && got.username != tc.user) || got.project != tc.project || got.repository != tc.repo {
				t.Errorf("got harbor %q user %q project %q repo %q; want %q %q %q %q", h, got.username, got.project, got.repository, tc.harbor, tc.user, tc.project, tc.repo)
			}
		})
	}
}

// TestNoHarborIsDryRun: the local stack's registry is not Harbor; the step
// reports what it would do and passes.
func TestNoHarborIsDryRun(t *testing.T) {
	ref := "localhost:5000/go-service/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	res, log, err := run(t, executor(nil), plan.Step{Name: "scan", Kind: plan.KindScan, Scan: &plan.ScanStep{Image: plan.Lit(ref), FailOn: "critical"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.DryRun != "scan" {
		t.Errorf("dry run %q, want the scan reported as a dry run", res.DryRun)
	}
	if !strings.HasPrefix(log, "dry run: would scan "+ref+" in Harbor and fail on critical+\n") || !strings.Contains(log, "SLUICE_HARBOR_URL") {
		t.Errorf("log:\n%s", log)
	}
}

func TestNoCredentials(t *testing.T) {
	s := harbortest.New(t, harbortest.Options{})
	ref := s.Push(t, "web/api")
	_, _, err := run(t, executor(nil), step(s, ref, func(ss *plan.ScanStep) { ss.Username, ss.Password = plan.Template{}, plan.Template{} }), false)
	if err == nil || !strings.Contains(err.Error(), "no username for Harbor") || !strings.Contains(err.Error(), "HARBOR_USERNAME") {
		t.Fatalf("err = %v, want one naming the credentials to set", err)
	}
	for _, r := range s.Requests() {
		if strings.Contains(r, "/api/v2.0/") {
			t.Errorf("sent %s without credentials", r)
		}
	}
}

// TestHeartbeatsWhilePolling: in an activity, the polls of a running scan
// record heartbeats with the scan's status.
func TestHeartbeatsWhilePolling(t *testing.T) {
	s := harbortest.New(t, harbortest.Options{ScanDuration: 200 * time.Millisecond})
	ref := s.Push(t, "web/api")
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	var mu sync.Mutex
	var statuses []string
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var status string
		if details.HasValues() {
			details.Get(&status)
		}
		mu.Lock()
		statuses = append(statuses, status)
		mu.Unlock()
	})
	scanActivity := func(ctx context.Context) (map[string]string, error) {
		res, _, err := runCtx(ctx, executor(nil), step(s, ref, nil), false)
		return res.Outputs, err
	}
	env.RegisterActivity(scanActivity)
	if _, err := env.ExecuteActivity(scanActivity); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The SDK throttles heartbeats (one now, the next within the
	// heartbeat timeout), so a short scan shows one.
	if len(statuses) == 0 || statuses[0] != "Running" {
		t.Errorf("heartbeats %q, want one with status Running", statuses)
	}
}
