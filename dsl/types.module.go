package dsl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Limits on modules, besides those of every pipeline file.
const (
	// MaxModuleDepth bounds how deeply modules call modules.
	MaxModuleDepth = 8
	// MaxModules bounds the module blocks of a pipeline and of all the
	// modules it calls, counted once per call.
	MaxModules = 256
)

// ModuleOptions say where the sources of module blocks come from.
type ModuleOptions struct {
	// Fetcher fetches git sources. Nil: a GitFetcher without credentials
	// whose cache is DefaultModuleCache.
	Fetcher ModuleFetcher
	// Lock says how the lock file (modules.lock.hcl beside the pipeline
	// files) is used: read (every compile but validate), checked, or
	// rewritten.
	Lock LockMode
	// Context bounds fetching; nil means context.Background().
	Context context.Context
	// Repository, when set, is the repository the pipeline files were read
	// from: local module directories are then read from it, fetched with
	// Fetcher, instead of from the disk. The server, which has only the
	// pipeline files on its disk, sets it.
	Repository *RepositoryAt
}

// RepositoryAt names a repository at a commit, and the directory of the
// pipeline's project in it.
type RepositoryAt struct {
	URL    string
	Commit string
	// Path is the project directory holding .sluice, "" for the top.
	Path string
}

var moduleSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "source", Required: true}, {Name: "inputs"}, {Name: "needs"},
}}

// ModuleSchemaNames lists the attributes of a module block.
func ModuleSchemaNames() []string { return schemaNames(moduleSchema) }

// moduleCall is a module block: a call of a module by a pipeline or by
// another module.
type moduleCall struct {
	name   string
	block  *hcl.Block
	parent *compiler // the caller
	child  *compiler // the module's compiler; nil when it could not be loaded
	// after is how many stage blocks of the caller are written before it:
	// its place in the written order, for the default needs.
	after int

	sourceRange hcl.Range
	inputs      *hcl.Attribute
	needsAttr   *hcl.Attribute
	deps        deps // its needs, in the caller
}

// deps are the items of needs as written in one pipeline or module:
// stages, and module blocks, which stand for the module's last stages.
type deps struct {
	stages []*stageBlock
	mods   []*moduleCall
}

func (d deps) empty() bool { return len(d.stages) == 0 && len(d.mods) == 0 }

// needRef is an item of needs: a stage or a whole module.
type needRef struct {
	stage *stageBlock
	mod   *moduleCall
}

func (r needRef) isZero() bool { return r.stage == nil && r.mod == nil }

// repoInfo says which repository a compiler's files come from.
type repoInfo struct {
	// git is the module source for a git module's files; nil for the
	// pipeline's own repository.
	git *gitModule
	// top is the repository's top directory, as its files are named
	// (absolute); for the pipeline's own repository it is found when a
	// local module needs it (graph.ownTop).
	top string
}

type gitModule struct {
	url, ref, commit string
}

// inputValue is the value a module block gives one of the module's
// variables.
type inputValue struct {
	val    cty.Value
	rng    hcl.Range // the value expression
	keyRng hcl.Range
	failed bool // an error was reported; the value is unknown
}

// declareModule reads a module block, loads the module and declares what
// it holds. Everything about the module that needs no values (its stages,
// steps, outputs, variables and its own modules) is known afterwards.
func (c *compiler) declareModule(b *hcl.Block, after int) {
	m := &moduleCall{name: b.Labels[0], block: b, parent: c, after: after}
	if c.calls == nil {
		c.calls = map[string]*moduleCall{}
		c.moduleVal = map[string]cty.Value{}
	}
	c.calls[m.name] = m
	c.callList = append(c.callList, m)
	c.g.hasModules = true
	content, diags := bodyContent(b.Body, moduleSchema)
	c.add(diags...)
	m.inputs, m.needsAttr = content.Attributes["inputs"], content.Attributes["needs"]
	attr, ok := content.Attributes["source"]
	if !ok {
		return // reported as missing
	}
	m.sourceRange = attr.Expr.Range()
	text, lit := literalString(attr.Expr)
	if !lit {
		c.add(errorDiag("Invalid module source", "source must be a literal string, like \"./ci/go\" or \"git::https://github.com/acme/ci-modules.git//go?ref=v1.4.0\": modules are loaded before anything is evaluated.", &m.sourceRange, &b.DefRange))
		return
	}
	src, err := parseModuleSource(text)
	if err != nil {
		c.add(errorDiag("Invalid module source", capitalise(err.Error())+".", &m.sourceRange, &b.DefRange))
		return
	}
	c.loadModule(m, src)
}

