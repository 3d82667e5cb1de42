package dsl

import (
	"fmt"
	"maps"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// This file decodes HCL bodies into the tagged structs of the plan package
// (and of this package, for blocks that do not reach the plan as is). The
// struct tags are the single schema: decoding, "did you mean" suggestions
// and the reference documentation test all read them. See plan/steps.go for
// the tag syntax.

// fieldSpec is one attribute or block of a tagged struct.
type fieldSpec struct {
	name     string
	block    bool
	required bool
	def      string
	hasDef   bool
	enum     []string
	index    int
	typ      reflect.Type
}

var specCache sync.Map // reflect.Type -> []fieldSpec

// specsOf returns the fields of a tagged struct type.
func specsOf(t reflect.Type) []fieldSpec {
	if v, ok := specCache.Load(t); ok {
		return v.([]fieldSpec)
	}
	var specs []fieldSpec
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("hcl")
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		s := fieldSpec{name: name, block: opts == "block", index: i, typ: f.Type}
		s.required = f.Tag.Get("required") == "true"
		s.def, s.hasDef = f.Tag.Lookup("default")
		if e := f.Tag.Get("enum"); e != "" {
			s.enum = strings.Split(e, "|")
		}
		specs = append(specs, s)
	}
	specCache.Store(t, specs)
	return specs
}

// schemaKey names a merged schema: the tagged struct types decoded from a
// body (at most two: a step's common attributes and its kind's) and the
// names the caller handles itself.
type schemaKey struct {
	types [2]reflect.Type
	extra *hcl.BodySchema
}

// decodeSchema is the merged schema of a body and the fields of the
// structs it is decoded into, in the order of the targets.
type decodeSchema struct {
	*hcl.BodySchema
	specs [2][]fieldSpec
}

var schemaCache sync.Map // schemaKey -> *decodeSchema

// schemaOf merges the schemas of the tagged structs targets point to with
// extra. The result is shared: callers must not change it.
func schemaOf(extra *hcl.BodySchema, targets []any) *decodeSchema {
	if len(targets) > 2 {
		panic("dsl: decoding into more than two structs")
	}
	key := schemaKey{extra: extra}
	for i, t := range targets {
		key.types[i] = reflect.TypeOf(t).Elem()
	}
	if v, ok := schemaCache.Load(key); ok {
		return v.(*decodeSchema)
	}
	schema := &decodeSchema{BodySchema: &hcl.BodySchema{}}
	for i, t := range key.types[:len(targets)] {
		schema.specs[i] = specsOf(t)
		for _, s := range schema.specs[i] {
			if s.block {
				schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: s.name})
			} else {
				schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: s.name})
			}
		}
	}
	if extra != nil {
		schema.Attributes = append(schema.Attributes, extra.Attributes...)
		schema.Blocks = append(schema.Blocks, extra.Blocks...)
	}
	schemaCache.Store(key, schema)
	return schema
}

// SchemaNames lists the attribute and block names of a tagged struct, for
// the documentation test.
func SchemaNames(v any) []string {
	var names []string
	for _, s := range specsOf(reflect.TypeOf(v).Elem()) {
		names = append(names, s.name)
	}
	return names
}

// decodeBody decodes body into the structs targets point to, which share
// the body: a step's common attributes and its kind's. extra names further
// blocks and attributes the caller handles itself; the body's content is
// returned. where names the block for messages, like `step "image" "api"`.
func (c *compiler) decodeBody(body hcl.Body, ctx *hcl.EvalContext, sc scope, where string, defRange hcl.Range, extra *hcl.BodySchema, targets ...any) *hcl.BodyContent {
	schema := schemaOf(extra, targets)
	content, diags := bodyContent(body, schema.BodySchema)
	c.add(diags...)
	c.decodeTargets(bodyItems{content: content}, schema, ctx, sc, where, defRange, targets)
	return content
}

// decode is decodeBody for callers that need nothing back: a native body
// is read in place, without building its content, which is most of what
// decoding a step would otherwise allocate.
func (c *compiler) decode(body hcl.Body, ctx *hcl.EvalContext, sc scope, where string, defRange hcl.Range, extra *hcl.BodySchema, targets ...any) {
	b, ok := body.(*hclsyntax.Body)
	if !ok {
		c.decodeBody(body, ctx, sc, where, defRange, extra, targets...)
		return
	}
	schema := schemaOf(extra, targets)
	c.add(checkBody(b, schema.BodySchema)...)
	c.decodeTargets(bodyItems{native: b}, schema, ctx, sc, where, defRange, targets)
}

