// Package apicheck checks the traffic of test fakes against the API
// description the real service publishes: a fake of a service that cannot
// run here (Argo CD, Harbor) is only as good as its agreement with the
// real API, so every request it receives and every response it sends is
// validated, and a mismatch is a violation that fails the test.
package apicheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/oasdiff/yaml"
)

// ModuleFile returns the path of a file inside a module version, which it
// brings into the module cache with `go mod download` when it is not
// there: for API descriptions shipped in modules this one cannot import.
func ModuleFile(module, version, file string) (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", module+"@"+version).Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %v %s", module, version, err, info.Error)
	}
	return filepath.Join(info.Dir, filepath.FromSlash(file)), nil
}

// LoadSwagger reads a Swagger 2.0 description, JSON or YAML, and converts
// it to OpenAPI 3 for validation.
func LoadSwagger(file string) (*openapi3.T, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the API description: %w", err)
	}
	var doc2 openapi2.T
	if strings.HasSuffix(file, ".json") {
		err = json.Unmarshal(data, &doc2)
	} else {
		_, err = yaml.Unmarshal(data, &doc2, yaml.DecodeOpts{})
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", file, err)
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("converting %s to OpenAPI 3: %w", file, err)
	}
	return doc, nil
}

// LoadOpenAPI3 reads an OpenAPI 3.0 description in JSON, with its
// internal references resolved.
func LoadOpenAPI3(file string) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(file)
	if err != nil {
		return nil, fmt.Errorf("loading the API description %s: %w", file, err)
	}
	return doc, nil
}

// Checker validates requests and responses against one description.
type Checker struct {
	// Name names the service in violations, like "Argo CD".
	Name   string
	doc    *openapi3.T
	router routers.Router
}

// New returns a Checker for doc served at base, the URL its paths are
// relative to (a fake's URL, plus the description's base path).
func New(name string, doc *openapi3.T, base string) (*Checker, error) {
	d := *doc // a shallow copy with this server's address
	d.Servers = openapi3.Servers{{URL: base}}
	r, err := gorillamux.NewRouter(&d)
	if err != nil {
		return nil, fmt.Errorf("routing %s's API description: %w", name, err)
	}
	return &Checker{Name: name, doc: &d, router: r}, nil
}

var filterOptions = &openapi3filter.Options{
	IncludeResponseStatus: true,
	MultiError:            true,
	AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
}

// Request validates a request, leaving its body readable, and returns its
// route for Response.
func (c *Checker) Request(r *http.Request) (*openapi3filter.RequestValidationInput, error) {
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		return nil, fmt.Errorf("%s %s is not an operation of %s's API: %v", r.Method, r.URL.EscapedPath(), c.Name, err)
	}
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: filterOptions}
	err = openapi3filter.ValidateRequest(context.Background(), in)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return in, fmt.Errorf("request %s %s (%s) does not match %s's API: %v", r.Method, r.URL.EscapedPath(), route.Operation.OperationID, c.Name, err)
	}
	return in, nil
}

// Response validates a response to a request Request accepted.
func (c *Checker) Response(in *openapi3filter.RequestValidationInput, status int, h http.Header, body []byte) error {
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: h, Options: filterOptions}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("response %d to %s %s (%s) does not match %s's API: %v", status, in.Request.Method, in.Request.URL.EscapedPath(), in.Route.Operation.OperationID, c.Name, err)
	}
	return nil
}

// Schema returns a named schema of the description.
func (c *Checker) Schema(name string) *openapi3.Schema {
	if ref := c.doc.Components.Schemas[name]; ref != nil {
		return ref.Value
	}
	return nil
}

// Handler serves h with every request and response checked. A request
// the description does not accept is answered 400 without reaching h; a
// response it does not accept is still sent (the client under test sees
// what the fake meant) but reported. Each violation goes to violation.
func (c *Checker) Handler(h http.Handler, violation func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := c.Request(r)
		if err != nil {
			violation(err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		res := rec.Result()
		body := rec.Body.Bytes()
		if err := c.Response(in, res.StatusCode, res.Header, body); err != nil {
			violation(err)
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		w.Write(body)
	})
}

// moduleSpecs holds the descriptions ModuleSpec loaded, one per module
// version and file, so that every test of a process reads each once.
var moduleSpecs sync.Map // string -> func() (*openapi3.T, error)

// ModuleSpec returns the Swagger 2.0 description file of module@version,
// brought into the module cache and converted to OpenAPI 3, loaded once
// per process.
func ModuleSpec(module, version, file string) (*openapi3.T, error) {
	key := module + "@" + version + "/" + file
	load, _ := moduleSpecs.LoadOrStore(key, sync.OnceValues(func() (*openapi3.T, error) {
		path, err := ModuleFile(module, version, file)
		if err != nil {
			return nil, fmt.Errorf("bringing the API description of %s: %w", module, err)
		}
		return LoadSwagger(path)
	}))
	return load.(func() (*openapi3.T, error))()
}
