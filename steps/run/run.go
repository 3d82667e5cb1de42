package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/junit"
)

// DefaultGracePeriod is how long a step's processes get between SIGTERM and
// SIGKILL when Executor.GracePeriod is zero: long enough for a test runner
// or a build tool to clean up, short enough that a cancel feels prompt.
const DefaultGracePeriod = 10 * time.Second

// DefaultMaxOutputSize caps the $SLUICE_OUTPUT file when
// Executor.MaxOutputSize is zero. Outputs travel through workflow history,
// which is small; large data belongs in a file in the workspace.
const DefaultMaxOutputSize = 1 << 20

// DefaultShell runs a script when the step sets no shell: -e stops the
// script at the first failing command, as in most CI systems.
var DefaultShell = []string{"/bin/sh", "-e", "-c"}

// ErrNeedsContainer is returned for a run step that sets an image: such
// steps run in a container, which this executor cannot start. A runner with
// BuildKit registers a container executor that handles them.
var ErrNeedsContainer = errors.New("container steps need a runner with BuildKit; this runner runs steps on its host only")

// ExitError reports a step whose process ended unsuccessfully, so that
// callers can tell a failing command from a step that could not start.
type ExitError struct {
	// Code is the exit code, or 128 plus the signal number for a process
	// killed by a signal, as a shell reports it.
	Code int
	// Signal names the signal that killed the process, if one did.
	Signal string
}

// Error gives the message a user sees under the failed step.
func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("command was killed by signal %s (exit code %d)", e.Signal, e.Code)
	}
	return fmt.Sprintf("command exited with code %d", e.Code)
}

// hostEnv names the runner's environment variables a step sees by default:
// enough for ordinary tools to work, without leaking the runner's own
// configuration or credentials into steps.
var hostEnv = []string{"PATH", "HOME", "USER", "LANG", "TMPDIR"}

// defaultPath is used when neither the runner nor the step sets PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Executor runs plan.KindRun steps without an image on the runner's host.
// The zero value is ready to use.
type Executor struct {
	// GracePeriod is how long processes get between SIGTERM and SIGKILL;
	// zero means DefaultGracePeriod.
	GracePeriod time.Duration
	// MaxOutputSize caps the $SLUICE_OUTPUT file in bytes; zero means
	// DefaultMaxOutputSize.
	MaxOutputSize int64
	// Environ is the runner's environment, from which the variables named
	// by PassEnv are taken; nil means os.Environ(). Tests set it.
	Environ []string
	// PassEnv names the variables of Environ that steps see; nil means
	// PATH, HOME, USER, LANG and TMPDIR. A platform engineer adds, say,
	// SSL_CERT_FILE or HTTPS_PROXY here rather than in every pipeline.
	PassEnv []string
	// TempDir holds the $SLUICE_OUTPUT files; empty means os.TempDir().
	TempDir string
	// Container runs the steps that set an image; nil refuses them with
	// ErrNeedsContainer.
	Container steps.Executor
}

var _ steps.Executor = (*Executor)(nil)

// ContainerWorkspace is where a step with an image finds the workspace in
// its container (see package container).
const ContainerWorkspace = "/workspace"

// Execute runs the step and waits for it and every process it started.
// A step that exits non-zero returns an *ExitError together with the
// exit_code output; a cancelled step returns an error wrapping ctx.Err().
//
// Once the step's command has ended, whether it succeeded or not, the
// JUnit XML reports the step declares are read into the result's Tests.
func (e *Executor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	res, err := e.execute(ctx, req)
	// exit_code says the command ran to its end: a step that could not
	// start or was cancelled wrote no report worth reading.
	if rs := req.Step.Run; rs != nil && len(rs.JUnit) > 0 && ctx.Err() == nil && res.Outputs["exit_code"] != "" {
		o := junit.Options{Workspace: req.Workspace, WorkingDir: rs.WorkingDir, Patterns: rs.JUnit, Log: req.Log}
		if !rs.Image.IsZero() {
			o.Roots = []string{ContainerWorkspace}
		}
		res.Tests = junit.Collect(o)
	}
	return res, err
}

