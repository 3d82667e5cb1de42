package dsl

import (
	"fmt"
	"maps"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// StepCommon is the schema every step kind shares.
type StepCommon struct {
	Env             map[string]plan.Template `hcl:"env"`
	Timeout         plan.Duration            `hcl:"timeout"`
	ContinueOnError bool                     `hcl:"continue_on_error"`
	Retry           *plan.Retry              `hcl:"retry,block"`
}

// compileStages decodes every stage instance in dependency order.
func (c *compiler) compileStages(p *plan.Plan) []plan.Stage {
	// First the instances, in dependency order: matrices are expanded and
	// each instance learns the instances it needs.
	type task struct {
		stage *stageBlock
		m     matrixInstance
		needs []string
	}
	g := c.g
	tasks := make([]task, 0, len(g.stages))
	instances := make([][]string, len(g.stages)) // by stage index: instance IDs
	for _, s := range g.topoOrder() {
		content := s.content
		combos := []matrixInstance{{}}
		matrices := content.Blocks.OfType("matrix")
		for _, extra := range matrices[min(1, len(matrices)):] {
			s.c.add(errorDiag("Duplicate matrix block", "A stage has at most one matrix block; put all dimensions in it.", &extra.DefRange, &s.block.DefRange))
		}
		if len(matrices) > 0 {
			if combos = s.c.expandMatrix(s, matrices[0]); len(combos) == 0 {
				continue
			}
		}
		var needIDs []string
		for _, n := range s.needs {
			needIDs = append(needIDs, instances[n.index]...)
		}
		for _, m := range combos {
			tasks = append(tasks, task{stage: s, m: m, needs: needIDs})
			instances[s.index] = append(instances[s.index], m.id(s.id))
		}
	}

	// Then every instance is compiled, in parallel: instances only read
	// what the phases before produced, and each worker collects its own
	// diagnostics, with a copy of the compiler of each stage's pipeline or
	// module.
	out := make([]plan.Stage, len(tasks))
	diags := make([]hcl.Diagnostics, len(tasks))
	compilers := []*compiler{c}
	if g.hasModules {
		compilers = c.compilers()
	}
	for _, cc := range compilers {
		cc.evalContext(nil) // fills the shared base before the workers read it
	}
	parallel(len(tasks), func() func(int) {
		subs := make(map[*compiler]*compiler, len(compilers))
		return func(i int) {
			t := tasks[i]
			sub := subs[t.stage.c]
			if sub == nil {
				cp := *t.stage.c
				sub = &cp
				subs[t.stage.c] = sub
			}
			sub.diags = nil
			out[i] = sub.compileStage(t.stage, t.m, t.stage.content, t.needs)
			diags[i] = sub.diags
		}
	})
	for i, d := range diags {
		tasks[i].stage.c.add(d...)
	}

	// Last, skips flow along needs in dependency order. A needed stage
	// counts as skipped when none of its matrix instances runs: one
	// instance that runs is enough to go on.
	skipped := make(map[string]bool, len(out)) // instance ID -> skipped
	for i := range out {
		ps := &out[i]
		switch {
		case !p.Trigger.Matched:
			ps.Skip = "the pipeline is not started by this event: " + p.Trigger.Reason
		case ps.Skip == "":
			for _, n := range tasks[i].stage.needs {
				all := len(instances[n.index]) > 0
				for _, id := range instances[n.index] {
					all = all && skipped[id]
				}
				if all {
					ps.Skip = fmt.Sprintf("it needs %s, which is skipped", n.id)
					break
				}
			}
		}
		skipped[ps.ID] = ps.Skip != ""
	}
	return out
}

func (c *compiler) compileStage(s *stageBlock, m matrixInstance, content *hcl.BodyContent, needs []string) plan.Stage {
	matrix := m.ctyValues()
	ctx := c.evalContext(matrix)
	id := m.id(s.id)
	ps := plan.Stage{ID: id, Name: s.id, MatrixKeys: m.keys, Needs: needs, Source: c.planSource(s.block.DefRange)}
	if len(m.keys) > 0 {
		ps.Matrix = m.values
	}
	where := `stage "` + s.name + `"` // names are identifiers: no quoting needed
	sc := scope{matrix: matrix, stage: s, stepIndex: -1, runtime: true, what: where}
	// Every matrix instance repeats the diagnostics about the body's shape;
	// Compile drops repeats.
	var ss StageSchema
	c.decode(s.block.Body, ctx, sc, where, s.block.DefRange, stageExtra, &ss)
	ps.RunsOn, ps.Timeout, ps.ContinueOnError, ps.Env, ps.Retry = ss.RunsOn, ss.Timeout, ss.ContinueOnError, ss.Env, ss.Retry
	ps.QueueTimeout = ss.QueueTimeout
	ps.Artifacts = ss.Artifacts
	c.checkArtifacts(s, ss.Artifacts)
	if ss.Approval != nil {
		ps.Approval = &plan.Approval{Approvers: ss.Approval.Approvers, Timeout: ss.Approval.Timeout, Description: ss.Approval.Description}
	}
	c.checkRetry(ps.Retry)
	if attr, ok := content.Attributes["when"]; ok {
		v, diags := c.value(attr.Expr, ctx, scope{matrix: matrix, stage: s, stepIndex: -1, what: "when"})
		c.add(diags...)
		if !diags.HasErrors() {
			b, err := convert.Convert(v, cty.Bool)
			switch {
			case err != nil || b.IsNull():
				c.add(errorDiag("Invalid when", fmt.Sprintf("when must be true or false; got %s.", friendlyType(v)), attr.Expr.Range().Ptr(), &s.block.DefRange))
			case b.False():
				ps.Skip = fmt.Sprintf("when is false: %s", c.exprText(attr.Expr.Range()))
			}
		}
	}
	ps.Steps = make([]plan.Step, 0, len(s.steps))
	for i, sb := range content.Blocks.OfType("step") {
		st, ok := c.steps[sb.Labels[1]]
		if !ok || st.block.DefRange != sb.DefRange {
			continue // reported when the stage was declared
		}
		ssc := sc
		ssc.stepIndex = i
		ps.Steps = append(ps.Steps, plan.Step{})
		c.compileStep(&ps.Steps[len(ps.Steps)-1], st, ctx, ssc, ps.Retry)
	}
	// A stage whose step blocks were all refused (a duplicate name, an
	// unknown kind) was told about them; it is not also "without steps".
	if len(ps.Steps) == 0 && len(s.steps) == 0 && len(content.Blocks.OfType("step")) == 0 {
		c.add(errorDiag("Stage without steps", fmt.Sprintf("Stage %q has no steps, so it would do nothing. Add a step, like:\n\n  step \"run\" \"hello\" {\n    command = [\"echo\", \"hello\"]\n  }", s.name), &s.block.DefRange, nil))
	}
	if ps.Steps == nil {
		ps.Steps = []plan.Step{}
	}
	return ps
}

func (c *compiler) checkRetry(r *plan.Retry) {
	if r == nil {
		return
	}
	if r.Attempts < 1 {
		r.Attempts = 1
	}
	if r.MaxBackoff != 0 && r.MaxBackoff < r.Backoff {
		r.MaxBackoff = r.Backoff
	}
}

// compileStep decodes a step into ps, in place: a step is large, and a copy
// of it on the heap for each of thousands of steps fed the collector.
func (c *compiler) compileStep(ps *plan.Step, st *stepBlock, ctx *hcl.EvalContext, sc scope, stageRetry *plan.Retry) {
	b := st.block
	where := `step "` + st.kind + `" "` + st.name + `"` // kinds and names are identifiers: no quoting needed
	sc.what = where
	var common StepCommon
	cfg := plan.KindConfig(st.kind)
	before := len(c.diags)
	c.decode(b.Body, ctx, sc, where, b.DefRange, nil, &common, cfg)
	// A misspelt or mistyped attribute would also be reported by the kind's
	// rules (as a missing command, say): they are checked once the
	// attributes decode, apart from missing ones.
	misspelt := false
	for _, d := range c.diags[before:] {
		misspelt = misspelt || (d.Severity == hcl.DiagError && !strings.HasPrefix(d.Summary, "Missing required"))
	}
	*ps = plan.Step{
		Name: c.prefix + st.name, Kind: st.kind, Env: common.Env, Timeout: common.Timeout,
		Retry: common.Retry, ContinueOnError: common.ContinueOnError,
		Outputs: st.outputs, Source: c.planSource(b.DefRange),
	}
	c.checkRetry(ps.Retry)
	if ps.Retry == nil && stageRetry != nil {
		r := *stageRetry
		ps.Retry = &r
	}
	ps.SetConfig(cfg)
	if !misspelt {
		c.checkKind(ps, st)
	}
	ps.Refs = ps.CollectRefs()
}

// checkKind applies the rules of a step kind that a schema cannot say.
func (c *compiler) checkKind(s *plan.Step, st *stepBlock) {
	b := st.block
	def := &b.DefRange
	fail := func(summary, detail string) { c.add(errorDiag(summary, detail, def, nil)) }
	switch s.Kind {
	case plan.KindRun:
		r := s.Run
		switch {
		case len(r.Command) == 0 && r.Script.IsZero():
			fail("Missing command", fmt.Sprintf("Run step %q needs either command = [\"program\", \"arg\"] or script = \"shell commands\".", s.Name))
		case len(r.Command) > 0 && !r.Script.IsZero():
			fail("Both command and script", fmt.Sprintf("Run step %q has both command and script; keep one. command runs a program with arguments; script runs shell commands.", s.Name))
		}
		if len(r.Shell) > 0 && r.Script.IsZero() {
			fail("Shell without script", fmt.Sprintf("Run step %q sets shell, which only runs a script.", s.Name))
		}
		if path.IsAbs(r.WorkingDir) || strings.HasPrefix(path.Clean(r.WorkingDir), "..") {
			fail("Invalid working_dir", fmt.Sprintf("working_dir %q must be a path inside the workspace, relative to it.", r.WorkingDir))
		}
		if r.Image.IsZero() && (!r.Username.IsZero() || !r.Password.IsZero()) {
			fail("Credentials without an image", fmt.Sprintf("Run step %q sets username or password, which pull the step's image; it has no image, so it runs on the host. Set image, or drop them.", s.Name))
		} else if r.Username.IsZero() != r.Password.IsZero() {
			fail("Incomplete credentials", fmt.Sprintf("Run step %q needs both username and password (usually secret.<name>) to pull its image, or neither (then the runner's docker login is used).", s.Name))
		}
		for _, k := range slices.Sorted(maps.Keys(r.Secrets)) {
			if !plan.ValidSecretFile(k) {
				fail("Invalid secret file name", fmt.Sprintf("%q in secrets of run step %q is not a file name: the key names the file the secret is written to in $SLUICE_SECRETS. Use letters, digits, '.', '-' and '_', like \"kubeconfig\" or \"npmrc\".", k, s.Name))
			}
		}
		for i, p := range r.JUnit {
			if !junitInWorkspace(r.WorkingDir, p) {
				c.add(errorDiag("Invalid junit pattern", fmt.Sprintf("%q is not a path inside the workspace. junit names the JUnit XML reports of run step %q relative to its working directory, like \"report.xml\" or \"build/test-results/**/*.xml\", without a leading / or a .. that leaves the workspace; * and ? match within a directory, ** across directories.", p, s.Name), listItemRange(b, "junit", i), def))
			}
		}
	case plan.KindImage:
		for i, tag := range s.Image.Tags {
			// Only a tag written as a literal: one built from values
			// (${git.short_sha} outside a repository is empty) is
			// checked when the step runs, with the run's values.
			if !tag.IsLiteral() || !literalListItem(b, "tags", i) {
				continue
			}
			if _, err := reference.ParseNormalizedNamed(tag.Literal()); err != nil {
				c.add(errorDiag("Invalid image reference", fmt.Sprintf("tag %q of image step %q is not an image reference (%v). Write [registry/]repository[:tag] in lower case, like \"localhost:5000/web:v1\" or \"ghcr.io/acme/web:${git.short_sha}\"; a tag is letters, digits, _ . and -, at most 128.", tag.Literal(), s.Name, err), listItemRange(b, "tags", i), def))
			}
		}
		for _, pl := range s.Image.Platforms {
			parts := strings.Split(pl, "/")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
				fail("Invalid platform", fmt.Sprintf("%q is not a platform; write os/arch[/variant], like \"linux/amd64\" or \"linux/arm64\".", pl))
			}
		}
	case plan.KindScan:
		for i, a := range s.Scan.Allow {
			if a.Until != "" {
				if _, err := time.Parse(time.DateOnly, a.Until); err != nil {
					c.add(errorDiag("Invalid date", fmt.Sprintf("until %q of the allowed finding %q is not a date; write YYYY-MM-DD, like \"2026-12-31\".", a.Until, a.ID), allowUntilRange(b, i), def))
				}
			}
		}
	case plan.KindRelease:
		r := s.Release
		app := r.AppID != 0 || r.InstallationID != 0 || !r.PrivateKey.IsZero()
		if app && (r.AppID == 0 || r.InstallationID == 0 || r.PrivateKey.IsZero()) {
			fail("Incomplete GitHub App credentials", "GitHub App authentication needs app_id, installation_id and private_key (usually secret.<name>) together.")
		}
		if app && !r.Token.IsZero() {
			fail("Two kinds of credentials", "Give either token or GitHub App credentials (app_id, installation_id, private_key), not both.")
		}
		if u := r.GitHubURL; u != "" {
			if pu, err := url.Parse(u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
				fail("Invalid github_url", fmt.Sprintf("github_url %q is not a URL. Give the address of the GitHub Enterprise Server, like \"https://github.example.com\", or leave it out for github.com.", u))
			}
		}
		if !r.Repo.IsZero() && r.Repo.IsLiteral() {
			repo := r.Repo.Literal()
			owner, name, ok := strings.Cut(repo, "/")
			if !ok || owner == "" || name == "" || strings.Contains(name, "/") || strings.ContainsAny(repo, ":@ ") {
				fail("Invalid repo", fmt.Sprintf("repo %q is not a GitHub repository name. Write it as \"owner/name\", like \"acme/web\", or leave it out to release the repository the run comes from.", repo))
			}
		}
	case plan.KindArgoCD:
		g := s.ArgoCD.GitOps
		if g == nil {
			return
		}
		if g.Format == "" {
			g.Format = guessGitOpsFormat(g.File)
			if g.Format == "" {
				fail("Unknown GitOps file format", fmt.Sprintf("Sluice cannot tell how %q holds the image from its name. Set format = \"kustomize\", \"helm\" or \"argocd-source\" in the gitops block.", g.File))
			}
		}
		if g.Format == "helm" && g.Key == "" {
			fail("Missing Helm values key", "A Helm values file needs key, the dotted path of the image in it, like key = \"image.tag\".")
		}
		if g.Format == "kustomize" && g.Key != "" {
			fail("Key in a kustomization", fmt.Sprintf("key %q is a Helm values path, which a kustomization has not; remove it, and set image_name to choose the entry of the kustomization's images.", g.Key))
		}
		if g.Format == "helm" && g.ImageName != "" {
			fail("Image name in Helm values", fmt.Sprintf("image_name %q chooses an entry of a kustomization's images, which Helm values have not; remove it, and point key at the image.", g.ImageName))
		}
	case plan.KindVerify:
		v := s.Verify
		switch {
		case v.Below == nil && v.Above == nil:
			fail("Missing bound", fmt.Sprintf("Verify step %q needs a bound: below = <number> (fail when the value reaches it) or above = <number> (fail when the value drops to it); both keep the value inside a band.", s.Name))
		case v.Below != nil && v.Above != nil && *v.Above >= *v.Below:
			fail("Empty band", fmt.Sprintf("Verify step %q keeps the value above %g and below %g, which no value is. With both bounds, above must be less than below.", s.Name, *v.Above, *v.Below))
		}
		if v.For != 0 && v.Interval > v.For {
			fail("Interval longer than the watch", fmt.Sprintf("interval (%s) is longer than for (%s), so the query would run at most once. Shorten interval.", v.Interval, v.For))
		}
		if v.For <= 0 || v.Interval <= 0 {
			fail("Watch without time", fmt.Sprintf("Verify step %q needs for and interval longer than zero, like for = \"10m\" and interval = \"30s\".", s.Name))
		}
		if v.OnFailure == "rollback" && !c.deploysBefore(st) {
			fail("Nothing to roll back", fmt.Sprintf("Verify step %q says on_failure = \"rollback\", but no argocd step runs before it in its stage or in a stage it needs, so there is no deploy to roll back. Put it after the argocd step (or in a stage that needs that step's stage), or set on_failure = \"fail\".", s.Name))
		}
	}
}

