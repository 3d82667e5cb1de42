package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/identity"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/buildkit"
	"github.com/sluice-ci/sluice/steps/run"
)

// Workspace is where the stage's workspace is mounted in the container.
const Workspace = run.ContainerWorkspace

// outputDir holds $SLUICE_OUTPUT in the container: a mount of its own, so
// the file is not left in the workspace. The exit code sluice-exec records
// is there too.
const outputDir = "/run/sluice"

// secretsDir holds a step's secrets in the container ($SLUICE_SECRETS): a
// BuildKit secret mount per file, never in the image, cache or workspace.
const secretsDir = "/run/secrets"

// helperDir is where the runner's sluice-exec is mounted in the container.
const helperDir = "/run/sluice-exec"

// Helper is the program that runs a step's command in its container and
// records its exit code (cmd/sluice-exec).
const Helper = "sluice-exec"

// FindHelper locates sluice-exec: $SLUICE_EXEC_BIN, next to the running
// executable, or on PATH; "" when it is nowhere.
func FindHelper() string { return proc.Find("SLUICE_EXEC_BIN", Helper) }

// Executor runs plan.KindRun steps that set an image.
type Executor struct {
	// BuildKit is the runner's connection to buildkitd, shared with its
	// image executor.
	BuildKit *buildkit.Conn
	// DockerConfig is the directory of the runner's Docker config.json,
	// for pulling private images the step gives no username and password
	// for; empty means $DOCKER_CONFIG or ~/.docker.
	DockerConfig string
	// Outputs reads $SLUICE_OUTPUT as the host executor does (its
	// MaxOutputSize applies).
	Outputs run.Executor
	// Helper is the path of a static sluice-exec (see FindHelper), which
	// runs each command so that a command that fails keeps the files it
	// changed and the outputs it set. Without it, BuildKit drops them, and
	// a failed step has only its exit code.
	Helper string
}

var _ steps.Executor = (*Executor)(nil)

