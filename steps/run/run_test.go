package run

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// logBuffer is a step log that tests can read while the step runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// writes records every Write, to check that lines arrive whole.
	writes []string
	// onWrite, if set, is called with everything written so far.
	onWrite func(string)
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf.Write(p)
	b.writes = append(b.writes, string(p))
	s := b.buf.String()
	f := b.onWrite
	b.mu.Unlock()
	if f != nil {
		f(s)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func lits(args ...string) []plan.Template {
	out := make([]plan.Template, len(args))
	for i, a := range args {
		out[i] = plan.Lit(a)
	}
	return out
}

func script(s string) plan.RunStep { return plan.RunStep{Script: plan.Lit(s)} }

func request(ws string, rs plan.RunStep, log *logBuffer) steps.Request {
	req := steps.Request{
		RunID:     "run-42",
		StageID:   "test[go=1.22]",
		Step:      plan.Step{Name: "unit", Kind: plan.KindRun, Run: &rs},
		Workspace: ws,
		Env:       map[string]string{"GREETING": "hello world"},
		Git:       plan.Git{SHA: "0123abcd", Ref: "refs/heads/main", Branch: "main"},
	}
	if log != nil {
		req.Log = log
	}
	return req
}

// testExecutor sees a controlled runner environment.
func testExecutor() *Executor {
	return &Executor{
		GracePeriod: 300 * time.Millisecond,
		Environ: []string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=/home/runner",
			"LANG=C.UTF-8",
			"RUNNER_TOKEN=must-not-leak",
		},
	}
}

