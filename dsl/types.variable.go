package dsl

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// variableBlock is a declared input of the pipeline.
type variableBlock struct {
	name        string
	typ         cty.Type
	def         cty.Value // cty.NilVal when there is no default
	description string
	validations []validation
	block       *hcl.Block
}

type validation struct {
	condition hcl.Expression
	message   hcl.Expression
	block     *hcl.Block
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "description"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "condition", Required: true}, {Name: "error_message", Required: true}},
}

// VariableSchemaNames lists the attributes and blocks of a variable block.
func VariableSchemaNames() []string { return schemaNames(variableSchema, validationSchema) }

func schemaNames(schemas ...*hcl.BodySchema) []string {
	var names []string
	for _, s := range schemas {
		for _, a := range s.Attributes {
			names = append(names, a.Name)
		}
		for _, b := range s.Blocks {
			names = append(names, b.Type)
		}
	}
	return names
}

func (c *compiler) decodeVariable(b *hcl.Block) {
	v := &variableBlock{name: b.Labels[0], typ: cty.DynamicPseudoType, block: b}
	c.vars[v.name] = v
	content, diags := b.Body.Content(variableSchema)
	c.add(diags...)
	if attr, ok := content.Attributes["type"]; ok {
		t, diags := typeexpr.TypeConstraint(attr.Expr)
		c.add(diags...)
		if !diags.HasErrors() {
			v.typ = t
		}
	}
	if attr, ok := content.Attributes["description"]; ok {
		val, diags := attr.Expr.Value(nil)
		c.add(diags...)
		if s, err := toString(val); err == nil && !diags.HasErrors() {
			v.description = s
		}
	}
	if attr, ok := content.Attributes["default"]; ok {
		val, diags := attr.Expr.Value(nil)
		if diags.HasErrors() {
			c.add(errorDiag("Invalid default value", "A variable's default must be a literal value: it cannot refer to other variables, locals or the git context. Compute derived values in a locals block instead.", attr.Expr.Range().Ptr(), &b.DefRange))
			v.def = cty.DynamicVal // reported; not "missing" too
		} else if conv, err := convert.Convert(val, v.typ); err != nil {
			c.add(errorDiag("Invalid default value", fmt.Sprintf("The default of variable %q does not match its type %s: %s.", v.name, typeexpr.TypeString(v.typ), err), attr.Expr.Range().Ptr(), &b.DefRange))
			v.def = cty.DynamicVal
		} else {
			v.def = conv
		}
	}
	for _, vb := range content.Blocks.OfType("validation") {
		vc, diags := vb.Body.Content(validationSchema)
		c.add(diags...)
		if diags.HasErrors() {
			continue
		}
		v.validations = append(v.validations, validation{condition: vc.Attributes["condition"].Expr, message: vc.Attributes["error_message"].Expr, block: vb})
	}
}

