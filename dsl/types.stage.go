package dsl

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// MaxMatrix bounds the instances one matrix stage expands to.
const MaxMatrix = 256

// StageSchema is the schema of a stage block, besides needs, when, matrix
// and its steps.
type StageSchema struct {
	RunsOn          []string                 `hcl:"runs_on"`
	Timeout         plan.Duration            `hcl:"timeout"`
	QueueTimeout    plan.Duration            `hcl:"queue_timeout"`
	ContinueOnError bool                     `hcl:"continue_on_error"`
	Env             map[string]plan.Template `hcl:"env"`
	Artifacts       []string                 `hcl:"artifacts"`
	Approval        *ApprovalSchema          `hcl:"approval,block"`
	Retry           *plan.Retry              `hcl:"retry,block"`
}

// ApprovalSchema is the schema of a stage's approval block.
type ApprovalSchema struct {
	Approvers   []string      `hcl:"approvers"`
	Timeout     plan.Duration `hcl:"timeout" default:"24h"`
	Description string        `hcl:"description"`
}

// StageExtraNames lists the stage attributes and blocks decoded by hand.
var StageExtraNames = []string{"needs", "when", "matrix", "step"}

var stageExtra = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "needs"}, {Name: "when"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "matrix"},
		{Type: "step", LabelNames: []string{"kind", "name"}},
	},
}

type stageBlock struct {
	name  string
	c     *compiler // the compiler of the pipeline or module it is in
	id    string    // its name in the plan: the module path and name
	index int       // in the graph of the pipeline and its modules
	block *hcl.Block
	// content holds needs, when, matrix and the step blocks, read once.
	content *hcl.BodyContent
	// deps are its needs as written (readNeeds), needs those of the
	// graph (graph.link); needsAttr is where they are written, in the
	// file of needsBy.
	deps      deps
	needs     []*stageBlock
	needsAttr *hcl.Attribute
	needsBy   *compiler
	hasMatrix bool
	steps     []*stepBlock
}

type stepBlock struct {
	name, kind string
	stage      *stageBlock
	index      int
	block      *hcl.Block
	outputs    []string
}

// stageBody is what declaring a stage reads of its body: its content and,
// for each step block, the outputs declaredOutputs gives and reports.
type stageBody struct {
	content  *hcl.BodyContent
	outputs  [][]string
	problems []hcl.Diagnostics
}

// declareStages declares stages in the order written. Reading their
// bodies, most of the work, needs nothing from other stages, so it is done
// first, in parallel.
func (c *compiler) declareStages(blocks []*hcl.Block) {
	bodies := make([]stageBody, len(blocks))
	parallel(len(blocks), func() func(int) {
		sub := *c
		return func(i int) {
			content := partialContent(blocks[i].Body, stageExtra)
			steps := content.Blocks.OfType("step")
			body := stageBody{content: content}
			for j, sb := range steps {
				if sb.Labels[0] == plan.KindRun {
					if body.outputs == nil {
						body.outputs, body.problems = make([][]string, len(steps)), make([]hcl.Diagnostics, len(steps))
					}
					sub.diags = nil
					body.outputs[j] = sub.declaredOutputs(sb)
					body.problems[j] = sub.diags
				}
			}
			bodies[i] = body
		}
	})
	steps := 0
	for _, body := range bodies {
		steps += len(body.content.Blocks)
	}
	if len(c.steps) == 0 && len(c.stages) == 0 { // sized once for pipelines of thousands of steps
		c.steps = make(map[string]*stepBlock, steps)
		c.stageIdx = make(map[string]*stageBlock, len(blocks))
		c.stages = make([]*stageBlock, 0, len(blocks))
		if c.g.stages == nil {
			c.g.stages = make([]*stageBlock, 0, len(blocks))
		}
	}
	for i, b := range blocks {
		c.declareStage(b, bodies[i])
	}
}

