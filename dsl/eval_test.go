package dsl

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// TestLiteralFastPaths checks that reading literal expressions without
// evaluating them (literalString, literalStrings, literalMap) gives what
// evaluation gives, and that they decline what they cannot read, so that
// the evaluating path reports it.
func TestLiteralFastPaths(t *testing.T) {
	tests := []struct {
		name string
		expr string
		// fast says whether the fast path applies.
		fast bool
	}{
		{name: "string", expr: `"30m"`, fast: true},
		{name: "empty string", expr: `""`, fast: true},
		{name: "escapes", expr: `"a\"b\\c\n$${x} %%{y}"`, fast: true},
		{name: "not normalised", expr: "\"e\u0301\"", fast: true},
		{name: "heredoc", expr: "<<EOT\nline $${x}\n  two\nEOT\n", fast: true},
		{name: "indented heredoc", expr: "<<-EOT\n    a\n      b\n    EOT\n", fast: true},
		{name: "interpolation", expr: `"a${upper("b")}"`},
		{name: "number", expr: `3`},
		{name: "list", expr: `["a", "b", ""]`, fast: true},
		{name: "empty list", expr: `[]`, fast: true},
		{name: "list with interpolation", expr: `["a", "${upper("b")}"]`},
		{name: "list with number", expr: `["a", 1]`},
		{name: "map", expr: `{ A = "x", "B" = "y", "e\u0301" = "z" }`, fast: true},
		{name: "map with a key not normalised", expr: "{ e\u0301 = \"z\" }", fast: true},
		{name: "empty map", expr: `{}`, fast: true},
		{name: "map with a key written twice", expr: `{ A = "x", A = "y" }`},
		{name: "map with a computed key", expr: `{ (upper("a")) = "x" }`},
		{name: "map with a dotted key", expr: `{ a.b = "x" }`},
		{name: "map with a keyword key", expr: `{ null = "x" }`},
		{name: "map with a number value", expr: `{ A = 1 }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expr, diags := hclsyntax.ParseExpression([]byte(tt.expr), "test.hcl", hcl.InitialPos)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			v, diags := expr.Value(&hcl.EvalContext{Functions: functions(".", nil, false)})
			fast := false
			if s, ok := literalString(expr); ok {
				fast = true
				want, err := toString(v)
				if err != nil || diags.HasErrors() {
					t.Fatalf("literalString read %q; evaluation fails: %v %v", s, err, diags)
				}
				if s != want {
					t.Errorf("literalString = %q, evaluation gives %q", s, want)
				}
			}
			if strs, ok := literalStrings(expr); ok {
				fast = true
				want, err := toStrings(v)
				if err != nil || diags.HasErrors() {
					t.Fatalf("literalStrings read %q; evaluation fails: %v %v", strs, err, diags)
				}
				if diff := cmp.Diff(want, strs); diff != "" || (want == nil) != (strs == nil) {
					t.Errorf("literalStrings differs from evaluation (-want +got):\n%s", diff)
				}
			}
			if obj, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
				if m, ok := literalMap(obj); ok {
					fast = true
					strs, err := toStringMap(v)
					if err != nil || diags.HasErrors() {
						t.Fatalf("literalMap read %v; evaluation fails: %v %v", m, err, diags)
					}
					want := map[string]plan.Template{}
					for k, s := range strs {
						want[k] = plan.Lit(s)
					}
					if diff := cmp.Diff(want, m); diff != "" {
						t.Errorf("literalMap differs from evaluation (-want +got):\n%s", diff)
					}
				}
			}
			if fast != tt.fast {
				t.Errorf("fast path taken: %v, want %v", fast, tt.fast)
			}
		})
	}
}

// TestVariables checks that variables finds the traversals HCL's own walk
// finds, in the same order, including inside expressions it leaves to HCL.
func TestVariables(t *testing.T) {
	for _, src := range []string{
		`"plain"`,
		`var.a`,
		`"${var.registry}/x:${local.tag}"`,
		`["make", step.img.digest, "${secret.token}"]`,
		`upper(substr(git.sha, 0, local.n))`,
		`{ A = var.a, (local.k) = "x", B = [step.s.out] }`,
		`[for x in var.list : "${x}-${local.suffix}" if x != matrix.skip]`,
		`upper([for k, v in var.m : v][0])`,
		`var.list[*].name`,
		`"a%{ for x in var.l }${x}${local.sep}%{ endfor }b"`,
		`var.a ? local.b : "${step.s.out}"`,
		`-var.n + 2 * local.m`,
		`var.m["key"].x`,
	} {
		expr, diags := hclsyntax.ParseExpression([]byte(src), "test.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", src, diags)
		}
		got, want := variables(expr), expr.Variables()
		if len(got) != len(want) {
			t.Errorf("%s: variables found %d traversals, HCL %d", src, len(got), len(want))
			continue
		}
		for i := range want {
			if got[i].SourceRange() != want[i].SourceRange() {
				t.Errorf("%s: traversal %d is at %v, HCL's at %v", src, i, got[i].SourceRange(), want[i].SourceRange())
			}
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "01d", want: 24 * time.Hour},
		{in: "366d", want: 366 * 24 * time.Hour},
		{in: "367d", wantErr: `"367d" is longer than a year`},
		{in: "99999999999999999999d", wantErr: "is longer than a year"},
		{in: "0d", wantErr: "must be longer than zero"},
		{in: "d", wantErr: "is not a duration"},
		{in: "+1d", wantErr: "is not a duration"},
		{in: "1dd", wantErr: "is not a duration"},
		{in: "12", wantErr: "is not a duration"},
		{in: "", wantErr: "must be longer than zero"},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseDuration(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
