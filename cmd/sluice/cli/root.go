package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/worker"
)

// Version is set at build time with -ldflags "-X .../cli.Version=v1.2.3";
// without it the module version from the build info is used.
var Version = ""

// exitError carries an exit code out of a command whose problem was already
// reported to the user (diagnostics, a failed check), so Main prints
// nothing more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// env is what commands read from the process, injectable for tests.
type env struct {
	stdout, stderr io.Writer
	environ        []string
	getwd          func() (string, error)
	// workflows registers the workflow code sluice replay replays
	// histories against; nil is this build's (server.RegisterAllWorkflows).
	workflows func(worker.WorkflowRegistry)
}

// Main runs the sluice command line with args (without the program name)
// and returns the process exit code: 0 on success, 1 when the command
// failed, 2 for a usage mistake.
func Main(args []string, stdout, stderr io.Writer) int {
	return MainContext(context.Background(), args, stdout, stderr)
}

// MainContext is Main with a context: its end stops a command that runs
// until stopped (sluice server, sluice runner) as SIGTERM would.
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return mainEnv(ctx, &env{stdout: stdout, stderr: stderr, environ: os.Environ(), getwd: os.Getwd}, args)
}

// mainEnv is MainContext with the process's env given.
func mainEnv(ctx context.Context, e *env, args []string) int {
	stdout, stderr := e.stdout, e.stderr
	if os.Getenv("GOGC") == "" {
		// A short-lived command that builds one large value (a plan) and
		// exits spends much of its time in the collector at the default
		// setting; memory is not the constraint here.
		debug.SetGCPercent(400)
	}
	root := newRoot(e)
	root.SetArgs(singleDashLong(root, args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var xe exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &xe):
		return xe.code
	case errors.As(err, new(usageError)), strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(stderr, "sluice: %s\nRun 'sluice --help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "sluice: %s\n", err)
		return 1
	}
}

type usageError struct{ error }

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "Sluice runs CI/CD pipelines written in HCL, durably, on Temporal",
		Long: `Sluice runs CI/CD pipelines that repositories keep in .sluice/*.hcl.

Check a pipeline and see what an event would run before you push it:

  sluice validate              check .sluice/ and report every problem
  sluice plan                  show what a push of this branch would run
  sluice fmt                   rewrite pipeline files in canonical style

Run it here, durably, exactly as CI would (the local server starts in the
background on first use):

  sluice run                   run .sluice/ on this machine, with live logs
  sluice runs, status, logs    look at runs; approve, cancel, retry act on them
  sluice replay RUN --pipeline .sluice
                               what a changed pipeline would have done in a run

Run it for a team:

  sluice server                webhooks and git pushes start runs (docs/server.md)
  sluice hook install REPO.git report a bare repository's pushes to a server
  sluice login URL             use a server's API: runs --server URL, approve ...
  sluice replay --since 7d     before an upgrade: replay the last week's workflow
                               histories against this build (docs/operations.md)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newValidate(e), newPlan(e), newFmt(e), newRun(e), newRuns(e), newStatus(e), newLogs(e),
		newDecide(e, true), newDecide(e, false), newCancel(e), newRetry(e), newReplay(e), newDev(e), newImages(e), newVersion(e), newServer(e), newHook(e), newLogin(e, os.Stdin), newSchedules(e), newRunner(e), newRunners(e), newAdmin(e))
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  # bash, for the current shell
  source <(sluice completion bash)
  # zsh, installed for every shell
  sluice completion zsh > "${fpath[1]}/_sluice"`
		}
	}
	return root
}

func newVersion(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of sluice",
		Example: "  sluice version",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(e.stdout, "sluice %s\n", version())
			return nil
		},
	}
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments; got %q", cmd.CommandPath(), args)}
	}
	return nil
}

func maxOneArg(cmd *cobra.Command, args []string) error {
	if len(args) > 1 {
		return usageError{fmt.Errorf("%s takes at most one path; got %d arguments", cmd.CommandPath(), len(args))}
	}
	return nil
}

// singleDashLong accepts long flags written with one dash (-check, as in
// terraform fmt -check and go vet -json) by rewriting them to two, when the
// command has a long flag of that name.
func singleDashLong(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil {
		return args
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && (cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil) {
			out[i] = "-" + a
		}
	}
	return out
}