// loadModule finds a module's directory, checks that loading it makes no
// cycle, parses its files and declares what they hold.
func (c *compiler) loadModule(m *moduleCall, src moduleSource) {
	fail := func(summary, detail string) {
		c.add(errorDiag(summary, detail, &m.sourceRange, &m.block.DefRange))
	}
	depth := 1
	for p := c; p.mod != nil; p = p.mod.parent {
		depth++
	}
	if depth > MaxModuleDepth {
		fail("Modules nested too deeply", fmt.Sprintf("Calling module %q would nest modules %d deep; they may nest at most %d deep.", m.name, depth, MaxModuleDepth))
		return
	}
	if c.g.modules++; c.g.modules > MaxModules {
		fail("Too many modules", fmt.Sprintf("The pipeline and its modules call more than %d modules.", MaxModules))
		return
	}
	repo := c.repo
	var dir, readDir, where string
	if src.isGit() {
		checkout, gm, ok := c.fetchGit(m, src)
		if !ok {
			return
		}
		repo = &repoInfo{git: gm, top: checkout}
		dir = filepath.Join(checkout, filepath.FromSlash(src.subdir))
		readDir = dir
		where = gitWhere(gm, src.subdir)
	} else {
		dir = filepath.Join(filepath.Dir(m.block.DefRange.Filename), filepath.FromSlash(src.local))
		top, ok := c.g.repoTop(c, repo, m)
		if !ok {
			return
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			fail("Invalid module source", fmt.Sprintf("Finding %q: %s.", dir, err))
			return
		}
		rel, err := filepath.Rel(top, abs)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			fail("Module outside the repository", fmt.Sprintf("%q leads out of the repository. A local module is a directory of the same repository; use a git source, like \"git::https://github.com/acme/ci-modules.git//go?ref=v1.4.0\", for another one.", src.local))
			return
		}
		readDir = dir
		where = filepath.ToSlash(rel)
		if repo.git != nil {
			where = gitWhere(repo.git, filepath.ToSlash(rel))
		} else if r := c.g.opts.Modules.Repository; r != nil {
			copyDir, ok := c.g.ownCopy(c, m)
			if !ok {
				return
			}
			readDir = filepath.Join(copyDir, rel)
		} else if real, err := filepath.EvalSymlinks(abs); err == nil {
			// A symbolic link may not lead out of the repository either.
			if realTop, err := filepath.EvalSymlinks(top); err == nil {
				if r, err := filepath.Rel(realTop, real); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
					fail("Module outside the repository", fmt.Sprintf("%q leads out of the repository through a symbolic link. A local module is a directory of the same repository.", src.local))
					return
				}
			}
		}
	}
	id, _ := filepath.Abs(dir)
	for p := c; p != nil; p = p.caller() {
		if p.dirID != id {
			continue
		}
		var chain []string
		for q := c; q != nil; q = q.caller() {
			chain = append([]string{q.where}, chain...)
		}
		fail("Module cycle", fmt.Sprintf("Module %q calls %s, which is already being loaded: %s → %s. A module cannot call itself, directly or through other modules.", m.name, where, strings.Join(chain, " → "), where))
		return
	}
	msrc, diags, ok := c.g.loadDir(readDir, dir, where)
	if !ok {
		fail(diags[0].Summary, diags[0].Detail)
		return
	}
	child := c.newModuleCompiler(m, msrc, repo, id, where)
	child.add(diags...)
	m.child = child
	pipelines, localsBlocks := child.declare()
	child.localsBlocks = localsBlocks
	for _, b := range pipelines {
		child.add(errorDiag("Pipeline block in a module", fmt.Sprintf("%s is called as a module, and a module has no pipeline block: the pipeline that calls it says when it runs. Remove this block, or call a directory that holds only stages, variables, locals, outputs and modules.", where), &b.DefRange, nil))
	}
}

