package dsl

import (
	"strings"
	"testing"
)

// TestModuleOutputs checks outputs of every kind: a compile-time value of
// any type, read with indexing by the caller; a step output, which stays a
// reference; and a step output of a matrix stage, which has no one value.
func TestModuleOutputs(t *testing.T) {
	dir := writeRepo(t, map[string]string{
		".sluice/web.hcl": `pipeline "web" {}

module "m" {
  source = "../m"
}

locals {
  first = module.m.output.config.regions[0]
}

stage "use" {
  needs = [module.m]
  step "run" "use" {
    command = ["deploy", local.first, module.m.output.digest, "${module.m.output.config.name}"]
  }
}
`,
		"m/m.hcl": `output "config" {
  value = { name = "api", regions = ["eu", "us"] }
}

output "digest" {
  value = "sha=${step.build.digest}"
}

stage "build" {
  step "image" "build" {
    tags = ["web:1"]
  }
}
`,
	})
	p, src, diags := compileModules(t, dir, ModuleOptions{})
	if diags.HasErrors() {
		t.Fatal(render(src, diags))
	}
	cmd := p.Stages[1].Steps[0].Run.Command
	if cmd[1].Literal() != "eu" || cmd[3].Literal() != "api" {
		t.Errorf("compile-time outputs = %v, %v", cmd[1], cmd[3])
	}
	if got := cmd[2].String(); got != "sha=${step.m.build.digest}" {
		t.Errorf("run-time output = %s", got)
	}

	dir = writeRepo(t, map[string]string{
		".sluice/web.hcl": "pipeline \"web\" {}\nmodule \"m\" {\n  source = \"../m\"\n}\n",
		"m/m.hcl": `output "exit" {
  value = step.unit.exit_code
}

stage "test" {
  matrix {
    go = ["1.25", "1.26"]
  }
  step "run" "unit" {
    command = ["go", "test"]
  }
}
`,
	})
	_, src, diags = compileModules(t, dir, ModuleOptions{})
	if out := render(src, diags); !strings.Contains(out, "Ambiguous step output") || !strings.Contains(out, `output "exit" would have several values`) {
		t.Errorf("an output of a matrix stage:\n%s", out)
	}
}
