package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-ci/sluice/dsl"
)

// A pipeline that names the local registry localhost:5000 is compiled
// again for the registry sluice run actually uses; one that names another
// registry is left alone.
func TestLineUpRegistry(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".sluice")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := `pipeline "p" {}
variable "registry" { default = "localhost:5000/team" }
stage "s" {
  step "image" "app" {
    tags = ["${var.registry}/app:1"]
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, actual string
		vars         map[string]string
		want         string
	}{
		{"served on 5000", "127.0.0.1:5000", nil, "localhost:5000/team/app:1"},
		{"served on another port", "127.0.0.1:40001", nil, "127.0.0.1:40001/team/app:1"},
		{"set to the local registry by --var", "127.0.0.1:40001", map[string]string{"registry": "127.0.0.1:5000"}, "127.0.0.1:40001/app:1"},
		{"another registry", "127.0.0.1:40001", map[string]string{"registry": "harbor.example.com/web"}, "harbor.example.com/web/app:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			e := &env{stdout: &bytes.Buffer{}, stderr: &stderr}
			opts := dsl.Options{Vars: tc.vars}
			p, _, err := compile(e, dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			p, err = lineUpRegistry(e, p, tc.actual, dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Stages[0].Steps[0].Image.Tags[0].String(); got != tc.want {
				t.Errorf("tag = %q; want %q (stderr: %s)", got, tc.want, stderr.String())
			}
		})
	}
}