func gitWhere(gm *gitModule, sub string) string {
	if sub == "" || sub == "." {
		return gm.url + "?ref=" + gm.ref
	}
	return gm.url + "//" + sub + "?ref=" + gm.ref
}

// newModuleCompiler makes the compiler of a module: its own variables,
// locals, stages, steps and outputs; the calling pipeline's secrets,
// event, functions and stage graph.
func (c *compiler) newModuleCompiler(m *moduleCall, src *Sources, repo *repoInfo, id, where string) *compiler {
	child := &compiler{
		src:      src,
		opts:     c.opts,
		funcs:    c.funcs,
		g:        c.g,
		pipeline: c.pipeline,
		vars:     map[string]*variableBlock{},
		varVals:  map[string]cty.Value{},
		locals:   map[string]*hcl.Attribute{},
		localVal: map[string]cty.Value{},
		secrets:  c.secrets,
		inputs:   c.inputs,
		stageIdx: map[string]*stageBlock{},
		steps:    map[string]*stepBlock{},
		relNames: make(map[string]string, len(src.Order)),
		relDir:   c.relDir,
		mod:      m,
		prefix:   c.prefix + m.name + ".",
		outputs:  map[string]*outputBlock{},
		repo:     repo,
		dirID:    id,
		where:    where,
	}
	for _, name := range src.Order {
		if repo.git != nil {
			rel, _ := filepath.Rel(repo.top, name)
			child.relNames[name] = repo.git.url + "//" + filepath.ToSlash(rel)
		} else {
			child.relNames[name] = relName(c.relDir, name)
		}
	}
	loc := m.block.DefRange.Filename + ":" + strconv.Itoa(m.block.DefRange.Start.Line)
	if c.repo.git != nil {
		loc = c.relSource(m.block.DefRange) // the module repository's name, not the cache's
	}
	child.note = fmt.Sprintf("In module %q called at %s", m.name, loc)
	if c.mod != nil {
		child.note = fmt.Sprintf("In module %q called at %s, %s", m.name, loc, "from m"+strings.TrimPrefix(c.note, "In m"))
	}
	child.callSource = c.planSource(m.block.DefRange)
	return child
}

// loadDir parses the .hcl files of a module directory, read from readDir
// and named as in dir. A directory called twice is parsed once. When it
// cannot be read, ok is false and the first diagnostic says why.
func (g *graph) loadDir(readDir, dir, where string) (*Sources, hcl.Diagnostics, bool) {
	if src, ok := g.loaded[readDir]; ok {
		return src, nil, true
	}
	entries, err := os.ReadDir(readDir)
	if err != nil {
		detail := fmt.Sprintf("Reading the module directory %s: %s.", where, errText(err))
		if errors.Is(err, os.ErrNotExist) {
			detail = fmt.Sprintf("There is no directory %s in the repository. A local source is a directory relative to the directory of the file that calls it.", where)
		}
		return nil, hcl.Diagnostics{errorDiag("Cannot read module", detail, nil, nil)}, false
	}
	var read, names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") && e.Name() != LockFileName {
			read = append(read, filepath.Join(readDir, e.Name()))
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	switch {
	case len(names) == 0:
		return nil, hcl.Diagnostics{errorDiag("Module without files", fmt.Sprintf("The module directory %s has no .hcl files.", where), nil, nil)}, false
	case len(names) > MaxFiles:
		return nil, hcl.Diagnostics{errorDiag("Too many module files", fmt.Sprintf("The module directory %s has %d .hcl files; a module may have at most %d.", where, len(names), MaxFiles), nil, nil)}, false
	}
	src := &Sources{Dir: dir, Files: map[string]*hcl.File{}}
	diags := parseFiles(src, read, names)
	for name, f := range src.Files {
		g.src.Files[name] = f // for the snippets of diagnostics
	}
	if g.loaded == nil {
		g.loaded = map[string]*Sources{}
	}
	g.loaded[readDir] = src
	return src, diags, true
}

