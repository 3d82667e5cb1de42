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
	if len(c.callList) > 0 {
		c.evalLocalsAndModules()
		return
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

// evalLocalsAndModules evaluates locals and module calls together, in
// dependency order: a local may use a module's outputs, and a module's
// inputs may use locals and other modules' outputs.
func (c *compiler) evalLocalsAndModules() {
	// Keys: "local.<name>" and "module.<name>".
	pending := map[string]bool{}
	for name := range c.locals {
		pending["local."+name] = true
	}
	for name := range c.calls {
		pending["module."+name] = true
	}
	deps := func(key string) []hcl.Traversal {
		root, name, _ := strings.Cut(key, ".")
		if root == "local" {
			return c.locals[name].Expr.Variables()
		}
		if in := c.calls[name].inputs; in != nil {
			return in.Expr.Variables()
		}
		return nil
	}
	depKey := func(tr hcl.Traversal) string {
		if r := tr.RootName(); r == "local" || r == "module" {
			if name, _, ok := attrName(tr, 1); ok {
				return r + "." + name
			}
		}
		return ""
	}
	for len(pending) > 0 {
		progress := false
		for _, key := range sortedKeys(pending) {
			trs := deps(key)
			ready := true
			for _, tr := range trs {
				if dk := depKey(tr); dk != key && pending[dk] {
					ready = false
				}
			}
			if !ready {
				continue
			}
			delete(pending, key)
			progress = true
			root, name, _ := strings.Cut(key, ".")
			self := false
			for _, tr := range trs {
				if depKey(tr) == key {
					self = true
					if root == "local" {
						c.add(errorDiag("Self-referencing local value", fmt.Sprintf("local.%s refers to itself.", name), tr.SourceRange().Ptr(), nil))
					} else {
						c.add(errorDiag("Module uses its own outputs", fmt.Sprintf("The inputs of module %q refer to its own outputs, which depend on them.", name), tr.SourceRange().Ptr(), &c.calls[name].block.DefRange))
					}
				}
			}
			switch {
			case root == "module":
				c.evalModule(c.calls[name], !self)
			case self:
				c.localVal[name] = cty.DynamicVal
			default:
				v, diags := c.value(c.locals[name].Expr, c.evalContext(nil), scope{what: "local." + name, stepIndex: -1})
				c.add(diags...)
				c.localVal[name] = v
			}
		}
		if !progress {
			keys := sortedKeys(pending)
			for _, key := range keys {
				root, name, _ := strings.Cut(key, ".")
				if root == "local" {
					c.localVal[name] = cty.DynamicVal
					c.add(errorDiag("Cycle in local values", fmt.Sprintf("%s refer to each other in a cycle, so none of them can be evaluated. Break the cycle.", strings.Join(keys, ", ")), c.locals[name].NameRange.Ptr(), nil))
					continue
				}
				m := c.calls[name]
				c.add(errorDiag("Cycle in local values", fmt.Sprintf("%s refer to each other in a cycle, so none of them can be evaluated. Break the cycle.", strings.Join(keys, ", ")), m.inputs.Expr.Range().Ptr(), &m.block.DefRange))
				c.evalModule(m, false)
			}
			return
		}
	}
}
