package dsl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// FuzzCompile feeds arbitrary bytes through parsing and compilation. It
// passes when nothing panics or hangs: every input gives a plan or
// diagnostics. The seeds are the golden cases and the examples.
func FuzzCompile(f *testing.F) {
	addSeeds(f)
	f.Add([]byte("pipeline \"p\" {}\nstage \"s\" {\n  matrix { a = [1, 2] }\n  step \"run\" \"x\" { command = [\"echo\", matrix.a] }\n}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, diags := Parse(b, "fuzz.hcl")
		if file == nil || file.Body == nil {
			t.Fatal("Parse returned no body")
		}
		src := &Sources{Dir: ".", Files: map[string]*hcl.File{"fuzz.hcl": file}, Order: []string{"fuzz.hcl"}}
		if diags.HasErrors() {
			return
		}
		p, cdiags := Compile(src, Options{})
		if !cdiags.HasErrors() && p == nil {
			t.Fatal("no plan and no errors")
		}
		_ = WriteDiagnostics(discard{}, src, append(diags, cdiags...), 80, false)
	})
}

// addSeeds adds the golden cases and the examples to a fuzz test's corpus.
func addSeeds(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/compile/*.txtar")
	examples, _ := filepath.Glob("../examples/*/.sluice/*.hcl")
	for _, s := range append(seeds, examples...) {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