func TestExecute(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup prepares the workspace.
		setup   func(t *testing.T, ws string)
		step    plan.RunStep
		env     map[string]string
		wantLog string
		// wantOut is compared with the outputs when set.
		wantOut map[string]string
		wantErr string
	}{
		{
			name:    "command",
			step:    plan.RunStep{Command: lits("echo", "a  b", "$GREETING")},
			wantLog: "a  b $GREETING\n", // no shell: nothing is expanded
			wantOut: map[string]string{"exit_code": "0"},
		},
		{
			name:    "script",
			step:    script("echo \"$GREETING\"\necho second line"),
			wantLog: "hello world\nsecond line\n",
			wantOut: map[string]string{"exit_code": "0"},
		},
		{
			name:    "script stops at the first failing command",
			step:    script("echo before\nfalse\necho after"),
			wantLog: "before\n",
			wantOut: map[string]string{"exit_code": "1"},
			wantErr: "command exited with code 1",
		},
		{
			name:    "shell without -e",
			step:    plan.RunStep{Script: plan.Lit("false\necho after"), Shell: []string{"sh", "-c"}},
			wantLog: "after\n",
		},
		{
			// The shell's own arguments come first, the script last.
			name: "shell gets the script as its last argument",
			step: plan.RunStep{
				Script: plan.Lit(`echo "last argument ran"`),
				Shell:  []string{"/bin/sh", "-c", `eval "$1"`, "sh"},
			},
			wantLog: "last argument ran\n",
		},
		{
			name: "environment",
			step: script(`env | grep -v '^_=' | grep -v '^PWD=' | grep -v '^SHLVL=' | sort`),
			env:  map[string]string{"GREETING": "hi", "PATH": "/usr/bin:/bin", "SLUICE_OUTPUT": "/tmp/hijack"},
			wantLog: strings.Join([]string{
				"CI=true",
				"GREETING=hi",
				"HOME=/home/runner",
				"LANG=C.UTF-8",
				"PATH=/usr/bin:/bin",
				"SLUICE_GIT_BRANCH=main",
				"SLUICE_GIT_REF=refs/heads/main",
				"SLUICE_GIT_SHA=0123abcd",
				"SLUICE_GIT_TAG=",
				"SLUICE_OUTPUT=<output>",
				"SLUICE_RUN_ID=run-42",
				"SLUICE_STAGE=test[go=1.22]",
				"SLUICE_STEP=unit",
				"SLUICE_WORKSPACE=<workspace>",
				"",
			}, "\n"),
		},
		{
			name:    "working_dir",
			setup:   func(t *testing.T, ws string) { mkdir(t, filepath.Join(ws, "cmd", "api")) },
			step:    plan.RunStep{Command: lits("pwd"), WorkingDir: "cmd/api"},
			wantLog: "<workspace>/cmd/api\n",
		},
		{
			name:    "working_dir defaults to the workspace",
			step:    plan.RunStep{Command: lits("pwd")},
			wantLog: "<workspace>\n",
		},
		{
			name:    "working_dir escaping the workspace",
			step:    plan.RunStep{Command: lits("pwd"), WorkingDir: "../elsewhere"},
			wantErr: `working_dir "../elsewhere" leaves the workspace`,
		},
		{
			name:    "absolute working_dir",
			step:    plan.RunStep{Command: lits("pwd"), WorkingDir: "/etc"},
			wantErr: `working_dir "/etc" leaves the workspace`,
		},
		{
			name: "working_dir through a symbolic link out of the workspace",
			setup: func(t *testing.T, ws string) {
				if err := os.Symlink(os.TempDir(), filepath.Join(ws, "out")); err != nil {
					t.Fatal(err)
				}
			},
			step:    plan.RunStep{Command: lits("pwd"), WorkingDir: "out"},
			wantErr: `working_dir "out" leads outside the workspace through a symbolic link`,
		},
		{
			name:    "missing working_dir",
			step:    plan.RunStep{Command: lits("pwd"), WorkingDir: "nope"},
			wantErr: `working_dir "nope" is not in the workspace`,
		},
		{
			name: "relative command in working_dir",
			setup: func(t *testing.T, ws string) {
				writeFile(t, filepath.Join(ws, "tool.sh"), "#!/bin/sh\necho tool ran in $(pwd)\n", 0o755)
			},
			step:    plan.RunStep{Command: lits("./tool.sh")},
			wantLog: "tool ran in <workspace>\n",
		},
		{
			name:    "command not executable",
			setup:   func(t *testing.T, ws string) { writeFile(t, filepath.Join(ws, "tool.sh"), "echo hi\n", 0o644) },
			step:    plan.RunStep{Command: lits("./tool.sh")},
			wantErr: `command "./tool.sh": is not executable`,
		},
		{
			name:    "missing command",
			step:    plan.RunStep{Command: lits("sluice-no-such-command", "arg")},
			wantErr: `command "sluice-no-such-command" not found in PATH`,
		},
		{
			name:    "missing shell",
			step:    plan.RunStep{Script: plan.Lit("echo hi"), Shell: []string{"sluice-no-such-shell"}},
			wantErr: `starting the shell for its script: command "sluice-no-such-shell" not found in PATH`,
		},
		{
			name:    "step PATH is used to find the command",
			env:     map[string]string{"PATH": "/nonexistent"},
			step:    plan.RunStep{Command: lits("echo", "hi")},
			wantErr: `command "echo" not found in PATH`,
		},
		{
			name:    "exit code",
			step:    script("echo failing >&2\nexit 3"),
			wantLog: "failing\n",
			wantOut: map[string]string{"exit_code": "3"},
			wantErr: "command exited with code 3",
		},
		{
			name:    "killed by a signal",
			step:    script("kill -KILL $$"),
			wantOut: map[string]string{"exit_code": "137"},
			wantErr: "command was killed by signal SIGKILL (exit code 137)",
		},
		{
			name:    "image needs a container runner",
			step:    plan.RunStep{Command: lits("go", "test"), Image: plan.Lit("golang:1.22")},
			wantErr: `step "unit" sets image "golang:1.22": container steps need a runner with BuildKit`,
		},
		{
			name:    "command and script",
			step:    plan.RunStep{Command: lits("true"), Script: plan.Lit("true")},
			wantErr: "either command or script, not both",
		},
		{
			name:    "neither command nor script",
			step:    plan.RunStep{},
			wantErr: "needs a command or a script",
		},
		{
			name: "unresolved reference",
			step: plan.RunStep{Command: []plan.Template{{Parts: []plan.Part{
				{Lit: "echo "}, {Ref: &plan.Ref{Step: "build", Output: "digest"}},
			}}}},
			wantErr: "command argument 0 has unresolved references (echo ${step.build.digest})",
		},
		{
			name:    "invalid environment variable name",
			env:     map[string]string{"A=B": "c"},
			step:    plan.RunStep{Command: lits("true")},
			wantErr: `environment variable name "A=B" is not valid`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, ws)
			}
			var log logBuffer
			req := request(ws, tc.step, &log)
			if tc.env != nil {
				req.Env = tc.env
			}
			e := testExecutor()
			e.TempDir = t.TempDir()
			res, err := e.Execute(context.Background(), req)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v\nlog:\n%s", err, log.String())
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
			got := log.String()
			got = strings.ReplaceAll(got, resolved(t, ws), "<workspace>")
			got = strings.ReplaceAll(got, ws, "<workspace>")
			if i := strings.Index(got, "SLUICE_OUTPUT="); i >= 0 {
				j := strings.IndexByte(got[i:], '\n')
				if p := got[i+len("SLUICE_OUTPUT=") : i+j]; filepath.Dir(p) != e.TempDir {
					t.Errorf("SLUICE_OUTPUT=%s is not in the executor's TempDir", p)
				}
				got = got[:i] + "SLUICE_OUTPUT=<output>" + got[i+j:]
			}
			if tc.wantLog != "" || tc.wantErr == "" {
				if diff := cmp.Diff(tc.wantLog, got); diff != "" {
					t.Errorf("log (-want +got):\n%s", diff)
				}
			}
			if tc.wantOut != nil {
				if diff := cmp.Diff(tc.wantOut, res.Outputs); diff != "" {
					t.Errorf("outputs (-want +got):\n%s", diff)
				}
			}
			if entries, _ := os.ReadDir(e.TempDir); len(entries) != 0 {
				t.Errorf("the $SLUICE_OUTPUT file was left behind: %v", entries)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	ws := t.TempDir()
	e := testExecutor()

	_, err := e.Execute(context.Background(), request(ws, script("exit 3"), nil))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("exit 3: err = %#v, want an *ExitError with code 3", err)
	}

	_, err = e.Execute(context.Background(), request(ws, plan.RunStep{Command: lits("sluice-no-such-command")}, nil))
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing command: err = %v, want exec.ErrNotFound", err)
	}

	_, err = e.Execute(context.Background(), request(ws, plan.RunStep{Command: lits("true"), Image: plan.Lit("alpine")}, nil))
	if !errors.Is(err, ErrNeedsContainer) {
		t.Errorf("image: err = %v, want ErrNeedsContainer", err)
	}

	req := request(ws, script("echo lost"), nil)
	req.Log = failingLog{}
	if _, err := e.Execute(context.Background(), req); err == nil || !strings.Contains(err.Error(), "writing its log: disk full") {
		t.Errorf("failing log: err = %v", err)
	}

	req = request(ws, script("true"), nil)
	req.Step.Kind = plan.KindImage
	if _, err := e.Execute(context.Background(), req); err == nil {
		t.Error("a step of another kind: no error")
	}
}

