package plan

import (
	"reflect"
	"slices"
	"sort"
)

// CollectRefs returns the distinct run-time references of the step in a
// stable order: step outputs first, then secrets, each sorted.
func (s *Step) CollectRefs() []Ref {
	var refs []Ref // a step has a few: a list is quicker than a set
	walk(reflect.ValueOf(s), "-", func(_ string, t Template) {
		for _, p := range t.Parts {
			if p.Ref != nil && !slices.Contains(refs, *p.Ref) {
				refs = append(refs, *p.Ref)
			}
		}
	})
	sort.Slice(refs, func(i, j int) bool {
		a, b := refs[i], refs[j]
		if (a.Secret == "") != (b.Secret == "") {
			return a.Secret == ""
		}
		return a.String() < b.String()
	})
	return refs
}
