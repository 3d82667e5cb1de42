package plan

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

var templateType = reflect.TypeFor[Template]()

// MapTemplates returns a deep copy of v in which every Template, at any
// depth (fields, pointers, slices, maps), is replaced by what f returns for
// it. v is typically a Step, so the walk covers the kind-specific
// configuration of every step kind, including kinds added later, without
// listing their fields. Maps are walked in sorted key order, so the first
// error is the same on every run; this keeps it usable inside workflows.
// Unexported fields are copied as they are.
func MapTemplates[T any](v T, f func(Template) (Template, error)) (T, error) {
	out, err := mapValue(reflect.ValueOf(&v).Elem(), f, "")
	if err != nil {
		var zero T
		return zero, err
	}
	return out.Interface().(T), nil
}

// Templates calls f on every Template in v, in the deterministic order
// MapTemplates uses, with a dotted path that says where it was found.
func Templates(v any, f func(path string, t Template)) {
	walk(reflect.ValueOf(v), "", f)
}

func walk(v reflect.Value, path string, f func(string, Template)) {
	if !v.IsValid() || !mayHoldTemplates(v.Type()) {
		return
	}
	if v.Type() == templateType {
		if v.CanAddr() { // no copy of the template into an interface
			f(path, *v.Addr().Interface().(*Template))
		} else {
			f(path, v.Interface().(Template))
		}
		return
	}
	// The path "-" means the caller wants no paths and no particular
	// order: CollectRefs walks every step of a large pipeline, building
	// paths was most of its cost, and it sorts what it collects.
	noPath := path == "-"
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walk(v.Elem(), path, f)
		}
	case reflect.Struct:
		for _, fl := range templateFields(v.Type()) {
			fv := v.Field(fl.index)
			switch fv.Kind() {
			case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
				if fv.IsNil() { // most of a step's fields are other kinds'
					continue
				}
			}
			p := "-"
			if !noPath {
				p = join(path, fl.name)
			}
			walk(fv, p, f)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			p := "-"
			if !noPath {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			walk(v.Index(i), p, f)
		}
	case reflect.Map:
		if m, ok := v.Interface().(map[string]Template); ok && noPath {
			// Env maps are in every step: read without reflection, and
			// in any order when the caller wants no paths.
			for _, t := range m {
				f(path, t)
			}
			return
		}
		for _, k := range sortedKeys(v) {
			p := "-"
			if !noPath {
				p = fmt.Sprintf("%s[%v]", path, k)
			}
			walk(v.MapIndex(k), p, f)
		}
	}
}

// templateField is a field of a struct that may hold templates.
type templateField struct {
	index int
	name  string
}

var structTemplateFields sync.Map // reflect.Type -> []templateField

// templateFields lists, in order, the exported fields of struct type t that
// may hold templates: a step has a field per kind, and walks look at each
// of them for every step.
func templateFields(t reflect.Type) []templateField {
	if v, ok := structTemplateFields.Load(t); ok {
		return v.([]templateField)
	}
	var fields []templateField
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && mayHoldTemplates(f.Type) {
			fields = append(fields, templateField{index: i, name: f.Name})
		}
	}
	structTemplateFields.Store(t, fields)
	return fields
}

var holdsTemplates sync.Map // reflect.Type -> bool

// mayHoldTemplates reports whether a value of type t can contain a
// Template, so that walks skip strings, numbers and lists of them.
func mayHoldTemplates(t reflect.Type) bool {
	if v, ok := holdsTemplates.Load(t); ok {
		return v.(bool)
	}
	holdsTemplates.Store(t, true) // a recursive type is assumed to
	ok := false
	switch t.Kind() {
	case reflect.Struct:
		ok = t == templateType
		for i := 0; !ok && i < t.NumField(); i++ {
			ok = t.Field(i).IsExported() && mayHoldTemplates(t.Field(i).Type)
		}
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		ok = mayHoldTemplates(t.Elem())
	case reflect.Interface:
		ok = true
	}
	holdsTemplates.Store(t, ok)
	return ok
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func mapValue(v reflect.Value, f func(Template) (Template, error), path string) (reflect.Value, error) {
	t := v.Type()
	if t == templateType {
		nt, err := f(v.Interface().(Template))
		if err != nil {
			return v, fmt.Errorf("%s: %w", path, err)
		}
		return reflect.ValueOf(nt), nil
	}
	if !hasTemplates(t) {
		return v, nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v, nil
		}
		e, err := mapValue(v.Elem(), f, path)
		if err != nil {
			return v, err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(e)
		return p, nil
	case reflect.Interface:
		if v.IsNil() {
			return v, nil
		}
		e, err := mapValue(v.Elem(), f, path)
		if err != nil {
			return v, err
		}
		out := reflect.New(t).Elem()
		out.Set(e)
		return out, nil
	case reflect.Struct:
		out := reflect.New(t).Elem()
		out.Set(v)
		for i := range t.NumField() {
			if !t.Field(i).IsExported() {
				continue
			}
			fv, err := mapValue(v.Field(i), f, join(path, t.Field(i).Name))
			if err != nil {
				return v, err
			}
			out.Field(i).Set(fv)
		}
		return out, nil
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && v.IsNil() {
			return v, nil
		}
		out := reflect.New(t).Elem()
		if t.Kind() == reflect.Slice {
			out = reflect.MakeSlice(t, v.Len(), v.Len())
		}
		for i := range v.Len() {
			e, err := mapValue(v.Index(i), f, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return v, err
			}
			out.Index(i).Set(e)
		}
		return out, nil
	case reflect.Map:
		if v.IsNil() {
			return v, nil
		}
		out := reflect.MakeMapWithSize(t, v.Len())
		for _, k := range sortedKeys(v) {
			e, err := mapValue(v.MapIndex(k), f, fmt.Sprintf("%s[%v]", path, k))
			if err != nil {
				return v, err
			}
			out.SetMapIndex(k, e)
		}
		return out, nil
	}
	return v, nil
}

// sortedKeys returns the keys of a map value in a stable order.
func sortedKeys(m reflect.Value) []reflect.Value {
	keys := m.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int {
		if a.Kind() == reflect.String && b.Kind() == reflect.String {
			return cmp.Compare(a.String(), b.String())
		}
		return cmp.Compare(fmt.Sprint(a.Interface()), fmt.Sprint(b.Interface()))
	})
	return keys
}

// hasTemplates reports whether values of type t can hold a Template;
// others are copied without being walked.
func hasTemplates(t reflect.Type) bool {
	return containsTemplate(t, map[reflect.Type]bool{})
}

func containsTemplate(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == templateType {
		return true
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return containsTemplate(t.Elem(), seen)
	case reflect.Map:
		return containsTemplate(t.Key(), seen) || containsTemplate(t.Elem(), seen)
	case reflect.Interface:
		return true
	case reflect.Struct:
		for i := range t.NumField() {
			if t.Field(i).IsExported() && containsTemplate(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}
