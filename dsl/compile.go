package dsl

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Options are the inputs of a compilation besides the pipeline files.
type Options struct {
	// Git is the event being planned: commit, ref, event kind and so on.
	Git plan.Git
	// ChangedFilesKnown says whether Git.ChangedFiles is the real list of
	// files the event changed. When it is false, path filters and changed()
	// match, so that nothing is skipped for lack of information.
	ChangedFilesKnown bool
	// Vars are --var values as written on the command line (name=value).
	Vars map[string]string
	// VarFiles are HCL or JSON files of variable values, applied in order.
	VarFiles []string
	// Environ is the environment SLUICE_VAR_<name> values are read from.
	Environ []string
	// Inputs are the values of a manual run's inputs.
	Inputs map[string]string
	// Root is the directory file() reads from; default: the pipeline
	// directory's parent (the repository root for .sluice/).
	Root string
	// Modules says where the sources of module blocks come from and how
	// the lock file of git sources is used.
	Modules ModuleOptions
	// DryRun says the plan is for a dry run (sluice run --dry-run):
	// pipeline.dry_run is true, so that a stage can skip itself in one
	// (when = !pipeline.dry_run).
	DryRun bool
}

// compiler carries the state of one compilation through its phases.
type compiler struct {
	src   *Sources
	opts  Options
	funcs map[string]function.Function
	diags hcl.Diagnostics

	pipeline *pipelineBlock
	vars     map[string]*variableBlock
	varVals  map[string]cty.Value
	locals   map[string]*hcl.Attribute
	localVal map[string]cty.Value
	secrets  map[string]*secretBlock
	inputs   map[string]*inputBlock

	stages   []*stageBlock // this compiler's, as written
	stageIdx map[string]*stageBlock
	steps    map[string]*stepBlock
	g        *graph // the stages of the pipeline and of all its modules

	baseVars    map[string]cty.Value // see evalContext
	baseCtx     *hcl.EvalContext
	baseLocals  int
	baseModules int

	relNames map[string]string // file name -> relSource's name for it
	relDir   string            // the pipeline directory, which plan sources are relative to

	schedule *plan.Schedule // the on "schedule" block, when valid

	// Modules. A module is compiled by a compiler of its own, made by the
	// module block that calls it (mod); the pipeline's compiler has none.
	mod          *moduleCall
	calls        map[string]*moduleCall // the module blocks of this compiler
	callList     []*moduleCall          // the same, as written
	moduleVal    map[string]cty.Value   // module.<name> of each evaluated call
	outputs      map[string]*outputBlock
	localsBlocks []*hcl.Block
	prefix       string    // of stage and step names in the plan: "" or "go."
	repo         *repoInfo // where this compiler's files come from
	dirID        string    // its directory, absolute, for module cycles
	where        string    // its directory, for messages
	note         string    // where a module is called, for its diagnostics
	callSource   string    // plan source of the stages of a module not in the repository
}

// graph is the stages of a pipeline and of the modules it calls, which
// form one DAG, and what the compilers of a pipeline share about modules.
type graph struct {
	stages    []*stageBlock // every stage, by stageBlock.index
	ancestors [][]uint64    // by stage index; see computeAncestors
	order     []*stageBlock // see topoOrder

	opts       Options
	src        *Sources // the pipeline's: module files join its Files, for snippets
	root       string   // Options.Root or its default
	hasModules bool
	modules    int                 // module blocks loaded, for MaxModules
	loaded     map[string]*Sources // module directories parsed, by the directory read

	defaultFetcher *GitFetcher
	fetcherErr     error
	own            string // the fetched copy of ModuleOptions.Repository
	ownErr         error
	ownDone        bool
}

// Compile turns loaded pipeline sources into a plan for one event. It
// returns every problem it finds; the plan is nil when there are errors.
func Compile(src *Sources, opts Options) (*plan.Plan, hcl.Diagnostics) {
	root := opts.Root
	if root == "" {
		root = filepath.Dir(filepath.Clean(src.Dir))
		if filepath.Base(filepath.Clean(src.Dir)) != DefaultDir {
			root = src.Dir
		}
	}
	if opts.Git.ShortSHA == "" && len(opts.Git.SHA) >= 7 {
		opts.Git.ShortSHA = opts.Git.SHA[:7]
	}
	if opts.Git.Event == "" {
		opts.Git.Event = "push"
	}
	src.lock = nil
	if opts.Modules.Lock != LockRead {
		src.lock = newModuleLock(src, opts.Modules.Lock)
	}
	c := &compiler{
		src:      src,
		opts:     opts,
		funcs:    functions(root, opts.Git.ChangedFiles, opts.ChangedFilesKnown),
		vars:     map[string]*variableBlock{},
		varVals:  map[string]cty.Value{},
		locals:   map[string]*hcl.Attribute{},
		localVal: map[string]cty.Value{},
		secrets:  map[string]*secretBlock{},
		inputs:   map[string]*inputBlock{},
		stageIdx: map[string]*stageBlock{},
		steps:    map[string]*stepBlock{},
		relNames: make(map[string]string, len(src.Order)),
		relDir:   src.Dir,
		g:        &graph{opts: opts, src: src, root: root},
		repo:     &repoInfo{},
		where:    filepath.ToSlash(src.Dir),
	}
	c.dirID, _ = filepath.Abs(src.Dir)
	for _, name := range src.Order {
		c.relNames[name] = relName(src.Dir, name)
	}
	p := c.run()
	diags := dedupe(c.allDiags())
	if diags.HasErrors() {
		return nil, diags
	}
	if err := p.Seal(); err != nil {
		panic(err) // a plan holds only encodable values
	}
	return p, diags
}

