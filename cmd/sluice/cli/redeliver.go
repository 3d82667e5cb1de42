package cli

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/server"
)

// newServerRedeliver is `sluice server redeliver`: one redelivery pass at
// once, after an outage, instead of waiting for the hourly one.
func newServerRedeliver(e *env) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "redeliver --server URL",
		Short: "Ask GitHub again for the webhook deliveries the server missed",
		Long: `Redeliver asks GitHub to deliver again every webhook of the last three days
that the server did not take: it was down, or answered 5xx. GitHub retries
nothing by itself. The server does this every hour on its own (a Temporal
Schedule, sluice-redeliver) when it acts as a GitHub App; this command does
it now, after an outage, and prints what it did. Deliveries the server
refused for what they are (a bad signature: 4xx) and deliveries it holds
already are left alone; a redelivery carries the event's GUID, so nothing
runs twice.

It needs the server's URL and an API token (sluice login URL).`,
		Example: `  sluice server redeliver --server https://ci.example.com`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := rf.client(e)
			if err != nil {
				return err
			}
			if api == nil {
				return usageError{errors.New("redeliver needs --server URL (or SLUICE_SERVER): the server that acts as the GitHub App")}
			}
			var res server.RedeliverResult
			if err := api.do(cmd.Context(), http.MethodPost, "/deliveries/redeliver", nil, &res); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Looked at %d deliveries of %d events in the last three days: %d never taken (%d refused by the server for what they are, %d held all the same).\n",
				res.Deliveries, res.Events, res.Failed, res.Refused, res.Held)
			if len(res.Redelivered) == 0 {
				fmt.Fprintln(e.stdout, "Nothing to redeliver.")
				return nil
			}
			fmt.Fprintf(e.stdout, "Asked GitHub to deliver %d again: %s\n", len(res.Redelivered), strings.Join(res.Redelivered, ", "))
			return nil
		},
	}
	rf.register(cmd, e)
	return cmd
}
