package dsl

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"
	"github.com/sluice-ci/sluice/dsl/plan"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestCompileGolden compiles every case in testdata/compile and compares the
// plan JSON (or the rendered diagnostics) with the golden section of the
// case. A case is a txtar archive: pipeline files ending in .hcl (a name
// starting with ../ puts the file beside .sluice, where the directories of
// local modules are), an optional options.json (dsl.Options), and the
// golden `plan.json` or `diagnostics` section. Run with -update to rewrite
// the goldens.
func TestCompileGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/compile/*.txtar")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range cases {
		name := strings.TrimSuffix(filepath.Base(file), ".txtar")
		t.Run(name, func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			pdir := filepath.Join(dir, ".sluice")
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				t.Fatal(err)
			}
			opts := Options{Git: defaultTestGit()}
			var golden *txtar.File
			for i := range ar.Files {
				f := &ar.Files[i]
				switch {
				case f.Name == "options.json":
					if err := json.Unmarshal(f.Data, &opts); err != nil {
						t.Fatalf("options.json: %v", err)
					}
				case f.Name == "plan.json" || f.Name == "diagnostics":
					golden = f
				default:
					p := filepath.Join(pdir, f.Name)
					if strings.HasPrefix(f.Name, "../") {
						p = filepath.Join(dir, strings.TrimPrefix(f.Name, "../"))
					}
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, f.Data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i, vf := range opts.VarFiles {
				opts.VarFiles[i] = filepath.Join(dir, vf)
			}
			got := compileForTest(t, pdir, dir, opts)
			if golden == nil {
				ar.Files = append(ar.Files, txtar.File{Name: "plan.json"})
				golden = &ar.Files[len(ar.Files)-1]
			}
			if strings.HasPrefix(string(got), "{") {
				golden.Name = "plan.json"
			} else {
				golden.Name = "diagnostics"
			}
			if *update {
				golden.Data = got
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(string(golden.Data), string(got)); diff != "" {
				t.Errorf("%s differs from golden %s (-want +got); run go test ./dsl -run TestCompileGolden -update to accept:\n%s", name, golden.Name, diff)
			}
		})
	}
}

// defaultTestGit is the event of a case without options.json: a push of
// main at a fixed commit.
func defaultTestGit() plan.Git {
	return plan.Git{
		SHA: "0123456789abcdef0123456789abcdef01234567", Branch: "main", Ref: "refs/heads/main",
		Event: "push", Repo: "acme/web", Actor: "octocat",
	}
}

// compileForTest returns the plan JSON, or the diagnostics rendered as a
// user sees them with paths relative to the case directory.
func compileForTest(t *testing.T, pdir, root string, opts Options) []byte {
	t.Helper()
	src, diags := Load(pdir)
	if !diags.HasErrors() {
		p, more := Compile(src, opts)
		diags = append(diags, more...)
		if !diags.HasErrors() {
			b, err := p.JSON()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	// Paths in details are made relative before wrapping, as a user sees
	// them when running sluice in the repository.
	for _, d := range diags {
		d.Detail = strings.ReplaceAll(d.Detail, root+string(filepath.Separator), "")
	}
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, src, diags, 100, false); err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(buf.String(), root+string(filepath.Separator), ""))
}
