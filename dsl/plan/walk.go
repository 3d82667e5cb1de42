package plan

import (
	"reflect"
	"sort"
)

var templateType = reflect.TypeOf(Template{})

// MapTemplates replaces every Template of the step (env and the kind's
// configuration) with what f returns for it, stopping at the first error.
// It changes s in place, so callers work on a copy (Step.Clone).
func (s *Step) MapTemplates(f func(Template) (Template, error)) error {
	for _, k := range sortedTemplateKeys(s.Env) {
		t, err := f(s.Env[k])
		if err != nil {
			return err
		}
		s.Env[k] = t
	}
	if cfg := s.Config(); cfg != nil {
		return mapTemplates(reflect.ValueOf(cfg), f)
	}
	return nil
}

func sortedTemplateKeys(m map[string]Template) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mapTemplates(v reflect.Value, f func(Template) (Template, error)) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return mapTemplates(v.Elem(), f)
	case reflect.Struct:
		if v.Type() == templateType {
			t, err := f(v.Interface().(Template))
			if err != nil {
				return err
			}
			v.Set(reflect.ValueOf(t))
			return nil
		}
		for i := 0; i < v.NumField(); i++ {
			if err := mapTemplates(v.Field(i), f); err != nil {
				return err
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := mapTemplates(v.Index(i), f); err != nil {
				return err
			}
		}
	case reflect.Map:
		if v.Type().Elem() != templateType {
			return nil
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			t, err := f(v.MapIndex(k).Interface().(Template))
			if err != nil {
				return err
			}
			v.SetMapIndex(k, reflect.ValueOf(t))
		}
	}
	return nil
}

// Clone returns a deep copy of the step, so that resolving its templates
// never changes the plan it came from.
func (s Step) Clone() Step {
	return deepCopy(reflect.ValueOf(s)).Interface().(Step)
}

func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		n := reflect.New(v.Type().Elem())
		n.Elem().Set(deepCopy(v.Elem()))
		return n
	case reflect.Struct:
		n := reflect.New(v.Type()).Elem()
		for i := 0; i < v.NumField(); i++ {
			if n.Field(i).CanSet() {
				n.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			n.Index(i).Set(deepCopy(v.Index(i)))
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeMapWithSize(v.Type(), v.Len())
		for _, k := range v.MapKeys() {
			n.SetMapIndex(k, deepCopy(v.MapIndex(k)))
		}
		return n
	}
	return v
}

// CollectRefs returns the distinct run-time references of the step in a
// stable order: step outputs first, then secrets, each sorted.
func (s *Step) CollectRefs() []Ref {
	seen := map[Ref]bool{}
	var refs []Ref
	// The identity mapping leaves s as it was.
	_ = s.MapTemplates(func(t Template) (Template, error) {
		for _, r := range t.Refs() {
			if !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
		return t, nil
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
