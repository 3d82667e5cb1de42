package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
)

func newSchedules(e *env) *cobra.Command {
	return listCommand(e, &cobra.Command{
		Use:   "schedules",
		Short: "List the pipelines' schedules and when they run next",
		Long: `Schedules lists the on "schedule" triggers the server keeps as Temporal
Schedules: one per pipeline of a repository's default branch, made, changed
and deleted by each push to that branch. Each firing runs the pipeline at
the head of its branch; a firing due while the last run still goes is
skipped, and firings missed while the server was down run if they are less
than an hour late. Times are UTC.`,
		Example: `  sluice schedules
  sluice schedules --server https://ci.example.com -o json`,
	}, "schedules", func(ctx context.Context, s *local.Stack) ([]server.ScheduleInfo, error) {
		return server.ListSchedules(ctx, s.Client)
	}, writeSchedules)
}

// listCommand makes a command that lists what the API has at
// /api/v1/NAME with --server, or else what the local stack's Temporal has,
// as text or JSON (-o json).
func listCommand[T any](e *env, cmd *cobra.Command, name string, fromStack func(context.Context, *local.Stack) ([]T, error), text func(io.Writer, []T) error) *cobra.Command {
	var sf stackFlags
	var rf remoteFlags
	var output string
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		list, err := listVia(cmd, e, &sf, &rf, name, fromStack)
		if err != nil {
			return err
		}
		return writeList(e, output, list, text)
	}
	sf.register(cmd)
	rf.register(cmd, e)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func writeSchedules(w io.Writer, list []server.ScheduleInfo) error {
	if len(list) == 0 {
		fmt.Fprintln(w, `No schedules. A pipeline with on "schedule" { cron = "0 3 * * *" } gets one when it is pushed to its repository's default branch.`)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tPIPELINE\tCRON (UTC)\tBRANCH\tNEXT\tLAST")
	for _, s := range list {
		var next []string
		for i, t := range s.Next {
			if i == 2 {
				break
			}
			next = append(next, t.UTC().Format("2006-01-02 15:04"))
		}
		last := "-"
		if !s.Last.IsZero() {
			last = s.Last.UTC().Format(time.DateTime)
		}
		repo := s.Repo
		if s.Dir != "" {
			repo += " (" + s.Dir + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", repo, s.Pipeline, s.Cron, s.Branch, strings.Join(next, ", "), last)
	}
	return tw.Flush()
}

// listVia lists what a server's API has at /api/v1/NAME ({"NAME": [...]})
// with --server, or else what the local stack's Temporal has.
func listVia[T any](cmd *cobra.Command, e *env, sf *stackFlags, rf *remoteFlags, name string, fromStack func(context.Context, *local.Stack) ([]T, error)) ([]T, error) {
	api, err := rf.client(e)
	if err != nil {
		return nil, err
	}
	var list []T
	if api != nil {
		var ans map[string][]T
		if err := api.do(cmd.Context(), "GET", "/"+name, nil, &ans); err != nil {
			return nil, err
		}
		return ans[name], nil
	}
	err = withStack(cmd, e, sf, func(ctx context.Context, s *local.Stack) error {
		list, err = fromStack(ctx, s)
		return err
	})
	return list, err
}

// writeList prints a list as JSON (-o json) or with its text writer.
func writeList[T any](e *env, output string, list []T, text func(io.Writer, []T) error) error {
	if output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	return text(e.stdout, list)
}
