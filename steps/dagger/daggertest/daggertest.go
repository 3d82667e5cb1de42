// Package daggertest is a fake Dagger engine session for tests of code
// that calls Dagger through its Go SDK. No engine can run where Sluice is
// developed, so the fake checks every query against Dagger's published
// GraphQL schema instead (see README.md in this directory).
package daggertest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/validator"
)

//go:embed dagger-v0.21.8.graphqls
var coreSchema string

//go:embed greeter.graphqls
var greeterSchema string

// CoreSchemaFile is the name of the copy of Dagger's published schema.
const CoreSchemaFile = "dagger-v0.21.8.graphqls"

// The kinds of Dagger's TypeDefKind the fake module uses.
const (
	kindString = "STRING_KIND"
	kindInt    = "INTEGER_KIND"
	kindFloat  = "FLOAT_KIND"
	kindBool   = "BOOLEAN_KIND"
	kindList   = "LIST_KIND"
	kindObject = "OBJECT_KIND"
	kindVoid   = "VOID_KIND"
)

// Session is a Dagger engine session over HTTP, as the SDK reaches one
// through DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN. Every request must
// carry the token, and every query must be valid against Dagger's
// published schema (dagger-v0.21.8.graphqls), extended with the
// test module's types once the module is served, as the engine does. A
// query that is not valid fails the test.
//
// It serves one module, greeter (greeter.graphqls): hello(name, greeting,
// times, shout) greets, fail(message) fails as a function whose process
// exits 2 with the message on stderr, countFiles(dir) counts the entries of
// a host directory, ratio(of) divides by 4 and build returns a Container.
// The module is found at the git address GreeterAddress or in any
// directory that holds a dagger.json.
type Session struct {
	t testing.TB
	// Report receives what the fake finds wrong with a request; t.Errorf
	// unless a test of the fake itself catches it.
	Report func(format string, args ...any)
	// Token is the session token every request must carry.
	Token  string
	core   *ast.Schema
	served *ast.Schema
	// greeter is the module's main object in the served schema.
	greeter *ast.Definition

	// Port is the port the session listens on, on 127.0.0.1.
	Port string

	mu       sync.Mutex
	isServed bool
	queries  []string
	loaded   map[string]string // ID of a host directory -> its path
}

// GreeterAddress is the git address of the greeter module.
const GreeterAddress = "github.com/acme/greeter@v1"

// New starts a session and points this process at it through
// DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN, for the rest of the test.
func New(t testing.TB) *Session {
	t.Helper()
	core := &ast.Source{Name: CoreSchemaFile, Input: coreSchema}
	mod := &ast.Source{Name: "greeter.graphqls", Input: greeterSchema}
	f := &Session{t: t, Report: t.Errorf, Token: "s3ss10n-t0ken", loaded: map[string]string{}}
	var err error
	if f.core, err = gqlparser.LoadSchema(core); err != nil {
		t.Fatalf("loading Dagger's schema: %v", err)
	}
	if f.served, err = gqlparser.LoadSchema(core, mod); err != nil {
		t.Fatalf("extending Dagger's schema with the greeter module: %v", err)
	}
	f.greeter = f.served.Types["Greeter"]

	srv := httptest.NewServer(http.HandlerFunc(f.serveHTTP))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	f.Port = port
	t.Setenv("DAGGER_SESSION_PORT", port)
	t.Setenv("DAGGER_SESSION_TOKEN", f.Token)
	return f
}

