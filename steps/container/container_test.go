package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/internal/testing/buildtest"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/buildkit"
	"github.com/sluice-ci/sluice/steps/image"
	"github.com/sluice-ci/sluice/steps/run"
)

var env *buildtest.Env

func TestMain(m *testing.M) { os.Exit(buildtest.Main(m, &env)) }

type syncBuffer = buildtest.Log

// executor is what a runner with BuildKit registers for run steps: the
// host executor, handing steps with an image to the container executor.
var conn = &buildkit.Conn{}

func executor() *run.Executor {
	conn.Addr = env.Addr
	return &run.Executor{Container: &Executor{BuildKit: conn, DockerConfig: os.TempDir() + "/no-docker-config", Helper: env.Helper}}
}

func step(name string, rs plan.RunStep) plan.Step {
	if rs.Image.IsZero() {
		rs.Image = plan.Lit(env.Busybox)
	}
	return plan.Step{Name: name, Kind: plan.KindRun, Run: &rs}
}

func execute(t *testing.T, ws string, s plan.Step, envv map[string]string) (steps.Result, string, error) {
	t.Helper()
	log := &syncBuffer{}
	if envv == nil {
		envv = map[string]string{}
	}
	envv["SLUICE_PIPELINE"] = "web"
	start := time.Now()
	res, err := executor().Execute(context.Background(), steps.Request{RunID: "run-1", StageID: "test", Step: s, Workspace: ws, Env: envv, Log: log})
	t.Logf("step %s took %v", s.Name, time.Since(start))
	return res, log.String(), err
}

func TestWorkspaceOutputsAndEnv(t *testing.T) {
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "sub"), 0o755)
	os.WriteFile(filepath.Join(ws, "sub", "input.txt"), []byte("from the repository\n"), 0o644)
	os.WriteFile(filepath.Join(ws, "untouched.txt"), []byte("keep me\n"), 0o644)

	res, log, err := execute(t, ws, step("write", plan.RunStep{
		Script: plan.Lit(`echo "step one saw: $(cat input.txt) in $(pwd), GREETING=$GREETING, CI=$CI"
echo generated > generated.txt
echo run >> ../runs.txt
echo "version=1.4.2" >> "$SLUICE_OUTPUT"
printf 'notes<<EOF\nline one\nline two\nEOF\n' >> "$SLUICE_OUTPUT"`),
		WorkingDir: "sub",
		Outputs:    []string{"version", "notes"},
	}), map[string]string{"GREETING": "hello there"})
	if err != nil {
		t.Fatalf("Execute: %v\nlog:\n%s", err, log)
	}
	if !strings.Contains(log, "step one saw: from the repository in /workspace/sub, GREETING=hello there, CI=true") {
		t.Errorf("log does not show the command's output with its env and working dir:\n%s", log)
	}
	want := map[string]string{"version": "1.4.2", "notes": "line one\nline two", "exit_code": "0"}
	for k, v := range want {
		if res.Outputs[k] != v {
			t.Errorf("output %s = %q, want %q (all: %v)", k, res.Outputs[k], v, res.Outputs)
		}
	}
	for p, c := range map[string]string{"sub/generated.txt": "generated\n", "runs.txt": "run\n", "untouched.txt": "keep me\n", "sub/input.txt": "from the repository\n"} {
		b, err := os.ReadFile(filepath.Join(ws, p))
		if err != nil || string(b) != c {
			t.Errorf("workspace file %s = %q, %v; want %q", p, b, err, c)
		}
	}
	if _, err := os.Stat(filepath.Join(ws, "output")); err == nil {
		t.Errorf("$SLUICE_OUTPUT was left in the workspace")
	}

	// The next step of the stage sees the first one's files.
	res, log, err = execute(t, ws, step("read", plan.RunStep{Command: []plan.Template{plan.Lit("cat"), plan.Lit("sub/generated.txt")}}), nil)
	if err != nil || !strings.Contains(log, "generated") {
		t.Fatalf("second step: %v, log:\n%s", err, log)
	}
}