// bodyItems is what decoding reads of a body: the native syntax tree, or
// else the content HCL extracted for the schema.
type bodyItems struct {
	native  *hclsyntax.Body
	content *hcl.BodyContent
}

func (b bodyItems) attr(name string) (hcl.Expression, bool) {
	if b.native != nil {
		a, ok := b.native.Attributes[name]
		if !ok {
			return nil, false
		}
		return a.Expr, true
	}
	a, ok := b.content.Attributes[name]
	if !ok {
		return nil, false
	}
	return a.Expr, true
}

// blocks returns the blocks of a type that decoding reads: the schema of a
// tagged struct gives its blocks no labels, and checkBody reports blocks
// that have some.
func (b bodyItems) blocks(typ string) hcl.Blocks {
	if b.native == nil {
		return b.content.Blocks.OfType(typ)
	}
	var out hcl.Blocks
	for _, block := range b.native.Blocks {
		if block.Type == typ && len(block.Labels) == 0 {
			out = append(out, block.AsHCLBlock())
		}
	}
	return out
}

func (c *compiler) decodeTargets(body bodyItems, schema *decodeSchema, ctx *hcl.EvalContext, sc scope, where string, defRange hcl.Range, targets []any) {
	for i, target := range targets {
		rv := reflect.ValueOf(target).Elem()
		for _, s := range schema.specs[i] {
			field := rv.Field(s.index)
			if s.block {
				c.decodeBlocks(body.blocks(s.name), s, field, ctx, sc, where, defRange)
				continue
			}
			expr, ok := body.attr(s.name)
			if !ok {
				if s.required {
					c.add(errorDiag("Missing required argument", fmt.Sprintf("%s needs the argument %q. Add it to the block: %s = ...", capitalise(where), s.name, s.name), &defRange, nil))
				} else if s.hasDef {
					c.setDefault(field, s)
				}
				continue
			}
			asc := sc
			asc.attr, asc.what = s.name, where
			c.decodeAttr(expr, s, field, ctx, asc)
		}
	}
}

func (c *compiler) decodeBlocks(blocks hcl.Blocks, s fieldSpec, field reflect.Value, ctx *hcl.EvalContext, sc scope, where string, defRange hcl.Range) {
	switch {
	case len(blocks) == 0:
		if s.required {
			c.add(errorDiag("Missing required block", fmt.Sprintf("%s needs a %s block: %s { ... }.", capitalise(where), s.name, s.name), &defRange, nil))
		}
	case field.Kind() == reflect.Pointer:
		for _, b := range blocks[1:] {
			c.add(errorDiag("Duplicate "+s.name+" block", fmt.Sprintf("%s may have only one %s block; the first is at %s. Merge them into one.", where, s.name, c.relSource(blocks[0].DefRange)), &b.DefRange, nil))
		}
		v := reflect.New(field.Type().Elem())
		c.decode(blocks[0].Body, ctx, sc, "the "+s.name+" block", blocks[0].DefRange, nil, v.Interface())
		field.Set(v)
	case field.Kind() == reflect.Slice:
		for _, b := range blocks {
			v := reflect.New(field.Type().Elem())
			c.decode(b.Body, ctx, sc, "the "+s.name+" block", b.DefRange, nil, v.Interface())
			field.Set(reflect.Append(field, v.Elem()))
		}
	default:
		panic("dsl: block field of unsupported type " + field.Type().String())
	}
}

var (
	typTemplate     = reflect.TypeOf(plan.Template{})
	typTemplateList = reflect.TypeOf([]plan.Template{})
	typTemplateMap  = reflect.TypeOf(map[string]plan.Template{})
	typDuration     = reflect.TypeOf(plan.Duration(0))
	typStrings      = reflect.TypeOf([]string{})
	typGlobs        = reflect.TypeOf(globs{})
	typFloatPtr     = reflect.TypeOf((*float64)(nil))
)

// globs is a list of glob patterns; a single string is accepted as a list
// of one.
type globs []string

