package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// compileFlags are the flags of every command that compiles a pipeline for
// an event: plan, and later run.
type compileFlags struct {
	event, ref, sha, repo, actor, base string
	pr                                 int
	vars, varFiles, inputs, changed    []string
	// dryRun is --dry-run, of the commands that have it: the plan is a
	// dry run's (pipeline.dry_run).
	dryRun bool
	// lock says how the module lock file is used: validate checks or
	// updates it, every other command reads it.
	lock dsl.LockMode
}

func (f *compileFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.event, "event", "", "event to plan for: push, pull_request, tag, schedule or manual (default: push, or tag when --ref is a tag)")
	fl.StringVar(&f.ref, "ref", "", "git ref of the event, like refs/heads/main, main, refs/tags/v1.2.0 (default: the current branch)")
	fl.StringVar(&f.sha, "sha", "", "commit of the event (default: HEAD)")
	fl.StringVar(&f.repo, "repo", "", "repository as owner/name (default: from the origin remote)")
	fl.StringVar(&f.actor, "actor", "", "who triggered the event (default: git user.name)")
	fl.StringVar(&f.base, "base", "", "for pull_request: the branch the pull request targets; path filters compare HEAD with it")
	fl.IntVar(&f.pr, "pr", 0, "pull request number, for --event pull_request")
	fl.StringArrayVar(&f.vars, "var", nil, "set a variable: --var name=value (repeatable)")
	fl.StringArrayVar(&f.varFiles, "var-file", nil, "read variables from an HCL or JSON file (repeatable)")
	fl.StringArrayVar(&f.inputs, "input", nil, "set an input of a manual run: --input name=value (repeatable)")
	fl.StringSliceVar(&f.changed, "changed", nil, "files the event changed, for path filters and changed() (default: the files of HEAD's commit)")
}

// options builds compile options from the flags and the repository that
// holds the pipeline.
func (f *compileFlags) options(e *env, pipelineDir string) (dsl.Options, error) {
	g, known, err := dsl.LocalGit(pipelineDir)
	if err != nil {
		return dsl.Options{}, err
	}
	opts := dsl.Options{Environ: e.environ, VarFiles: f.varFiles, DryRun: f.dryRun}
	opts.Modules.Lock = f.lock
	if home, err := local.Home(); err == nil {
		// Git modules are cached with the rest of the home's state.
		opts.Modules.Fetcher = &dsl.GitFetcher{Dir: filepath.Join(home, "modules")}
	}
	if opts.Vars, err = dsl.ParseVarFlags(f.vars); err != nil {
		return opts, usageError{fmt.Errorf("--var %w", err)}
	}
	if len(f.inputs) > 0 {
		if opts.Inputs, err = dsl.ParseVarFlags(f.inputs); err != nil {
			return opts, usageError{fmt.Errorf("--input %w", err)}
		}
	}
	if f.sha != "" {
		g.SHA, g.ShortSHA = f.sha, ""
		if len(f.sha) >= 7 {
			g.ShortSHA = f.sha[:7]
		}
	}
	if f.ref != "" {
		ref := f.ref
		switch {
		case strings.HasPrefix(ref, "refs/"):
		case f.event == "tag":
			ref = "refs/tags/" + ref
		default:
			ref = "refs/heads/" + ref
		}
		g.Ref, g.Branch, g.Tag = ref, "", ""
		if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
			g.Branch = b
		}
		if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
			g.Tag = t
		}
	}
	switch {
	case f.event != "":
		if !contains(dsl.TriggerKinds, f.event) {
			return opts, usageError{fmt.Errorf("--event %q is not an event; use one of %s", f.event, strings.Join(dsl.TriggerKinds, ", "))}
		}
		g.Event = f.event
	case g.Tag != "" && g.Branch == "":
		g.Event = "tag"
	default:
		g.Event = "push"
	}
	if g.Event == "tag" && g.Tag == "" {
		return opts, usageError{fmt.Errorf("--event tag needs the tag: --ref refs/tags/<tag> (or --ref <tag>)")}
	}
	if g.Event == "pull_request" {
		g.PullRequest = f.pr
		g.BaseRef = strings.TrimPrefix(f.base, "refs/heads/")
		if g.BaseRef == "" {
			g.BaseRef = "main"
		}
		if f.base != "" && len(f.changed) == 0 {
			if files, err := dsl.ChangedBetween(pipelineDir, f.base, "HEAD"); err == nil {
				g.ChangedFiles, known = files, true
			}
		}
	}
	if f.repo != "" {
		g.Repo = f.repo
	}
	if f.actor != "" {
		g.Actor = f.actor
	}
	if len(f.changed) > 0 {
		g.ChangedFiles, known = f.changed, true
	}
	opts.Git, opts.ChangedFilesKnown = g, known
	return opts, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// pipelinePath returns the path argument or the default .sluice directory.