// deploysBefore reports whether an argocd step runs before st: earlier in
// its stage, or in a stage its stage needs, directly or not.
func (c *compiler) deploysBefore(st *stepBlock) bool {
	for _, other := range st.stage.steps[:st.index] {
		if other.kind == plan.KindArgoCD {
			return true
		}
	}
	for _, s := range c.g.stages {
		if s == st.stage || !c.g.needsTransitively(st.stage, s) {
			continue
		}
		for _, other := range s.steps {
			if other.kind == plan.KindArgoCD {
				return true
			}
		}
	}
	return false
}

// guessGitOpsFormat recognises the usual names of GitOps files.
func guessGitOpsFormat(file string) string {
	base := path.Base(file)
	switch {
	case base == "kustomization.yaml" || base == "kustomization.yml" || base == "Kustomization":
		return "kustomize"
	case strings.HasPrefix(base, ".argocd-source"):
		return "argocd-source"
	case strings.HasPrefix(base, "values") && (strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml")):
		return "helm"
	}
	return ""
}

// junitInWorkspace says whether a junit pattern, relative to the working
// directory wd, stays inside the workspace. A .. may climb out of wd, not
// out of the workspace.
func junitInWorkspace(wd, pattern string) bool {
	if pattern == "" || path.IsAbs(pattern) {
		return false
	}
	p := path.Join(wd, pattern)
	return p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

// listItemRange is the range of the i-th item of a list attribute of a
// block, or of the whole attribute when it is not written as a list, or
// of the block when the body is not native syntax.
// literalListItem says whether item i of list attribute name of b is a
// string literal in the file, with no interpolation.
func literalListItem(b *hcl.Block, name string, i int) bool {
	body, ok := b.Body.(*hclsyntax.Body)
	if !ok {
		return false
	}
	attr, ok := body.Attributes[name]
	if !ok {
		return false
	}
	tuple, ok := attr.Expr.(*hclsyntax.TupleConsExpr)
	if !ok || i >= len(tuple.Exprs) {
		return false
	}
	_, lit := literalString(tuple.Exprs[i])
	return lit
}

func listItemRange(b *hcl.Block, name string, i int) *hcl.Range {
	body, ok := b.Body.(*hclsyntax.Body)
	if !ok {
		return &b.DefRange
	}
	attr, ok := body.Attributes[name]
	if !ok {
		return &b.DefRange
	}
	if tuple, ok := attr.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(tuple.Exprs) {
		return tuple.Exprs[i].Range().Ptr()
	}
	return attr.Expr.Range().Ptr()
}

// allowUntilRange is the range of the until attribute of a scan step's
// i-th allow block, or the step's when the body is not native syntax.
func allowUntilRange(b *hcl.Block, i int) *hcl.Range {
	body, ok := b.Body.(*hclsyntax.Body)
	if !ok {
		return &b.DefRange
	}
	n := 0
	for _, blk := range body.Blocks {
		if blk.Type != "allow" {
			continue
		}
		if n == i {
			if attr, ok := blk.Body.Attributes["until"]; ok {
				r := attr.Expr.Range()
				return &r
			}
			return &b.DefRange
		}
		n++
	}
	return &b.DefRange
}
