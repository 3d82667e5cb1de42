package plan

import (
	"reflect"
	"sort"
)

// CollectRefs returns the distinct run-time references of the step in a
// stable order: step outputs first, then secrets, each sorted.
func (s *Step) CollectRefs() []Ref {
	seen := map[Ref]bool{}
	var refs []Ref
	walk(reflect.ValueOf(s), "-", func(_ string, t Template) {
		for _, r := range t.Refs() {
			if !seen[r] {
				seen[r] = true
				refs = append(refs, r)
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
