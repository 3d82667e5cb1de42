package dsl

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// scope says which references an expression may use where it stands.
type scope struct {
	// matrix is the matrix of the stage being decoded, nil outside one.
	matrix map[string]cty.Value
	// stage is the stage whose attribute is being decoded, nil outside one.
	stage *stageBlock
	// stepIndex is the position of the step being decoded in its stage;
	// steps before it may be referenced. -1 for stage attributes.
	stepIndex int
	// runtime allows step outputs and secrets, which only step and stage
	// attributes that end up in the plan as templates can hold.
	runtime bool
	// what names the attribute for messages, like `when` or `locals`, or
	// with attr, the block it is in, like `step "run" "test"`.
	what string
	// attr is the name of the attribute being decoded in the block what
	// names, if any: the message text is built only when needed.
	attr string
}

// desc names what is being decoded for messages.
func (sc scope) desc() string {
	if sc.attr == "" {
		return sc.what
	}
	return `"` + sc.attr + `" in ` + sc.what // names are identifiers: no quoting needed
}

// contextRoots are the root names of the expression language.
var contextRoots = []string{"git", "var", "local", "matrix", "pipeline", "step", "secret", "module"}

// checkRefs reports every reference in expr that does not resolve in sc,
// with a suggestion where one is close. It runs before evaluation so that
// the messages can be specific.
func (c *compiler) checkRefs(trs []hcl.Traversal, sc scope) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, tr := range trs {
		diags = append(diags, c.checkTraversal(tr, sc)...)
	}
	return diags
}

func attrName(tr hcl.Traversal, i int) (string, hcl.Range, bool) {
	if len(tr) <= i {
		return "", hcl.Range{}, false
	}
	switch s := tr[i].(type) {
	case hcl.TraverseAttr:
		return s.Name, s.SrcRange, true
	case hcl.TraverseIndex:
		if s.Key.Type() == cty.String && s.Key.IsKnown() && !s.Key.IsNull() {
			return s.Key.AsString(), s.SrcRange, true
		}
		return "", s.SrcRange, false
	}
	return "", hcl.Range{}, false
}

