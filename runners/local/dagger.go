package local

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/dagger"
)

// withDagger registers the dagger executor and, when this machine reaches
// a Dagger engine, adds the label that routes dagger stages here. It
// returns the runner's labels and why it reaches no engine, if it does not.
// The executor is registered either way, so that a runner labelled dagger
// by hand without an engine says what is missing.
func withDagger(execs steps.Registry, labels []string) ([]string, error) {
	execs[plan.KindDagger] = dagger.Executor{}
	label := plan.KindLabels[plan.KindDagger]
	if _, err := dagger.Detect(); err != nil {
		return labels, err
	}
	if slices.Contains(labels, label) {
		return labels, nil
	}
	return append(slices.Clip(labels), label), nil
}

// Unplaced says, for each stage of p that will run and that this stack's
// runner cannot take because it lacks labels the stage's runs_on asks for,
// why and what to do. It says nothing without a runner.
func (s *Stack) Unplaced(p *plan.Plan) []string {
	if s.runner == nil {
		return nil
	}
	var out []string
	for _, st := range p.Stages {
		var missing []string
		for _, l := range st.RunsOn {
			if !slices.Contains(s.labels, l) {
				missing = append(missing, l)
			}
		}
		if st.Skip != "" || len(missing) == 0 {
			continue
		}
		msg := fmt.Sprintf("Stage %q needs a runner labelled %s, which this machine's runner is not; it waits for such a runner to connect to the same Temporal.", st.ID, strings.Join(missing, ", "))
		if slices.Contains(missing, plan.KindLabels[plan.KindDagger]) && s.daggerErr != nil {
			msg += fmt.Sprintf(" Its dagger steps need a runner that reaches a Dagger engine, and %v.", s.daggerErr)
			missing = slices.DeleteFunc(missing, func(l string) bool { return l == plan.KindLabels[plan.KindDagger] })
		}
		if len(missing) > 0 {
			msg += fmt.Sprintf(" Give this runner the labels with --label %s, if it has what they stand for.", strings.Join(missing, " --label "))
		}
		out = append(out, msg)
	}
	return out
}