func (c *compiler) decodeAttr(expr hcl.Expression, s fieldSpec, field reflect.Value, ctx *hcl.EvalContext, sc scope) {
	switch s.typ {
	case typTemplate:
		t, diags := c.template(expr, ctx, sc)
		c.add(diags...)
		if !diags.HasErrors() && s.enum != nil && t.IsLiteral() {
			c.checkEnum(t.Literal(), s, expr, sc)
		}
		*field.Addr().Interface().(*plan.Template) = t
		return
	case typTemplateList:
		l, diags := c.templateList(expr, ctx, sc)
		c.add(diags...)
		*field.Addr().Interface().(*[]plan.Template) = l
		return
	case typTemplateMap:
		m, diags := c.templateMap(expr, ctx, sc)
		c.add(diags...)
		if s.name == "env" {
			c.checkEnvNames(m, expr, sc)
		}
		*field.Addr().Interface().(*map[string]plan.Template) = m
		return
	case typStrings, typGlobs:
		strs, ok := literalStrings(expr)
		if str, lit := literalString(expr); lit && s.typ == typGlobs {
			strs, ok = []string{str}, true
		}
		if ok {
			for _, str := range strs {
				c.checkEnum(str, s, expr, sc)
			}
			field.Set(reflect.ValueOf(strs).Convert(s.typ))
			return
		}
	}
	if str, ok := literalString(expr); ok && (s.typ == typDuration || s.typ.Kind() == reflect.String) {
		c.setText(str, s, field, expr, sc)
		return
	}
	v, diags := c.value(expr, ctx, sc)
	c.add(diags...)
	if diags.HasErrors() {
		return
	}
	typeErr := func(want, example string) {
		c.add(errorDiag("Incorrect attribute value type", fmt.Sprintf("%s must be %s, like %s; got %s.", capitalise(sc.desc()), want, example, friendlyType(v)), expr.Range().Ptr(), nil))
	}
	switch s.typ {
	case typDuration:
		str, err := toString(v)
		if err != nil {
			typeErr("a duration", `"10m"`)
			return
		}
		c.setText(str, s, field, expr, sc)
	case typStrings, typGlobs:
		if s.typ == typGlobs && v.Type() == cty.String {
			v = cty.TupleVal([]cty.Value{v})
		}
		strs, err := toStrings(v)
		if err != nil {
			typeErr("a list of strings", `["a", "b"]`)
			return
		}
		for _, str := range strs {
			c.checkEnum(str, s, expr, sc)
		}
		field.Set(reflect.ValueOf(strs).Convert(s.typ))
	case typFloatPtr:
		n, err := convert.Convert(v, cty.Number)
		if err != nil || n.IsNull() {
			typeErr("a number", "0.01")
			return
		}
		f, _ := n.AsBigFloat().Float64()
		field.Set(reflect.ValueOf(&f))
	default:
		switch field.Kind() {
		case reflect.String:
			str, err := toString(v)
			if err != nil {
				typeErr("a string", `"text"`)
				return
			}
			c.setText(str, s, field, expr, sc)
		case reflect.Bool:
			b, err := convert.Convert(v, cty.Bool)
			if err != nil || b.IsNull() {
				typeErr("true or false", "true")
				return
			}
			field.SetBool(b.True())
		case reflect.Int:
			n, err := convert.Convert(v, cty.Number)
			if err != nil || n.IsNull() {
				typeErr("a whole number", "3")
				return
			}
			i, acc := n.AsBigFloat().Int64()
			if acc != big.Exact || i < 0 || i > math.MaxInt32 {
				c.add(errorDiag("Invalid number", fmt.Sprintf("%s must be a whole number from 0 to %d; got %s.", capitalise(sc.desc()), math.MaxInt32, n.AsBigFloat().Text('g', -1)), expr.Range().Ptr(), nil))
				return
			}
			field.SetInt(i)
		default:
			panic("dsl: attribute field of unsupported type " + field.Type().String())
		}
	}
}

// setText sets a duration or string field from its text.
func (c *compiler) setText(str string, s fieldSpec, field reflect.Value, expr hcl.Expression, sc scope) {
	if s.typ == typDuration {
		d, err := parseDuration(str)
		if err != nil {
			c.add(errorDiag("Invalid duration", fmt.Sprintf("%s: %s.", capitalise(sc.desc()), err), expr.Range().Ptr(), nil))
			return
		}
		field.SetInt(int64(d))
		return
	}
	c.checkEnum(str, s, expr, sc)
	field.SetString(str)
}

func friendlyType(v cty.Value) string {
	if v.IsNull() {
		return "null"
	}
	return v.Type().FriendlyName()
}

func (c *compiler) checkEnum(v string, s fieldSpec, expr hcl.Expression, sc scope) {
	if s.enum == nil || contains(s.enum, v) {
		return
	}
	c.add(errorDiag("Invalid value", fmt.Sprintf("%s must be one of %s; got %q.%s", capitalise(sc.desc()), quoteList(s.enum), v, didYouMean(v, s.enum)), expr.Range().Ptr(), nil))
}

