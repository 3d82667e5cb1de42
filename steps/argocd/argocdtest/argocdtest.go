// Package argocdtest is a fake Argo CD API server for tests of the argocd
// step. No Argo CD can run where Sluice is developed, so the fake checks
// every request it receives and every response it sends against the API
// description Argo CD publishes (assets/swagger.json of the argo-cd
// module, brought with `go mod download`, never imported); a mismatch
// fails the test.
package argocdtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/sluice-ci/sluice/internal/testing/apicheck"
)

// The Argo CD release whose API description the fake obeys.
const (
	Module   = "github.com/argoproj/argo-cd/v3"
	Version  = "v3.5.7"
	SpecFile = "assets/swagger.json"
)

// Spec returns Argo CD's API description, converted to OpenAPI 3.
func Spec() (*openapi3.T, error) {
	return apicheck.ModuleSpec(Module, Version, SpecFile)
}

// Resource is a Kubernetes resource of an application.
type Resource struct {
	Kind, Namespace, Name string
	// Health is Argo CD's health status: Healthy, Progressing, Degraded,
	// Suspended, Missing or Unknown.
	Health, Message string
}

// App is an application the fake knows and how it behaves after a sync.
type App struct {
	// SyncPolls is how many reads after a sync still show the operation
	// running (OutOfSync); then the application is Synced at the
	// revision.
	SyncPolls int
	// HealthPolls is how many reads after that show it Progressing; then
	// it is Healthy, or Degraded when Degraded lists resources.
	HealthPolls int
	// Degraded are the resources that fail after a sync.
	Degraded []Resource
	// Busy is how many sync requests are refused because another
	// operation is in progress.
	Busy int
}

// Options shape the fake.
type Options struct {
	// Token is the only bearer token accepted; default "argocd-token".
	Token string
	Apps  map[string]App
	// Malform, when set, rewrites each response body of the operation it
	// names before validation: for tests of the validation itself.
	Malform func(operation string, body []byte) []byte
	// Violation receives each mismatch with the API description; nil
	// fails the test.
	Violation func(error)
}

// Sync is a sync request the fake accepted.
type Sync struct {
	App, Revision string
}

// Server is a running fake Argo CD.
type Server struct {
	*httptest.Server
	Token string

	opts  Options
	mu    sync.Mutex
	apps  map[string]*state
	syncs []Sync
	gets  int
}

type state struct {
	App
	revision, target  string
	syncLeft, healthL int
	syncStatus        string
	health            string
	phase             string
	done              bool
}

// New starts a fake Argo CD; it stops when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	doc, err := Spec()
	if err != nil {
		t.Fatalf("argocdtest: %v (the fake checks its traffic against Argo CD's description; the Go module proxy must be reachable, or the module in the cache)", err)
	}
	if opts.Token == "" {
		opts.Token = "argocd-token"
	}
	if opts.Violation == nil {
		opts.Violation = func(err error) { t.Errorf("argocdtest: %v", err) }
	}
	s := &Server{Token: opts.Token, opts: opts, apps: map[string]*state{}}
	for name, a := range opts.Apps {
		s.apps[name] = &state{App: a, revision: "0000000000000000000000000000000000000000", syncStatus: "Synced", health: "Healthy", phase: "Succeeded"}
	}
	s.Server = httptest.NewUnstartedServer(nil)
	s.Server.Start()
	check, err := apicheck.New("Argo CD", doc, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.Server.Config.Handler = check.Handler(http.HandlerFunc(s.serve), opts.Violation)
	t.Cleanup(s.Close)
	return s
}

// Syncs returns the sync requests accepted so far.
func (s *Server) Syncs() []Sync {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sync(nil), s.syncs...)
}