func TestOutputs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   string
		declared []string
		maxSize  int64
		want     map[string]string
		wantLog  string
		wantErr  string
	}{
		{
			name:     "name=value",
			script:   `echo "version=1.2.3" >> "$SLUICE_OUTPUT"; echo "empty=" >> "$SLUICE_OUTPUT"; echo "eq=a=b" >> "$SLUICE_OUTPUT"`,
			declared: []string{"version", "empty", "eq"},
			want:     map[string]string{"version": "1.2.3", "empty": "", "eq": "a=b", "exit_code": "0"},
		},
		{
			name: "multi-line",
			script: `cat >> "$SLUICE_OUTPUT" <<'EOF'
notes<<END_OF_NOTES
first line
x=y is not an output here
<<neither

last line
END_OF_NOTES
tag=v1
EOF`,
			declared: []string{"notes", "tag"},
			want:     map[string]string{"notes": "first line\nx=y is not an output here\n<<neither\n\nlast line", "tag": "v1", "exit_code": "0"},
		},
		{
			name:     "CRLF line endings",
			script:   `printf 'a=1\r\nb<<E\r\nx\r\nE\r\n' >> "$SLUICE_OUTPUT"`,
			declared: []string{"a", "b"},
			want:     map[string]string{"a": "1", "b": "x", "exit_code": "0"},
		},
		{
			name:     "last line without newline and repeated names",
			script:   `printf 'a=1\na=2' >> "$SLUICE_OUTPUT"`,
			declared: []string{"a"},
			want:     map[string]string{"a": "2", "exit_code": "0"},
		},
		{
			name:     "declared but never written",
			script:   `true`,
			declared: []string{"digest"},
			want:     map[string]string{"digest": "", "exit_code": "0"},
		},
		{
			name:     "undeclared output",
			script:   `echo "digest=sha256:1" >> "$SLUICE_OUTPUT"; echo "dijest=sha256:2" >> "$SLUICE_OUTPUT"`,
			declared: []string{"digest", "ref"},
			want:     map[string]string{"digest": "sha256:1", "ref": "", "exit_code": "0"},
			wantLog:  `sluice: warning: the step wrote output "dijest" to $SLUICE_OUTPUT, but it declares only "digest", "ref", so later steps cannot use it; add "dijest" to the step's outputs` + "\n",
		},
		{
			name:    "undeclared output with nothing declared",
			script:  `echo "x=1" >> "$SLUICE_OUTPUT"`,
			want:    map[string]string{"exit_code": "0"},
			wantLog: `sluice: warning: the step wrote output "x" to $SLUICE_OUTPUT, but it declares no outputs, so later steps cannot use it; add outputs = ["x"] to the step` + "\n",
		},
		{
			name:    "exit_code is not the step's to set",
			script:  `echo "exit_code=0" >> "$SLUICE_OUTPUT"; exit 4`,
			want:    map[string]string{"exit_code": "4"},
			wantLog: "sluice: warning: the step wrote output \"exit_code\" to $SLUICE_OUTPUT, but sluice sets exit_code itself; the value written is ignored\n",
			wantErr: "command exited with code 4",
		},
		{
			name:     "outputs of a failing step are kept",
			script:   `echo "reason=flaky" >> "$SLUICE_OUTPUT"; exit 2`,
			declared: []string{"reason"},
			want:     map[string]string{"reason": "flaky", "exit_code": "2"},
			wantErr:  "command exited with code 2",
		},
		{
			name:     "unterminated multi-line value",
			script:   `printf 'notes<<EOF\nline\n' >> "$SLUICE_OUTPUT"`,
			declared: []string{"notes"},
			wantErr:  `$SLUICE_OUTPUT line 1: the value of "notes" is not ended by a line holding only "EOF"`,
		},
		{
			name:     "line that is not an output",
			script:   `echo "hello" >> "$SLUICE_OUTPUT"`,
			declared: []string{"hello"},
			wantErr:  `$SLUICE_OUTPUT line 1: "hello" is neither name=value nor name<<DELIMITER`,
		},
		{
			name:     "spaces around =",
			script:   `echo "version = 1" >> "$SLUICE_OUTPUT"`,
			declared: []string{"version"},
			wantErr:  `$SLUICE_OUTPUT line 1: "version = 1" does not start with an output name`,
		},
		{
			name:     "too large",
			script:   `head -c 2000 /dev/zero | tr '\0' x | sed 's/^/big=/' >> "$SLUICE_OUTPUT"`,
			declared: []string{"big"},
			maxSize:  1024,
			wantErr:  "$SLUICE_OUTPUT holds more than 1024 bytes",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log logBuffer
			req := request(t.TempDir(), plan.RunStep{Script: plan.Lit(tc.script), Outputs: tc.declared}, &log)
			e := testExecutor()
			e.MaxOutputSize = tc.maxSize
			res, err := e.Execute(context.Background(), req)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v\nlog:\n%s", err, log.String())
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, res.Outputs); diff != "" {
					t.Errorf("outputs (-want +got):\n%s", diff)
				}
			}
			if tc.wantErr == "" || tc.wantLog != "" {
				if diff := cmp.Diff(tc.wantLog, log.String()); diff != "" {
					t.Errorf("log (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestParseOutputsDeclaredInStep(t *testing.T) {
	// Outputs recorded only on plan.Step count as declared too.
	var log logBuffer
	req := request(t.TempDir(), script(`echo "v=1" >> "$SLUICE_OUTPUT"`), &log)
	req.Step.Outputs = []string{"exit_code", "v"}
	res, err := testExecutor().Execute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"v": "1", "exit_code": "0"}, res.Outputs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
	if log.String() != "" {
		t.Errorf("unexpected log %q", log.String())
	}
}

func TestStreamingOrder(t *testing.T) {
	var log logBuffer
	s := `echo out1
echo err1 >&2
echo out2
printf 'err2 ' >&2
echo 'continues on stdout'
printf 'partial last line'`
	res, err := testExecutor().Execute(context.Background(), request(t.TempDir(), script(s), &log))
	if err != nil {
		t.Fatal(err)
	}
	want := "out1\nerr1\nout2\nerr2 continues on stdout\npartial last line"
	if got := log.String(); got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
	if res.Outputs["exit_code"] != "0" {
		t.Errorf("exit_code = %q", res.Outputs["exit_code"])
	}
	// Lines reach the log whole.
	for _, w := range log.writes[:len(log.writes)-1] {
		if !strings.HasSuffix(w, "\n") {
			t.Errorf("write %q is not a whole number of lines", w)
		}
	}
}

// TestStreamingLive checks that lines reach the log while the step is still
// running: the step waits for a file the test creates only once it has seen
// the first line in the log.
func TestStreamingLive(t *testing.T) {
	ws := t.TempDir()
	var log logBuffer
	var once sync.Once
	log.onWrite = func(s string) {
		if strings.Contains(s, "waiting\n") {
			once.Do(func() { writeFile(t, filepath.Join(ws, "go-on"), "", 0o644) })
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := "echo waiting\nwhile [ ! -e go-on ]; do sleep 0.02; done\necho done"
	if _, err := testExecutor().Execute(ctx, request(ws, script(s), &log)); err != nil {
		t.Fatalf("%v (the first line did not reach the log while the step ran?)", err)
	}
	if got := log.String(); got != "waiting\ndone\n" {
		t.Errorf("log = %q", got)
	}
}

func TestLongLineWithoutNewline(t *testing.T) {
	var log logBuffer
	s := `head -c 200000 /dev/zero | tr '\0' x`
	if _, err := testExecutor().Execute(context.Background(), request(t.TempDir(), script(s), &log)); err != nil {
		t.Fatal(err)
	}
	if got := log.String(); len(got) != 200000 || strings.Trim(got, "x") != "" {
		t.Errorf("log has %d bytes, want 200000 x", len(got))
	}
	for _, w := range log.writes {
		if len(w) > maxLine+32<<10 {
			t.Errorf("a write of %d bytes: long lines are not split", len(w))
		}
	}
}

func TestCancel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		// wantLog must appear in the log.
		wantLog string
		// maxTime bounds how long the step takes after the cancel.
		maxTime time.Duration
	}{
		{
			// The child ignores SIGTERM, so only SIGKILL after the grace
			// period ends it.
			name:    "background child ignoring SIGTERM",
			script:  `sh -c 'trap "" TERM; echo $$ > child.pid; exec sleep 300' & wait`,
			maxTime: 5 * time.Second,
		},
		{
			name:    "process that cleans up on SIGTERM",
			script:  `trap 'echo cleaning up; exit 1' TERM; (echo $$ > /dev/null; sleep 300) & echo $! > child.pid; wait`,
			wantLog: "cleaning up\n",
			maxTime: 5 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			var log logBuffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			e := testExecutor()
			e.GracePeriod = time.Second
			type result struct {
				res steps.Result
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := e.Execute(ctx, request(ws, script(tc.script), &log))
				done <- result{res, err}
			}()
			pid := waitForPID(t, filepath.Join(ws, "child.pid"))
			cancel()
			start := time.Now()
			var r result
			select {
			case r = <-done:
			case <-time.After(tc.maxTime + 5*time.Second):
				t.Fatal("the step did not end after the cancel")
			}
			if took := time.Since(start); took > tc.maxTime {
				t.Errorf("the step took %v to end after the cancel", took)
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", r.err)
			}
			if !strings.Contains(log.String(), tc.wantLog) || !strings.Contains(log.String(), "sluice: step cancelled") {
				t.Errorf("log = %q, want it to contain %q and the cancel", log.String(), tc.wantLog)
			}
			if alive(pid) {
				t.Errorf("background child %d survived the cancel", pid)
			}
		})
	}
}