// declareStage registers a stage and its steps, so that references to
// them can be checked wherever they appear.
func (c *compiler) declareStage(b *hcl.Block, body stageBody) {
	s := &stageBlock{name: b.Labels[0], c: c, id: c.prefix + b.Labels[0], index: len(c.g.stages), block: b}
	c.stages = append(c.stages, s)
	c.g.stages = append(c.g.stages, s)
	c.stageIdx[s.name] = s
	content := body.content
	s.content = content
	s.hasMatrix = len(content.Blocks.OfType("matrix")) > 0
	for j, sb := range content.Blocks.OfType("step") {
		kind, name := sb.Labels[0], sb.Labels[1]
		if plan.KindConfig(kind) == nil {
			c.add(errorDiag("Unknown step kind", fmt.Sprintf("%q is not a step kind. The kinds are %s.%s", kind, quoteList(plan.Kinds), didYouMean(kind, plan.Kinds)), sb.LabelRanges[0].Ptr(), &sb.DefRange))
			continue
		}
		if !validIdentifier(name) {
			c.add(errorDiag("Invalid name", fmt.Sprintf("%q is not a valid step name. Names start with a letter and contain only letters, digits, underscores and dashes, because they are used in references such as step.%s.<output>.", name, "name"), sb.LabelRanges[1].Ptr(), &sb.DefRange))
			continue
		}
		if prev, dup := c.steps[name]; dup {
			c.add(errorDiag("Duplicate step", fmt.Sprintf("A step named %q was already declared in stage %q at %s. Step names are unique in a pipeline because step.<name>.<output> refers to them; rename one.", name, prev.stage.name, c.relSource(prev.block.DefRange)), sb.LabelRanges[1].Ptr(), &sb.DefRange))
			continue
		}
		st := &stepBlock{name: name, kind: kind, stage: s, index: len(s.steps), block: sb}
		var declared []string
		if kind == plan.KindRun {
			declared = body.outputs[j]
			c.add(body.problems[j]...)
		}
		if n := len(plan.KindOutputs[kind]) + len(declared); n > 0 {
			st.outputs = append(append(make([]string, 0, n), plan.KindOutputs[kind]...), declared...)
		}
		s.steps = append(s.steps, st)
		c.steps[name] = st
	}
}

// outputsSchema names the one attribute declaredOutputs reads.
var outputsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "outputs"}}}