func (c *compiler) checkTraversal(tr hcl.Traversal, sc scope) hcl.Diagnostics {
	root := tr.RootName()
	unknownAttr := func(kind, name string, r hcl.Range, known []string, fix string) hcl.Diagnostics {
		detail := fmt.Sprintf("There is no %s named %q.%s", kind, name, didYouMean(name, known))
		if fix != "" {
			detail += " " + fix
		}
		return hcl.Diagnostics{errorDiag("Reference to undeclared "+kind, detail, r.Ptr(), nil)}
	}
	needAttr := func(what string) hcl.Diagnostics {
		return hcl.Diagnostics{errorDiag("Incomplete reference", fmt.Sprintf("%q on its own is not a value; name one of its attributes, like %s.", root, what), tr.SourceRange().Ptr(), nil)}
	}
	switch root {
	case "git":
		name, r, ok := attrName(tr, 1)
		if !ok {
			return needAttr("git.sha")
		}
		if _, found := gitFields[name]; !found {
			return unknownAttr("git value", name, r, gitFieldNames(), "The git context has: "+strings.Join(gitFieldNames(), ", ")+".")
		}
	case "var":
		name, r, ok := attrName(tr, 1)
		if !ok {
			return needAttr("var.<name>")
		}
		if _, found := c.vars[name]; !found {
			return unknownAttr("variable", name, r, sortedKeys(c.vars), fmt.Sprintf("Declare it with a block: variable %q { default = ... }.", name))
		}
	case "local":
		name, r, ok := attrName(tr, 1)
		if !ok {
			return needAttr("local.<name>")
		}
		if _, found := c.locals[name]; !found {
			return unknownAttr("local value", name, r, sortedKeys(c.locals), "Define it in a locals block.")
		}
	case "matrix":
		if sc.matrix == nil {
			return hcl.Diagnostics{errorDiag("Matrix value outside a matrix stage", fmt.Sprintf("%s is only available inside a stage that has a matrix block; %s is not in one.", tr.RootName(), sc.desc()), tr.SourceRange().Ptr(), nil)}
		}
		name, r, ok := attrName(tr, 1)
		if !ok {
			return needAttr("matrix.<key>")
		}
		if _, found := sc.matrix[name]; !found {
			return unknownAttr("matrix key", name, r, sortedKeys(sc.matrix), "")
		}
	case "pipeline":
		name, r, ok := attrName(tr, 1)
		if !ok {
			return needAttr("pipeline.name")
		}
		switch name {
		case "name", "event", "dry_run":
		case "inputs":
			in, r2, ok := attrName(tr, 2)
			if ok {
				if _, found := c.inputs[in]; !found {
					return unknownAttr("manual input", in, r2, sortedKeys(c.inputs), "Declare it in the pipeline's on \"manual\" block: input \""+in+"\" { ... }.")
				}
			}
		default:
			return unknownAttr("pipeline value", name, r, []string{"name", "event", "inputs", "dry_run"}, "The pipeline context has name, event, inputs and dry_run.")
		}
	case "step":
		return c.checkStepRef(tr, sc)
	case "secret":
		if !sc.runtime {
			return hcl.Diagnostics{errorDiag("Secret not allowed here", fmt.Sprintf("Secrets are resolved on the runner while a step runs, so %s cannot use them. Use secrets in step attributes and env.", sc.desc()), tr.SourceRange().Ptr(), nil)}
		}
		name, r, ok := attrName(tr, 1)
		if !ok {
			return needAttr("secret.<name>")
		}
		if _, found := c.secrets[name]; !found {
			if c.mod != nil {
				return c.undeclaredSecret(name, r)
			}
			return unknownAttr("secret", name, r, sortedKeys(c.secrets), fmt.Sprintf("Declare it with a block: secret %q { env = \"...\" }.", name))
		}
		if len(tr) > 2 {
			r := tr[2].SourceRange()
			return hcl.Diagnostics{errorDiag("Invalid secret reference", "A secret is a single string; write secret.<name> with nothing after it.", &r, nil)}
		}
	case "module":
		return c.checkModuleRef(tr, sc)
	case "stage":
		return hcl.Diagnostics{errorDiag("Stage reference not allowed here", fmt.Sprintf("stage.<name> is only used in needs; %s cannot refer to a stage. To use a value a stage produces, refer to one of its steps' outputs: step.<name>.<output>.", sc.desc()), tr.SourceRange().Ptr(), nil)}
	default:
		return hcl.Diagnostics{errorDiag("Unknown variable", fmt.Sprintf("There is no variable named %q.%s The expression language has %s.", root, didYouMean(root, contextRoots), strings.Join(contextRoots, ".*, ")+".*"), tr.SourceRange().Ptr(), nil)}
	}
	return nil
}

