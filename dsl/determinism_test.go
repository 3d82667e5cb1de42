package dsl

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"
	"github.com/sluice-ci/sluice/dsl/plan"
	"os"
)

// TestCompileDeterministic compiles the same input many times: the JSON and
// the digest must be the same bytes every time, whatever Go's map order.
func TestCompileDeterministic(t *testing.T) {
	ar, err := txtar.ParseFile("testdata/compile/full.txtar")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range ar.Files {
		if filepath.Ext(f.Name) == ".hcl" {
			os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644)
		}
	}
	opts := Options{Git: defaultTestGit()}
	var first []byte
	for i := 0; i < 30; i++ {
		src, diags := Load(dir)
		p, more := Compile(src, opts)
		if diags = append(diags, more...); diags.HasErrors() {
			t.Fatal(diags)
		}
		b, err := p.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
			continue
		}
		if !bytes.Equal(first, b) {
			t.Fatalf("compilation %d differs:\n%s", i, cmp.Diff(string(first), string(b)))
		}
	}
	// The plan survives a JSON round trip unchanged, digest included, so
	// the engine sees exactly what was compiled.
	var p plan.Plan
	if err := json.Unmarshal(first, &p); err != nil {
		t.Fatal(err)
	}
	digest := p.Digest
	if err := p.Seal(); err != nil {
		t.Fatal(err)
	}
	if p.Digest != digest {
		t.Errorf("digest after a round trip = %s; want %s", p.Digest, digest)
	}
	again, _ := p.JSON()
	if !bytes.Equal(first, again) {
		t.Errorf("round trip changed the plan:\n%s", cmp.Diff(string(first), string(again)))
	}
}