// declaredOutputs reads a run step's outputs list, which must be literal.
func (c *compiler) declaredOutputs(sb *hcl.Block) []string {
	attr, ok := attrOf(sb.Body, outputsSchema)
	if !ok {
		return nil
	}
	names, lit := literalStrings(attr.Expr)
	var err error
	if !lit {
		v, diags := attr.Expr.Value(nil)
		err = fmt.Errorf("not a literal list")
		if !diags.HasErrors() {
			names, err = toStrings(v)
		}
	}
	if err != nil {
		c.add(errorDiag("Invalid outputs", "outputs is a literal list of names, like outputs = [\"version\"], so that references to them can be checked before the pipeline runs.", attr.Expr.Range().Ptr(), &sb.DefRange))
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		switch {
		case !validIdentifier(n):
			c.add(errorDiag("Invalid output name", fmt.Sprintf("%q is not a valid output name: use letters, digits, underscores and dashes, starting with a letter.", n), attr.Expr.Range().Ptr(), &sb.DefRange))
		case n == "exit_code":
			c.add(errorDiag("Reserved output name", "exit_code is set by Sluice for every run step; choose another name.", attr.Expr.Range().Ptr(), &sb.DefRange))
		case seen[n]:
			c.add(errorDiag("Duplicate output name", fmt.Sprintf("%q is listed twice.", n), attr.Expr.Range().Ptr(), &sb.DefRange))
		default:
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// resolveNeeds reads the needs of every stage and module block
// statically, links them into the graph of the pipeline's stages and its
// modules', checks it for cycles and computes each stage's ancestors.
func (c *compiler) resolveNeeds() {
	c.readNeeds()
	c.g.link()
	c.g.checkCycles()
	c.g.computeAncestors()
}

func (g *graph) checkCycles() {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make([]int8, len(g.stages))
	var stack []*stageBlock
	reported := map[string]bool{}
	var visit func(s *stageBlock)
	visit = func(s *stageBlock) {
		state[s.index] = onStack
		stack = append(stack, s)
		for _, dep := range s.needs {
			switch state[dep.index] {
			case unvisited:
				visit(dep)
			case onStack:
				i := len(stack) - 1
				for stack[i] != dep {
					i--
				}
				cycle := make([]string, 0, len(stack)-i+1)
				for _, m := range stack[i:] {
					cycle = append(cycle, m.id)
				}
				cycle = append(cycle, dep.id)
				members := append([]string{}, cycle[:len(cycle)-1]...)
				sort.Strings(members)
				key := strings.Join(members, ",")
				if reported[key] {
					continue
				}
				reported[key] = true
				by := s.needsBy
				if by == nil {
					by = s.c
				}
				var r *hcl.Range
				if s.needsAttr != nil {
					r = s.needsAttr.Expr.Range().Ptr()
				}
				by.add(errorDiag("Cycle in stage needs", fmt.Sprintf("These stages need each other in a cycle, so none of them can start: %s. Remove one of these needs.", strings.Join(cycle, " → ")), r, &s.block.DefRange))
			}
		}
		stack = stack[:len(stack)-1]
		state[s.index] = done
	}
	for _, s := range g.stages {
		if state[s.index] == unvisited {
			visit(s)
		}
	}
}

// computeAncestors records, for every stage, the set of stages it depends
// on directly or not, as a bitset indexed by declaration order: a pipeline
// of a thousand stages in a chain has half a million such pairs.
func (g *graph) computeAncestors() {
	words := (len(g.stages) + 63) / 64
	g.ancestors = make([][]uint64, len(g.stages))
	for _, s := range g.topoOrder() {
		set := make([]uint64, words)
		for _, dep := range s.needs {
			set[dep.index/64] |= 1 << (dep.index % 64)
			for w, bits := range g.ancestors[dep.index] { // nil while on a cycle
				set[w] |= bits
			}
		}
		g.ancestors[s.index] = set
	}
}

// needsTransitively reports whether stage s depends on stage dep.
func (g *graph) needsTransitively(s, dep *stageBlock) bool {
	set := g.ancestors[s.index]
	return set != nil && set[dep.index/64]&(1<<(dep.index%64)) != 0
}

// topoOrder orders stages so that each comes after the stages it needs;
// among stages that are ready together, the one written first comes first.
// Stages on a cycle (already reported) come last in written order.
func (g *graph) topoOrder() []*stageBlock {
	if g.order != nil {
		return g.order
	}
	// By stage index: a pipeline may have thousands of stages.
	indeg := make([]int, len(g.stages))
	dependents := make([][]*stageBlock, len(g.stages))
	for _, s := range g.stages {
		indeg[s.index] = len(s.needs)
		for _, dep := range s.needs {
			dependents[dep.index] = append(dependents[dep.index], s)
		}
	}
	var ready []*stageBlock
	order := make([]*stageBlock, 0, len(g.stages))
	for _, s := range g.stages {
		if indeg[s.index] == 0 {
			ready = append(ready, s)
		}
	}
	placed := make([]bool, len(g.stages))
	for len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool { return ready[i].index < ready[j].index })
		s := ready[0]
		ready = ready[1:]
		order = append(order, s)
		placed[s.index] = true
		for _, d := range dependents[s.index] {
			if indeg[d.index]--; indeg[d.index] == 0 {
				ready = append(ready, d)
			}
		}
	}
	for _, s := range g.stages {
		if !placed[s.index] {
			order = append(order, s)
		}
	}
	g.order = order
	return order
}

// matrixInstance is one combination of a matrix.
type matrixInstance struct {
	keys   []string
	values map[string]string
}

func (m matrixInstance) id(stage string) string {
	if len(m.keys) == 0 {
		return stage
	}
	parts := make([]string, len(m.keys))
	for i, k := range m.keys {
		parts[i] = k + "=" + m.values[k]
	}
	return stage + "[" + strings.Join(parts, ",") + "]"
}

func (m matrixInstance) ctyValues() map[string]cty.Value {
	if len(m.keys) == 0 {
		return nil
	}
	out := make(map[string]cty.Value, len(m.keys))
	for k, v := range m.values {
		out[k] = cty.StringVal(v)
	}
	return out
}

// expandMatrix evaluates a matrix block into its instances: the product of
// its dimensions in the order written, minus excluded combinations.
func (c *compiler) expandMatrix(s *stageBlock, b *hcl.Block) []matrixInstance {
	// A matrix body is free-form: its attributes are the dimensions, and
	// exclude blocks remove combinations.
	body, ok := b.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	attrs := hcl.Attributes{}
	for name, a := range body.Attributes {
		attrs[name] = a.AsHCLAttribute()
	}
	var excludeBlocks []*hclsyntax.Block
	for _, eb := range body.Blocks {
		if eb.Type != "exclude" || len(eb.Labels) > 0 {
			r := eb.TypeRange
			c.add(errorDiag("Unexpected block in matrix", fmt.Sprintf("A matrix holds dimensions (go = [\"1.22\", \"1.23\"]) and exclude blocks without labels; %q is neither.%s", eb.Type, didYouMean(eb.Type, []string{"exclude"})), &r, &b.DefRange))
			continue
		}
		excludeBlocks = append(excludeBlocks, eb)
	}
	ctx := c.evalContext(nil)
	var keys []string
	dims := map[string][]string{}
	total := 1
	for _, a := range sortByPos(attrs) {
		v, diags := c.value(a.Expr, ctx, scope{what: "matrix." + a.Name, stepIndex: -1})
		c.add(diags...)
		if diags.HasErrors() {
			return nil
		}
		vals, err := matrixValues(v)
		if err != nil {
			c.add(errorDiag("Invalid matrix dimension", fmt.Sprintf("matrix.%s must be a non-empty list of strings, numbers or bools, like %s = [\"1.22\", \"1.23\"]: %s.", a.Name, a.Name, err), a.Expr.Range().Ptr(), &b.DefRange))
			return nil
		}
		keys = append(keys, a.Name)
		dims[a.Name] = vals
		total *= len(vals)
		if total > MaxMatrix {
			c.add(errorDiag("Matrix too large", fmt.Sprintf("The matrix of stage %q expands to more than %d instances. Reduce its dimensions, or split the stage.", s.name, MaxMatrix), &b.DefRange, &s.block.DefRange))
			return nil
		}
	}
	if len(keys) == 0 {
		c.add(errorDiag("Empty matrix", "A matrix block needs at least one dimension, like go = [\"1.22\", \"1.23\"].", &b.DefRange, &s.block.DefRange))
		return nil
	}
	var excludes []map[string]string
	for _, eb := range excludeBlocks {
		ex := map[string]string{}
		ea := hcl.Attributes{}
		for name, a := range eb.Body.Attributes {
			ea[name] = a.AsHCLAttribute()
		}
		for _, nb := range eb.Body.Blocks {
			r := nb.TypeRange
			c.add(errorDiag("Unexpected block in exclude", "An exclude block holds matrix values only, like go = \"1.22\".", &r, nil))
		}
		for _, a := range sortByPos(ea) {
			if _, ok := dims[a.Name]; !ok {
				c.add(errorDiag("Unknown matrix key", fmt.Sprintf("The matrix has no dimension %q.%s", a.Name, didYouMean(a.Name, keys)), a.NameRange.Ptr(), eb.DefRange().Ptr()))
				continue
			}
			v, diags := c.value(a.Expr, ctx, scope{what: "exclude." + a.Name, stepIndex: -1})
			c.add(diags...)
			if s, err := toString(v); err == nil && !diags.HasErrors() {
				ex[a.Name] = s
			}
		}
		excludes = append(excludes, ex)
	}
	var out []matrixInstance
	var rec func(i int, cur map[string]string)
	rec = func(i int, cur map[string]string) {
		if i == len(keys) {
			for _, ex := range excludes {
				match := len(ex) > 0
				for k, v := range ex {
					match = match && cur[k] == v
				}
				if match {
					return
				}
			}
			vals := make(map[string]string, len(cur))
			for k, v := range cur {
				vals[k] = v
			}
			out = append(out, matrixInstance{keys: keys, values: vals})
			return
		}
		for _, v := range dims[keys[i]] {
			cur[keys[i]] = v
			rec(i+1, cur)
		}
	}
	rec(0, map[string]string{})
	if len(out) == 0 {
		c.add(errorDiag("Matrix excludes everything", fmt.Sprintf("Every combination of the matrix of stage %q is excluded, so the stage would never run.", s.name), &b.DefRange, &s.block.DefRange))
	}
	return out
}

func matrixValues(v cty.Value) ([]string, error) {
	if v.IsNull() || !(v.Type().IsListType() || v.Type().IsTupleType() || v.Type().IsSetType()) {
		return nil, fmt.Errorf("got %s", friendlyType(v))
	}
	var out []string
	seen := map[string]bool{}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		s, err := convert.Convert(e, cty.String)
		if err != nil || s.IsNull() {
			return nil, fmt.Errorf("an element is %s", friendlyType(e))
		}
		if !seen[s.AsString()] {
			seen[s.AsString()] = true
			out = append(out, s.AsString())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the list is empty")
	}
	return out, nil
}

// checkArtifacts checks a stage's artifacts patterns: relative paths in
// the workspace.
func (c *compiler) checkArtifacts(s *stageBlock, patterns []string) {
	rng := s.block.DefRange
	if attr, ok := s.block.Body.(*hclsyntax.Body); ok {
		if a, ok := attr.Attributes["artifacts"]; ok {
			rng = a.Expr.Range()
		}
	}
	for _, p := range patterns {
		if p == "" || path.IsAbs(p) || !fs.ValidPath(strings.TrimSuffix(p, "/")) {
			c.add(errorDiag("Invalid artifacts pattern", fmt.Sprintf("%q is not a path relative to the workspace. Write patterns like \"dist/*\" or \"bin/app\", without a leading / or ..; * and ? match within a directory, ** across directories.", p), &rng, &s.block.DefRange))
		}
	}
}

// addKindLabels routes a stage holding steps of a kind that needs a
// runner label (plan.KindLabels) to runners with that label, by adding it
// to the stage's runs_on.
func addKindLabels(s *plan.Stage) {
	for _, st := range s.Steps {
		if l, ok := plan.KindLabels[st.Kind]; ok && !slices.Contains(s.RunsOn, l) {
			s.RunsOn = append(s.RunsOn, l)
		}
	}
}