func (c *compiler) checkStepRef(tr hcl.Traversal, sc scope) hcl.Diagnostics {
	if !sc.runtime {
		return hcl.Diagnostics{errorDiag("Step output not allowed here", fmt.Sprintf("Step outputs are known only while the pipeline runs, so %s cannot use them: it is decided when the pipeline is compiled. Use step outputs in step attributes and env.", sc.desc()), tr.SourceRange().Ptr(), nil)}
	}
	name, r, ok := attrName(tr, 1)
	if !ok {
		return hcl.Diagnostics{errorDiag("Incomplete reference", "Refer to a step output as step.<step name>.<output>, like step.api.digest_ref.", tr.SourceRange().Ptr(), nil)}
	}
	st, found := c.steps[name]
	if !found {
		return hcl.Diagnostics{errorDiag("Reference to undeclared step", fmt.Sprintf("There is no step named %q.%s", name, didYouMean(name, sortedKeys(c.steps))), r.Ptr(), nil)}
	}
	out, r2, ok := attrName(tr, 2)
	if !ok {
		return hcl.Diagnostics{errorDiag("Incomplete reference", fmt.Sprintf("Name one of the outputs of step %q: %s.", name, strings.Join(st.outputs, ", ")), tr.SourceRange().Ptr(), nil)}
	}
	if !contains(st.outputs, out) {
		fix := ""
		if st.kind == plan.KindRun {
			fix = fmt.Sprintf(" A run step declares the outputs it writes to $SLUICE_OUTPUT: outputs = [%q].", out)
		}
		return hcl.Diagnostics{errorDiag("Reference to unknown step output", fmt.Sprintf("Step %q (%s) has no output named %q; it has %s.%s%s", name, st.kind, out, quoteList(st.outputs), didYouMean(out, st.outputs), fix), r2.Ptr(), nil)}
	}
	if len(tr) > 3 {
		r := tr[3].SourceRange()
		return hcl.Diagnostics{errorDiag("Invalid step output reference", "A step output is a single string; write step.<step>.<output> with nothing after it.", &r, nil)}
	}
	if sc.stage == nil {
		return nil
	}
	producer := st.stage
	switch {
	case producer == sc.stage:
		if st.index >= sc.stepIndex && sc.stepIndex >= 0 {
			return hcl.Diagnostics{errorDiag("Step output used before it exists", fmt.Sprintf("Step %q runs after this step in stage %q, so its outputs are not known yet. Steps of a stage run in the order they are written; move this step after %q.", name, sc.stage.name, name), tr.SourceRange().Ptr(), nil)}
		}
		if sc.stepIndex < 0 {
			return hcl.Diagnostics{errorDiag("Step output used before it exists", fmt.Sprintf("Stage attributes are set before any step of stage %q runs, so they cannot use the outputs of its own step %q.", sc.stage.name, name), tr.SourceRange().Ptr(), nil)}
		}
	case !c.g.needsTransitively(sc.stage, producer):
		return hcl.Diagnostics{errorDiag("Step output from a stage this one does not need", fmt.Sprintf("Step %q runs in stage %q, but stage %q does not depend on it, so the output may not exist when this stage runs. Add stage.%s to the needs of stage %q (directly or through a stage that needs it).", name, producer.name, sc.stage.name, producer.name, sc.stage.name), tr.SourceRange().Ptr(), nil)}
	case producer.hasMatrix:
		return hcl.Diagnostics{errorDiag("Ambiguous step output", fmt.Sprintf("Step %q runs once per matrix instance of stage %q, so step.%s.%s has several values. Use the output inside stage %q, or produce it in a stage without a matrix.", name, producer.name, name, out, producer.name), tr.SourceRange().Ptr(), nil)}
	}
	return nil
}

// variables is expr.Variables() without the walker HCL allocates per node
// for the expressions pipelines are made of; others, and those that scope
// names of their own (for expressions, splats), are left to HCL. Only
// expressions outside such scopes may be passed, as every caller does.
func variables(expr hcl.Expression) []hcl.Traversal {
	return appendVariables(nil, expr)
}

func appendVariables(trs []hcl.Traversal, expr hcl.Expression) []hcl.Traversal {
	var children []hclsyntax.Expression
	switch e := expr.(type) {
	case *hclsyntax.LiteralValueExpr:
		return trs
	case *hclsyntax.ScopeTraversalExpr:
		return append(trs, e.Traversal)
	case *hclsyntax.TemplateWrapExpr:
		return appendVariables(trs, e.Wrapped)
	case *hclsyntax.TemplateExpr:
		children = e.Parts
	case *hclsyntax.TupleConsExpr:
		children = e.Exprs
	case *hclsyntax.FunctionCallExpr:
		children = e.Args
	default:
		return append(trs, expr.Variables()...)
	}
	for _, x := range children {
		trs = appendVariables(trs, x)
	}
	return trs
}

// runtimeRefs reports whether traversals use step outputs or secrets,
// directly or through a module's output.
func (c *compiler) runtimeRefs(trs []hcl.Traversal) bool {
	for _, tr := range trs {
		switch tr.RootName() {
		case "step", "secret":
			return true
		case "module":
			if c.runtimeOutput(tr) != nil {
				return true
			}
		}
	}
	return false
}

// value evaluates an expression known at compile time after checking its
// references. A diagnostic-free result is known and not null unless the
// expression is literally null.
func (c *compiler) value(expr hcl.Expression, ctx *hcl.EvalContext, sc scope) (cty.Value, hcl.Diagnostics) {
	if lit, ok := expr.(*hclsyntax.LiteralValueExpr); ok && valueSize(lit.Val, maxValueSize) <= maxValueSize {
		return lit.Val, nil // no references to check, nothing to evaluate
	}
	return c.valueOf(expr, variables(expr), ctx, sc)
}

