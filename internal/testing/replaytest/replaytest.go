// Package replaytest helps tests replay histories against changed
// workflow code.
package replaytest

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Replacing wraps a registry so that fn is registered instead of the
// workflow registered under name: a build's workflows with one of them
// changed, as a change made without workflow.GetVersion would leave them.
func Replacing(r worker.WorkflowRegistry, name string, fn any) worker.WorkflowRegistry {
	return replacing{r, name, fn}
}

type replacing struct {
	worker.WorkflowRegistry
	name string
	fn   any
}

func (r replacing) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	if o.Name == r.name {
		w = r.fn
	}
	r.WorkflowRegistry.RegisterWorkflowWithOptions(w, o)
}
