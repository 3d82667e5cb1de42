package dsl

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/zclconf/go-cty/cty"
)

// outputBlock is a value a module gives the pipeline that calls it, read
// there as module.<name>.output.<output>.
type outputBlock struct {
	name  string
	block *hcl.Block
	expr  hcl.Expression
	// value is the output's value when it is known at compile time, and
	// cty.DynamicVal otherwise.
	value cty.Value
	// runtime is the output as a template when it holds step outputs or
	// secrets; producers are the stages of those steps, which a stage
	// using the output must need.
	runtime   *plan.Template
	producers []*stageBlock
}

var outputSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "value", Required: true}, {Name: "description"},
}}

// OutputSchemaNames lists the attributes of an output block.
func OutputSchemaNames() []string { return schemaNames(outputSchema) }

// declareOutput reads an output block of a module; its value is evaluated
// with the module's variables and locals (evalOutputs).
func (c *compiler) declareOutput(b *hcl.Block) {
	o := &outputBlock{name: b.Labels[0], block: b, value: cty.DynamicVal}
	c.outputs[o.name] = o
	content, diags := bodyContent(b.Body, outputSchema)
	c.add(diags...)
	if a, ok := content.Attributes["value"]; ok {
		o.expr = a.Expr
	}
	if a, ok := content.Attributes["description"]; ok {
		if _, lit := literalString(a.Expr); !lit {
			c.add(errorDiag("Invalid description", "description is a literal string, for people.", a.Expr.Range().Ptr(), &b.DefRange))
		}
	}
}

// evalOutputs evaluates the outputs of a module. An output may hold any
// value known at compile time, or a string holding step outputs of the
// module's steps or secrets, which stays a template.
func (c *compiler) evalOutputs() {
	ctx := c.evalContext(nil)
	for _, name := range sortedKeys(c.outputs) {
		o := c.outputs[name]
		if o.expr == nil {
			continue
		}
		trs := variables(o.expr)
		sc := scope{what: fmt.Sprintf("output %q", name), stepIndex: -1, runtime: true}
		if !c.runtimeRefs(trs) {
			v, diags := c.valueOf(o.expr, trs, ctx, sc)
			c.add(diags...)
			if !diags.HasErrors() {
				o.value = v
			}
			continue
		}
		t, diags := c.templateOf(o.expr, trs, ctx, sc)
		c.add(diags...)
		if diags.HasErrors() {
			continue
		}
		ok := true
		var producers []*stageBlock
		for _, tr := range trs {
			switch tr.RootName() {
			case "step":
				n, _, _ := attrName(tr, 1)
				st := c.steps[n]
				if st == nil {
					continue
				}
				if st.stage.hasMatrix {
					ok = false
					c.add(errorDiag("Ambiguous step output", fmt.Sprintf("Step %q runs once per matrix instance of stage %q, so output %q would have several values. Produce it in a stage without a matrix.", st.name, st.stage.name, name), tr.SourceRange().Ptr(), &o.block.DefRange))
				}
				producers = appendStage(producers, st.stage)
			case "module":
				if ro := c.runtimeOutput(tr); ro != nil {
					for _, p := range ro.producers {
						producers = appendStage(producers, p)
					}
				}
			}
		}
		if ok {
			o.runtime, o.producers = &t, producers
		}
	}
}

// runtimeOutput returns the output a traversal module.<name>.output.<out>
// refers to when that output is known only at run time.
func (c *compiler) runtimeOutput(tr hcl.Traversal) *outputBlock {
	name, _, _ := attrName(tr, 1)
	m := c.calls[name]
	if m == nil || m.child == nil {
		return nil
	}
	if kind, _, _ := attrName(tr, 2); kind != "output" {
		return nil
	}
	out, _, _ := attrName(tr, 3)
	if o := m.child.outputs[out]; o != nil && o.runtime != nil {
		return o
	}
	return nil
}

// checkModuleRef checks a reference module.<name>.output.<output>.
func (c *compiler) checkModuleRef(tr hcl.Traversal, sc scope) hcl.Diagnostics {
	diag := func(summary, detail string, r hcl.Range) hcl.Diagnostics {
		return hcl.Diagnostics{errorDiag(summary, detail, r.Ptr(), nil)}
	}
	name, r, ok := attrName(tr, 1)
	if !ok {
		return diag("Incomplete reference", "Refer to a module's output as module.<module>.output.<output>, like module.go.output.version.", tr.SourceRange())
	}
	m, found := c.calls[name]
	if !found {
		return diag("Reference to undeclared module", fmt.Sprintf("There is no module named %q.%s Call it with a block: module %q { source = \"./...\" }.", name, didYouMean(name, sortedKeys(c.calls)), name), r)
	}
	kind, r2, ok := attrName(tr, 2)
	switch {
	case !ok:
		return diag("Incomplete reference", fmt.Sprintf("module.%s on its own is not a value; name one of its outputs, like module.%s.output.<name>.", name, name), tr.SourceRange())
	case kind == "stage":
		return diag("Stage reference not allowed here", fmt.Sprintf("module.%s.stage.<name> is only used in needs; %s cannot refer to a stage. To use a value the module produces, refer to one of its outputs: module.%s.output.<name>.", name, sc.desc(), name), tr.SourceRange())
	case kind != "output":
		return diag("Unsupported module attribute", fmt.Sprintf("A module has outputs (module.%s.output.<name>) and stages (module.%s.stage.<name>, in needs); %q is neither.", name, name, kind), r2)
	}
	if m.child == nil {
		return nil // the module could not be loaded: reported
	}
	out, r3, ok := attrName(tr, 3)
	names := sortedKeys(m.child.outputs)
	if !ok {
		return diag("Incomplete reference", fmt.Sprintf("Name one of the outputs of module %q: %s.", name, quoteList(names)), tr.SourceRange())
	}
	o, found := m.child.outputs[out]
	if !found {
		return diag("Reference to undeclared module output", fmt.Sprintf("Module %q has no output named %q.%s Its outputs are %s; a module declares one with a block: output %q { value = ... }.", name, out, didYouMean(out, names), quoteList(names), out), r3)
	}
	if o.runtime == nil {
		return nil
	}
	if !sc.runtime {
		return diag("Module output not allowed here", fmt.Sprintf("module.%s.output.%s holds step outputs or secrets, known only while the pipeline runs, so %s cannot use it: it is decided when the pipeline is compiled. Use it in step attributes and env.", name, out, sc.desc()), tr.SourceRange())
	}
	if len(tr) > 4 {
		return diag("Invalid module output reference", "This module output is a single string known at run time; write module.<module>.output.<output> with nothing after it.", tr[4].SourceRange())
	}
	if sc.stage == nil {
		return nil
	}
	for _, p := range o.producers {
		if !c.g.needsTransitively(sc.stage, p) {
			return diag("Module output from a stage this one does not need", fmt.Sprintf("module.%s.output.%s comes from stage %q, which stage %q does not depend on, so it may not exist when this stage runs. Add module.%s (or module.%s.stage.%s) to the needs of stage %q.", name, out, p.id, sc.stage.name, name, name, p.name, sc.stage.name), tr.SourceRange())
		}
	}
	return nil
}