// valueOf is value for a caller that has the expression's traversals.
func (c *compiler) valueOf(expr hcl.Expression, trs []hcl.Traversal, ctx *hcl.EvalContext, sc scope) (cty.Value, hcl.Diagnostics) {
	if diags := c.checkRefs(trs, sc); diags.HasErrors() {
		return cty.DynamicVal, diags
	}
	if c.runtimeRefs(trs) {
		r := expr.Range()
		return cty.DynamicVal, hcl.Diagnostics{errorDiag("Run-time value not allowed here", fmt.Sprintf("%s must be known when the pipeline is compiled, so it cannot use step outputs or secrets, which are known only while it runs.", capitalise(sc.desc())), &r, nil)}
	}
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return cty.DynamicVal, diags
	}
	if n := valueSize(v, maxValueSize); n > maxValueSize {
		r := expr.Range()
		return cty.DynamicVal, hcl.Diagnostics{errorDiag("Value too large", fmt.Sprintf("The value of %s is more than %d bytes. Pipeline values are names, commands and settings; build large data in a step instead.", sc.desc(), maxValueSize), &r, nil)}
	}
	if !v.IsWhollyKnown() {
		// Only values that failed earlier are unknown; that failure was
		// reported, so this error only stops the caller and is dropped.
		return cty.DynamicVal, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "unknown value", Extra: upstreamError{}}}
	}
	return v, nil
}

// template evaluates a string expression that may hold step outputs and
// secrets. Those stay references: they may stand as the whole value or
// inside a string template, where literal parts around them are evaluated
// now.
func (c *compiler) template(expr hcl.Expression, ctx *hcl.EvalContext, sc scope) (plan.Template, hcl.Diagnostics) {
	if s, ok := literalString(expr); ok {
		return plan.Lit(s), nil
	}
	return c.templateOf(expr, variables(expr), ctx, sc)
}

// templateOf is template for a caller that has the expression's
// traversals.
func (c *compiler) templateOf(expr hcl.Expression, trs []hcl.Traversal, ctx *hcl.EvalContext, sc scope) (plan.Template, hcl.Diagnostics) {
	if !c.runtimeRefs(trs) {
		v, diags := c.valueOf(expr, trs, ctx, sc)
		if diags.HasErrors() {
			return plan.Template{}, diags
		}
		s, err := toString(v)
		if err != nil {
			r := expr.Range()
			return plan.Template{}, hcl.Diagnostics{errorDiag("Incorrect attribute value type", fmt.Sprintf("%s must be a string: %s.", capitalise(sc.desc()), err), &r, nil)}
		}
		return plan.Lit(s), nil
	}
	if diags := c.checkRefs(trs, sc); diags.HasErrors() {
		return plan.Template{}, diags
	}
	var t plan.Template
	diags := c.templateParts(expr, ctx, sc, &t)
	return t, diags
}

func (c *compiler) templateParts(expr hcl.Expression, ctx *hcl.EvalContext, sc scope, t *plan.Template) hcl.Diagnostics {
	switch e := expr.(type) {
	case *hclsyntax.ScopeTraversalExpr:
		switch e.Traversal.RootName() {
		case "step":
			st, _, _ := attrName(e.Traversal, 1)
			out, _, _ := attrName(e.Traversal, 2)
			t.Append(plan.Part{Ref: &plan.Ref{Step: c.prefix + st, Output: out}})
			return nil
		case "module":
			if o := c.runtimeOutput(e.Traversal); o != nil {
				for _, p := range o.runtime.Parts {
					t.Append(p)
				}
				return nil
			}
		case "secret":
			name, _, _ := attrName(e.Traversal, 1)
			t.Append(plan.Part{Ref: &plan.Ref{Secret: name}})
			return nil
		}
	case *hclsyntax.TemplateWrapExpr:
		return c.templateParts(e.Wrapped, ctx, sc, t)
	case *hclsyntax.TemplateExpr:
		var diags hcl.Diagnostics
		for _, p := range e.Parts {
			diags = append(diags, c.templateParts(p, ctx, sc, t)...)
		}
		return diags
	case *hclsyntax.LiteralValueExpr:
		if e.Val.Type() == cty.String && !e.Val.IsNull() && len(e.Val.AsString()) <= maxValueSize {
			t.Append(plan.Part{Lit: e.Val.AsString()})
			return nil
		}
	}
	trs := variables(expr)
	if c.runtimeRefs(trs) {
		r := expr.Range()
		return hcl.Diagnostics{errorDiag("Run-time value used in an expression", "Step outputs and secrets are known only while the pipeline runs. Use them as a whole value (image = step.api.digest_ref) or inside a string (\"${step.api.ref}-debug\"), not in function calls, conditionals or arithmetic.", &r, nil)}
	}
	v, diags := c.valueOf(expr, trs, ctx, sc)
	if diags.HasErrors() {
		return diags
	}
	s, err := toString(v)
	if err != nil {
		r := expr.Range()
		return hcl.Diagnostics{errorDiag("Invalid template interpolation value", fmt.Sprintf("Only strings, numbers and bools can be interpolated: %s.", err), &r, nil)}
	}
	t.Append(plan.Part{Lit: s})
	return nil
}