func TestExitCode(t *testing.T) {
	ws := t.TempDir()
	res, log, err := execute(t, ws, step("fails", plan.RunStep{Script: plan.Lit("echo something went wrong >&2\nexit 7")}), nil)
	var exit *buildkit.ExitError
	if !errors.As(err, &exit) || exit.Code != 7 {
		t.Fatalf("error = %v, want exit code 7; log:\n%s", err, log)
	}
	if res.Outputs["exit_code"] != "7" {
		t.Errorf("exit_code = %q", res.Outputs["exit_code"])
	}
	if !strings.Contains(log, "something went wrong") {
		t.Errorf("the command's output is not in the log:\n%s", log)
	}
	if strings.Contains(err.Error(), ".go:") || strings.Contains(err.Error(), "goroutine") {
		t.Errorf("error carries a stack trace: %v", err)
	}
}

// A step that fails keeps what it did before it failed, as on the host:
// the report it wrote into the workspace and the outputs it set.
func TestFailedStepKeepsFilesAndOutputs(t *testing.T) {
	ws := t.TempDir()
	s := step("tests", plan.RunStep{
		Script: plan.Lit(`mkdir -p reports
echo '<testsuite failures="1"/>' > reports/junit.xml
echo "failed=3" >> "$SLUICE_OUTPUT"
echo "2 passed, 3 failed" >&2
exit 3`),
		Outputs: []string{"failed"},
	})
	res, log, err := execute(t, ws, s, nil)
	var exit *buildkit.ExitError
	if !errors.As(err, &exit) || exit.Code != 3 || err.Error() != "command exited with code 3" {
		t.Fatalf("error = %v, want exit code 3; log:\n%s", err, log)
	}
	if res.Outputs["exit_code"] != "3" || res.Outputs["failed"] != "3" {
		t.Errorf("outputs %v, want exit_code 3 and failed 3", res.Outputs)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "reports", "junit.xml")); err != nil || !strings.Contains(string(b), "failures") {
		t.Errorf("report of the failed step: %q, %v", b, err)
	}
	if !strings.Contains(log, "2 passed, 3 failed") {
		t.Errorf("log:\n%s", log)
	}
	entries, _ := os.ReadDir(ws)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".sluice-output-") {
			t.Errorf("the step's output directory %s was left in the workspace", e.Name())
		}
	}

	// A command that is not in the image fails like in a shell, 127.
	_, log, err = execute(t, t.TempDir(), step("missing", plan.RunStep{Command: []plan.Template{plan.Lit("no-such-tool"), plan.Lit("--version")}}), nil)
	if !errors.As(err, &exit) || exit.Code != 127 || !strings.Contains(log, `"no-such-tool": executable file not found`) {
		t.Errorf("missing command: %v\nlog:\n%s", err, log)
	}
}

// A step's secrets are files in /run/secrets ($SLUICE_SECRETS), mounted by
// BuildKit for the command alone: not written back into the workspace.
func TestSecretFiles(t *testing.T) {
	ws := t.TempDir()
	s := step("deploy", plan.RunStep{
		Script: plan.Lit(`echo "dir=$SLUICE_SECRETS"
cat /run/secrets/kubeconfig; echo
cat "$SLUICE_SECRETS/npmrc"; echo
cp "$SLUICE_SECRETS/npmrc" copied-on-purpose`),
		Secrets: map[string]plan.Template{"kubeconfig": plan.Lit("apiVersion: v1"), "npmrc": plan.Lit("_authToken=t0ken")},
	})
	_, log, err := execute(t, ws, s, nil)
	if err != nil {
		t.Fatalf("Execute: %v\nlog:\n%s", err, log)
	}
	for _, want := range []string{"dir=/run/secrets\n", "apiVersion: v1\n", "_authToken=t0ken\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not hold %q:\n%s", want, log)
		}
	}
	entries, _ := os.ReadDir(ws)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "copied-on-purpose" {
		t.Errorf("workspace holds %v, want only the file the step copied", names)
	}
}

func TestCacheMountPersists(t *testing.T) {
	script := `if [ -f /cache/seen ]; then echo "cache hit: $(cat /cache/seen)"; else echo "cache miss"; fi
echo "$SLUICE_STEP" > /cache/seen`
	_, log, err := execute(t, t.TempDir(), step("first", plan.RunStep{Script: plan.Lit(script), Cache: []string{"/cache"}}), nil)
	if err != nil || !strings.Contains(log, "cache miss") {
		t.Fatalf("first run: %v\n%s", err, log)
	}
	_, log, err = execute(t, t.TempDir(), step("second", plan.RunStep{Script: plan.Lit(script), Cache: []string{"/cache"}}), nil)
	if err != nil || !strings.Contains(log, "cache hit: first") {
		t.Fatalf("second run did not see the first one's cache: %v\n%s", err, log)
	}
}

