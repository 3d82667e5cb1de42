package dsl

import (
	"github.com/sluice-ci/sluice/dsl/plan"
)

// matchGlob is plan.MatchGlob, the pattern language of filters.
func matchGlob(pattern, name string) bool { return plan.MatchGlob(pattern, name) }

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if matchGlob(p, name) {
			return true
		}
	}
	return false
}
