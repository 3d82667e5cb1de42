package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidate(e *env) *cobra.Command {
	var flags compileFlags
	cmd := &cobra.Command{
		Use:   "validate [PATH]",
		Short: "Check a pipeline and report every problem in it",
		Long: `Validate parses and checks the pipeline in PATH (a directory of .hcl files,
default .sluice, or one file) and reports every problem it finds, each with
file:line:column, the source and how to fix it. It exits 0 when the pipeline
is valid and 1 otherwise. Nothing runs.`,
		Example: `  sluice validate
  sluice validate examples/go-service/.sluice
  sluice validate .sluice/web.hcl --var registry=localhost:5000`,
		Args: maxOneArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := flags.compile(e, args)
			if err != nil {
				return err
			}
			steps := 0
			for _, s := range p.Stages {
				steps += len(s.Steps)
			}
			fmt.Fprintf(e.stdout, "Pipeline %q is valid: %d %s, %d %s.\n", p.Pipeline, len(p.Stages), plural(len(p.Stages), "stage", "stages"), steps, plural(steps, "step", "steps"))
			return nil
		},
	}
	flags.register(cmd)
	return cmd
}
