package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/runners/local"
)

func newRunners(e *env) *cobra.Command {
	return listCommand(e, &cobra.Command{
		Use:   "runners",
		Short: "List the runners: online or not, labels, what they run",
		Long: `Runners lists the runners that reported to the server's Temporal (sluice
runner reports every 15 s and when its stages change): whether each is
online, its labels, version, how many stages it may run at once, whether
it is idle, busy or draining, the stages it runs now (RUN/STAGE) and when
it last reported. A runner that stops says so; one that dies is offline
45 s after its last report.`,
		Example: `  sluice runners
  sluice runners --server https://ci.example.com -o json`,
	}, "runners", func(ctx context.Context, s *local.Stack) ([]engine.RunnerReport, error) {
		return engine.Runners(ctx, s.Client)
	}, writeRunners)
}

func writeRunners(w io.Writer, list []engine.RunnerReport) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "No runner has reported: start one with sluice runner --temporal-address HOST:PORT.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNNER\tONLINE\tSTATE\tLABELS\tSTAGES\tRUNS\tVERSION\tLAST SEEN")
	for _, r := range list {
		online := "no"
		if r.Online {
			online = "yes"
		}
		labels := strings.Join(r.Labels, ",")
		if labels == "" {
			labels = "-"
		}
		runs := strings.Join(r.Stages, " ")
		if runs == "" {
			runs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s ago\n", r.Name, online, r.State, labels, len(r.Stages), r.MaxStages, runs, r.Version,
			time.Since(r.LastSeen).Round(time.Second))
	}
	return tw.Flush()
}
