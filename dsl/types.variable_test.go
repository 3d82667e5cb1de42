package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const variablePipeline = `
pipeline "p" {}
variable "region" {
  default = "eu"
}
variable "replicas" {
  type    = number
  default = 1
}
variable "zones" {
  type    = list(string)
  default = []
}
stage "s" {
  step "run" "x" {
    command = concat(["deploy", var.region, tostring(var.replicas)], var.zones)
  }
}
`

func TestVariableSources(t *testing.T) {
	src := writePipeline(t, variablePipeline)
	dir := t.TempDir()
	hclFile := filepath.Join(dir, "prod.hcl")
	jsonFile := filepath.Join(dir, "prod.json")
	os.WriteFile(hclFile, []byte("region = \"us\"\nzones = [\"a\", \"b\"]\n"), 0o644)
	os.WriteFile(jsonFile, []byte(`{"replicas": 5}`), 0o644)
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"defaults", Options{}, []string{"deploy", "eu", "1"}},
		{"environment", Options{Environ: []string{"SLUICE_VAR_region=ap", "SLUICE_VAR_replicas=2", "SLUICE_VAR_unknown=x"}}, []string{"deploy", "ap", "2"}},
		{"var files", Options{VarFiles: []string{hclFile, jsonFile}}, []string{"deploy", "us", "5", "a", "b"}},
		{"--var wins over files and environment", Options{
			Environ:  []string{"SLUICE_VAR_region=ap"},
			VarFiles: []string{hclFile},
			Vars:     map[string]string{"region": "sa", "zones": `["z"]`},
		}, []string{"deploy", "sa", "1", "z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := Compile(src, tt.opts)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			var got []string
			for _, c := range p.Stages[0].Steps[0].Run.Command {
				got = append(got, c.Literal())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVariableErrors(t *testing.T) {
	src := writePipeline(t, variablePipeline)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"not a number", Options{Vars: map[string]string{"replicas": "three"}}, `"replicas" from --var replicas is not a valid number value`},
		{"wrong type", Options{Vars: map[string]string{"zones": `{a = 1}`}}, `does not match its type list(string)`},
		{"undeclared", Options{Vars: map[string]string{"regoin": "x"}}, `Did you mean "region"?`},
		{"missing var file", Options{VarFiles: []string{"/nonexistent/x.hcl"}}, `Reading "/nonexistent/x.hcl"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Compile(src, tt.opts)
			if !diags.HasErrors() || !strings.Contains(diags.Error(), tt.want) {
				t.Errorf("diagnostics = %v; want one containing %q", diags, tt.want)
			}
		})
	}
}

func TestParseVarFlags(t *testing.T) {
	got, err := ParseVarFlags([]string{"a=1", "b=x=y", "c="})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "1", "b": "x=y", "c": ""}, got); diff != "" {
		t.Error(diff)
	}
	if _, err := ParseVarFlags([]string{"novalue"}); err == nil || !strings.Contains(err.Error(), "name=value") {
		t.Errorf("error = %v; want one saying to write name=value", err)
	}
}