// Execute runs the step's command in a container and waits for it. A
// command that exits non-zero returns a *buildkit.ExitError together with
// the exit_code output.
func (e *Executor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	rs := req.Step.Run
	if req.Step.Kind != plan.KindRun || rs == nil || rs.Image.IsZero() {
		return steps.Result{}, fmt.Errorf("container executor given step %q, which is not a run step with an image", req.Step.Name)
	}
	fail := func(err error) (steps.Result, error) {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	image := rs.Image.Literal()
	argv, err := run.CommandLine(rs)
	if err != nil {
		return fail(err)
	}
	if rs.WorkingDir != "" && !path.IsAbs(rs.WorkingDir) && strings.HasPrefix(path.Clean(rs.WorkingDir), "..") || path.IsAbs(rs.WorkingDir) {
		return fail(fmt.Errorf("working_dir %q leaves the workspace; use a path relative to the repository root, such as \"cmd/api\"", rs.WorkingDir))
	}
	if req.Workspace == "" {
		return fail(errors.New("no workspace to run in"))
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	ws, err := fsutil.NewFS(req.Workspace)
	if err != nil {
		return fail(fmt.Errorf("opening workspace: %w", err))
	}
	conn := e.BuildKit
	if conn == nil {
		conn = &buildkit.Conn{}
	}
	c, err := conn.Client(ctx)
	if err != nil {
		return fail(err)
	}
	creds, err := buildkit.StepCredentials(rs.Username.Literal(), rs.Password.Literal(), image)
	if err != nil {
		return fail(err)
	}
	auth, err := buildkit.Auth(e.DockerConfig, creds)
	if err != nil {
		return fail(err)
	}

	// Every variable of the step's env reaches the container as a BuildKit
	// secret: values (secrets among them) then never enter the build
	// definition, BuildKit's cache records or its progress.
	env := map[string]string{}
	maps.Copy(env, req.Env)
	maps.Copy(env, map[string]string{
		"CI":                "true",
		"SLUICE_RUN_ID":     req.RunID,
		"SLUICE_STAGE":      req.StageID,
		"SLUICE_STEP":       req.Step.Name,
		"SLUICE_WORKSPACE":  Workspace,
		"SLUICE_OUTPUT":     outputDir + "/output",
		"SLUICE_GIT_SHA":    req.Git.SHA,
		"SLUICE_GIT_REF":    req.Git.Ref,
		"SLUICE_GIT_TAG":    req.Git.Tag,
		"SLUICE_GIT_BRANCH": req.Git.Branch,
	})
	secretValues := map[string][]byte{}
	var secretOpts []llb.RunOption
	for _, k := range slices.Sorted(maps.Keys(rs.Secrets)) {
		if !plan.ValidSecretFile(k) {
			return fail(fmt.Errorf("secret file name %q is not valid", k))
		}
		// Readable by the image's user, whoever it is: the container is
		// the step's alone.
		id := "file." + k
		secretValues[id] = []byte(rs.Secrets[k].Literal())
		secretOpts = append(secretOpts, llb.AddSecret(path.Join(secretsDir, k), llb.SecretID(id), llb.SecretFileOpt(0, 0, 0o444)))
	}
	if len(secretOpts) > 0 {
		env["SLUICE_SECRETS"] = secretsDir
	}
	locals := map[string]fsutil.FS{"workspace": ws}
	var helperOpts []llb.RunOption
	if e.Helper != "" {
		hfs, err := fsutil.NewFS(filepath.Dir(e.Helper))
		if err != nil {
			return fail(fmt.Errorf("opening %s: %w", e.Helper, err))
		}
		locals["sluice-exec"] = hfs
		name := filepath.Base(e.Helper)
		src := llb.Local("sluice-exec", llb.IncludePatterns([]string{name}), llb.SharedKeyHint("sluice-exec:"+e.Helper))
		helperOpts = append(helperOpts, llb.AddMount(helperDir, src, llb.Readonly))
		argv = append([]string{path.Join(helperDir, name), path.Join(outputDir, "exit"), "--"}, argv...)
	}
	runOpts := []llb.RunOption{
		llb.Args(argv),
		llb.Dir(path.Join(Workspace, rs.WorkingDir)),
		llb.AddMount(outputDir, llb.Scratch()),
		// A step runs every time: the nonce keeps BuildKit from answering
		// it from the cache of an earlier run, while the two solves below
		// share the one execution.
		llb.AddEnv("SLUICE_EXEC_ID", identity.NewID()),
		llb.WithCustomName(req.Step.Name),
	}
	runOpts = append(runOpts, secretOpts...)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fail(fmt.Errorf("environment variable name %q is not valid", k))
		}
		id := "env." + k
		secretValues[id] = []byte(env[k])
		runOpts = append(runOpts, llb.AddSecret(k, llb.SecretID(id), llb.SecretAsEnv(true), llb.SecretAsEnvName(k)))
	}
	pipeline := req.Env["SLUICE_PIPELINE"]
	for _, dir := range rs.Cache {
		if !path.IsAbs(dir) {
			return fail(fmt.Errorf("cache directory %q is not absolute; write the path in the container, such as \"/root/.cache/go-build\"", dir))
		}
		// One cache per pipeline and path: pipelines do not see each
		// other's caches, runs of the same pipeline share theirs.
		id := "sluice/" + pipeline + "/" + path.Clean(dir)
		runOpts = append(runOpts, llb.AddMount(dir, llb.Scratch(), llb.AsPersistentCacheDir(id, llb.CacheMountShared)))
	}

	// One solve: the files the command changed, and its $SLUICE_OUTPUT
	// under a directory of its own (named with a nonce, so that it meets
	// no file of the repository), exported to the workspace together. Two
	// solves of the same exec, one per mount, run the command twice.
	outRel := ".sluice-output-" + identity.NewID()
	build := func(ctx context.Context, gw gateway.Client) (*gateway.Result, error) {
		base := llb.Image(image, llb.WithMetaResolver(gw))
		src := llb.Local("workspace", llb.SharedKeyHint(req.Workspace))
		exec := base.Run(append(append(runOpts, helperOpts...), llb.AddMount(Workspace, src))...)
		changed := llb.Diff(src, exec.GetMount(Workspace))
		out := llb.Scratch().File(llb.Copy(exec.GetMount(outputDir), "/", "/"+outRel+"/", &llb.CopyInfo{CopyDirContentsOnly: true, CreateDestPath: true, AllowEmptyWildcard: true}))
		def, err := llb.Merge([]llb.State{changed, out}).Marshal(ctx)
		if err != nil {
			return nil, err
		}
		return gw.Solve(ctx, gateway.SolveRequest{Definition: def.ToPB(), Evaluate: true})
	}
	opt := client.SolveOpt{
		LocalMounts: locals,
		// The files the command changed or added are written back into
		// the workspace; a file it deleted stays on the host.
		Exports: []client.ExportEntry{{Type: client.ExporterLocal, OutputDir: req.Workspace}},
		Session: []session.Attachable{auth, secretsprovider.FromMap(secretValues)},
	}
	ch := make(chan *client.SolveStatus)
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		_, err := c.Build(gctx, opt, "sluice", build, ch)
		return err
	})
	eg.Go(func() error { return copyLogs(log, ch) })
	err = eg.Wait()
	result := steps.Result{Outputs: map[string]string{}}
	if err != nil {
		if buildkit.Lost(err) {
			conn.Drop(c)
		}
		err = buildkit.Describe(ctx, err, conn.Addr, fmt.Sprintf("running %q in image %s", argv[0], image))
		var exit *buildkit.ExitError
		if errors.As(err, &exit) {
			if e.Helper == "" {
				fmt.Fprintf(log, "sluice: the files this step changed and the outputs it set are lost, since this runner has no %s to run it with; build it next to sluice (make build)\n", Helper)
			}
			result.Outputs["exit_code"] = strconv.Itoa(exit.Code)
			return result, exit
		}
		return fail(err)
	}
	outputs, rerr := os.ReadFile(filepath.Join(req.Workspace, outRel, "output"))
	status, serr := os.ReadFile(filepath.Join(req.Workspace, outRel, "exit"))
	if err := os.RemoveAll(filepath.Join(req.Workspace, outRel)); err != nil {
		return fail(fmt.Errorf("removing the step's outputs from the workspace: %w", err))
	}
	if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return fail(fmt.Errorf("reading the step's outputs: %w", rerr))
	}
	code := 0
	if e.Helper != "" {
		if code, err = strconv.Atoi(strings.TrimSpace(string(status))); serr != nil || err != nil {
			return fail(fmt.Errorf("%s did not record how the command ended (%q, %v); the command's output is in the step log", Helper, status, serr))
		}
	}
	vals, err := e.Outputs.ParseOutputs(outputs, req.Step, log)
	maps.Copy(result.Outputs, vals)
	result.Outputs["exit_code"] = strconv.Itoa(code)
	if code != 0 {
		// As on the host: the outputs set before the command failed stand,
		// and a malformed one is only a warning.
		if err != nil {
			fmt.Fprintf(log, "sluice: warning: %v\n", err)
		}
		return result, &buildkit.ExitError{Code: code}
	}
	if err != nil {
		return result, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	return result, nil
}

// copyLogs writes what the command prints into the step's log, and
// BuildKit's own errors (a pull that failed) as one line each.
func copyLogs(w io.Writer, ch chan *client.SolveStatus) error {
	var werr error
	for st := range ch {
		for _, l := range st.Logs {
			if werr == nil {
				_, werr = w.Write(l.Data)
			}
		}
		for _, v := range st.Vertexes {
			if v.Error != "" && werr == nil && !strings.Contains(v.Error, "did not complete successfully") && !strings.Contains(v.Error, "context canceled") {
				_, werr = fmt.Fprintf(w, "sluice: %s: %s\n", v.Name, v.Error)
			}
		}
	}
	return werr
}
