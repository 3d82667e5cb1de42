package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/runners/local"
)

// errReplayMode is the answer to sluice replay given nothing to replay.
var errReplayMode = errors.New("sluice replay needs what to replay: run IDs (their recorded histories against this build's workflow code), " +
	"--since 7d (every workflow execution of the last 7 days), --history FILE... (exported histories), " +
	"or a run ID and --pipeline DIR (a changed pipeline against the run)")

func newReplay(e *env) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	var hf historyFlags
	var pipeline, output string
	var assumeFailure bool
	var vars, varFiles []string
	cmd := &cobra.Command{
		Use:   "replay RUN --pipeline DIR | replay (RUN... | --since 7d | --history FILE...)",
		Short: "Replay a run against a changed pipeline, or recorded histories against this build",
		Long: `Replay checks a change against what already happened, before it is merged
or rolled out. It has two modes.

With --pipeline, replay takes a recorded run (its event, the results and
outputs of its steps, the decisions of its approvals) and works out what
the pipeline in DIR would have decided with them: which stages run or are
skipped (their when, their needs), which steps would receive different
inputs (their resolved command, image, env...), which approvals would be
asked, which stages and steps are new or removed (a renamed step is one
removed and one added). It prints that as a diff against what happened,
or with -o json for machines. Nothing runs: test a change to your CI
against last week's runs before you merge it.

The pipeline is compiled for the run's event (commit, ref, changed files,
the inputs of a manual run). Its variables take their values as sluice
plan gives them (defaults, SLUICE_VAR_<name>, --var, --var-file); those
that differ from the run's are listed.

A step of the run (same stage, same name) that would receive the same
inputs keeps its recorded result and outputs. Any other step (new,
renamed, given other inputs, or one the run did not run) has no result
to keep: it is assumed to succeed, or with --assume-failure to fail, and
its outputs are not known, so a step that uses one receives
${step.NAME.OUTPUT} and is assumed too. An approval the run decided keeps
its decision; one the run did not decide is assumed approved. Stages are
taken one at a time, in plan order. See docs/replay.md.

Without --pipeline, replay checks an upgrade: it replays recorded Temporal
histories against the workflow code of this build of sluice, as a worker
of this build would when it takes the workflows up, and reports each as
OK or where the code diverges from the history: the event ID and type,
what the history has there, what the code did instead, and the Temporal
SDK's message. Run the new binary before you roll it out:

  RUN...             the named runs (their latest execution)
  --since 7d         every execution of Sluice's workflows (runs, and the
                     server's deliveries, reports, traces...) that started
                     or ended in the last 7 days, or is still running
  --history FILE...  histories exported as JSON (temporal workflow show
                     --output json; engine/testdata)

The histories come from the local server of $SLUICE_HOME, which must be
running (replay never starts one: this build's would take up the
workflows being checked), from a Temporal cluster (--temporal-address),
or, for named runs, from a Sluice server's API (--server). --parallel
histories are fetched and replayed at once. The summary says how many
were replayed and how many failed; replay exits 1 when any failed or
could not be fetched or read. See docs/operations.md, "Upgrading".`,
		Example: `  sluice replay web-1a2b3c4d --pipeline .sluice
  sluice replay web-1a2b3c4d --pipeline . --assume-failure
  sluice replay web-1a2b3c4d --pipeline .sluice -o json --server https://ci.example.com
  sluice replay --since 7d --temporal-address temporal.internal:7233
  sluice replay web-1a2b3c4d web-5e6f7a8b
  sluice replay --history engine/testdata/*.json -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if pipeline != "" {
				if hf.since != "" || hf.files {
					return usageError{errors.New("--since and --history replay histories against this build; they do not go with --pipeline")}
				}
				return exactArgs(1, "a run ID")(cmd, args)
			}
			if assumeFailure || len(vars) > 0 || len(varFiles) > 0 {
				return usageError{errors.New("--assume-failure, --var and --var-file go with --pipeline DIR")}
			}
			switch {
			case hf.files && hf.since != "":
				return usageError{errors.New("give --since or --history, not both")}
			case hf.since != "" && len(args) > 0:
				return usageError{fmt.Errorf("--since replays every execution of its days; it takes no run IDs (got %q)", args)}
			case hf.since == "" && len(args) == 0:
				return usageError{errReplayMode}
			case hf.parallel < 1:
				return usageError{fmt.Errorf("--parallel %d: replay at least one history at a time", hf.parallel)}
			}
			if hf.since != "" {
				if _, err := parseSince(hf.since); err != nil {
					return usageError{err}
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not an output format; use text or json", output)}
			}
			if pipeline == "" {
				return replayHistories(cmd, e, &sf, &rf, args, hf, output)
			}
			runID := args[0]
			var recorded plan.Plan
			var status engine.RunStatus
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api != nil {
				if status, err = api.status(cmd.Context(), runID); err != nil {
					return err
				}
				if err := api.do(cmd.Context(), http.MethodGet, runPath(runID, "/plan"), nil, &recorded); err != nil {
					return err
				}
			} else {
				err := withStack(cmd, e, &sf, func(ctx context.Context, s *local.Stack) error {
					var err error
					if status, err = engine.Status(ctx, s.Client, runID); err != nil {
						return err
					}
					recorded, err = engine.RunPlan(ctx, s.Client, runID)
					return err
				})
				if err != nil {
					return err
				}
			}

			opts := dsl.Options{
				Git:               recorded.Git,
				ChangedFilesKnown: len(recorded.Git.ChangedFiles) > 0,
				Inputs:            recorded.Inputs,
				Environ:           e.environ,
				VarFiles:          varFiles,
			}
			if opts.Vars, err = dsl.ParseVarFlags(vars); err != nil {
				return usageError{fmt.Errorf("--var %w", err)}
			}
			path := pipelinePath([]string{pipeline})
			changed, _, err := compile(e, path, opts)
			if err != nil {
				return err
			}
			rep, err := engine.ReplayPipeline(engine.ReplayInput{Recorded: recorded, Status: status, Plan: *changed, AssumeFailure: assumeFailure})
			if err != nil {
				return fmt.Errorf("replaying run %q: %w", runID, err)
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(rep)
			}
			return writeReplay(e.stdout, rep, path)
		},
	}
	sf.register(cmd)
	cmd.Flags().Lookup("temporal-address").Usage = "host:port of an existing Temporal cluster (default: the local server of $SLUICE_HOME, which must be running to replay histories)"
	rf.register(cmd, e)
	cmd.Flags().StringVar(&pipeline, "pipeline", "", "the changed pipeline: a .sluice directory, a project directory that holds one, or a file")
	cmd.Flags().BoolVar(&assumeFailure, "assume-failure", false, "steps without a recorded result fail (default: they succeed)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringArrayVar(&vars, "var", nil, "set a variable of the changed pipeline: --var name=value (repeatable)")
	cmd.Flags().StringArrayVar(&varFiles, "var-file", nil, "read variables of the changed pipeline from an HCL or JSON file (repeatable)")
	cmd.Flags().StringVar(&hf.since, "since", "", "replay every execution of Sluice's workflows started or ended this long ago or later, or still running: 7d, 36h")
	cmd.Flags().BoolVar(&hf.files, "history", false, "the arguments are histories exported as JSON files (temporal workflow show --output json), not run IDs")
	cmd.Flags().IntVar(&hf.parallel, "parallel", 4, "histories fetched and replayed at once")
	return cmd
}

// writeReplay prints a replay as a diff against the recorded run: a line
// per stage marked + (added), - (removed), ~ (changed) or blank, and under
// each changed stage what changed in it.
func writeReplay(w io.Writer, rep *engine.ReplayReport, path string) error {
	g := rep.Git
	sha := g.ShortSHA
	if sha == "" {
		sha = "no commit"
	}
	fmt.Fprintf(w, "Replay of run %s (%s, %s) against %s\n", rep.RunID, eventName(g), sha, path)
	assumed := "succeed"
	if rep.Assume == "failure" {
		assumed = "fail"
	}
	fmt.Fprintf(w, "Steps without a recorded result are assumed to %s; their outputs are not known.\n", assumed)
	if !rep.Run.Before.State.Done() {
		fmt.Fprintf(w, "The run has not ended (%s): steps it has not finished have no recorded result.\n", rep.Run.Before.State)
	}
	if t := rep.Trigger; t.Before.Matched != t.After.Matched {
		fmt.Fprintf(w, "Trigger: %s → %s\n", triggerText(t.Before), triggerText(t.After))
	}
	for _, v := range rep.Vars {
		hint := ""
		if v.Before != nil && v.After != nil {
			hint = fmt.Sprintf(" (the run's value: --var %s=%s)", strings.TrimPrefix(v.Path, "var."), varFlagValue(*v.Before))
		}
		fmt.Fprintf(w, "%s: %s → %s%s\n", v.Path, valueText(v.Before), valueText(v.After), hint)
	}
	fmt.Fprintln(w)

	width := 0
	for _, s := range rep.Stages {
		width = max(width, len(s.ID))
	}
	for _, s := range rep.Stages {
		fmt.Fprintf(w, "%s %-*s  %s\n", changeMark(s.Change), width, s.ID, stageChangeText(s))
		switch s.Change {
		case engine.ChangeChanged:
			b, a := s.Before, s.After
			if !slices.Equal(b.Needs, a.Needs) {
				fmt.Fprintf(w, "      needs: %s → %s\n", listText(b.Needs), listText(a.Needs))
			}
			if bt, at := approvalText(b.Approval), approvalText(a.Approval); bt != at {
				fmt.Fprintf(w, "      approval: %s → %s\n", bt, at)
			}
		case engine.ChangeAdded:
			if s.After.Approval != nil {
				fmt.Fprintf(w, "      approval: %s\n", approvalText(s.After.Approval))
			}
		default:
			continue
		}
		stepWidth := 0
		for _, st := range s.Steps {
			if st.Change != engine.ChangeUnchanged {
				stepWidth = max(stepWidth, len(st.Name))
			}
		}
		for _, st := range s.Steps {
			if st.Change == engine.ChangeUnchanged {
				continue
			}
			fmt.Fprintf(w, "    %s %-*s  %s\n", changeMark(st.Change), stepWidth, st.Name, stepChangeText(st))
			for _, v := range st.Inputs {
				fmt.Fprintf(w, "          %s: %s → %s\n", v.Path, valueText(v.Before), valueText(v.After))
			}
			for _, v := range st.Settings {
				fmt.Fprintf(w, "          %s: %s → %s\n", v.Path, valueText(v.Before), valueText(v.After))
			}
		}
	}

	fmt.Fprintf(w, "\nRun: %s\n", beforeAfter(outcomeText(rep.Run.Before.State, rep.Run.Before.Error), outcomeText(rep.Run.After.State, rep.Run.After.Error)))
	if !rep.Changed {
		fmt.Fprintln(w, "No change: the pipeline decides as the recorded run did.")
		return nil
	}
	sum := rep.Summary
	var parts []string
	add := func(n int, one, many string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, plural(n, one, many)))
		}
	}
	add(sum.StagesChanged, "stage changed", "stages changed")
	add(sum.StagesAdded, "stage added", "stages added")
	add(sum.StagesRemoved, "stage removed", "stages removed")
	add(sum.StepsAdded, "step added", "steps added")
	add(sum.StepsRemoved, "step removed", "steps removed")
	add(sum.InputsChanged, "step with different inputs", "steps with different inputs")
	add(sum.Assumed, "result assumed", "results assumed")
	if sum.ApprovalsAsked > 0 {
		parts = append(parts, fmt.Sprintf("%d %s asked (%d new)", sum.ApprovalsAsked, plural(sum.ApprovalsAsked, "approval", "approvals"), sum.NewApprovals))
	}
	if len(parts) == 0 {
		parts = append(parts, "the same stages and steps")
	}
	fmt.Fprintf(w, "%s.\n", strings.Join(parts, ", "))
	return nil
}

func changeMark(change string) string {
	switch change {
	case engine.ChangeAdded:
		return "+"
	case engine.ChangeRemoved:
		return "-"
	case engine.ChangeChanged:
		return "~"
	}
	return " "
}

func beforeAfter(before, after string) string {
	if before == after {
		return before
	}
	return before + " → " + after
}

func outcomeText(s engine.State, why string) string {
	if why == "" {
		return string(s)
	}
	return string(s) + ": " + why
}

func stageChangeText(s engine.ReplayStage) string {
	switch {
	case s.Before == nil:
		return "new → " + outcomeText(s.After.State, s.After.Reason)
	case s.After == nil:
		return outcomeText(s.Before.State, s.Before.Reason) + " → removed"
	}
	return beforeAfter(outcomeText(s.Before.State, s.Before.Reason), outcomeText(s.After.State, s.After.Reason))
}

func stepChangeText(st engine.ReplayStep) string {
	if st.After == nil {
		return outcomeText(st.Before.State, st.Before.Error) + " → removed"
	}
	after := outcomeText(st.After.State, st.After.Error)
	if st.After.Result == engine.ResultAssumed && st.After.Error == "" {
		after += " (assumed: " + st.After.Why + ")"
	}
	if st.Before == nil {
		return "new → " + after
	}
	return beforeAfter(outcomeText(st.Before.State, st.Before.Error), after)
}

func approvalText(a *engine.ReplayApproval) string {
	switch {
	case a == nil:
		return "none"
	case !a.Asked:
		return "not asked"
	}
	if a.Decision == "" {
		return "asked, not decided"
	}
	s := "asked, " + a.Decision
	if a.By != "" && a.Result != engine.ResultAssumed {
		s += " by " + a.By
	}
	if a.Result == engine.ResultAssumed {
		s += " (assumed)"
	}
	return s
}

func triggerText(t plan.Trigger) string {
	if t.Matched {
		return "starts"
	}
	return "does not start: " + t.Reason
}

func listText(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, ", ")
}

func valueText(v *string) string {
	if v == nil {
		return "(none)"
	}
	return *v
}

// varFlagValue writes a variable's JSON value as --var takes it: a string
// as it is, anything else in HCL syntax, which JSON is.
func varFlagValue(raw string) string {
	var s string
	if json.Unmarshal([]byte(raw), &s) == nil {
		return s
	}
	return raw
}