// assignVariables gives every variable its value. Later sources win:
// default, SLUICE_VAR_<name>, var files in order, then --var.
func (c *compiler) assignVariables() {
	type source struct {
		raw      string         // text from the command line or environment
		expr     hcl.Expression // or an expression from a var file
		where    string
		rangePtr *hcl.Range
	}
	set := map[string]source{}
	for _, kv := range c.opts.Environ {
		k, val, ok := strings.Cut(kv, "=")
		if name, found := strings.CutPrefix(k, "SLUICE_VAR_"); ok && found {
			if _, declared := c.vars[name]; declared {
				set[name] = source{raw: val, where: "the environment variable " + k}
			}
		}
	}
	for _, file := range c.opts.VarFiles {
		for name, attr := range c.readVarFile(file) {
			if _, declared := c.vars[name]; !declared {
				c.add(errorDiag("Value for undeclared variable", fmt.Sprintf("The var file sets %q, but the pipeline declares no such variable.%s", name, didYouMean(name, sortedKeys(c.vars))), attr.NameRange.Ptr(), nil))
				continue
			}
			set[name] = source{expr: attr.Expr, where: "the var file " + file, rangePtr: attr.Expr.Range().Ptr()}
		}
	}
	for _, name := range sortedKeys(c.opts.Vars) {
		if _, declared := c.vars[name]; !declared {
			c.add(errorDiag("Value for undeclared variable", fmt.Sprintf("--var sets %q, but the pipeline declares no such variable.%s Declared variables: %s.", name, didYouMean(name, sortedKeys(c.vars)), quoteList(sortedKeys(c.vars))), nil, nil))
			continue
		}
		set[name] = source{raw: c.opts.Vars[name], where: "--var " + name}
	}
	for _, name := range sortedKeys(c.vars) {
		v := c.vars[name]
		src, ok := set[name]
		if !ok {
			if v.def == cty.NilVal {
				c.add(errorDiag("No value for required variable", fmt.Sprintf("Variable %q has no default, so it needs a value: --var %s=..., a --var-file, or the environment variable SLUICE_VAR_%s.", name, name, name), &v.block.DefRange, nil))
				c.varVals[name] = cty.UnknownVal(v.typ)
				continue
			}
			c.varVals[name] = v.def
			c.validateVariable(v)
			continue
		}
		var val cty.Value
		var diags hcl.Diagnostics
		switch {
		case src.expr != nil:
			val, diags = src.expr.Value(nil)
		case v.typ == cty.String || v.typ == cty.DynamicPseudoType:
			val = cty.StringVal(src.raw)
		default:
			// Non-string values are written in HCL syntax: 3, true, ["a"].
			expr, pdiags := hclsyntax.ParseExpression([]byte(src.raw), src.where, hcl.InitialPos)
			diags = pdiags
			if !diags.HasErrors() {
				val, diags = expr.Value(nil)
			}
		}
		if diags.HasErrors() {
			c.add(errorDiag("Invalid value for variable", fmt.Sprintf("The value of %q from %s is not a valid %s value; write it in HCL syntax, like 3, true or [\"a\", \"b\"].", name, src.where, typeexpr.TypeString(v.typ)), src.rangePtr, &v.block.DefRange))
			c.varVals[name] = cty.UnknownVal(v.typ)
			continue
		}
		conv, err := convert.Convert(val, v.typ)
		if err != nil {
			c.add(errorDiag("Invalid value for variable", fmt.Sprintf("The value of %q from %s does not match its type %s: %s.", name, src.where, typeexpr.TypeString(v.typ), err), src.rangePtr, &v.block.DefRange))
			c.varVals[name] = cty.UnknownVal(v.typ)
			continue
		}
		c.varVals[name] = conv
		c.validateVariable(v)
	}
}

func (c *compiler) readVarFile(file string) hcl.Attributes {
	b, err := os.ReadFile(file)
	if err != nil {
		c.add(errorDiag("Cannot read var file", fmt.Sprintf("Reading %q: %s.", file, errText(err)), nil, nil))
		return nil
	}
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.EqualFold(filepath.Ext(file), ".json") {
		f, diags = parseJSON(b, file)
	} else {
		f, diags = Parse(b, file)
	}
	c.src.Files[file] = f
	c.add(diags...)
	if diags.HasErrors() {
		return nil
	}
	attrs, diags := f.Body.JustAttributes()
	c.add(diags...)
	return attrs
}

func (c *compiler) validateVariable(v *variableBlock) {
	val := c.varVals[v.name]
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.name: val})},
		Functions: c.funcs,
	}
	for _, vd := range v.validations {
		for _, tr := range vd.condition.Variables() {
			if name, _, _ := attrName(tr, 1); tr.RootName() != "var" || name != v.name {
				c.add(errorDiag("Invalid validation condition", fmt.Sprintf("The condition of a validation of variable %q may only refer to var.%s.", v.name, v.name), tr.SourceRange().Ptr(), &vd.block.DefRange))
				return
			}
		}
		ok, diags := vd.condition.Value(ctx)
		if diags.HasErrors() {
			c.add(diags...)
			continue
		}
		okb, err := convert.Convert(ok, cty.Bool)
		if err != nil || okb.IsNull() || !okb.IsKnown() {
			c.add(errorDiag("Invalid validation condition", "The condition must be true or false.", vd.condition.Range().Ptr(), &vd.block.DefRange))
			continue
		}
		if okb.True() {
			continue
		}
		text := "The value is not valid."
		if msg, diags := vd.message.Value(ctx); !diags.HasErrors() {
			if s, err := toString(msg); err == nil {
				text = s
			}
		}
		c.add(errorDiag("Invalid value for variable", fmt.Sprintf("%s\n\nThis was checked by the validation rule at %s.", text, c.relSource(vd.condition.Range())), v.block.DefRange.Ptr(), nil))
	}
}

// ParseVarFlags turns name=value arguments into a map, reporting malformed
// ones.
func ParseVarFlags(args []string) (map[string]string, error) {
	vars := map[string]string{}
	var bad []string
	for _, a := range args {
		name, val, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			bad = append(bad, a)
			continue
		}
		vars[name] = val
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("%s: write each value as name=value, like --var region=eu-west-1", quoteList(bad))
	}
	return vars, nil
}