// repoTop returns the top of the repository a local module of c must stay
// in.
func (g *graph) repoTop(c *compiler, repo *repoInfo, m *moduleCall) (string, bool) {
	if repo.top != "" {
		return repo.top, true
	}
	top := g.root
	if r := g.opts.Modules.Repository; r != nil {
		// The pipeline's project is at r.Path in the repository.
		for p := path.Clean(r.Path); p != "." && p != "" && p != "/"; p = path.Dir(p) {
			top = filepath.Dir(top)
		}
	} else if t, ok := RepoRoot(g.src.Dir); ok {
		top = t
	}
	abs, err := filepath.Abs(top)
	if err != nil {
		c.add(errorDiag("Cannot read module", fmt.Sprintf("Finding the repository's directory: %s.", err), &m.sourceRange, &m.block.DefRange))
		return "", false
	}
	repo.top = abs
	return abs, true
}

// ownCopy returns the directory holding the .hcl files of the pipeline's
// own repository at its commit (ModuleOptions.Repository), fetched once.
func (g *graph) ownCopy(c *compiler, m *moduleCall) (string, bool) {
	r := g.opts.Modules.Repository
	if !g.ownDone {
		g.ownDone = true
		f, ctx := g.fetcher()
		if f == nil {
			g.ownErr = g.fetcherErr
		} else {
			g.own, g.ownErr = f.Fetch(ctx, r.URL, "", r.Commit)
		}
	}
	if g.ownErr != nil {
		c.add(errorDiag("Cannot read module", fmt.Sprintf("Local modules are read from the repository %s at %s, which could not be fetched: %s.", r.URL, r.Commit, g.ownErr), &m.sourceRange, &m.block.DefRange))
		return "", false
	}
	return g.own, true
}

// fetcher returns the module fetcher and the context to fetch with.
func (g *graph) fetcher() (ModuleFetcher, context.Context) {
	ctx := g.opts.Modules.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if g.opts.Modules.Fetcher != nil {
		return g.opts.Modules.Fetcher, ctx
	}
	if g.defaultFetcher == nil && g.fetcherErr == nil {
		dir, err := DefaultModuleCache()
		if err != nil {
			g.fetcherErr = err
			return nil, ctx
		}
		g.defaultFetcher = &GitFetcher{Dir: dir}
	}
	if g.defaultFetcher == nil {
		return nil, ctx
	}
	return g.defaultFetcher, ctx
}

// fetchGit finds the commit of a git source (from the lock file, or by
// asking the repository when the lock is being written) and fetches it.
func (c *compiler) fetchGit(m *moduleCall, src moduleSource) (string, *gitModule, bool) {
	fail := func(summary, detail string) (string, *gitModule, bool) {
		c.add(errorDiag(summary, detail, &m.sourceRange, &m.block.DefRange))
		return "", nil, false
	}
	g := c.g
	f, ctx := g.fetcher()
	if f == nil {
		return fail("Cannot fetch module", fmt.Sprintf("Git modules are kept in a cache, and there is none: %s.", g.fetcherErr))
	}
	lock := g.lock(c)
	key := lockKey{url: src.url, ref: src.ref}
	commit, ok := lock.used[key]
	if !ok {
		locked, isLocked := lock.read[key]
		switch lock.mode {
		case LockRead:
			if !isLocked {
				return fail("Module source not locked", fmt.Sprintf("The lock file %s records no commit for %s at %s. Run sluice validate, which records the commit %s names now, and commit the lock file with the pipeline.", lock.display, src.url, src.ref, src.ref))
			}
			commit = locked.commit
		default:
			now, err := f.Resolve(ctx, src.url, src.ref)
			if err != nil {
				return fail("Cannot fetch module", fmt.Sprintf("Finding %s in %s: %s.", src.ref, src.url, err))
			}
			if isLocked && locked.commit != now && lock.mode == LockCheck {
				return fail("Module ref moved", movedDetail(lock.display, &MovedRefError{URL: src.url, Ref: src.ref, Locked: locked.commit, Commit: now}))
			}
			commit = now
		}
		lock.used[key] = commit
	}
	dir, err := f.Fetch(ctx, src.url, src.ref, commit)
	var moved *MovedRefError
	switch {
	case errors.As(err, &moved):
		return fail("Module ref moved", movedDetail(lock.display, moved))
	case err != nil:
		return fail("Cannot fetch module", fmt.Sprintf("Fetching %s at %s (commit %s): %s.", src.url, src.ref, commit, err))
	}
	return dir, &gitModule{url: src.url, ref: src.ref, commit: commit}, true
}

