package docs

import (
	"os"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// sections splits a Markdown document into the text under each heading,
// keyed by the heading line without its leading #s.
func sections(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	heading := ""
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(line, "#") {
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
			continue
		}
		out[heading] += line + "\n"
	}
	return out
}

// TestReferenceCoversSchema fails when the compiler knows a block,
// attribute, output, context value or function that docs/dsl.md does not
// describe. Each name must appear in backquotes (`name`) in the section
// whose heading is given below.
func TestReferenceCoversSchema(t *testing.T) {
	doc := sections(t, "dsl.md")
	want := map[string][]string{
		"`pipeline`":    append(dsl.SchemaNames(&dsl.PipelineSchema{}), "on", "concurrency"),
		"`on`":          append(append(append(append(dsl.TriggerKinds, dsl.SchemaNames(&dsl.BranchTrigger{})...), dsl.SchemaNames(&dsl.TagTrigger{})...), dsl.SchemaNames(&dsl.ScheduleTrigger{})...), append(dsl.SchemaNames(&dsl.InputSchema{}), "input")...),
		"`concurrency`": dsl.SchemaNames(&dsl.ConcurrencySchema{}),
		"`variable`":    dsl.VariableSchemaNames(),
		"`secret`":      dsl.SchemaNames(&dsl.SecretSchema{}),
		"`locals`":      {"locals"},
		"`stage`":       append(dsl.SchemaNames(&dsl.StageSchema{}), dsl.StageExtraNames...),
		"`matrix`":      {"exclude"},
		"`approval`":    dsl.SchemaNames(&dsl.ApprovalSchema{}),
		"`retry`":       dsl.SchemaNames(&plan.Retry{}),
		"`step`":        append(dsl.SchemaNames(&dsl.StepCommon{}), plan.Kinds...),
		"`module`":      dsl.ModuleSchemaNames(),
		"`output`":      dsl.OutputSchemaNames(),
		"Modules":       {dsl.LockFileName, "--update-modules", "$SLUICE_HOME/modules", "x-access-token"},
	}
	for _, kind := range plan.Kinds {
		names := append(dsl.SchemaNames(plan.KindConfig(kind)), plan.KindOutputs[kind]...)
		switch kind {
		case plan.KindScan:
			names = append(names, dsl.SchemaNames(&plan.Allow{})...)
		case plan.KindArgoCD:
			names = append(names, dsl.SchemaNames(&plan.GitOps{})...)
		}
		want["`step \""+kind+"\"`"] = names
	}
	var contexts []string
	for _, n := range dsl.GitContextNames() {
		contexts = append(contexts, "git."+n)
	}
	want["Expressions"] = append(contexts, "var.<name>", "local.<name>", "matrix.<key>", "pipeline.name", "pipeline.event", "pipeline.inputs.<name>", "step.<name>.<output>", "secret.<name>", "module.<name>.output.<name>")
	want["Functions"] = dsl.FunctionNames()

	for heading, names := range want {
		text, ok := doc[heading]
		if !ok {
			t.Errorf("docs/dsl.md has no section headed %s", heading)
			continue
		}
		for _, n := range names {
			if !strings.Contains(text, "`"+n+"`") {
				t.Errorf("docs/dsl.md, section %s: `%s` is not described", heading, n)
			}
		}
	}
}
