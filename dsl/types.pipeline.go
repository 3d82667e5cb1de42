package dsl

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/robfig/cron/v3"
	"github.com/sluice-ci/sluice/dsl/plan"
)

// PipelineSchema is the schema of the pipeline block, besides its on and
// concurrency blocks.
type PipelineSchema struct {
	Description string                   `hcl:"description"`
	MaxParallel int                      `hcl:"max_parallel"`
	Timeout     plan.Duration            `hcl:"timeout"`
	Env         map[string]plan.Template `hcl:"env"`
}

// ConcurrencySchema is the schema of the concurrency block.
type ConcurrencySchema struct {
	Group            string `hcl:"group" required:"true"`
	CancelInProgress bool   `hcl:"cancel_in_progress"`
}

// BranchTrigger is the schema of on "push" and on "pull_request". For a pull
// request, branches filter the branch it targets.
type BranchTrigger struct {
	Branches       globs `hcl:"branches"`
	BranchesIgnore globs `hcl:"branches_ignore"`
	Paths          globs `hcl:"paths"`
	PathsIgnore    globs `hcl:"paths_ignore"`
}

// TagTrigger is the schema of on "tag".
type TagTrigger struct {
	Pattern globs `hcl:"pattern"`
}

// ScheduleTrigger is the schema of on "schedule".
type ScheduleTrigger struct {
	Cron   string `hcl:"cron" required:"true"`
	Branch string `hcl:"branch" default:"main"`
}

// InputSchema is the schema of an input block in on "manual".
type InputSchema struct {
	Description string   `hcl:"description"`
	Default     string   `hcl:"default"`
	Required    bool     `hcl:"required"`
	Options     []string `hcl:"options"`
}

// TriggerKinds lists the events a pipeline can be started by.
var TriggerKinds = []string{"push", "pull_request", "tag", "schedule", "manual"}

type pipelineBlock struct {
	name  string
	block *hcl.Block
	on    map[string]*hcl.Block
}

type inputBlock struct {
	InputSchema
	block *hcl.Block
}

var pipelineExtra = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "on", LabelNames: []string{"event"}},
	{Type: "concurrency"},
}}

var manualSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "input", LabelNames: []string{"name"}}}}

// declarePipeline reads what later phases need before variables and locals
// exist: the name, the trigger blocks and the inputs of a manual run.
func (c *compiler) declarePipeline(b *hcl.Block) {
	pb := &pipelineBlock{name: b.Labels[0], block: b, on: map[string]*hcl.Block{}}
	c.pipeline = pb
	content, _, _ := b.Body.PartialContent(pipelineExtra)
	for _, on := range content.Blocks.OfType("on") {
		kind := on.Labels[0]
		if !contains(TriggerKinds, kind) {
			c.add(errorDiag("Unknown event", fmt.Sprintf("A pipeline can be started by %s; %q is not one of them.%s", quoteList(TriggerKinds), kind, didYouMean(kind, TriggerKinds)), on.LabelRanges[0].Ptr(), &on.DefRange))
			continue
		}
		if prev, dup := pb.on[kind]; dup {
			c.add(errorDiag("Duplicate trigger", fmt.Sprintf("There is already an on %q block at %s. Put all its filters in one block.", kind, c.relSource(prev.DefRange)), &on.DefRange, nil))
			continue
		}
		pb.on[kind] = on
	}
	if manual, ok := pb.on["manual"]; ok {
		mc, diags := manual.Body.Content(manualSchema)
		c.add(diags...)
		for _, ib := range mc.Blocks {
			if !c.checkName(ib, "input") {
				continue
			}
			name := ib.Labels[0]
			if prev, dup := c.inputs[name]; dup {
				c.add(errorDiag("Duplicate input", fmt.Sprintf("An input named %q was already declared at %s.", name, c.relSource(prev.block.DefRange)), ib.LabelRanges[0].Ptr(), nil))
				continue
			}
			in := &inputBlock{block: ib}
			c.decodeBody(ib.Body, nil, scope{what: "an input block"}, fmt.Sprintf("input %q", name), ib.DefRange, nil, &in.InputSchema)
			if len(in.Options) > 0 && in.Default != "" && !contains(in.Options, in.Default) {
				c.add(errorDiag("Invalid default", fmt.Sprintf("The default %q of input %q is not one of its options %s.", in.Default, name, quoteList(in.Options)), &ib.DefRange, nil))
			}
			c.inputs[name] = in
		}
	}
	c.checkInputs()
}