func movedDetail(lockFile string, e *MovedRefError) string {
	return fmt.Sprintf("The lock file %s says %s of %s is commit %s, but it now names %s: it was moved since it was locked, and Sluice runs only the commit that was locked. If the new commit is what you want, review it, run sluice validate --update-modules and commit the lock file; otherwise move %s back, or pin the source to ?ref=%s.", lockFile, e.Ref, e.URL, e.Locked, e.Commit, e.Ref, e.Locked)
}

// moduleInputs evaluates the inputs of a module block in the caller.
func (c *compiler) moduleInputs(m *moduleCall) map[string]inputValue {
	out := map[string]inputValue{}
	if m.inputs == nil {
		return out
	}
	ctx := c.evalContext(nil)
	what := fmt.Sprintf("module %q", m.name)
	expr := m.inputs.Expr
	if obj, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
		for _, item := range obj.Items {
			k, ok := literalKey(item.KeyExpr)
			if !ok {
				kv, diags := c.value(item.KeyExpr, ctx, scope{what: "a key of inputs", stepIndex: -1})
				c.add(diags...)
				if diags.HasErrors() {
					continue
				}
				var err error
				if k, err = toString(kv); err != nil {
					c.add(errorDiag("Invalid input name", "The names of inputs are strings: the names of the module's variables.", item.KeyExpr.Range().Ptr(), &m.block.DefRange))
					continue
				}
			}
			if prev, dup := out[k]; dup {
				c.add(errorDiag("Duplicate input", fmt.Sprintf("The input %q is already given at %s.", k, c.relSource(prev.keyRng)), item.KeyExpr.Range().Ptr(), &m.block.DefRange))
				continue
			}
			v, diags := c.value(item.ValueExpr, ctx, scope{what: what, attr: "inputs." + k, stepIndex: -1})
			c.add(diags...)
			out[k] = inputValue{val: v, rng: item.ValueExpr.Range(), keyRng: item.KeyExpr.Range(), failed: diags.HasErrors()}
		}
		return out
	}
	v, diags := c.value(expr, ctx, scope{what: what, attr: "inputs", stepIndex: -1})
	c.add(diags...)
	if diags.HasErrors() {
		return nil
	}
	if v.IsNull() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
		c.add(errorDiag("Invalid inputs", fmt.Sprintf("inputs is an object of values for the module's variables, like inputs = { go_version = \"1.26\" }; got %s.", friendlyType(v)), expr.Range().Ptr(), &m.block.DefRange))
		return nil
	}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		out[k.AsString()] = inputValue{val: e, rng: expr.Range(), keyRng: expr.Range()}
	}
	return out
}

// evalModule evaluates a module call: its inputs in the caller, then the
// module's variables, locals, modules and outputs. ok false means the
// inputs cannot be known (a cycle): everything in the module is unknown,
// and only already reported errors come of it.
func (c *compiler) evalModule(m *moduleCall, ok bool) {
	var vals map[string]inputValue
	if ok {
		vals = c.moduleInputs(m)
		ok = vals != nil
	}
	if m.child == nil {
		c.moduleVal[m.name] = cty.DynamicVal
		return
	}
	ch := m.child
	ch.assignInputs(vals, ok)
	ch.evalLocals(ch.localsBlocks)
	ch.evalOutputs()
	c.moduleVal[m.name] = ch.moduleValue()
}

