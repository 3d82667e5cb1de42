package dsl

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rogpeppe/go-internal/txtar"
)

func TestTopLevelCuts(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // the text of each piece
	}{
		{"blocks and attributes", "a {\n}\nb = 1\nc \"x\" {\n  d = [\n    1,\n  ]\n}\n", []string{"a {\n}\n", "b = 1\n", "c \"x\" {\n  d = [\n    1,\n  ]\n}\n"}},
		{"braces in strings and comments", "a = \"{\\\"[\"\n# {\nb {\n  // }\n  /* }\n} */\n}\nc = 1\n", []string{"a = \"{\\\"[\"\n", "# {\n", "b {\n  // }\n  /* }\n} */\n}\n", "c = 1\n"}},
		{"interpolations", "a = \"${ {x = \"}\"}[\"x\"] }$${\"\nb = \"%{ if true }}%{ endif }\"\nc = 1\n", []string{"a = \"${ {x = \"}\"}[\"x\"] }$${\"\n", "b = \"%{ if true }}%{ endif }\"\n", "c = 1\n"}},
		{"heredocs", "a = <<EOT\n}\nb {\n  EOT x\nEOT\nc = <<-EOT\n  ${ \"\\n\" }\n  EOT\nd = 1\n", []string{"a = <<EOT\n}\nb {\n  EOT x\nEOT\n", "c = <<-EOT\n  ${ \"\\n\" }\n  EOT\n", "d = 1\n"}},
		{"CRLF", "a {\r\n}\r\nb = 1\r\n", []string{"a {\r\n}\r\n", "b = 1\r\n"}},
		{"block comment at the end", "a = 1\nb = 2 /*\nc\n", []string{"a = 1\n", "b = 2 /*\nc\n"}},
		{"not before a byte order mark", "a = 1\n\xef\xbb\xbfb = 2\nc = 3\n", []string{"a = 1\n\xef\xbb\xbfb = 2\n", "c = 3\n"}},
		{"unbalanced closing bracket", "a = 1\n}\nb = 2\n", nil},
		{"heredoc marker it cannot read", "a = <<ÉOT\nx\nÉOT\nb = 2\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.src)
			cuts := topLevelCuts(b, 1)
			var got []string
			from := 0
			for _, c := range append(cuts, len(b)) {
				got = append(got, string(b[from:c]))
				from = c
			}
			if cuts == nil {
				got = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pieces = %q\nwant     %q", got, tt.want)
			}
		})
	}
	if cuts := topLevelCuts([]byte(strings.Repeat("a {\n}\n", 100)), 60); len(cuts) != 9 || cuts[0] != 60 {
		t.Errorf("with pieces of at least 60 bytes, cuts = %v; want 9 cuts, the first at 60", cuts)
	}
}

// TestParseConfigInPieces checks that parsing in pieces gives what HCL's
// parser gives for the whole file: the same body, down to every range, and
// the same block headers for diagnostics. It uses the examples, the golden
// cases and the benchmark's pipeline, cut as finely as they can be.
func TestParseConfigInPieces(t *testing.T) {
	inputs := map[string][]byte{}
	files, _ := filepath.Glob("../examples/*/.sluice/*.hcl")
	gen, _ := filepath.Glob(filepath.Join(generatePipeline(t, 30), "*.hcl"))
	for _, f := range append(append(files, "testdata/hostile-expressions.hcl"), gen[:2]...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = b
	}
	txtars, _ := filepath.Glob("testdata/compile/*.txtar")
	for _, f := range txtars {
		ar, err := txtar.ParseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, af := range ar.Files {
			if strings.HasSuffix(af.Name, ".hcl") {
				inputs[f+"/"+af.Name] = af.Data
			}
		}
	}
	inputs["comment lines first"] = []byte("# a\n# b\nx = 1\ny {\n}\n")
	inputs["comments, heredocs and attributes"] = []byte("# head\n\nx = 1 // one\ny = <<-EOT\n  }\n  stage \"a\" {\n  EOT\n/* a\n} */\nstage \"a\" {\n  z = \"${x}}\"\n}\n# tail")
	for name, b := range inputs {
		t.Run(name, func(t *testing.T) {
			_, diags := hclsyntax.ParseConfig(b, "p.hcl", hcl.InitialPos)
			for _, min := range []int{1, 64, chunkSize} {
				// A file HCL parses cleanly must be parsed in pieces, if
				// it can be cut at all.
				if !samePieces(t, b, min) && len(diags) == 0 && len(topLevelCuts(b, min)) > 0 {
					t.Errorf("min %d: not parsed in pieces", min)
				}
			}
		})
	}
}