// templateList evaluates a list of strings that may hold run-time values.
func (c *compiler) templateList(expr hcl.Expression, ctx *hcl.EvalContext, sc scope) ([]plan.Template, hcl.Diagnostics) {
	if strs, ok := literalStrings(expr); ok {
		out := make([]plan.Template, len(strs))
		for i, s := range strs {
			out[i] = plan.Lit(s)
		}
		return out, nil
	}
	if tup, ok := expr.(*hclsyntax.TupleConsExpr); ok {
		// The traversals of a list are its elements' in order: one walk
		// each serves both the whole list and its elements.
		elemTrs := make([][]hcl.Traversal, len(tup.Exprs))
		var trs []hcl.Traversal
		for i, e := range tup.Exprs {
			if _, ok := literalString(e); !ok {
				elemTrs[i] = variables(e)
				trs = append(trs, elemTrs[i]...)
			}
		}
		if !c.runtimeRefs(trs) {
			if out, ok := c.stringElems(tup, trs, ctx, sc); ok {
				return out, nil
			}
			return c.literalList(c.stringList(expr, trs, ctx, sc))
		}
		out := make([]plan.Template, 0, len(tup.Exprs))
		var diags hcl.Diagnostics
		for i, e := range tup.Exprs {
			if s, ok := literalString(e); ok {
				out = append(out, plan.Lit(s))
				continue
			}
			t, d := c.templateOf(e, elemTrs[i], ctx, sc)
			diags = append(diags, d...)
			out = append(out, t)
		}
		return out, diags
	}
	trs := variables(expr)
	if c.runtimeRefs(trs) {
		return nil, c.templateParts(expr, ctx, sc, &plan.Template{})
	}
	return c.literalList(c.stringList(expr, trs, ctx, sc))
}

// stringElems is stringList for a list written out, evaluated element by
// element: that spares building the list and converting it, most of the
// cost. It gives what stringList gives when every element is a known
// string, and declines anything else, so that stringList reports it.
func (c *compiler) stringElems(tup *hclsyntax.TupleConsExpr, trs []hcl.Traversal, ctx *hcl.EvalContext, sc scope) ([]plan.Template, bool) {
	if c.checkRefs(trs, sc).HasErrors() {
		return nil, false
	}
	out := make([]plan.Template, len(tup.Exprs))
	size := 0
	for i, e := range tup.Exprs {
		s, ok := literalString(e)
		if !ok {
			v, diags := e.Value(ctx)
			if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.IsMarked() || v.Type() != cty.String {
				return nil, false
			}
			s = v.AsString()
		}
		size += 8 + len(s) // as valueSize counts a tuple: index and element
		out[i] = plan.Lit(s)
	}
	return out, size <= maxValueSize
}

// literalList turns the result of stringList into templates.
func (c *compiler) literalList(strs []string, diags hcl.Diagnostics) ([]plan.Template, hcl.Diagnostics) {
	out := make([]plan.Template, len(strs))
	for i, s := range strs {
		out[i] = plan.Lit(s)
	}
	return out, diags
}

