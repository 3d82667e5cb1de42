package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/runners/local"
)

// newAdmin is `sluice admin`: what a cluster's administrator runs once.
func newAdmin(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Prepare a Temporal cluster for Sluice", Args: noArgs}
	cmd.AddCommand(newAdminSetup(e))
	return cmd
}

func newAdminSetup(e *env) *cobra.Command {
	var (
		address, namespace string
		tlsOpts            local.TLSOptions
		retention          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "setup --temporal-address HOST:PORT",
		Short: "Register Sluice's namespace and search attributes on a Temporal cluster",
		Long: `Setup makes an existing Temporal cluster (one deployed by Temporal's Helm
chart, say, or Temporal Cloud's namespace) ready for Sluice: it registers
the namespace when it does not exist, with --retention, and adds the
search attributes Sluice lists and filters runs by (SluicePipeline,
SluiceStatus, SluiceRepo, ...). It changes nothing that is there already,
so it is safe on every deploy. It needs an administrator's credentials
(the operator service), which sluice server and sluice runner then do not:
with setup done, they only read.

The embedded Temporal server needs none of this.`,
		Example: `  sluice admin setup --temporal-address temporal.internal:7233 --namespace sluice
  sluice admin setup --temporal-address ns.acct.tmprl.cloud:7233 --namespace ns.acct --tls-cert c.pem --tls-key c.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if address == "" {
				return usageError{errors.New("setup needs --temporal-address HOST:PORT (or SLUICE_TEMPORAL_ADDRESS): the cluster to prepare; the embedded server needs no setup")}
			}
			ns := namespace
			if ns == "" {
				ns = "sluice"
			}
			c, err := local.Dial(cmd.Context(), address, ns, &tlsOpts, temporalAPIKey(e))
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := engine.Setup(cmd.Context(), c, ns, retention)
			if err != nil {
				return err
			}
			if res.CreatedNamespace {
				fmt.Fprintf(e.stdout, "Registered namespace %s (retention %s).\n", ns, res.Retention)
			} else {
				fmt.Fprintf(e.stdout, "Namespace %s exists (retention %s).\n", ns, res.Retention)
			}
			if len(res.AddedAttributes) > 0 {
				fmt.Fprintf(e.stdout, "Added search attributes: %s.\n", strings.Join(res.AddedAttributes, ", "))
			} else {
				fmt.Fprintln(e.stdout, "Sluice's search attributes are all there.")
			}
			fmt.Fprintf(e.stdout, "Ready: sluice server --temporal-address %s --namespace %s\n", address, ns)
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "temporal-address", os.Getenv("SLUICE_TEMPORAL_ADDRESS"), "host:port of the Temporal cluster to prepare (SLUICE_TEMPORAL_ADDRESS)")
	cmd.Flags().StringVar(&namespace, "namespace", "", "the namespace Sluice runs in (default sluice)")
	tlsFlags(cmd, &tlsOpts)
	cmd.Flags().DurationVar(&retention, "retention", 30*24*time.Hour, "how long Temporal keeps a finished run's history, for a namespace registered now")
	return cmd
}