// assignInputs gives a module's variables the values of its call's inputs
// or their defaults. Mistakes in the inputs are the caller's.
func (c *compiler) assignInputs(vals map[string]inputValue, ok bool) {
	m, p := c.mod, c.mod.parent
	names := sortedKeys(c.vars)
	for _, k := range sortedKeys(vals) {
		if _, declared := c.vars[k]; !declared {
			in := vals[k]
			p.add(errorDiag("Unknown module input", fmt.Sprintf("Module %q has no variable %q.%s Its inputs are its variable blocks: %s.", m.name, k, didYouMean(k, names), quoteList(names)), &in.keyRng, &m.block.DefRange))
		}
	}
	for _, name := range names {
		v := c.vars[name]
		in, given := vals[name]
		switch {
		case !ok || (given && in.failed):
			c.varVals[name] = cty.UnknownVal(v.typ)
		case !given:
			if v.def == cty.NilVal {
				p.add(errorDiag("Missing module input", fmt.Sprintf("Module %q needs a value for its variable %q (declared at %s), which has no default. Add it to the block: inputs = { %s = ... }.", m.name, name, c.relSource(v.block.DefRange), name), &m.block.DefRange, nil))
				c.varVals[name] = cty.UnknownVal(v.typ)
				continue
			}
			c.varVals[name] = v.def
			c.validateVariable(v)
		default:
			conv, err := convert.Convert(in.val, v.typ)
			if err != nil {
				p.add(errorDiag("Invalid module input", fmt.Sprintf("The input %q of module %q must be %s, the type of its variable %q (declared at %s): %s.", name, m.name, typeexpr.TypeString(v.typ), name, c.relSource(v.block.DefRange), err), &in.rng, &m.block.DefRange))
				c.varVals[name] = cty.UnknownVal(v.typ)
				continue
			}
			c.varVals[name] = conv
			c.validateVariable(v)
		}
	}
}

// moduleValue is what the caller reads as module.<name>: its outputs.
// Outputs known only at run time stay out of the value (they are
// templates, see templateParts).
func (c *compiler) moduleValue() cty.Value {
	outs := make(map[string]cty.Value, len(c.outputs))
	for name, o := range c.outputs {
		outs[name] = o.value
	}
	return cty.ObjectVal(map[string]cty.Value{"output": cty.ObjectVal(outs)})
}

// readNeeds reads the needs of every stage and module block of c and of
// the modules it calls, in the terms of each compiler: stages and module
// calls of its own. A stage or module block without needs needs what is
// written before it.
func (c *compiler) readNeeds() {
	prev := needRef{}
	k := 0
	for i := 0; i <= len(c.stages); i++ {
		for ; k < len(c.callList) && c.callList[k].after <= i; k++ {
			m := c.callList[k]
			m.deps = c.readNeedsAttr(m.needsAttr, prev, &m.block.DefRange, needRef{mod: m})
			prev = needRef{mod: m}
			if m.child != nil {
				m.child.readNeeds()
			}
		}
		if i == len(c.stages) {
			break
		}
		s := c.stages[i]
		attr := s.content.Attributes["needs"]
		s.deps = c.readNeedsAttr(attr, prev, &s.block.DefRange, needRef{stage: s})
		s.needsAttr, s.needsBy = attr, c
		prev = needRef{stage: s}
	}
}

// readNeedsAttr reads a needs attribute statically: stage.<name>,
// module.<name> (every stage of it) and module.<name>.stage.<name>.
func (c *compiler) readNeedsAttr(attr *hcl.Attribute, prev needRef, def *hcl.Range, self needRef) deps {
	var d deps
	if attr == nil {
		switch {
		case prev.stage != nil:
			d.stages = []*stageBlock{prev.stage}
		case prev.mod != nil:
			d.mods = []*moduleCall{prev.mod}
		}
		return d
	}
	exprs, diags := hcl.ExprList(attr.Expr)
	if diags.HasErrors() {
		c.add(errorDiag("Invalid needs", "needs is a list of stage references, like needs = [stage.build, stage.lint].", attr.Expr.Range().Ptr(), def))
		return d
	}
	seen := map[needRef]bool{}
	for _, e := range exprs {
		tr, diags := hcl.AbsTraversalForExpr(e)
		ref, r, ok := c.needTarget(tr, diags, e, def, self)
		if !ok {
			continue
		}
		if seen[ref] {
			c.add(errorDiag("Duplicate need", fmt.Sprintf("%s is listed twice.", c.exprText(e.Range())), r.Ptr(), def))
			continue
		}
		seen[ref] = true
		if ref.stage != nil {
			d.stages = append(d.stages, ref.stage)
		} else {
			d.mods = append(d.mods, ref.mod)
		}
	}
	return d
}