func (f *Session) serveHTTP(w http.ResponseWriter, r *http.Request) {
	user, _, ok := r.BasicAuth()
	if !ok || user != f.Token {
		f.Report("request without the session token: %s %s", r.Method, r.URL)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/query" {
		f.Report("request to %s %s; the engine serves POST /query", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.Report("request body is not a GraphQL request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.queries = append(f.queries, req.Query)
	schema := f.core
	if f.isServed {
		schema = f.served
	}
	f.mu.Unlock()

	doc, errs := gqlparser.LoadQuery(schema, req.Query)
	if len(errs) > 0 {
		f.Report("query is not valid against Dagger's schema (module served: %v): %v\n%s", schema == f.served, errs, req.Query)
		writeJSON(w, map[string]any{"data": nil, "errors": errs})
		return
	}
	if len(doc.Operations) != 1 {
		f.Report("query has %d operations:\n%s", len(doc.Operations), req.Query)
		http.Error(w, "one operation per request", http.StatusBadRequest)
		return
	}
	op := doc.Operations[0]
	vars, verr := validator.VariableValues(schema, op, req.Variables)
	if verr != nil {
		f.Report("variables %v do not fit the query: %v\n%s", req.Variables, verr, req.Query)
		writeJSON(w, map[string]any{"data": nil, "errors": gqlerror.List{gqlerror.WrapIfUnwrapped(verr)}})
		return
	}
	data, err := f.resolve(op.SelectionSet, f.query(), vars, nil)
	if err != nil {
		writeJSON(w, map[string]any{"data": nil, "errors": gqlerror.List{err}})
		return
	}
	writeJSON(w, map[string]any{"data": data})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// obj is an object of the fake: fields are values or resolvers.
type obj map[string]any

type resolver func(args map[string]any) (any, error)

// resolve executes a selection set on an object.
func (f *Session) resolve(set ast.SelectionSet, o obj, vars map[string]any, path ast.Path) (map[string]any, *gqlerror.Error) {
	out := map[string]any{}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.FragmentSpread:
			sub, err := f.resolve(s.Definition.SelectionSet, o, vars, path)
			if err != nil {
				return nil, err
			}
			for k, v := range sub {
				out[k] = v
			}
		case *ast.InlineFragment:
			sub, err := f.resolve(s.SelectionSet, o, vars, path)
			if err != nil {
				return nil, err
			}
			for k, v := range sub {
				out[k] = v
			}
		case *ast.Field:
			p := append(append(ast.Path{}, path...), ast.PathName(s.Alias))
			v, ok := o[s.Name]
			if !ok {
				f.Report("the fake has no field %s.%s, which the query selects", s.ObjectDefinition.Name, s.Name)
				return nil, &gqlerror.Error{Message: "the fake does not implement " + s.Name, Path: p}
			}
			if r, ok := v.(resolver); ok {
				var err error
				if v, err = r(s.ArgumentMap(vars)); err != nil {
					if ge, ok := err.(*gqlerror.Error); ok {
						ge.Path = p
						return nil, ge
					}
					return nil, &gqlerror.Error{Message: err.Error(), Path: p}
				}
			}
			rv, err := f.value(s.SelectionSet, v, vars, p)
			if err != nil {
				return nil, err
			}
			out[s.Alias] = rv
		}
	}
	return out, nil
}

func (f *Session) value(set ast.SelectionSet, v any, vars map[string]any, path ast.Path) (any, *gqlerror.Error) {
	switch x := v.(type) {
	case obj:
		return f.resolve(set, x, vars, path)
	case []obj:
		list := []any{}
		for i, o := range x {
			r, err := f.resolve(set, o, vars, append(append(ast.Path{}, path...), ast.PathIndex(i)))
			if err != nil {
				return nil, err
			}
			list = append(list, r)
		}
		return list, nil
	}
	return v, nil
}

// query is the root object.
func (f *Session) query() obj {
	return obj{
		"moduleSource": resolver(func(args map[string]any) (any, error) {
			ref := args["refString"].(string)
			if ref != GreeterAddress {
				if _, err := os.Stat(filepath.Join(ref, "dagger.json")); err != nil {
					return nil, fmt.Errorf("failed to resolve module source %q: no dagger.json found", ref)
				}
			}
			return obj{"asModule": f.module()}, nil
		}),
		"host": obj{
			"directory": resolver(func(args map[string]any) (any, error) {
				p := args["path"].(string)
				if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
					return nil, fmt.Errorf("failed to load host directory %q: not a directory", p)
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				id := fmt.Sprintf("directory-%d", len(f.loaded))
				f.loaded[id] = p
				return obj{"id": id}, nil
			}),
		},
		"greeter": obj{
			"hello": resolver(func(args map[string]any) (any, error) {
				s := fmt.Sprintf("%s, %s!", args["greeting"], args["name"])
				s = strings.Repeat(s, toInt(args["times"]))
				if args["shout"].(bool) {
					s = strings.ToUpper(s)
				}
				return s, nil
			}),
			"fail": resolver(func(args map[string]any) (any, error) {
				return nil, &gqlerror.Error{
					Message: `call function "fail": process "/runtime" did not complete successfully: exit code: 2`,
					Extensions: map[string]any{
						"_type": "EXEC_ERROR", "exitCode": 2, "cmd": []string{"/runtime"},
						"stdout": "", "stderr": "greeter: " + args["message"].(string),
					},
				}
			}),
			"countFiles": resolver(func(args map[string]any) (any, error) {
				f.mu.Lock()
				p, ok := f.loaded[args["dir"].(string)]
				f.mu.Unlock()
				if !ok {
					return nil, fmt.Errorf("invalid ID %q", args["dir"])
				}
				es, err := os.ReadDir(p)
				return len(es), err
			}),
			"ratio": resolver(func(args map[string]any) (any, error) { return args["of"].(float64) / 4, nil }),
			"build": obj{"sync": "container-built"},
		},
	}
}

// module is the greeter module as the engine describes it: its TypeDefs,
// made from the schema extension the engine serves for it.
func (f *Session) module() obj {
	var fns []obj
	for _, fd := range f.greeter.Fields {
		if fd.Name == "id" {
			continue
		}
		var args []obj
		for _, a := range fd.Arguments {
			def := any(nil)
			if a.DefaultValue != nil {
				v, err := a.DefaultValue.Value(nil)
				if err != nil {
					f.t.Fatal(err)
				}
				b, _ := json.Marshal(v)
				def = string(b)
			}
			args = append(args, obj{"name": a.Name, "defaultValue": def, "defaultPath": "", "defaultAddress": "", "typeDef": typeDefOf(a.Type, a.Directives)})
		}
		fns = append(fns, obj{"name": fd.Name, "returnType": typeDefOf(fd.Type, nil), "args": args})
	}
	main := obj{"name": "Greeter", "constructor": nil, "functions": fns}
	return obj{
		"name":    "greeter",
		"objects": []obj{{"asObject": main}},
		"serve": resolver(func(map[string]any) (any, error) {
			f.mu.Lock()
			f.isServed = true
			f.mu.Unlock()
			return nil, nil
		}),
	}
}

func typeDefOf(t *ast.Type, dirs ast.DirectiveList) obj {
	name := t.Name()
	if d := dirs.ForName("expectedType"); d != nil {
		name = d.Arguments.ForName("name").Value.Raw
	}
	td := obj{"name": name, "optional": !t.NonNull, "asList": nil}
	switch name {
	case "String":
		td["kind"] = kindString
	case "Int":
		td["kind"] = kindInt
	case "Float":
		td["kind"] = kindFloat
	case "Boolean":
		td["kind"] = kindBool
	case "Void":
		td["kind"] = kindVoid
	default:
		td["kind"] = kindObject
	}
	if t.Elem != nil {
		td["kind"] = kindList
		td["asList"] = obj{"elementTypeDef": typeDefOf(t.Elem, nil)}
	}
	return td
}

// toInt reads an Int argument: a literal in the query is an int64, a
// variable from JSON a float64.
func toInt(v any) int {
	switch n := v.(type) {
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	panic(fmt.Sprintf("not an Int: %#v", v))
}

// Queries returns the queries the session received, in order.
func (f *Session) Queries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}
