package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/sluice-ci/sluice/dsl"
	"github.com/spf13/cobra"
)

func newFmt(e *env) *cobra.Command {
	var check, diff bool
	cmd := &cobra.Command{
		Use:   "fmt [PATH]",
		Short: "Rewrite pipeline files in canonical style",
		Long: `Fmt rewrites the .hcl files in PATH (default .sluice, or one file) in the
canonical style: indentation, aligned equals signs, spacing. It never changes
what a file means, and leaves files with syntax errors alone, reporting them.

With -check nothing is written: fmt lists the files that are not formatted
and exits 1 if there are any, for CI. With -diff it prints the changes it
would make.`,
		Example: `  sluice fmt
  sluice fmt -check
  sluice fmt -diff .sluice/web.hcl`,
		Args: maxOneArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := hclFiles(pipelinePath(args))
			if err != nil {
				return err
			}
			failed, unformatted := false, 0
			for _, name := range files {
				src, err := os.ReadFile(name)
				if err != nil {
					return fmt.Errorf("reading %q: %w", name, err)
				}
				if f, diags := dsl.Parse(src, name); diags.HasErrors() {
					printDiags(e, &dsl.Sources{Files: map[string]*hcl.File{name: f}}, diags)
					failed = true
					continue
				}
				out := hclwrite.Format(src)
				if bytes.Equal(src, out) {
					continue
				}
				unformatted++
				if diff {
					if err := writeDiff(e, name, src, out); err != nil {
						return err
					}
				}
				switch {
				case check:
					if !diff {
						fmt.Fprintln(e.stdout, name)
					}
				case !diff:
					if err := writeFileKeepMode(name, out); err != nil {
						return err
					}
					fmt.Fprintln(e.stdout, name)
				}
			}
			if failed || (check && unformatted > 0) {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "write nothing; list unformatted files and exit 1 if there are any")
	cmd.Flags().BoolVar(&diff, "diff", false, "write nothing; print the changes as a unified diff")
	return cmd
}

// hclFiles lists the .hcl files of a directory, or the one file given.
func hclFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	var files []string
	for _, en := range entries {
		if !en.IsDir() && strings.HasSuffix(en.Name(), ".hcl") {
			files = append(files, filepath.Join(path, en.Name()))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no .hcl files in %q", path)
	}
	return files, nil
}

func writeDiff(e *env, name string, a, b []byte) error {
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(a)), B: difflib.SplitLines(string(b)),
		FromFile: name, ToFile: name + " (formatted)", Context: 3,
	})
	if err != nil {
		return fmt.Errorf("diffing %q: %w", name, err)
	}
	_, err = fmt.Fprint(e.stdout, text)
	return err
}

// writeFileKeepMode replaces a file's content atomically, keeping its mode.
func writeFileKeepMode(name string, b []byte) error {
	info, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("formatting %q: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".sluice-fmt-*")
	if err != nil {
		return fmt.Errorf("formatting %q: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("formatting %q: %w", name, err)
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return fmt.Errorf("formatting %q: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("formatting %q: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("formatting %q: %w", name, err)
	}
	return nil
}
