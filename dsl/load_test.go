package dsl

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// TestParseHostileInput checks that input no pipeline author would write on
// purpose gives a diagnostic that says what is wrong, quickly, and never a
// crash or a hang.
func TestParseHostileInput(t *testing.T) {
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	tests := []struct {
		name string
		src  []byte
		want string
	}{
		{"binary garbage", []byte("\x7fELF\x02\x01\x01\x00\x00\x00\xde\xad\xbe\xef"), "binary data"},
		{"ten megabytes", bytes.Repeat([]byte("# comment line\n"), 10<<20/15+1), "Pipeline file too large"},
		{"deep brackets", []byte("locals {\n  x = " + deep + "\n}\n"), "Nesting too deep"},
		{"deep blocks", []byte(strings.Repeat("a {\n", 1000) + strings.Repeat("}\n", 1000)), "Nesting too deep"},
		{"deep interpolation", []byte(`locals { x = "` + strings.Repeat(`${"`, 500) + strings.Repeat(`"}`, 500) + `" }`), "Nesting too deep"},
		{"UTF-16 with BOM", []byte("\xff\xfep\x00i\x00p\x00"), "UTF-16"},
		{"UTF-16 without BOM", []byte("p\x00i\x00p\x00e\x00"), "UTF-16"},
		{"UTF-32", []byte("\xff\xfe\x00\x00p\x00\x00\x00"), "UTF-32"},
		{"Latin-1", []byte("pipeline \"caf\xe9\" {}"), "Invalid UTF-8"},
		{"unterminated string", []byte(`pipeline "web`), "Unterminated"},
		{"unclosed block", []byte("pipeline \"web\" {\n"), "Unclosed configuration block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			f, diags := Parse(tt.src, "p.hcl")
			if !diags.HasErrors() {
				t.Fatalf("no error for %s", tt.name)
			}
			if f == nil || f.Body == nil {
				t.Fatal("Parse returned no file body; later phases need one")
			}
			if !strings.Contains(diags.Error(), tt.want) {
				t.Errorf("diagnostics = %v; want one mentioning %q", diags, tt.want)
			}
			var buf bytes.Buffer
			if err := WriteDiagnostics(&buf, &Sources{Files: map[string]*hcl.File{"p.hcl": f}}, diags, 80, false); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), "p.hcl") {
				t.Errorf("rendered diagnostics do not name the file:\n%s", buf.String())
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s; hostile input must be refused quickly", d)
			}
		})
	}
}

func TestParseKeepsValidInput(t *testing.T) {
	// A UTF-8 byte order mark is dropped; nesting below the limit and
	// braces inside strings and heredocs are fine.
	src := "\xef\xbb\xbfpipeline \"web\" {}\nlocals {\n  x = [[[[{a = \"}}}}]]]\"}]]]]\n  y = <<EOT\n{{{{{{{{{{\nEOT\n}\n"
	if _, diags := Parse([]byte(src), "p.hcl"); diags.HasErrors() {
		t.Fatal(diags)
	}
}

func TestLoad(t *testing.T) {
	t.Run("missing default directory", func(t *testing.T) {
		dir := t.TempDir()
		wd, _ := os.Getwd()
		defer os.Chdir(wd)
		os.Chdir(dir)
		_, diags := Load(DefaultDir)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "There is no .sluice directory here") {
			t.Errorf("diagnostics = %v", diags)
		}
	})
	t.Run("empty directory", func(t *testing.T) {
		_, diags := Load(t.TempDir())
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "has no .hcl files") {
			t.Errorf("diagnostics = %v", diags)
		}
	})
	t.Run("files in name order, others ignored", func(t *testing.T) {
		dir := t.TempDir()
		for _, n := range []string{"b.hcl", "a.hcl", "notes.txt"} {
			os.WriteFile(filepath.Join(dir, n), []byte("# "+n+"\n"), 0o644)
		}
		src, diags := Load(dir)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if got := strings.Join(src.Order, ","); got != filepath.Join(dir, "a.hcl")+","+filepath.Join(dir, "b.hcl") {
			t.Errorf("order = %s", got)
		}
	})
}

// TestCompileHostileExpressions checks that expressions built to exhaust
// memory are refused before they allocate, each with its own diagnostic,
// and that a value built from failed ones is not reported again.
func TestCompileHostileExpressions(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("testdata/hostile-expressions.hcl")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "p.hcl"), b, 0o644)
	src, diags := Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, diags = Compile(src, Options{})
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	var got []string
	for _, d := range diags {
		got = append(got, d.Summary+": "+d.Detail)
	}
	want := []string{"width or precision of 900000000", "indent takes at most 1000", "more than 10000 elements", "The value of local.d4 is more than 1048576 bytes"}
	if len(got) != len(want) {
		t.Fatalf("got %d diagnostics, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("diagnostic %d = %q; want it to mention %q", i, got[i], want[i])
		}
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 200<<20 {
		t.Errorf("compiling allocated %d MB; the guards must refuse before allocating", alloc>>20)
	}
}