// templateMap evaluates a map of strings whose values may hold run-time
// values. Keys are always known at compile time.
func (c *compiler) templateMap(expr hcl.Expression, ctx *hcl.EvalContext, sc scope) (map[string]plan.Template, hcl.Diagnostics) {
	if obj, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
		if m, ok := literalMap(obj); ok {
			return m, nil
		}
		// The traversals of an object are its keys' and values' in order:
		// one walk each serves both the whole object and its items.
		type itemTrs struct{ key, val []hcl.Traversal }
		items := make([]itemTrs, len(obj.Items))
		var trs []hcl.Traversal
		for i, item := range obj.Items {
			if _, ok := literalKey(item.KeyExpr); !ok {
				items[i].key = variables(item.KeyExpr)
				trs = append(trs, items[i].key...)
			}
			if _, ok := literalString(item.ValueExpr); !ok {
				items[i].val = variables(item.ValueExpr)
				trs = append(trs, items[i].val...)
			}
		}
		if !c.runtimeRefs(trs) {
			return c.stringMap(expr, trs, ctx, sc)
		}
		out := map[string]plan.Template{}
		var diags hcl.Diagnostics
		for i, item := range obj.Items {
			k, ok := literalKey(item.KeyExpr)
			if !ok {
				kv, d := c.valueOf(item.KeyExpr, items[i].key, ctx, scope{what: "a map key", matrix: sc.matrix, stage: sc.stage})
				diags = append(diags, d...)
				if d.HasErrors() {
					continue
				}
				var err error
				if k, err = toString(kv); err != nil {
					r := item.KeyExpr.Range()
					diags = append(diags, errorDiag("Invalid map key", "Map keys must be strings.", &r, nil))
					continue
				}
			}
			if s, ok := literalString(item.ValueExpr); ok {
				out[k] = plan.Lit(s)
				continue
			}
			t, d := c.templateOf(item.ValueExpr, items[i].val, ctx, sc)
			diags = append(diags, d...)
			out[k] = t
		}
		return out, diags
	}
	trs := variables(expr)
	if c.runtimeRefs(trs) {
		return nil, c.templateParts(expr, ctx, sc, &plan.Template{})
	}
	return c.stringMap(expr, trs, ctx, sc)
}

// stringMap evaluates a map of strings known at compile time into
// templates.
func (c *compiler) stringMap(expr hcl.Expression, trs []hcl.Traversal, ctx *hcl.EvalContext, sc scope) (map[string]plan.Template, hcl.Diagnostics) {
	v, diags := c.valueOf(expr, trs, ctx, sc)
	if diags.HasErrors() {
		return nil, diags
	}
	m, err := toStringMap(v)
	if err != nil {
		r := expr.Range()
		return nil, hcl.Diagnostics{errorDiag("Incorrect attribute value type", fmt.Sprintf("%s must be a map of strings, like { KEY = \"value\" }: %s.", capitalise(sc.desc()), err), &r, nil)}
	}
	out := make(map[string]plan.Template, len(m))
	for k, s := range m {
		out[k] = plan.Lit(s)
	}
	return out, nil
}

// stringList evaluates a list of strings known at compile time.
func (c *compiler) stringList(expr hcl.Expression, trs []hcl.Traversal, ctx *hcl.EvalContext, sc scope) ([]string, hcl.Diagnostics) {
	v, diags := c.valueOf(expr, trs, ctx, sc)
	if diags.HasErrors() {
		return nil, diags
	}
	strs, err := toStrings(v)
	if err != nil {
		r := expr.Range()
		return nil, hcl.Diagnostics{errorDiag("Incorrect attribute value type", fmt.Sprintf("%s must be a list of strings, like [\"a\", \"b\"]: %s.", capitalise(sc.desc()), err), &r, nil)}
	}
	return strs, nil
}

// literalString returns the text of a string written without
// interpolations ("text", or a heredoc without ${...}): such an expression
// has no references to check and needs no evaluation. Large values are
// left to the evaluating path, which reports them.
func literalString(expr hcl.Expression) (string, bool) {
	t, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok || !t.IsStringLiteral() {
		return "", false
	}
	v := t.Parts[0].(*hclsyntax.LiteralValueExpr).Val
	if v.Type() != cty.String || v.IsNull() || v.IsMarked() || len(v.AsString()) > maxValueSize {
		return "", false
	}
	// Evaluating the template would normalise the text (cty.StringVal);
	// the parser built the literal with cty.StringVal, so it already is.
	return v.AsString(), true
}

