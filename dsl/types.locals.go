package dsl

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// evalLocals evaluates the locals of every locals block in dependency
// order, reporting cycles by name.
func (c *compiler) evalLocals(blocks []*hcl.Block) {
	for _, b := range blocks {
		attrs, diags := b.Body.JustAttributes()
		c.add(diags...)
		for _, a := range sortByPos(attrs) {
			if prev, dup := c.locals[a.Name]; dup {
				c.add(errorDiag("Duplicate local value", fmt.Sprintf("A local named %q was already defined at %s. Rename one of them.", a.Name, c.relSource(prev.Range)), a.NameRange.Ptr(), nil))
				continue
			}
			c.locals[a.Name] = a
		}
	}
	pending := map[string]bool{}
	for name := range c.locals {
		pending[name] = true
	}
	for len(pending) > 0 {
		progress := false
		for _, name := range sortedKeys(pending) {
			a := c.locals[name]
			ready := true
			for _, tr := range a.Expr.Variables() {
				if dep, _, ok := attrName(tr, 1); ok && tr.RootName() == "local" && pending[dep] && dep != name {
					ready = false
				}
			}
			if !ready {
				continue
			}
			delete(pending, name)
			progress = true
			for _, tr := range a.Expr.Variables() {
				if dep, _, _ := attrName(tr, 1); tr.RootName() == "local" && dep == name {
					c.add(errorDiag("Self-referencing local value", fmt.Sprintf("local.%s refers to itself.", name), tr.SourceRange().Ptr(), nil))
					ready = false
				}
			}
			if !ready {
				c.localVal[name] = cty.DynamicVal
				continue
			}
			v, diags := c.value(a.Expr, c.evalContext(nil), scope{what: "local." + name, stepIndex: -1})
			c.add(diags...)
			// A failed local is unknown, so what uses it fails quietly
			// instead of repeating the error.
			c.localVal[name] = v
		}
		if !progress {
			names := sortedKeys(pending)
			for _, name := range names {
				c.localVal[name] = cty.DynamicVal
				a := c.locals[name]
				c.add(errorDiag("Cycle in local values", fmt.Sprintf("The locals %s refer to each other in a cycle, so none of them can be evaluated. Break the cycle.", "local."+strings.Join(names, ", local.")), a.NameRange.Ptr(), nil))
			}
			return
		}
	}
}