func (c *compiler) setDefault(field reflect.Value, s fieldSpec) {
	switch s.typ {
	case typTemplate:
		field.Set(reflect.ValueOf(plan.Lit(s.def)))
	case typDuration:
		d, err := parseDuration(s.def)
		if err != nil {
			panic("dsl: bad default duration " + s.def)
		}
		field.Set(reflect.ValueOf(plan.Duration(d)))
	default:
		switch field.Kind() {
		case reflect.String:
			field.SetString(s.def)
		case reflect.Bool:
			field.SetBool(s.def == "true")
		case reflect.Int:
			n, err := strconv.Atoi(s.def)
			if err != nil {
				panic("dsl: bad default number " + s.def)
			}
			field.SetInt(int64(n))
		default:
			panic("dsl: default for unsupported type " + field.Type().String())
		}
	}
}

// maxDuration keeps durations far from overflow; a year is longer than any
// pipeline should wait.
const maxDuration = 366 * 24 * time.Hour

// parseDuration reads Go durations plus a leading day count ("7d", "1d12h").
func parseDuration(s string) (time.Duration, error) {
	orig := s
	var days time.Duration
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits > 0 && digits < len(s) && s[digits] == 'd' { // a leading day count
		n, err := strconv.Atoi(s[:digits])
		if err != nil || n > 366 {
			return 0, fmt.Errorf("%q is longer than a year", orig)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[digits+1:]
	}
	var d time.Duration
	if s != "" {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration; write a number and a unit, like \"90s\", \"10m\", \"2h\" or \"7d\"", orig)
		}
	}
	d += days
	switch {
	case d <= 0:
		return 0, fmt.Errorf("%q must be longer than zero", orig)
	case d > maxDuration:
		return 0, fmt.Errorf("%q is longer than a year", orig)
	}
	return d, nil
}

func typeOf(v any) reflect.Type {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// bodyContent is body.Content(schema) for the native syntax, without the
// copies of the body HCL makes to hide what it returned. The diagnostics
// are HCL's own.
func bodyContent(body hcl.Body, schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	b, ok := body.(*hclsyntax.Body)
	if !ok {
		return body.Content(schema)
	}
	content := &hcl.BodyContent{Attributes: make(hcl.Attributes, len(b.Attributes)), MissingItemRange: b.MissingItemRange()}
	for name, attr := range b.Attributes {
		if slices.ContainsFunc(schema.Attributes, func(a hcl.AttributeSchema) bool { return a.Name == name }) {
			content.Attributes[name] = attr.AsHCLAttribute()
		}
	}
	for _, block := range b.Blocks {
		i := slices.IndexFunc(schema.Blocks, func(s hcl.BlockHeaderSchema) bool { return s.Type == block.Type })
		if i >= 0 && len(block.Labels) == len(schema.Blocks[i].LabelNames) {
			content.Blocks = append(content.Blocks, block.AsHCLBlock())
		}
	}
	return content, checkBody(b, schema)
}

// checkBody reports what body.Content(schema) would about a native body:
// arguments and blocks the schema does not name, missing arguments, and
// blocks with the wrong number of labels, which bodyContent leaves out.
func checkBody(b *hclsyntax.Body, schema *hcl.BodySchema) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for name, attr := range b.Attributes {
		if slices.ContainsFunc(schema.Attributes, func(a hcl.AttributeSchema) bool { return a.Name == name }) {
			continue
		}
		suggestion := ""
		if s := suggest(name, schema.Attributes, func(a hcl.AttributeSchema) string { return a.Name }); s != "" {
			suggestion = fmt.Sprintf(" Did you mean %q?", s)
		} else if s := suggest(name, schema.Blocks, func(b hcl.BlockHeaderSchema) string { return b.Type }); s == name {
			suggestion = fmt.Sprintf(" Did you mean to define a block of type %q?", name)
		}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unsupported argument",
			Detail: fmt.Sprintf("An argument named %q is not expected here.%s", name, suggestion), Subject: &attr.NameRange})
	}
	for _, a := range schema.Attributes {
		if !a.Required {
			continue
		}
		if _, ok := b.Attributes[a.Name]; !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing required argument",
				Detail: fmt.Sprintf("The argument %q is required, but no definition was found.", a.Name), Subject: b.MissingItemRange().Ptr()})
		}
	}
	for _, block := range b.Blocks {
		i := slices.IndexFunc(schema.Blocks, func(s hcl.BlockHeaderSchema) bool { return s.Type == block.Type })
		if i < 0 {
			suggestion := ""
			if s := suggest(block.Type, schema.Blocks, func(b hcl.BlockHeaderSchema) string { return b.Type }); s != "" {
				suggestion = fmt.Sprintf(" Did you mean %q?", s)
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unsupported block type",
				Detail: fmt.Sprintf("Blocks of type %q are not expected here.%s", block.Type, suggestion), Subject: &block.TypeRange})
			continue
		}
		labels := schema.Blocks[i].LabelNames
		if len(block.Labels) == len(labels) {
			continue
		}
		ctx := hcl.RangeBetween(block.TypeRange, block.OpenBraceRange).Ptr()
		switch {
		case len(block.Labels) > len(labels) && len(labels) == 0:
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Extraneous label for %s", block.Type),
				Detail: fmt.Sprintf("No labels are expected for %s blocks.", block.Type), Subject: block.LabelRanges[0].Ptr(), Context: ctx})
		case len(block.Labels) > len(labels):
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Extraneous label for %s", block.Type),
				Detail:  fmt.Sprintf("Only %d labels (%s) are expected for %s blocks.", len(labels), strings.Join(labels, ", "), block.Type),
				Subject: block.LabelRanges[len(labels)].Ptr(), Context: ctx})
		case len(block.Labels) < len(labels):
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Missing %s for %s", labels[len(block.Labels)], block.Type),
				Detail:  fmt.Sprintf("All %s blocks must have %d labels (%s).", block.Type, len(labels), strings.Join(labels, ", ")),
				Subject: &block.OpenBraceRange, Context: ctx})
		}
	}
	return diags
}

