package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/spf13/cobra"
)

func newPlan(e *env) *cobra.Command {
	var flags compileFlags
	var output string
	cmd := &cobra.Command{
		Use:   "plan [PATH]",
		Short: "Show what a pipeline would run for an event",
		Long: `Plan compiles the pipeline in PATH (default .sluice) for one event and shows
what would run, in order: every stage instance (matrix expanded) with its
steps, what is skipped and why, and which stages wait for an approval.
Nothing runs. Values known only at run time, such as step outputs and
secrets, are shown as ${...} references.

The event defaults to a push of the current branch at HEAD, read from the
local repository. With -o json the plan is printed as the engine receives
it; the same input always gives the same bytes and digest.`,
		Example: `  sluice plan
  sluice plan --event pull_request --ref feature/login --base main
  sluice plan --event tag --ref v1.4.0 -o json
  sluice plan --event manual --input environment=staging
  sluice plan --event tag --ref v1.4.0 --dry-run
  sluice plan examples/monorepo/.sluice --changed services/api/main.go`,
		Args: maxOneArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not an output format; use text or json", output)}
			}
			p, _, err := flags.compile(e, args)
			if err != nil {
				return err
			}
			if output == "json" {
				b, err := p.JSON()
				if err != nil {
					return err
				}
				_, err = e.stdout.Write(b)
				return err
			}
			return writePlan(e.stdout, p)
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&flags.dryRun, "dry-run", false, "plan a dry run, as sluice run --dry-run would run it (pipeline.dry_run is true)")
	return cmd
}

// writePlan renders a plan for people.
func writePlan(w io.Writer, p *plan.Plan) error {
	g := p.Git
	sha := g.ShortSHA
	if sha == "" {
		sha = "no commit"
	}
	fmt.Fprintf(w, "Pipeline %s: %s (%s)\n", p.Pipeline, eventName(g), sha)
	if p.Trigger.Matched {
		fmt.Fprintf(w, "Trigger:  starts: %s\n", p.Trigger.Reason)
	} else {
		fmt.Fprintf(w, "Trigger:  does not start: %s\n", p.Trigger.Reason)
	}
	if p.Concurrency != nil {
		mode := "queued behind a run in progress"
		if p.Concurrency.CancelInProgress {
			mode = "cancels a run in progress"
		}
		fmt.Fprintf(w, "Concurrency: group %q, %s\n", p.Concurrency.Group, mode)
	}
	fmt.Fprintf(w, "Digest:   %s\n\n", p.Digest)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	run, skipped, gates := 0, 0, 0
	for i, s := range p.Stages {
		status := "runs"
		if s.Skip != "" {
			status = "skipped: " + s.Skip
			skipped++
		} else {
			run++
		}
		fmt.Fprintf(tw, "%d. %s\t%s\n", i+1, s.ID, status)
		if len(s.Needs) > 0 {
			fmt.Fprintf(tw, "     needs\t%s\n", strings.Join(s.Needs, ", "))
		}
		if len(s.RunsOn) > 0 {
			fmt.Fprintf(tw, "     runs on\t%s\n", strings.Join(s.RunsOn, ", "))
		}
		if a := s.Approval; a != nil {
			if s.Skip == "" {
				gates++
			}
			who := "anyone"
			if len(a.Approvers) > 0 {
				who = strings.Join(a.Approvers, ", ")
			}
			fmt.Fprintf(tw, "     approval\twaits for %s, up to %s\n", who, a.Timeout)
		}
		for _, st := range s.Steps {
			fmt.Fprintf(tw, "     %s %s\t%s\n", st.Kind, st.Name, stepSummary(st))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d %s to run, %d skipped", run, plural(run, "stage", "stages"), skipped)
	if gates > 0 {
		fmt.Fprintf(w, ", %d %s", gates, plural(gates, "approval gate", "approval gates"))
	}
	fmt.Fprintln(w, ".")
	return nil
}

// eventName describes the event of a plan in words.
func eventName(g plan.Git) string {
	on := "no branch"
	if g.Branch != "" {
		on = "branch " + g.Branch
	}
	switch g.Event {
	case "tag":
		return "tag " + g.Tag
	case "pull_request":
		return fmt.Sprintf("pull request #%d into %s", g.PullRequest, g.BaseRef)
	case "push":
		return "push to " + on
	}
	return fmt.Sprintf("%s run on %s", g.Event, on)
}

// stepSummary says in one line what a step does.
func stepSummary(s plan.Step) string {
	switch s.Kind {
	case plan.KindRun:
		r := s.Run
		where := ""
		if !r.Image.IsZero() {
			where = " (in " + r.Image.String() + ")"
		}
		if len(r.Command) > 0 {
			parts := make([]string, len(r.Command))
			for i, c := range r.Command {
				parts[i] = c.String()
			}
			return strings.Join(parts, " ") + where
		}
		lines := strings.Split(strings.TrimSpace(r.Script.String()), "\n")
		if len(lines) > 1 {
			return fmt.Sprintf("%s ... (%d lines)%s", lines[0], len(lines), where)
		}
		return lines[0] + where
	case plan.KindImage:
		push := ""
		if s.Image.Push {
			push = ", push"
		}
		return fmt.Sprintf("build %s%s", joinTemplates(s.Image.Tags), push)
	case plan.KindScan:
		return fmt.Sprintf("scan %s, fail on %s", s.Scan.Image, s.Scan.FailOn)
	case plan.KindRelease:
		return fmt.Sprintf("release %s", s.Release.Tag)
	case plan.KindArgoCD:
		return fmt.Sprintf("deploy %s to %s, wait %s", s.ArgoCD.Image, s.ArgoCD.App, s.ArgoCD.Wait)
	case plan.KindVerify:
		v := s.Verify
		bound := ""
		if v.Below != nil {
			bound = fmt.Sprintf("below %g", *v.Below)
		} else if v.Above != nil {
			bound = fmt.Sprintf("above %g", *v.Above)
		}
		return fmt.Sprintf("keep %s %s for %s", v.Query, bound, v.For)
	case plan.KindDagger:
		return fmt.Sprintf("call %s in %s", s.Dagger.Function, s.Dagger.Module)
	}
	return ""
}

func joinTemplates(ts []plan.Template) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}