// needTarget resolves one item of needs.
func (c *compiler) needTarget(tr hcl.Traversal, diags hcl.Diagnostics, e hcl.Expression, def *hcl.Range, self needRef) (needRef, hcl.Range, bool) {
	invalid := func() (needRef, hcl.Range, bool) {
		c.add(errorDiag("Invalid needs", "Each item of needs is a stage or module reference, like stage.build, module.go or module.go.stage.test (not a string or other expression).", e.Range().Ptr(), def))
		return needRef{}, hcl.Range{}, false
	}
	if diags.HasErrors() {
		return invalid()
	}
	name, r, ok := attrName(tr, 1)
	if !ok {
		return invalid()
	}
	switch {
	case tr.RootName() == "stage" && len(tr) == 2:
		s := c.stageIdx[name]
		switch {
		case s == nil:
			names := make([]string, len(c.stages))
			for i, s := range c.stages {
				names[i] = s.name
			}
			c.add(errorDiag("Reference to undeclared stage", fmt.Sprintf("There is no stage named %q.%s", name, didYouMean(name, names)), r.Ptr(), def))
		case self.stage == s:
			c.add(errorDiag("Stage needs itself", fmt.Sprintf("Stage %q lists itself in needs; remove stage.%s.", name, name), r.Ptr(), def))
		default:
			return needRef{stage: s}, r, true
		}
	case tr.RootName() == "module" && (len(tr) == 2 || len(tr) == 4):
		m := c.calls[name]
		if m == nil {
			c.add(errorDiag("Reference to undeclared module", fmt.Sprintf("There is no module named %q.%s", name, didYouMean(name, sortedKeys(c.calls))), r.Ptr(), def))
			return needRef{}, r, false
		}
		if self.mod == m {
			c.add(errorDiag("Module needs itself", fmt.Sprintf("Module %q lists itself in needs; remove module.%s.", name, name), r.Ptr(), def))
			return needRef{}, r, false
		}
		if len(tr) == 2 {
			return needRef{mod: m}, r, true
		}
		kind, _, _ := attrName(tr, 2)
		sname, r2, ok := attrName(tr, 3)
		if kind != "stage" || !ok {
			return invalid()
		}
		if m.child == nil {
			return needRef{}, r2, false // the module could not be loaded: reported
		}
		s := m.child.stageIdx[sname]
		if s == nil {
			names := make([]string, len(m.child.stages))
			for i, s := range m.child.stages {
				names[i] = s.name
			}
			c.add(errorDiag("Reference to undeclared stage", fmt.Sprintf("Module %q has no stage named %q.%s Its stages are %s.", name, sname, didYouMean(sname, names), quoteList(names)), r2.Ptr(), def))
			return needRef{}, r2, false
		}
		return needRef{stage: s}, r2, true
	default:
		return invalid()
	}
	return needRef{}, r, false
}

// link turns the needs every compiler read into the needs of every stage
// of the pipeline's graph: a module's stages that need nothing in the
// module need what the module block needs, and needing a module is
// needing its last stages (those no other stage of it needs).
func (g *graph) link() {
	exits := map[*moduleCall][]*stageBlock{}
	for _, s := range g.stages {
		d, attr, by := s.deps, s.needsAttr, s.needsBy
		for owner := s.c; d.empty() && owner.mod != nil; owner = owner.mod.parent {
			d, attr, by = owner.mod.deps, owner.mod.needsAttr, owner.mod.parent
		}
		s.needsAttr, s.needsBy = attr, by
		if len(d.mods) == 0 {
			s.needs = d.stages // shared, never changed
			continue
		}
		needs := append(make([]*stageBlock, 0, len(d.stages)+len(d.mods)), d.stages...)
		for _, m := range d.mods {
			for _, e := range g.exits(m, exits) {
				needs = appendStage(needs, e)
			}
		}
		s.needs = needs
	}
}

func appendStage(list []*stageBlock, s *stageBlock) []*stageBlock {
	for _, o := range list {
		if o == s {
			return list
		}
	}
	return append(list, s)
}