// literalStrings returns the elements of a list of literal strings, as
// toStrings would (nil for an empty list), when expr is one.
func literalStrings(expr hcl.Expression) ([]string, bool) {
	tup, ok := expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		return nil, false
	}
	var out []string
	size := 0
	for _, e := range tup.Exprs {
		s, ok := literalString(e)
		if !ok {
			return nil, false
		}
		size += 8 + len(s) // as valueSize counts a tuple: index and element
		out = append(out, s)
	}
	return out, size <= maxValueSize
}

// literalKey returns the key of an object item written as a name or as a
// literal string.
func literalKey(expr hcl.Expression) (string, bool) {
	k, ok := expr.(*hclsyntax.ObjectConsKeyExpr)
	if !ok {
		return "", false
	}
	if tr, ok := k.Wrapped.(*hclsyntax.ScopeTraversalExpr); ok && !k.ForceNonLiteral {
		if len(tr.Traversal) != 1 {
			return "", false // an error the evaluating path reports
		}
		return cty.NormalizeString(tr.Traversal.RootName()), true // as cty.StringVal would
	}
	return literalString(k.Wrapped)
}

// literalMap returns an object of literal keys and strings as templates,
// when obj is one.
func literalMap(obj *hclsyntax.ObjectConsExpr) (map[string]plan.Template, bool) {
	out := make(map[string]plan.Template, len(obj.Items))
	size := 0
	for _, item := range obj.Items {
		k, ok := literalKey(item.KeyExpr)
		if !ok {
			return nil, false
		}
		v, ok := literalString(item.ValueExpr)
		if !ok {
			return nil, false
		}
		size += len(k) + len(v)
		out[k] = plan.Lit(v)
	}
	// A key written twice is left to the evaluating path.
	return out, len(out) == len(obj.Items) && size <= maxValueSize
}

func toString(v cty.Value) (string, error) {
	if !v.IsWhollyKnown() {
		return "", fmt.Errorf("the value is not known")
	}
	if v.IsNull() {
		return "", fmt.Errorf("the value is null")
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", fmt.Errorf("got %s", v.Type().FriendlyName())
	}
	return s.AsString(), nil
}

func toStrings(v cty.Value) ([]string, error) {
	if !v.IsWhollyKnown() {
		return nil, fmt.Errorf("the value is not known")
	}
	if v.IsNull() {
		return nil, fmt.Errorf("the value is null")
	}
	l, err := convert.Convert(v, cty.List(cty.String))
	if err != nil {
		return nil, fmt.Errorf("got %s", v.Type().FriendlyName())
	}
	var out []string
	for it := l.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			return nil, fmt.Errorf("an element is null")
		}
		out = append(out, e.AsString())
	}
	return out, nil
}

func toStringMap(v cty.Value) (map[string]string, error) {
	if !v.IsWhollyKnown() {
		return nil, fmt.Errorf("the value is not known")
	}
	if v.IsNull() {
		return nil, fmt.Errorf("the value is null")
	}
	m, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil {
		return nil, fmt.Errorf("got %s", v.Type().FriendlyName())
	}
	out := map[string]string{}
	for it := m.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if e.IsNull() {
			return nil, fmt.Errorf("the value of %q is null", k.AsString())
		}
		out[k.AsString()] = e.AsString()
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// maxValueSize bounds any one evaluated value, so that values built from
// each other (local.b = "${local.a}${local.a}") cannot grow without end.
const maxValueSize = 1 << 20

// valueSize estimates the bytes of a value, stopping once past limit.
func valueSize(v cty.Value, limit int) int {
	if !v.IsKnown() || v.IsNull() {
		return 0
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return len(v.AsString())
	case t.IsPrimitiveType():
		return 8
	case v.CanIterateElements():
		n := 0
		for it := v.ElementIterator(); it.Next() && n <= limit; {
			k, e := it.Element()
			n += valueSize(k, limit) + valueSize(e, limit)
		}
		return n
	}
	return 0
}
