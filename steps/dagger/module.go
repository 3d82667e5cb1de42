package dagger

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/iancoleman/strcase"
)

// moduleQuery reads, in one request, what a call needs to know about a
// module: its name and the functions and arguments of its objects.
const moduleQuery = `query Module($ref: String!) {
  moduleSource(refString: $ref) {
    asModule {
      name
      objects {
        asObject {
          name
          constructor { args { ...arg } }
          functions {
            name
            returnType { ...type }
            args { ...arg }
          }
        }
      }
    }
  }
}

fragment arg on FunctionArg {
  name
  defaultValue
  defaultPath
  defaultAddress
  typeDef { ...type }
}

fragment type on TypeDef {
  kind
  name
  optional
  asList { elementTypeDef { kind name } }
}`

type moduleData struct {
	ModuleSource struct {
		AsModule module `json:"asModule"`
	} `json:"moduleSource"`
}

type module struct {
	Name    string `json:"name"`
	Objects []struct {
		AsObject *object `json:"asObject"`
	} `json:"objects"`
}

type object struct {
	Name        string `json:"name"`
	Constructor *struct {
		Args []arg `json:"args"`
	} `json:"constructor"`
	Functions []function `json:"functions"`
}

type function struct {
	Name       string  `json:"name"`
	ReturnType typeDef `json:"returnType"`
	Args       []arg   `json:"args"`
}

type arg struct {
	Name           string          `json:"name"`
	DefaultValue   json.RawMessage `json:"defaultValue"`
	DefaultPath    string          `json:"defaultPath"`
	DefaultAddress string          `json:"defaultAddress"`
	TypeDef        typeDef         `json:"typeDef"`
}

type typeDef struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Optional bool   `json:"optional"`
	AsList   *struct {
		ElementTypeDef typeDef `json:"elementTypeDef"`
	} `json:"asList"`
}

// The kinds of TypeDefKind that matter here.
const (
	kindString  = "STRING_KIND"
	kindInt     = "INTEGER_KIND"
	kindFloat   = "FLOAT_KIND"
	kindBool    = "BOOLEAN_KIND"
	kindScalar  = "SCALAR_KIND"
	kindEnum    = "ENUM_KIND"
	kindList    = "LIST_KIND"
	kindObject  = "OBJECT_KIND"
	kindIface   = "INTERFACE_KIND"
	kindVoid    = "VOID_KIND"
	kindInput   = "INPUT_KIND"
	defaultNull = "null"
)

// mainObject is the object whose functions a module offers at its top
// level: the one named like the module.
func (m *module) mainObject() (*object, bool) {
	want := normName(m.Name)
	for _, o := range m.Objects {
		if o.AsObject != nil && normName(o.AsObject.Name) == want {
			return o.AsObject, true
		}
	}
	return nil, false
}

// normName makes "my-func", "my_func", "myFunc" and "MyFunc" compare equal,
// as the dagger CLI accepts all of them.
func normName(s string) string {
	return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s))
}

// fieldName is the GraphQL name the engine gives a module's constructor,
// function or argument.
func fieldName(s string) string { return strcase.ToLowerCamel(s) }

func (o *object) function(name string) (*function, bool) {
	for i := range o.Functions {
		if normName(o.Functions[i].Name) == normName(name) {
			return &o.Functions[i], true
		}
	}
	return nil, false
}

func (o *object) functionNames() string {
	var names []string
	for _, f := range o.Functions {
		names = append(names, f.Name)
	}
	if len(names) == 0 {
		return "it has none"
	}
	slices.Sort(names)
	return "its functions are " + strings.Join(names, ", ")
}

// required says whether a call must pass the argument.
func (a *arg) required() bool {
	d := strings.TrimSpace(string(a.DefaultValue))
	hasDefault := d != "" && d != defaultNull && d != `""` && d != `"null"`
	return !a.TypeDef.Optional && !hasDefault && a.DefaultPath == "" && a.DefaultAddress == ""
}

// describe says how a user passes the argument, for messages.
func (a *arg) describe() string {
	s := a.Name + " (" + a.TypeDef.display()
	if a.required() {
		s += ", required"
	}
	return s + ")"
}

func (t typeDef) display() string {
	switch t.Kind {
	case kindString:
		return "String"
	case kindInt:
		return "Int"
	case kindFloat:
		return "Float"
	case kindBool:
		return "Boolean"
	case kindList:
		if t.AsList != nil {
			return "[" + t.AsList.ElementTypeDef.display() + "]"
		}
	}
	if t.Name != "" {
		return t.Name
	}
	return strings.ToLower(strings.TrimSuffix(t.Kind, "_KIND"))
}

func (f *function) argNames() string {
	if len(f.Args) == 0 {
		return "it takes none"
	}
	var ds []string
	for i := range f.Args {
		ds = append(ds, f.Args[i].describe())
	}
	return "its arguments are " + strings.Join(ds, ", ")
}

// hostArg is an argument whose value is a file or directory of the
// workspace, loaded into the engine before the call.
type hostArg struct {
	variable, path string
	dir            bool
}

// binding is a function's arguments as GraphQL variables.
type binding struct {
	decls []string // "$a0: String!"
	args  []string // "name: $a0"
	vars  map[string]any
	host  []hostArg
}