// checkInputs checks the inputs given for a manual run.
func (c *compiler) checkInputs() {
	var def *hcl.Range
	if c.pipeline != nil {
		def = &c.pipeline.block.DefRange
	}
	for _, name := range sortedKeys(c.opts.Inputs) {
		in, ok := c.inputs[name]
		if !ok {
			c.add(errorDiag("Unknown input", fmt.Sprintf("The input %q is not declared in the pipeline's on \"manual\" block.%s Declared inputs: %s.", name, didYouMean(name, sortedKeys(c.inputs)), quoteList(sortedKeys(c.inputs))), def, nil))
			continue
		}
		if v := c.opts.Inputs[name]; len(in.Options) > 0 && !contains(in.Options, v) {
			c.add(errorDiag("Invalid input", fmt.Sprintf("The input %q must be one of %s; got %q.", name, quoteList(in.Options), v), &in.block.DefRange, nil))
		}
	}
	if c.opts.Git.Event != "manual" {
		return
	}
	for _, name := range sortedKeys(c.inputs) {
		if _, given := c.opts.Inputs[name]; !given && c.inputs[name].Required {
			c.add(errorDiag("Missing input", fmt.Sprintf("A manual run needs the input %q: --input %s=...", name, name), &c.inputs[name].block.DefRange, nil))
		}
	}
}

// inputValues returns every declared input with its given or default value.
func (c *compiler) inputValues() map[string]string {
	if len(c.inputs) == 0 {
		return nil
	}
	out := map[string]string{}
	for name, in := range c.inputs {
		out[name] = in.Default
		if v, ok := c.opts.Inputs[name]; ok {
			out[name] = v
		}
	}
	return out
}

// decodePipeline decodes the pipeline block's attributes and evaluates the
// triggers for the event being planned.
func (c *compiler) decodePipeline(ctx *hcl.EvalContext, p *plan.Plan) {
	pb := c.pipeline
	p.Pipeline = pb.name
	var ps PipelineSchema
	sc := scope{what: "the pipeline block", stepIndex: -1}
	content := c.decodeBody(pb.block.Body, ctx, sc, fmt.Sprintf("pipeline %q", pb.name), pb.block.DefRange, pipelineExtra, &ps)
	p.Description, p.MaxParallel, p.Timeout = ps.Description, ps.MaxParallel, ps.Timeout
	p.Env = ps.Env
	conc := content.Blocks.OfType("concurrency")
	for i, b := range conc {
		if i > 0 {
			c.add(errorDiag("Duplicate concurrency block", "A pipeline has at most one concurrency block.", &b.DefRange, nil))
			continue
		}
		var cs ConcurrencySchema
		cc := c.decodeBody(b.Body, ctx, scope{what: "the concurrency block", stepIndex: -1}, "the concurrency block", b.DefRange, nil, &cs)
		if _, given := cc.Attributes["group"]; given && strings.TrimSpace(cs.Group) == "" {
			c.add(errorDiag("Empty concurrency group", "The concurrency group is empty, so it would group nothing. Name the group, like group = \"deploy-${git.ref}\".", &b.DefRange, nil))
		}
		p.Concurrency = &plan.Concurrency{Group: cs.Group, CancelInProgress: cs.CancelInProgress}
	}
	p.Trigger = c.matchTriggers(ctx)
	p.Schedule = c.schedule
}