// TestParseInPiecesFallsBack checks that a file whose pieces do not
// parse cleanly gets HCL's diagnostics for the whole file: here an
// attribute set twice, in different pieces, and an error in the last piece.
func TestParseInPiecesFallsBack(t *testing.T) {
	pad := strings.Repeat("stage \"s\" {\n  timeout = \"30m\"\n}\n", 4*chunkSize/30)
	for _, src := range []string{
		"a = 1\n" + pad + "a = 2\n",
		pad + "stage \"t\" {\n  x = [\n}\n",
	} {
		if len(topLevelCuts([]byte(src), chunkSize)) < 2 {
			t.Fatal("the input is too small to be parsed in pieces")
		}
		_, got := Parse([]byte(src), "p.hcl")
		_, want := hclsyntax.ParseConfig([]byte(src), "p.hcl", hcl.InitialPos)
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("diagnostics = %v; want %v", got, want)
		}
	}
}

// FuzzParseConfigInPieces checks that whatever is parsed in pieces parses
// to the same as the whole file, and without diagnostics.
func FuzzParseConfigInPieces(f *testing.F) {
	addSeeds(f)
	f.Add([]byte("a = <<EOT\n}\nEOT\nb {\n}\nc = \"${\"}\"}\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		b, diags := checkText(b, "fuzz.hcl")
		if diags.HasErrors() {
			return
		}
		for _, min := range []int{1, 16} {
			samePieces(t, b, min)
		}
	})
}

// samePieces parses b in pieces of at least min bytes and, if that
// succeeds, checks the result against HCL's parse of the whole. It reports
// whether b was parsed in pieces.
func samePieces(t *testing.T, b []byte, min int) bool {
	t.Helper()
	cuts := topLevelCuts(b, min)
	if len(cuts) == 0 {
		return false
	}
	got, ok := parsePieces(b, "p.hcl", cuts)
	if !ok {
		return false
	}
	want, diags := hclsyntax.ParseConfig(b, "p.hcl", hcl.InitialPos)
	if len(diags) > 0 {
		t.Fatalf("in %d pieces without diagnostics; whole: %v", len(cuts)+1, diags)
	}
	gb, wb := got.Body.(*hclsyntax.Body), want.Body.(*hclsyntax.Body)
	if gb.SrcRange != wb.SrcRange || gb.EndRange != wb.EndRange {
		t.Errorf("min %d: body ranges %v, %v; want %v, %v", min, gb.SrcRange, gb.EndRange, wb.SrcRange, wb.EndRange)
	}
	if len(gb.Blocks) != len(wb.Blocks) {
		t.Fatalf("min %d: %d blocks; want %d", min, len(gb.Blocks), len(wb.Blocks))
	}
	for i := range gb.Blocks {
		if !reflect.DeepEqual(gb.Blocks[i], wb.Blocks[i]) {
			t.Errorf("min %d: block %d at %v differs from the whole file's", min, i, wb.Blocks[i].DefRange())
		}
	}
	if !reflect.DeepEqual(gb.Attributes, wb.Attributes) {
		t.Errorf("min %d: top-level attributes differ from the whole file's", min)
	}
	if !reflect.DeepEqual(gb, wb) || string(got.Bytes) != string(want.Bytes) {
		t.Errorf("min %d: file differs from the whole file's", min)
	}
	gn, wn := got.Nav.(defRanger), want.Nav.(defRanger)
	for off := 0; off <= len(b); off++ {
		if g, w := got.Nav.(contextStringer).ContextString(off), want.Nav.(contextStringer).ContextString(off); g != w {
			t.Fatalf("min %d: context at byte %d is %q; want %q", min, off, g, w)
		}
		if g, w := gn.ContextDefRange(off), wn.ContextDefRange(off); g != w {
			t.Fatalf("min %d: context range at byte %d is %v; want %v", min, off, g, w)
		}
	}
	return true
}

type defRanger interface{ ContextDefRange(offset int) hcl.Range }