func (c *compiler) add(diags ...*hcl.Diagnostic) { c.diags = append(c.diags, diags...) }

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "pipeline", LabelNames: []string{"name"}},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "secret", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "stage", LabelNames: []string{"name"}},
		{Type: "module", LabelNames: []string{"name"}},
		{Type: "output", LabelNames: []string{"name"}},
	},
}

// declare reads the top-level blocks of the compiler's files: it decodes
// variables and secrets, declares stages and outputs, loads modules, and
// returns the pipeline and locals blocks for the phases after.
func (c *compiler) declare() (pipelines, localsBlocks []*hcl.Block) {
	var stageBlocks, moduleBlocks []*hcl.Block
	var moduleAfter []int
	declared := map[string]map[string]*hcl.Block{}
	for _, name := range c.src.Order {
		content, diags := c.src.Files[name].Body.Content(rootSchema)
		c.add(diags...)
		for _, b := range content.Blocks {
			if len(b.Labels) == 1 {
				if !c.checkName(b, b.Type) {
					continue
				}
				seen := declared[b.Type]
				if seen == nil {
					seen = map[string]*hcl.Block{}
					declared[b.Type] = seen
				}
				if prev, dup := seen[b.Labels[0]]; dup {
					c.add(errorDiag("Duplicate "+b.Type, fmt.Sprintf("A %s named %q was already declared at %s. Names must be unique; rename one of them.", b.Type, b.Labels[0], c.relSource(prev.DefRange)), b.LabelRanges[0].Ptr(), &b.DefRange))
					continue
				}
				seen[b.Labels[0]] = b
			}
			switch b.Type {
			case "pipeline":
				pipelines = append(pipelines, b)
			case "variable":
				c.decodeVariable(b)
			case "secret":
				if c.mod != nil {
					c.add(errorDiag("Secret in a module", fmt.Sprintf("A module uses the secrets of the pipeline that calls it, and declares none. Remove this block; secret.%s then refers to the calling pipeline's secret %q, which it declares.", b.Labels[0], b.Labels[0]), &b.DefRange, nil))
					continue
				}
				c.decodeSecret(b)
			case "locals":
				localsBlocks = append(localsBlocks, b)
			case "stage":
				stageBlocks = append(stageBlocks, b)
			case "module":
				moduleBlocks = append(moduleBlocks, b)
				moduleAfter = append(moduleAfter, len(stageBlocks))
			case "output":
				if c.mod == nil {
					c.add(errorDiag("Output outside a module", "An output block gives a value to the pipeline that calls a module, and a pipeline has no caller. Remove it, or use a local value.", &b.DefRange, nil))
					continue
				}
				c.declareOutput(b)
			}
		}
	}
	c.declareStages(stageBlocks)
	for i, b := range moduleBlocks {
		c.declareModule(b, moduleAfter[i])
	}
	return pipelines, localsBlocks
}

func (c *compiler) run() *plan.Plan {
	pipelines, localsBlocks := c.declare()
	if c.g.hasModules {
		c.g.renumber(c)
	}
	switch {
	case len(pipelines) == 0 && len(c.src.Order) > 0:
		r := hcl.Range{Filename: c.src.Order[0], Start: hcl.InitialPos, End: hcl.InitialPos}
		c.add(errorDiag("Missing pipeline block", "A pipeline needs exactly one pipeline block, which names it and says which events start it:\n\n  pipeline \"web\" {\n    on \"push\" { branches = [\"main\"] }\n  }", &r, nil))
	case len(pipelines) > 1:
		for _, b := range pipelines[1:] {
			c.add(errorDiag("More than one pipeline block", fmt.Sprintf("A pipeline directory describes one pipeline, and it is already named %q at %s. Move the other pipeline to its own directory, or remove this block.", pipelines[0].Labels[0], c.relSource(pipelines[0].DefRange)), &b.DefRange, nil))
		}
	}
	if len(pipelines) > 0 {
		c.declarePipeline(pipelines[0])
		if c.g.hasModules {
			for _, cc := range c.compilers() {
				cc.pipeline = c.pipeline
			}
		}
	}
	c.assignVariables()
	c.evalLocals(localsBlocks)
	ctx := c.evalContext(nil)
	p := &plan.Plan{Git: c.opts.Git, Inputs: c.inputValues()}
	p.Git.ChangedFiles = nonNil(p.Git.ChangedFiles)
	if c.pipeline != nil {
		c.decodePipeline(ctx, p)
	}
	p.Vars = c.varJSON()
	for _, name := range sortedKeys(c.secrets) {
		s := c.secrets[name]
		p.Secrets = append(p.Secrets, plan.Secret{Name: name, Env: s.env, File: s.file})
	}
	c.resolveNeeds()
	p.Stages = c.compileStages(p)
	for i := range p.Stages {
		addKindLabels(&p.Stages[i])
	}
	return p
}