// exits returns the stages of a module (its own and those of the modules
// it calls) that no other stage of it needs: the stages whose end is the
// module's end.
func (g *graph) exits(m *moduleCall, memo map[*moduleCall][]*stageBlock) []*stageBlock {
	if out, ok := memo[m]; ok {
		return out
	}
	ch := m.child
	if ch == nil {
		return nil
	}
	needed := map[needRef]bool{}
	for _, d := range ch.allDeps() {
		for _, s := range d.stages {
			needed[needRef{stage: s}] = true
		}
		for _, m := range d.mods {
			needed[needRef{mod: m}] = true
		}
	}
	var out []*stageBlock
	for _, s := range ch.stages {
		if !needed[needRef{stage: s}] {
			out = append(out, s)
		}
	}
	for _, cm := range ch.callList {
		if !needed[needRef{mod: cm}] {
			out = append(out, g.exits(cm, memo)...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	memo[m] = out
	return out
}

// allDeps lists the needs as written of every stage and module block of c.
func (c *compiler) allDeps() []deps {
	out := make([]deps, 0, len(c.stages)+len(c.callList))
	for _, s := range c.stages {
		out = append(out, s.deps)
	}
	for _, m := range c.callList {
		out = append(out, m.deps)
	}
	return out
}

// renumber orders the graph's stages as written, modules' stages where
// their module blocks are, so that stages ready together are planned in
// that order.
func (g *graph) renumber(root *compiler) {
	order := make([]*stageBlock, 0, len(g.stages))
	var walk func(c *compiler)
	walk = func(c *compiler) {
		k := 0
		for i := 0; i <= len(c.stages); i++ {
			for ; k < len(c.callList) && c.callList[k].after <= i; k++ {
				if ch := c.callList[k].child; ch != nil {
					walk(ch)
				}
			}
			if i < len(c.stages) {
				order = append(order, c.stages[i])
			}
		}
	}
	walk(root)
	for i, s := range order {
		s.index = i
	}
	g.stages = order
}

// caller is the compiler of the pipeline or module that calls c's
// module, nil for the pipeline's.
func (c *compiler) caller() *compiler {
	if c.mod == nil {
		return nil
	}
	return c.mod.parent
}

// compilers lists c and the compilers of the modules it calls.
func (c *compiler) compilers() []*compiler {
	out := []*compiler{c}
	for _, m := range c.callList {
		if m.child != nil {
			out = append(out, m.child.compilers()...)
		}
	}
	return out
}

// allDiags gathers the diagnostics of c and of its modules; each of a
// module's says where the module is called.
func (c *compiler) allDiags() hcl.Diagnostics {
	if len(c.callList) == 0 && c.mod == nil {
		return c.diags
	}
	var out hcl.Diagnostics
	for _, cc := range c.compilers() {
		for _, d := range cc.diags {
			switch d.Extra.(type) {
			case upstreamError, callSite:
				out = append(out, d)
				continue
			}
			if cc.mod != nil {
				d2 := *d
				if d2.Detail != "" {
					d2.Detail += "\n\n"
				}
				d2.Detail += cc.note + "."
				d = &d2
			}
			out = append(out, d)
		}
	}
	return out
}

// callSite marks a diagnostic made in a module about the block that calls
// it: it is not told where the module is called.
type callSite struct{}

// outermostCall is the module block in the pipeline's own files through
// which c is called.
func (c *compiler) outermostCall() *moduleCall {
	m := c.mod
	for m.parent.mod != nil {
		m = m.parent.mod
	}
	return m
}

// undeclaredSecret reports a module's use of a secret the pipeline does not
// declare: at the use, and at the module block in the pipeline, where the
// secret is to be declared.
func (c *compiler) undeclaredSecret(name string, r hcl.Range) hcl.Diagnostics {
	top := c.outermostCall()
	module := strings.TrimSuffix(c.prefix, ".")
	return hcl.Diagnostics{
		errorDiag("Reference to undeclared secret", fmt.Sprintf("The pipeline that calls module %q declares no secret named %q. A module uses the secrets of the pipeline that calls it: declare it there, with a block like secret %q { env = \"...\" }.", module, name, name), r.Ptr(), nil),
		{Severity: hcl.DiagError, Summary: "Module uses an undeclared secret", Detail: fmt.Sprintf("Module %q uses secret.%s, which this pipeline does not declare. Declare it: secret %q { env = \"...\" }.", module, name, name), Subject: top.block.DefRange.Ptr(), Extra: callSite{}},
	}
}