func TestCancelGracePeriod(t *testing.T) {
	// A step that ignores SIGTERM is killed once the grace period is over,
	// and not before.
	ws := t.TempDir()
	e := testExecutor()
	e.GracePeriod = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.Execute(ctx, request(ws, script(`trap '' TERM; echo $$ > child.pid; while :; do sleep 0.05; done`), nil))
		done <- err
	}()
	waitForPID(t, filepath.Join(ws, "child.pid"))
	cancel()
	start := time.Now()
	err := <-done
	took := time.Since(start)
	if took < e.GracePeriod || took > e.GracePeriod+3*time.Second {
		t.Errorf("the step ended %v after the cancel, want about the grace period %v", took, e.GracePeriod)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestBackgroundProcessesEndWithTheStep(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
	}{
		{name: "holding the output", script: `sleep 300 & echo $! > child.pid`},
		{name: "output redirected", script: `sleep 300 > /dev/null 2>&1 & echo $! > child.pid`},
		{name: "ignoring SIGTERM", script: `sh -c 'trap "" TERM; exec sleep 300' > /dev/null & echo $! > child.pid; sleep 0.2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			e := testExecutor()
			start := time.Now()
			res, err := e.Execute(context.Background(), request(ws, script(tc.script), nil))
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the step took %v", took)
			}
			if res.Outputs["exit_code"] != "0" {
				t.Errorf("exit_code = %q", res.Outputs["exit_code"])
			}
			if pid := waitForPID(t, filepath.Join(ws, "child.pid")); alive(pid) {
				t.Errorf("background process %d outlived the step", pid)
			}
		})
	}
}

func TestParseOutputs(t *testing.T) {
	got, order, err := parseOutputs("b=2\n\na<<X\n1\n2\nX\nb=3\nc<<=\n=\n")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "1\n2", "b": "3", "c": ""}, got); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b", "a", "c"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"=x", "a<<\n", " a=1", "a b=1", "1a=x", "noequals"} {
		if _, _, err := parseOutputs(bad); err == nil {
			t.Errorf("parseOutputs(%q): no error", bad)
		}
	}
}

func FuzzParseOutputs(f *testing.F) {
	f.Add("a=1\nb<<E\nx\nE\n")
	f.Add("a<<=\n=\n")
	f.Fuzz(func(t *testing.T, data string) {
		values, order, err := parseOutputs(data)
		if err != nil {
			return
		}
		if len(values) != len(order) {
			t.Fatalf("%d values but %d names in order", len(values), len(order))
		}
		for _, n := range order {
			if !outputName.MatchString(n) {
				t.Fatalf("accepted name %q", n)
			}
		}
	})
}

type failingLog struct{}

func (failingLog) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func waitForPID(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(file)
		if s := strings.TrimSpace(string(b)); err == nil && s != "" {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s was not written", file)
	return 0
}

// alive reports whether a process exists and is not a zombie: this test may
// run where nobody reaps orphans, and a zombie has already ended.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func resolved(t *testing.T, dir string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A step's secrets are files in $SLUICE_SECRETS, readable by the step
// alone while it runs, and gone after it.
func TestSecretFiles(t *testing.T) {
	ws := t.TempDir()
	rs := script(`ls -l "$SLUICE_SECRETS" | grep -c '^-r--------'
cat "$SLUICE_SECRETS/kubeconfig"; echo
cat "$SLUICE_SECRETS/npmrc"; echo
echo "dir=$SLUICE_SECRETS" >> "$SLUICE_OUTPUT"`)
	rs.Secrets = map[string]plan.Template{"kubeconfig": plan.Lit("apiVersion: v1\nkind: Config"), "npmrc": plan.Lit("//registry/:_authToken=t0ken")}
	rs.Outputs = []string{"dir"}
	log := &logBuffer{}
	e := testExecutor()
	e.TempDir = t.TempDir()
	res, err := e.Execute(context.Background(), request(ws, rs, log))
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, log)
	}
	if want := "2\napiVersion: v1\nkind: Config\n//registry/:_authToken=t0ken\n"; log.String() != want {
		t.Errorf("log %q, want %q", log.String(), want)
	}
	dir := res.Outputs["dir"]
	if !strings.HasPrefix(dir, e.TempDir) {
		t.Errorf("SLUICE_SECRETS = %q, not under the runner's temporary directory", dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the secrets' directory is left after the step: %v", err)
	}

	// A step without secrets has no SLUICE_SECRETS.
	log = &logBuffer{}
	if _, err := e.Execute(context.Background(), request(ws, script(`echo "[${SLUICE_SECRETS-unset}]"`), log)); err != nil || log.String() != "[unset]\n" {
		t.Errorf("without secrets: %v, log %q", err, log)
	}
}

// goTestReport is a report as gotestsum writes it for a failing go test.
const goTestReport = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="1" errors="0" time="0.2">
	<testsuite tests="3" failures="1" time="0.01" name="example.com/calc" timestamp="2025-03-04T10:11:12Z">
		<testcase classname="example.com/calc" name="TestAdd" time="0.000"></testcase>
		<testcase classname="example.com/calc" name="TestSkip" time="0.000"><skipped message="skipped"></skipped></testcase>
		<testcase classname="example.com/calc" name="TestDiv" time="0.000">
			<failure message="Failed" type="">=== RUN   TestDiv&#xA;    calc_test.go:7: Div(1, 0) = 0, want an error&#xA;--- FAIL: TestDiv (0.00s)&#xA;</failure>
		</testcase>
	</testsuite>
</testsuites>
`

// A step's JUnit reports are read when its command ends, failing or not,
// relative to its working directory; a step whose command never ran has
// none.
func TestJUnitReports(t *testing.T) {
	ws := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ws, "calc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "calc", "calc_test.go"), []byte("package calc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := testExecutor()
	rs := script("mkdir -p out && cat > out/report.xml <<'EOF'\n" + goTestReport + "EOF\nexit 1")
	rs.WorkingDir = "calc"
	rs.JUnit = []string{"out/*.xml", "../missing.xml"}
	log := &logBuffer{}
	res, err := e.Execute(context.Background(), request(ws, rs, log))
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 1 {
		t.Fatalf("Execute: %v, want exit code 1\n%s", err, log)
	}
	want := &steps.TestReport{Total: 3, Failed: 1, Skipped: 1, Failures: []steps.TestFailure{{
		Suite: "example.com/calc", Name: "TestDiv", File: "calc/calc_test.go", Line: 7,
		Message: "Div(1, 0) = 0, want an error",
		Details: "=== RUN   TestDiv\n    calc_test.go:7: Div(1, 0) = 0, want an error\n--- FAIL: TestDiv (0.00s)",
	}}}
	if diff := cmp.Diff(want, res.Tests); diff != "" {
		t.Errorf("tests (-want +got):\n%s", diff)
	}
	if res.Outputs["exit_code"] != "1" {
		t.Errorf("outputs %v", res.Outputs)
	}
	for _, line := range []string{
		"sluice: junit: \"../missing.xml\" matched no file\n",
		"sluice: tests: 1 passed, 1 failed, 1 skipped (1 report)\n",
		"sluice: FAIL calc/calc_test.go:7: example.com/calc.TestDiv: Div(1, 0) = 0, want an error\n",
	} {
		if !strings.Contains(log.String(), line) {
			t.Errorf("log lacks %q:\n%s", line, log)
		}
	}

	// A step that succeeds has its reports read too.
	rs.Script = plan.Lit("true")
	if res, err := e.Execute(context.Background(), request(ws, rs, nil)); err != nil || res.Tests == nil || res.Tests.Total != 3 {
		t.Errorf("succeeding step: %v, tests %+v", err, res.Tests)
	}

	// A command that could not start ran no test.
	rs.Script, rs.Command = plan.Template{}, lits("no-such-command-anywhere")
	if res, err := e.Execute(context.Background(), request(ws, rs, nil)); err == nil || res.Tests != nil {
		t.Errorf("missing command: %v, tests %+v", err, res.Tests)
	}
}