// An image from a registry that wants credentials is pulled with the
// step's username and password; without them the step says what to do.
func TestPrivateImage(t *testing.T) {
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte("FROM "+env.Busybox+"\nRUN echo private > /where\n"), 0o644)
	ref := env.Registry + "/pullers-only/box:1"
	conn.Addr = env.Addr
	build := plan.Step{Name: "box", Kind: plan.KindImage, Image: &plan.ImageStep{
		Context: ".", Dockerfile: "Dockerfile", Tags: []plan.Template{plan.Lit(ref)}, Push: true,
		Username: plan.Lit(env.User), Password: plan.Lit(env.Password),
	}}
	if _, err := (&image.Executor{BuildKit: conn, DockerConfig: os.TempDir() + "/no-docker-config"}).Execute(context.Background(), steps.Request{RunID: "run-1", StageID: "build", Step: build, Workspace: ws, Log: &syncBuffer{}}); err != nil {
		t.Fatalf("pushing the private image: %v", err)
	}

	s := step("inside", plan.RunStep{Image: plan.Lit(ref), Command: []plan.Template{plan.Lit("cat"), plan.Lit("/where")}})
	_, log, err := execute(t, t.TempDir(), s, nil)
	if err == nil || !strings.Contains(err.Error(), "the registry refused access") || !strings.Contains(err.Error(), "username and password") {
		t.Fatalf("without credentials: %v\nlog:\n%s", err, log)
	}
	s.Run.Username, s.Run.Password = plan.Lit(env.User), plan.Lit(env.Password)
	_, log, err = execute(t, t.TempDir(), s, nil)
	if err != nil || !strings.Contains(log, "private") {
		t.Fatalf("with credentials: %v\nlog:\n%s", err, log)
	}
}

func TestUnknownImage(t *testing.T) {
	_, log, err := execute(t, t.TempDir(), step("pull", plan.RunStep{Image: plan.Lit(env.Registry + "/library/golang:nope"), Command: []plan.Template{plan.Lit("true")}}), nil)
	if err == nil || !strings.Contains(err.Error(), "golang:nope was not found") || !strings.Contains(err.Error(), "check the image name") {
		t.Fatalf("error = %v\nlog:\n%s", err, log)
	}
}

// A container step's JUnit reports are read from the workspace when its
// command fails, and their paths in the container are paths in the
// workspace.
func TestJUnitReport(t *testing.T) {
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "pkg"), 0o755)
	os.WriteFile(filepath.Join(ws, "pkg", "cart_test.py"), []byte("def test_total(): pass\n"), 0o644)
	res, log, err := execute(t, ws, step("test", plan.RunStep{
		Script: plan.Lit(`mkdir -p out
cat > out/report.xml <<'EOF'
<testsuites><testsuite name="pytest" tests="2" failures="1">
  <testcase classname="pkg.cart_test" name="test_sum"/>
  <testcase classname="pkg.cart_test" name="test_total" file="/workspace/pkg/cart_test.py" line="1"><failure message="assert 3 == 4">AssertionError</failure></testcase>
</testsuite></testsuites>
EOF
exit 3`),
		WorkingDir: "pkg",
		JUnit:      []string{"out/*.xml"},
	}), nil)
	var exit *buildkit.ExitError
	if !errors.As(err, &exit) || exit.Code != 3 {
		t.Fatalf("error = %v, want exit code 3; log:\n%s", err, log)
	}
	want := steps.TestFailure{Suite: "pkg.cart_test", Name: "test_total", File: "pkg/cart_test.py", Line: 1, Message: "assert 3 == 4", Details: "AssertionError"}
	if r := res.Tests; r == nil || r.Total != 2 || r.Failed != 1 || len(r.Failures) != 1 || r.Failures[0] != want {
		t.Errorf("tests %+v, want 2 with the failure %+v; log:\n%s", r, want, log)
	}
}