// parallel calls work(i) for every i below n, on every core. Each worker
// calls start once for the state it keeps across its calls.
func parallel(n int, start func() (work func(i int))) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work := start()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				work(i)
			}
		}()
	}
	wg.Wait()
}

// identifier checks names that are used in references: letters, digits,
// underscores and dashes, starting with a letter.
func validIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r == '_' || r == '-' || (r >= '0' && r <= '9'):
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (c *compiler) checkName(b *hcl.Block, what string) bool {
	for i, l := range b.Labels {
		if !validIdentifier(l) {
			c.add(errorDiag("Invalid name", fmt.Sprintf("%q is not a valid %s name. Names start with a letter and contain only letters, digits, underscores and dashes, because they are used in references such as %s.%s.", l, what, refRoot(what), "name"), b.LabelRanges[i].Ptr(), &b.DefRange))
			return false
		}
	}
	return true
}

func refRoot(what string) string {
	switch what {
	case "variable":
		return "var"
	case "step name":
		return "step"
	case "output":
		return "module.<module>.output"
	}
	return what
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// evalContext builds the variables for expressions; matrix is nil outside
// a matrix stage.
func (c *compiler) evalContext(matrix map[string]cty.Value) *hcl.EvalContext {
	if c.baseVars == nil || len(c.localVal) != c.baseLocals || len(c.moduleVal) != c.baseModules {
		// Locals and modules are evaluated one by one; after that, the
		// base is fixed.
		c.baseLocals, c.baseModules = len(c.localVal), len(c.moduleVal)
		c.baseVars = map[string]cty.Value{
			"git":      gitValue(c.opts.Git),
			"var":      cty.ObjectVal(c.varVals),
			"local":    cty.ObjectVal(c.localVal),
			"pipeline": c.pipelineValue(),
		}
		if c.calls != nil {
			c.baseVars["module"] = cty.ObjectVal(c.moduleVal)
		}
		c.baseCtx = &hcl.EvalContext{Variables: c.baseVars, Functions: c.funcs}
	}
	if matrix == nil {
		return c.baseCtx
	}
	vars := maps.Clone(c.baseVars)
	vars["matrix"] = cty.ObjectVal(matrix)
	return &hcl.EvalContext{Variables: vars, Functions: c.funcs}
}

func (c *compiler) pipelineValue() cty.Value {
	name := ""
	if c.pipeline != nil {
		name = c.pipeline.name
	}
	inputs := map[string]cty.Value{}
	for k, v := range c.inputValues() {
		inputs[k] = cty.StringVal(v)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"name":    cty.StringVal(name),
		"event":   cty.StringVal(c.opts.Git.Event),
		"inputs":  cty.ObjectVal(inputs),
		"dry_run": cty.BoolVal(c.opts.DryRun),
	})
}

func (c *compiler) varJSON() map[string]json.RawMessage {
	if len(c.varVals) == 0 {
		return nil
	}
	out := map[string]json.RawMessage{}
	for name, v := range c.varVals {
		if !v.IsWhollyKnown() {
			continue
		}
		b, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			continue
		}
		out[name] = b
	}
	return out
}

// exprText returns the source text of an expression, for messages.
func (c *compiler) exprText(r hcl.Range) string {
	f := c.src.Files[r.Filename]
	if f == nil || r.End.Byte > len(f.Bytes) || r.Start.Byte > r.End.Byte {
		return ""
	}
	s := strings.Join(strings.Fields(string(f.Bytes[r.Start.Byte:r.End.Byte])), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// relSource renders a range's start relative to the pipeline directory.
func (c *compiler) relSource(r hcl.Range) string {
	name, ok := c.relNames[r.Filename]
	if !ok {
		name = relName(c.relDir, r.Filename)
	}
	return name + ":" + strconv.Itoa(r.Start.Line)
}

// planSource is the source of a stage or step in the plan: relSource, or
// for a module from another repository, where the pipeline calls it.
func (c *compiler) planSource(r hcl.Range) string {
	if c.repo.git != nil {
		return c.callSource
	}
	return c.relSource(r)
}

func relName(dir, name string) string {
	if rel, err := filepath.Rel(dir, name); err == nil {
		name = rel
	}
	return filepath.ToSlash(name)
}

// sortByPos orders attributes the way they were written.
func sortByPos(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Range.Filename != out[j].Range.Filename {
			return out[i].Range.Filename < out[j].Range.Filename
		}
		return out[i].Range.Start.Byte < out[j].Range.Start.Byte
	})
	return out
}