// bind checks the step's arguments against the function's and converts
// them to the types it declares.
func (f *function) bind(values map[string]string, workspace string) (binding, error) {
	b := binding{vars: map[string]any{}}
	given := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		i := slices.IndexFunc(f.Args, func(a arg) bool { return normName(a.Name) == normName(name) })
		if i < 0 {
			return b, fmt.Errorf("function %q takes no argument %q; %s", f.Name, name, f.argNames())
		}
		a := &f.Args[i]
		if given[a.Name] {
			return b, fmt.Errorf("argument %q of function %q is given twice (as %q and another spelling); keep one", a.Name, f.Name, name)
		}
		given[a.Name] = true
		v := "a" + strconv.Itoa(len(b.decls))
		gqlType, value, err := convertArg(a.TypeDef, values[name])
		if err != nil {
			return b, fmt.Errorf("argument %q of function %q: %w", name, f.Name, err)
		}
		if gqlType == "ID" {
			p, err := workspacePath(workspace, values[name])
			if err != nil {
				return b, fmt.Errorf("argument %q of function %q: %w", name, f.Name, err)
			}
			b.host = append(b.host, hostArg{variable: v, path: p, dir: a.TypeDef.Name == "Directory"})
			value = nil
		}
		b.decls = append(b.decls, "$"+v+": "+gqlType+"!")
		b.args = append(b.args, fieldName(a.Name)+": $"+v)
		b.vars[v] = value
	}
	var missing []string
	for i := range f.Args {
		if a := &f.Args[i]; a.required() && !given[a.Name] {
			missing = append(missing, a.describe())
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("function %q needs the argument(s) %s; add them to args", f.Name, strings.Join(missing, ", "))
	}
	return b, nil
}

// convertArg turns the text of an argument into a value of the GraphQL type
// the function declares. Object arguments (Directory, File) come back with
// the type "ID": their value is loaded from the workspace.
func convertArg(t typeDef, s string) (gqlType string, value any, err error) {
	switch t.Kind {
	case kindString:
		return "String", s, nil
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return "", nil, fmt.Errorf("%q is not an Int; give a whole number, like \"3\"", s)
		}
		return "Int", n, nil
	case kindFloat:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return "", nil, fmt.Errorf("%q is not a Float; give a number, like \"0.5\"", s)
		}
		return "Float", n, nil
	case kindBool:
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return "", nil, fmt.Errorf("%q is not a Boolean; give true or false", s)
		}
		return "Boolean", v, nil
	case kindEnum, kindScalar:
		return t.Name, s, nil
	case kindObject:
		if t.Name == "Directory" || t.Name == "File" {
			return "ID", nil, nil
		}
	case kindList:
		if t.AsList != nil {
			var items []string
			if err := json.Unmarshal([]byte(s), &items); err != nil {
				return "", nil, fmt.Errorf("%q is not a list; give a JSON list of strings, like jsonencode([\"a\", \"b\"])", s)
			}
			var elType string
			vs := []any{}
			for _, it := range items {
				et, v, err := convertArg(t.AsList.ElementTypeDef, it)
				if err != nil {
					return "", nil, err
				}
				if et == "ID" {
					return "", nil, fmt.Errorf("lists of %s are not supported; pass one path", t.AsList.ElementTypeDef.Name)
				}
				elType, vs = et, append(vs, v)
			}
			if elType == "" {
				if elType, _, err = convertArg(t.AsList.ElementTypeDef, ""); err != nil {
					elType = t.AsList.ElementTypeDef.display()
				}
			}
			return "[" + elType + "!]", vs, nil
		}
	}
	return "", nil, fmt.Errorf("arguments of type %s cannot be given by a Sluice step yet; Sluice passes String, Int, Float, Boolean, enums, lists of those, and Directory or File paths in the workspace", t.display())
}

// workspacePath resolves a Directory or File argument: a path inside the
// workspace, relative to it.
func workspacePath(workspace, p string) (string, error) {
	if p == "" {
		p = "."
	}
	if filepath.IsAbs(p) || !filepath.IsLocal(filepath.Clean(p)) && filepath.Clean(p) != "." {
		return "", fmt.Errorf("%q must be a path inside the workspace, relative to it, like \".\" or \"src\"", p)
	}
	return filepath.Join(workspace, p), nil
}

// selection is what the call selects from the function's result, so that
// the engine evaluates it; scalar says whether the result is a value to
// pass on as the step's output.
func selection(t typeDef) (sel string, scalar bool) {
	switch t.Kind {
	case kindObject, kindIface:
		switch t.Name {
		case "Container", "Directory", "File", "Changeset":
			return " { sync }", false
		}
		return " { id }", false
	case kindList:
		if t.AsList != nil {
			if el, scalar := selection(t.AsList.ElementTypeDef); !scalar {
				return el, false
			}
		}
	}
	return "", true
}

// callQuery is the query that calls fn on the module's main object.
func callQuery(mod *module, fn *function, b binding) string {
	var q strings.Builder
	q.WriteString("query Call")
	if len(b.decls) > 0 {
		q.WriteString("(" + strings.Join(b.decls, ", ") + ")")
	}
	q.WriteString(" { " + fieldName(mod.Name) + " { " + fieldName(fn.Name))
	if len(b.args) > 0 {
		q.WriteString("(" + strings.Join(b.args, ", ") + ")")
	}
	sel, _ := selection(fn.ReturnType)
	q.WriteString(sel + " } }")
	return q.String()
}

// outputText renders a function's result as the step's output.
func outputText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if t := strings.TrimSpace(string(raw)); t != defaultNull {
		return t
	}
	return ""
}