// matchTriggers decides whether the pipeline's on blocks accept the event,
// and why. It also decodes every on block, so that mistakes in blocks for
// other events are reported too.
func (c *compiler) matchTriggers(ctx *hcl.EvalContext) plan.Trigger {
	g := c.opts.Git
	t := plan.Trigger{Event: g.Event, Ref: g.Ref}
	decoded := map[string]any{}
	for _, kind := range TriggerKinds {
		b, ok := c.pipeline.on[kind]
		if !ok {
			continue
		}
		sc := scope{what: fmt.Sprintf("the on %q block", kind), stepIndex: -1}
		where := fmt.Sprintf("on %q", kind)
		switch kind {
		case "push", "pull_request":
			var bt BranchTrigger
			c.decodeBody(b.Body, ctx, sc, where, b.DefRange, nil, &bt)
			decoded[kind] = &bt
		case "tag":
			var tt TagTrigger
			c.decodeBody(b.Body, ctx, sc, where, b.DefRange, nil, &tt)
			decoded[kind] = &tt
		case "schedule":
			var st ScheduleTrigger
			content := c.decodeBody(b.Body, ctx, sc, where, b.DefRange, nil, &st)
			if attr, ok := content.Attributes["cron"]; ok && st.Cron != "" {
				if _, err := cronParser.Parse(st.Cron); err == nil {
					c.schedule = &plan.Schedule{Cron: st.Cron, Branch: st.Branch}
				} else {
					c.add(errorDiag("Invalid cron expression", fmt.Sprintf("%q is not a cron schedule: %s. Write five fields (minute hour day-of-month month day-of-week), like \"0 3 * * 1-5\", or a shorthand like \"@daily\".", st.Cron, err), attr.Expr.Range().Ptr(), &b.DefRange))
				}
			}
			decoded[kind] = &st
		case "manual":
			c.decodeBody(b.Body, ctx, sc, where, b.DefRange, manualSchema)
			decoded[kind] = true
		}
	}
	if len(c.pipeline.on) == 0 {
		t.Matched, t.Reason = true, "the pipeline has no on blocks, so every event starts it"
		return t
	}
	spec, ok := decoded[g.Event]
	if !ok {
		var kinds []string
		for _, k := range TriggerKinds {
			if c.pipeline.on[k] != nil {
				kinds = append(kinds, k)
			}
		}
		t.Reason = fmt.Sprintf("the pipeline has no on %q block; it starts on %s", g.Event, strings.Join(kinds, ", "))
		return t
	}
	switch s := spec.(type) {
	case *BranchTrigger:
		branch, what := g.Branch, "branch"
		if g.Event == "pull_request" {
			branch, what = g.BaseRef, "target branch"
		}
		if len(s.Branches) > 0 && !matchAny(s.Branches, branch) {
			t.Reason = fmt.Sprintf("%s %q does not match branches %s", what, branch, quoteList(s.Branches))
			return t
		}
		if matchAny(s.BranchesIgnore, branch) {
			t.Reason = fmt.Sprintf("%s %q matches branches_ignore %s", what, branch, quoteList(s.BranchesIgnore))
			return t
		}
		if len(s.Paths) > 0 || len(s.PathsIgnore) > 0 {
			if !c.opts.ChangedFilesKnown {
				t.Matched, t.Reason = true, fmt.Sprintf("%s %q matches; path filters not checked because the changed files are not known", what, branch)
				return t
			}
			if f, ok := pathsMatch(s.Paths, s.PathsIgnore, g.ChangedFiles); !ok {
				t.Reason = fmt.Sprintf("no changed file matches the path filters (%d changed)", len(g.ChangedFiles))
				return t
			} else {
				t.Matched, t.Reason = true, fmt.Sprintf("%s %q matches and %q matches the path filters", what, branch, f)
				return t
			}
		}
		t.Matched, t.Reason = true, fmt.Sprintf("%s %q matches", what, branch)
	case *TagTrigger:
		if g.Tag == "" {
			t.Reason = "the event has no tag"
			return t
		}
		if len(s.Pattern) > 0 && !matchAny(s.Pattern, g.Tag) {
			t.Reason = fmt.Sprintf("tag %q does not match pattern %s", g.Tag, quoteList(s.Pattern))
			return t
		}
		t.Matched, t.Reason = true, fmt.Sprintf("tag %q matches", g.Tag)
	case *ScheduleTrigger:
		t.Matched, t.Reason = true, fmt.Sprintf("scheduled %q", s.Cron)
	default:
		t.Matched, t.Reason = true, "started by hand"
	}
	return t
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// pathsMatch applies path filters the way users of other CI systems expect:
// with paths, some changed file must match; with paths_ignore, some changed
// file must not be ignored. It returns a file that made the match.
func pathsMatch(paths, ignore, changed []string) (string, bool) {
	for _, f := range changed {
		if len(paths) > 0 && !matchAny(paths, f) {
			continue
		}
		if matchAny(ignore, f) {
			continue
		}
		return f, true
	}
	return "", false
}