func (e *Executor) execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	rs, _, err := steps.Begin(req, plan.KindRun, req.Step.Run)
	if err != nil {
		return steps.Result{}, err
	}
	if !rs.Image.IsZero() {
		if e.Container != nil {
			return e.Container.Execute(ctx, req)
		}
		return steps.Result{}, fmt.Errorf("step %q sets image %q: %w", req.Step.Name, rs.Image.String(), ErrNeedsContainer)
	}
	if err := ctx.Err(); err != nil {
		return steps.Result{}, fmt.Errorf("step %q cancelled before it started: %w", req.Step.Name, err)
	}
	argv, err := CommandLine(rs)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	dir, err := workingDir(req.Workspace, rs.WorkingDir)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	out, err := os.CreateTemp(e.TempDir, "sluice-output-*")
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: creating $SLUICE_OUTPUT: %w", req.Step.Name, err)
	}
	outPath := out.Name()
	out.Close()
	defer os.Remove(outPath)

	secretsDir, err := writeSecrets(e.TempDir, rs.Secrets)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	if secretsDir != "" {
		defer os.RemoveAll(secretsDir)
	}
	env, err := e.environ(req, outPath, secretsDir)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	path, err := lookPath(argv[0], dir, envValue(env, "PATH"))
	if err != nil {
		if rs.Script.IsZero() {
			return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
		}
		return steps.Result{}, fmt.Errorf("step %q: starting the shell for its script: %w", req.Step.Name, err)
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}

	cmd := &exec.Cmd{Path: path, Args: argv, Dir: dir, Env: env}
	p, err := start(cmd, log, e.grace())
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: starting %q: %w", req.Step.Name, argv[0], err)
	}
	waitErr, cancelled := p.wait(ctx)
	if cancelled {
		fmt.Fprintf(log, "sluice: step cancelled; its processes were stopped\n")
		return steps.Result{}, fmt.Errorf("step %q cancelled: %w", req.Step.Name, ctx.Err())
	}
	if p.logErr != nil {
		return steps.Result{}, fmt.Errorf("step %q: writing its log: %w", req.Step.Name, p.logErr)
	}
	if p.escaped {
		fmt.Fprintf(log, "sluice: warning: a process that left the step's process group still held its output; output after the step ended was dropped\n")
	}

	exitErr, err := exitStatus(waitErr)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: waiting for %q: %w", req.Step.Name, argv[0], err)
	}
	result := steps.Result{Outputs: map[string]string{}}
	outputs, outErr := e.readOutputs(outPath, declared(req.Step), log)
	for k, v := range outputs {
		result.Outputs[k] = v
	}
	code := 0
	if exitErr != nil {
		code = exitErr.Code
	}
	result.Outputs["exit_code"] = strconv.Itoa(code)
	if exitErr != nil {
		if outErr != nil {
			fmt.Fprintf(log, "sluice: warning: %v\n", outErr)
		}
		return result, exitErr
	}
	if outErr != nil {
		return result, fmt.Errorf("step %q: %w", req.Step.Name, outErr)
	}
	return result, nil
}

func (e *Executor) grace() time.Duration {
	if e.GracePeriod > 0 {
		return e.GracePeriod
	}
	return DefaultGracePeriod
}

// CommandLine gives the argv a step runs: its command, or its shell with
// the script as the last argument. Container steps run the same argv.
func CommandLine(rs *plan.RunStep) ([]string, error) {
	hasCommand, hasScript := len(rs.Command) > 0, !rs.Script.IsZero()
	switch {
	case hasCommand && hasScript:
		return nil, errors.New("a run step sets either command or script, not both")
	case !hasCommand && !hasScript:
		return nil, errors.New("a run step needs a command or a script")
	case hasScript:
		if !rs.Script.IsLiteral() {
			return nil, fmt.Errorf("script has unresolved references (%s); the engine resolves them before the step runs", rs.Script)
		}
		shell := rs.Shell
		if len(shell) == 0 {
			shell = DefaultShell
		}
		if shell[0] == "" {
			return nil, errors.New("shell has an empty program name")
		}
		return append(slices.Clone(shell), rs.Script.Literal()), nil
	}
	argv := make([]string, len(rs.Command))
	for i, t := range rs.Command {
		if !t.IsLiteral() {
			return nil, fmt.Errorf("command argument %d has unresolved references (%s); the engine resolves them before the step runs", i, t)
		}
		argv[i] = t.Literal()
	}
	if argv[0] == "" {
		return nil, errors.New("command has an empty program name")
	}
	return argv, nil
}