// A directory that holds a .sluice directory and no pipeline files of its
// own (a project, such as examples/hello) stands for its .sluice, as a
// repository's directory stands for its .git.
func pipelinePath(args []string) string {
	if len(args) != 1 {
		return dsl.DefaultDir
	}
	path := args[0]
	if filepath.Base(filepath.Clean(path)) == dsl.DefaultDir {
		return path
	}
	if hcl, _ := filepath.Glob(filepath.Join(path, "*.hcl")); len(hcl) > 0 {
		return path
	}
	inner := filepath.Join(path, dsl.DefaultDir)
	if info, err := os.Stat(inner); err == nil && info.IsDir() {
		return inner
	}
	return path
}

// pipelineDir is the directory a pipeline path stands for.
func pipelineDir(path string) string {
	if info, err := os.Stat(path); err == nil && !info.IsDir() {
		return filepath.Dir(path)
	}
	return path
}

// compile compiles the pipeline named by a command's arguments for the
// event its flags describe. The commands that use it (plan, validate)
// compile and exit, so their heap is bounded (boundHeap).
func (f *compileFlags) compile(e *env, args []string) (*plan.Plan, *dsl.Sources, error) {
	boundHeap()
	path := pipelinePath(args)
	opts, err := f.options(e, pipelineDir(path))
	if err != nil {
		return nil, nil, err
	}
	return compile(e, path, opts)
}

// heapLimit is the soft limit on the Go heap of a command that compiles a
// pipeline and exits. With the GOGC of 400 that Main sets, the heap of a
// 1,000-stage pipeline (about 30 MB live) would grow to some 90 MB before
// a collection, and the process to 130 MB; with this limit the process stays
// near 90 MB at the cost of a few more collections (docs/benchmarks.md).
// Pipelines of ordinary size never come near it. A pipeline whose live heap
// exceeds it is not refused: the runtime then spends at most half the CPU on
// collections.
const heapLimit = 56 << 20

// boundHeap sets heapLimit unless the user chose a collector policy of
// their own (GOGC or GOMEMLIMIT).
func boundHeap() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(heapLimit)
	}
}

// compile loads and compiles a pipeline, printing diagnostics to stderr.
// It returns exitError{1} when there are errors.
func compile(e *env, path string, opts dsl.Options) (*plan.Plan, *dsl.Sources, error) {
	src, diags := dsl.Load(path)
	if !diags.HasErrors() {
		var more hcl.Diagnostics
		var p *plan.Plan
		p, more = dsl.Compile(src, opts)
		diags = append(diags, more...)
		if !diags.HasErrors() {
			printDiags(e, src, diags)
			return p, src, nil
		}
	}
	printDiags(e, src, diags)
	return nil, src, exitError{1}
}

func printDiags(e *env, src *dsl.Sources, diags hcl.Diagnostics) {
	if len(diags) == 0 {
		return
	}
	width, color := uint(100), false
	if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			width = uint(w)
		}
		color = os.Getenv("NO_COLOR") == ""
	}
	_ = dsl.WriteDiagnostics(e.stderr, src, diags, width, color)
	errs := 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		}
	}
	if errs > 0 {
		fmt.Fprintf(e.stderr, "%d %s.\n", errs, plural(errs, "error", "errors"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
