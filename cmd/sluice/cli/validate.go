package cli

import (
	"fmt"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/spf13/cobra"
)

func newValidate(e *env) *cobra.Command {
	var flags compileFlags
	var updateModules bool
	cmd := &cobra.Command{
		Use:   "validate [PATH]",
		Short: "Check a pipeline and report every problem in it",
		Long: `Validate parses and checks the pipeline in PATH (a directory of .hcl files,
default .sluice, or one file) and reports every problem it finds, each with
file:line:column, the source and how to fix it. It exits 0 when the pipeline
is valid and 1 otherwise. Nothing runs.

Validate also locks the pipeline's git modules: it asks each git source's
repository which commit its ref names, and records it in modules.lock.hcl
beside the pipeline files, which every other command (plan, run, the
server) then uses. A ref that names another commit than the lock records
(a moved tag) is an error; --update-modules records what the refs name now.`,
		Example: `  sluice validate
  sluice validate examples/go-service/.sluice
  sluice validate .sluice/web.hcl --var registry=localhost:5000
  sluice validate --update-modules`,
		Args: maxOneArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			flags.lock = dsl.LockCheck
			if updateModules {
				flags.lock = dsl.LockUpdate
			}
			p, src, err := flags.compile(e, args)
			if err != nil {
				return err
			}
			file, changed, err := src.WriteModuleLock()
			if err != nil {
				return err
			}
			if changed {
				if n := src.LockedModules(); n > 0 {
					fmt.Fprintf(e.stdout, "Locked %d git module %s in %s.\n", n, plural(n, "source", "sources"), file)
				} else {
					fmt.Fprintf(e.stdout, "Removed %s: no git module is left.\n", file)
				}
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
	cmd.Flags().BoolVar(&updateModules, "update-modules", false, "lock the commits the refs of git modules name now, also those that moved since they were locked")
	return cmd
}