// workingDir resolves the step's working_dir inside the workspace. It
// follows symbolic links, because a link in the repository must not lead a
// step outside the workspace either.
func workingDir(workspace, wd string) (string, error) {
	if workspace == "" {
		return "", errors.New("no workspace to run in")
	}
	if wd != "" && !filepath.IsLocal(wd) {
		return "", fmt.Errorf("working_dir %q leaves the workspace; use a path relative to the repository root, such as \"cmd/api\"", wd)
	}
	root, err := filepath.EvalSymlinks(workspace)
	if err != nil {
		return "", fmt.Errorf("opening workspace: %w", err)
	}
	dir, err := filepath.EvalSymlinks(filepath.Join(root, wd))
	if err != nil {
		return "", fmt.Errorf("working_dir %q is not in the workspace: %w", wd, err)
	}
	if rel, err := filepath.Rel(root, dir); err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", fmt.Errorf("working_dir %q leads outside the workspace through a symbolic link", wd)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("working_dir %q: %w", wd, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("working_dir %q is not a directory", wd)
	}
	return dir, nil
}

// environ builds the step's environment: the runner's variables named by
// PassEnv, then the step's env, then the SLUICE_* variables and CI, which
// come last so that a step cannot redirect them.
// writeSecrets writes a step's secrets as files of a directory only this
// user can read, which the step finds as $SLUICE_SECRETS; "" when the step
// has none. The caller removes the directory.
func writeSecrets(tmp string, secrets map[string]plan.Template) (string, error) {
	if len(secrets) == 0 {
		return "", nil
	}
	dir, err := os.MkdirTemp(tmp, "sluice-secrets-*")
	if err != nil {
		return "", fmt.Errorf("creating the directory of its secrets: %w", err)
	}
	for k, v := range secrets {
		if !plan.ValidSecretFile(k) {
			os.RemoveAll(dir)
			return "", fmt.Errorf("secret file name %q is not valid", k)
		}
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v.Literal()), 0o400); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("writing secret file %s: %w", k, err)
		}
	}
	return dir, nil
}

func (e *Executor) environ(req steps.Request, outPath, secretsDir string) ([]string, error) {
	vars := map[string]string{}
	host := e.Environ
	if host == nil {
		host = os.Environ()
	}
	pass := e.PassEnv
	if pass == nil {
		pass = hostEnv
	}
	for _, kv := range host {
		if k, v, ok := strings.Cut(kv, "="); ok && slices.Contains(pass, k) {
			vars[k] = v
		}
	}
	if _, ok := vars["PATH"]; !ok {
		vars["PATH"] = defaultPath
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("environment variable name %q is not valid", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("environment variable %s holds a NUL byte, which no process can receive", k)
		}
		vars[k] = v
	}
	for k, v := range map[string]string{
		"CI":                "true",
		"SLUICE_RUN_ID":     req.RunID,
		"SLUICE_STAGE":      req.StageID,
		"SLUICE_STEP":       req.Step.Name,
		"SLUICE_WORKSPACE":  req.Workspace,
		"SLUICE_OUTPUT":     outPath,
		"SLUICE_GIT_SHA":    req.Git.SHA,
		"SLUICE_GIT_REF":    req.Git.Ref,
		"SLUICE_GIT_BRANCH": req.Git.Branch,
		"SLUICE_GIT_TAG":    req.Git.Tag,
	} {
		vars[k] = v
	}
	if secretsDir != "" {
		vars["SLUICE_SECRETS"] = secretsDir
	}
	env := make([]string, 0, len(vars))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// NotFoundError reports a program that is not on the step's PATH; it
// matches exec.ErrNotFound with errors.Is.
type NotFoundError struct {
	// Name is the program as the step wrote it.
	Name string
}

// Error says what to do about the missing program.
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("command %q not found in PATH; install it on the runner, set PATH in the step's env, or give its full path", e.Name)
}

// Unwrap lets errors.Is(err, exec.ErrNotFound) recognise the error.
func (e *NotFoundError) Unwrap() error { return exec.ErrNotFound }

// lookPath finds the program a step runs in the step's own PATH (not the
// runner's, since env may change it). A name with a slash is taken relative
// to the working directory. Relative PATH entries are skipped, as
// exec.LookPath refuses them, because they depend on the directory.
func lookPath(name, dir, pathEnv string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("command %q: %w", name, err)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", &NotFoundError{Name: name}
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("is not executable (run chmod +x on it, or run it through a shell)")
	}
	return nil
}