// Gets returns how many times an application was read.
func (s *Server) Gets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		s.fail(w, http.StatusUnauthorized, 16, "invalid session: token signature is invalid")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/applications/")
	if !ok {
		s.fail(w, http.StatusNotFound, 5, "Not Found")
		return
	}
	name, action, _ := strings.Cut(rest, "/")
	a := s.apps[name]
	if a == nil {
		s.fail(w, http.StatusNotFound, 5, fmt.Sprintf("applications.argoproj.io %q not found", name))
		return
	}
	op := "ApplicationService_Get"
	switch {
	case r.Method == http.MethodPost && action == "sync":
		op = "ApplicationService_Sync"
		var body struct{ Name, Revision string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			s.fail(w, http.StatusBadRequest, 3, err.Error())
			return
		}
		if a.Busy > 0 || a.phase == "Running" {
			if a.Busy > 0 {
				a.Busy--
			}
			s.fail(w, http.StatusBadRequest, 9, "another operation is already in progress")
			return
		}
		s.syncs = append(s.syncs, Sync{App: name, Revision: body.Revision})
		a.target, a.syncLeft, a.phase, a.syncStatus, a.done = body.Revision, a.SyncPolls, "Running", "OutOfSync", false
	case r.Method == http.MethodGet && action == "":
		s.gets++
		a.advance()
	default:
		s.fail(w, http.StatusNotImplemented, 12, "the fake does not implement this")
		return
	}
	s.write(w, http.StatusOK, op, s.application(name, a))
}

// advance moves an application one read further after a sync.
func (a *state) advance() {
	switch {
	case a.target == "" || a.done:
	case a.syncLeft > 0:
		a.syncLeft--
	case a.phase == "Running":
		a.revision, a.syncStatus, a.phase, a.health, a.healthL = a.target, "Synced", "Succeeded", "Progressing", a.HealthPolls
		a.settle()
	case a.healthL > 0:
		a.healthL--
		a.settle()
	}
}

func (a *state) settle() {
	if a.healthL > 0 {
		return
	}
	a.health, a.done = "Healthy", true
	if len(a.Degraded) > 0 {
		a.health = "Degraded"
	}
}

var started = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339)

// application writes an Application as Argo CD serves it.
func (s *Server) application(name string, a *state) map[string]any {
	resources := []any{map[string]any{
		"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "web", "name": name,
		"status": a.syncStatus, "health": map[string]any{"status": a.health},
	}}
	if a.health == "Degraded" {
		resources = nil
		for _, r := range a.Degraded {
			resources = append(resources, map[string]any{
				"version": "v1", "kind": r.Kind, "namespace": r.Namespace, "name": r.Name, "status": "Synced",
				"health": map[string]any{"status": r.Health, "message": r.Message},
			})
		}
	}
	opState := map[string]any{
		"phase": a.phase, "message": "successfully synced (all tasks run)", "startedAt": started,
		"operation":  map[string]any{"sync": map[string]any{"revision": a.target}},
		"syncResult": map[string]any{"revision": a.target},
	}
	if a.phase == "Running" {
		opState["message"] = "waiting for completion of hook and 1 more resources"
		delete(opState, "syncResult")
	}
	return map[string]any{
		"metadata": map[string]any{"name": name, "namespace": "argocd", "creationTimestamp": started},
		"spec": map[string]any{
			"project":     "default",
			"source":      map[string]any{"repoURL": "https://git.example.com/deploy", "path": "apps/" + name, "targetRevision": "main"},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "web"},
		},
		"status": map[string]any{
			"sync":           map[string]any{"status": a.syncStatus, "revision": a.revision},
			"health":         map[string]any{"status": a.health},
			"operationState": opState,
			"resources":      resources,
			"reconciledAt":   started,
			"sourceType":     "Kustomize",
		},
	}
}

// fail answers as Argo CD's gRPC gateway does: a runtimeError with the
// gRPC code.
func (s *Server) fail(w http.ResponseWriter, status, code int, msg string) {
	s.write(w, status, "error", map[string]any{"error": msg, "code": code, "message": msg})
}

func (s *Server) write(w http.ResponseWriter, status int, op string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	if s.opts.Malform != nil {
		body = s.opts.Malform(op, body)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
