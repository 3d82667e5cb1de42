// Command sluice is the Sluice CI/CD pipeline engine. Its commands live in
// package cli.
package main

import (
	"os"

	"github.com/sluice-ci/sluice/cmd/sluice/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
