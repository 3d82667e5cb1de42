package cli

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/runners/baseimage"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/runners/registry"
)

func newImages(e *env) *cobra.Command {
	var reg string
	var noGolang bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Push the local base images (busybox:local, golang:local) to the registry",
		Long: `Images builds the base images that the examples and local pipelines build
on, since no public registry may be reachable: busybox:local (Debian's static
busybox with its applets) and golang:local (busybox plus this machine's Go
toolchain, from go env GOROOT). It pushes them to the local registry (the
one sluice dev or sluice run serves, else it serves it for as long as it
pushes; what it pushes stays in $SLUICE_HOME/registry), or to --registry,
as REGISTRY/busybox:local and REGISTRY/golang:local: pipelines name them
"${var.registry}/golang:local". An image the registry already holds is not
pushed again.`,
		Example: `  sluice images
  sluice images --registry registry.internal:5000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := local.Home()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(home, 0o755); err != nil {
				return err
			}
			r, err := registry.Start(cmd.Context(), registry.Options{Home: home, Address: reg})
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = baseimage.Push(cmd.Context(), baseimage.Options{
				Registry:   r.Host,
				Cache:      filepath.Join(home, "baseimage"),
				SkipGolang: noGolang,
				Out:        e.stdout,
			})
			return err
		},
	}
	cmd.Flags().StringVar(&reg, "registry", os.Getenv(registry.EnvAddress), "host:port of the registry to push to (default: the local one)")
	cmd.Flags().BoolVar(&noGolang, "no-golang", false, "push only busybox:local")
	return cmd
}