// suggest returns the name among items closest to name, if close enough.
func suggest[T any](name string, items []T, nameOf func(T) string) string {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = nameOf(it)
	}
	if s := didYouMean(name, names); s != "" {
		return strings.TrimSuffix(strings.TrimPrefix(s, ` Did you mean "`), `"?`)
	}
	return ""
}

// attrOf returns the attribute that schema, a schema of one attribute,
// names, as partialContent would, without building the content of a
// native body.
func attrOf(body hcl.Body, schema *hcl.BodySchema) (*hcl.Attribute, bool) {
	name := schema.Attributes[0].Name
	if b, ok := body.(*hclsyntax.Body); ok {
		a, ok := b.Attributes[name]
		if !ok {
			return nil, false
		}
		return a.AsHCLAttribute(), true
	}
	a, ok := partialContent(body, schema).Attributes[name]
	return a, ok
}

// partialContent is body.PartialContent(schema) for a first look at a
// block: what the schema names, nothing reported (the full decode reports
// the rest), and none of the copies HCL makes of the body.
func partialContent(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	b, ok := body.(*hclsyntax.Body)
	if !ok {
		content, _, _ := body.PartialContent(schema)
		return content
	}
	content := &hcl.BodyContent{Attributes: hcl.Attributes{}, MissingItemRange: b.MissingItemRange()}
	for _, a := range schema.Attributes {
		if attr, ok := b.Attributes[a.Name]; ok {
			content.Attributes[a.Name] = attr.AsHCLAttribute()
		}
	}
	content.Blocks = make(hcl.Blocks, 0, len(b.Blocks))
	for _, block := range b.Blocks {
		for _, bs := range schema.Blocks {
			if bs.Type == block.Type && len(block.Labels) == len(bs.LabelNames) {
				content.Blocks = append(content.Blocks, block.AsHCLBlock())
			}
		}
	}
	return content
}

// checkEnvNames refuses the names of an env map that no process can
// receive: empty, or holding "=" (which ends a name in the environment)
// or a NUL byte.
func (c *compiler) checkEnvNames(m map[string]plan.Template, expr hcl.Expression, sc scope) {
	for _, name := range slices.Sorted(maps.Keys(m)) {
		var why string
		switch {
		case name == "":
			why = "is empty"
		case strings.Contains(name, "="):
			why = `holds "=", which ends a name in a process's environment`
		case strings.ContainsRune(name, 0):
			why = "holds a NUL byte"
		default:
			continue
		}
		rng := expr.Range()
		if oc, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
			for _, item := range oc.Items {
				if k, diags := item.KeyExpr.Value(nil); !diags.HasErrors() && k.Type() == cty.String && k.IsKnown() && !k.IsNull() && k.AsString() == name {
					rng = item.KeyExpr.Range()
				}
			}
		}
		c.add(errorDiag("Invalid environment variable name", fmt.Sprintf("%q in %s %s: no process can receive it. Name variables with letters, digits and _, like GOFLAGS or APP_ENV.", name, sc.desc(), why), &rng, nil))
	}
}
