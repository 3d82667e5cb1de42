// Package harbortest is a fake Harbor for tests of the scan step: an HTTP
// server with the part of Harbor's /api/v2.0 that a scan uses, and a real
// OCI registry (go-containerregistry's) behind /v2/ on the same host, as
// Harbor serves it. Every request to /api/v2.0 and every response is
// validated against the API description in Harbor's go-client module; a
// mismatch is a violation that fails the test.
package harbortest

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Report MIME types Harbor serves.
const (
	MimeGeneric = "application/vnd.security.vulnerability.report; version=1.1"
	MimeNative  = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
)

// Finding is one vulnerability the fake scanner reports.
type Finding struct {
	ID         string `json:"id"`
	Package    string `json:"package"`
	Version    string `json:"version"`
	FixVersion string `json:"fix_version,omitempty"`
	// Severity is Harbor's: Critical, High, Medium, Low, Negligible or
	// Unknown.
	Severity    string   `json:"severity"`
	Description string   `json:"description,omitempty"`
	Links       []string `json:"links,omitempty"`
}

// Options shape the fake's behaviour.
type Options struct {
	// Username and Password are the only accepted credentials; defaults
	// "robot$ci" and "s3cret".
	Username, Password string
	// ReadOnly makes the account unable to scan (403 on scanArtifact).
	ReadOnly bool
	// NoScanner makes scanArtifact answer 412, as Harbor does for a
	// project without a scanner.
	NoScanner bool
	// Findings is what every scan reports.
	Findings []Finding
	// ScanDuration is how long a scan stays Running.
	ScanDuration time.Duration
	// ScanError, when set, ends every scan in Error with this log.
	ScanError string
	// Malform, when set, rewrites the body of each response to the
	// operation it names before it is validated: for tests of the
	// validation itself.
	Malform func(operation string, body []byte) []byte
}

// Server is a running fake Harbor.
type Server struct {
	*httptest.Server
	// Host is the server's host:port, the registry host of its images.
	Host string

	opts     Options
	registry http.Handler
	valid    *validator

	mu         sync.Mutex
	scans      map[string]*scan // by digest
	requests   []string
	violations []string
	triggered  int
}

type scan struct {
	id    string
	start time.Time
	dur   time.Duration
	err   string
	found []Finding
}

// New starts a fake Harbor that fails t with every violation of the API
// description when the test ends, and stops with it.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		for _, v := range s.Violations() {
			t.Errorf("fake Harbor: %s", v)
		}
	})
	return s
}

// Start starts a fake Harbor; the caller checks Violations and closes it.
func Start(opts Options) (*Server, error) {
	if opts.Username == "" {
		opts.Username, opts.Password = "robot$ci", "s3cret"
	}
	s := &Server{opts: opts, registry: registry.New(registry.Logger(log.New(io.Discard, "", 0))), scans: map[string]*scan{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	s.Host = strings.TrimPrefix(s.URL, "http://")
	v, err := newValidator(s.URL)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.valid = v
	return s, nil
}

// Push pushes a random image to repository (project/name) of the fake's
// registry and returns its reference pinned by digest.
func (s *Server) Push(t testing.TB, repository string) string {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(s.Host+"/"+repository+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing to the fake Harbor's registry: %v", err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return s.Host + "/" + repository + "@" + d.String()
}

// StartScan starts a scan of digest as if someone had asked Harbor for it,
// like an earlier attempt of the step.
func (s *Server) StartScan(digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.newScan(digest)
}

// Requests lists the requests the fake received, as "METHOD path".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Scans counts the scans that a scanArtifact request started.
func (s *Server) Scans() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.triggered
}

// Violations lists every request and response that did not match Harbor's
// API description.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

func (s *Server) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.EscapedPath())
	s.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/v2/") || r.URL.Path == "/v2" {
		s.registry.ServeHTTP(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/v2.0/") {
		http.NotFound(w, r)
		return
	}
	in, err := s.valid.Request(r)
	if err != nil {
		s.violate("%v", err)
		if in == nil {
			writeError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
			return
		}
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	rec := httptest.NewRecorder()
	op := in.Route.Operation.OperationID
	s.api(rec, r, op, in.PathParams)
	body := rec.Body.Bytes()
	if s.opts.Malform != nil {
		body = s.opts.Malform(op, body)
	}
	if err := s.valid.response(in, rec.Code, rec.Header(), body); err != nil {
		s.violate("%v", err)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(body)
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, map[string]any{"errors": []map[string]string{{"code": kind, "message": msg}}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// api serves one validated operation.
func (s *Server) api(w http.ResponseWriter, r *http.Request, op string, params map[string]string) {
	if u, p, ok := r.BasicAuth(); !ok || u != s.opts.Username || p != s.opts.Password {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
		return
	}
	project := params["project_name"]
	// Harbor takes repository names with slashes encoded twice: its
	// router matches the path decoded once, where a slash encoded only
	// once splits the path, and the handler decodes the name again. The
	// validator's router hands over the parameter as sent.
	once, err := url.PathUnescape(params["repository_name"])
	if err != nil || strings.Contains(once, "/") {
		s.violate("repository name %q in %s is not encoded twice (a/b is a%%252Fb)", params["repository_name"], r.URL.EscapedPath())
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such route")
		return
	}
	repo, err := url.PathUnescape(once)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("repository name %q is not URL-encoded", params["repository_name"]))
		return
	}
	digest := params["reference"]
	mediaType, size, ok := s.manifest(project+"/"+repo, digest)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("artifact %s/%s@%s not found", project, repo, digest))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.scans[digest]
	switch op {
	case "scanArtifact":
		switch {
		case s.opts.ReadOnly:
			writeError(w, http.StatusForbidden, "FORBIDDEN", "forbidden")
		case s.opts.NoScanner:
			writeError(w, http.StatusPreconditionFailed, "PRECONDITION", "no available scanner for project: 1")
		case sc != nil && !final(sc.status()):
			writeError(w, http.StatusConflict, "CONFLICT", "a previous scan process is "+sc.status())
		default:
			s.newScan(digest)
			s.triggered++
			w.WriteHeader(http.StatusAccepted)
		}
	case "getArtifact":
		art := map[string]any{
			"id": 1, "type": "IMAGE", "project_id": 1, "repository_id": 1,
			"repository_name": project + "/" + repo, "digest": digest,
			"media_type": mediaType, "manifest_media_type": mediaType, "size": size,
			"push_time": time.Now().UTC().Format(time.RFC3339),
		}
		if r.URL.Query().Get("with_scan_overview") == "true" && sc != nil {
			art["scan_overview"] = map[string]any{accepted(r)[0]: sc.summary()}
		}
		writeJSON(w, http.StatusOK, art)
	case "getVulnerabilitiesAddition":
		out := map[string]any{}
		if sc != nil && sc.status() == "Success" {
			out[accepted(r)[0]] = sc.report()
		}
		writeJSON(w, http.StatusOK, out)
	case "getReportLog":
		if sc == nil || sc.id != params["report_id"] {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "report not found")
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(sc.err))
	default:
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", op+" is not served by the fake")
	}
}

// manifest asks the registry behind /v2/ whether it holds the artifact.
func (s *Server) manifest(repo, digest string) (string, int64, bool) {
	req := httptest.NewRequest(http.MethodHead, "/v2/"+repo+"/manifests/"+digest, nil)
	rec := httptest.NewRecorder()
	s.registry.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return "", 0, false
	}
	var size int64
	fmt.Sscan(rec.Header().Get("Content-Length"), &size)
	return rec.Header().Get("Content-Type"), size, true
}

// accepted is the report MIME types the request accepts, most preferred
// first, as X-Accept-Vulnerabilities lists them; the generic report when
// it names none the fake knows.
func accepted(r *http.Request) []string {
	var out []string
	for _, m := range strings.Split(r.Header.Get("X-Accept-Vulnerabilities"), ",") {
		m = strings.TrimSpace(m)
		if m == MimeGeneric || m == MimeNative {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		out = []string{MimeGeneric}
	}
	return out
}

// newScan starts a scan; s.mu is held.
func (s *Server) newScan(digest string) {
	s.scans[digest] = &scan{
		id:    fmt.Sprintf("5f62c830-f996-11e9-957f-%012d", len(s.requests)),
		start: time.Now(),
		dur:   s.opts.ScanDuration,
		err:   s.opts.ScanError,
		found: s.opts.Findings,
	}
}

func final(status string) bool { return status == "Success" || status == "Error" }

func (sc *scan) status() string {
	switch {
	case time.Since(sc.start) < sc.dur:
		return "Running"
	case sc.err != "":
		return "Error"
	}
	return "Success"
}

func (sc *scan) summary() map[string]any {
	status := sc.status()
	out := map[string]any{
		"report_id":   sc.id,
		"scan_status": status,
		"start_time":  sc.start.UTC().Format(time.RFC3339),
		"scanner":     map[string]any{"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
	}
	if status == "Running" {
		out["complete_percent"] = int(100 * time.Since(sc.start) / sc.dur)
		return out
	}
	out["complete_percent"] = 100
	out["end_time"] = sc.start.Add(sc.dur).UTC().Format(time.RFC3339)
	out["duration"] = int64(sc.dur / time.Second)
	if status == "Success" {
		counts := map[string]int{}
		fixable := 0
		for _, f := range sc.found {
			counts[f.Severity]++
			if f.FixVersion != "" {
				fixable++
			}
		}
		out["severity"] = sc.report()["severity"]
		out["summary"] = map[string]any{"total": len(sc.found), "fixable": fixable, "summary": counts}
	}
	return out
}

var order = []string{"Unknown", "Negligible", "Low", "Medium", "High", "Critical"}

func (sc *scan) report() map[string]any {
	worst := "None"
	vulns := []map[string]any{}
	for _, f := range sc.found {
		for _, o := range order {
			if o == f.Severity && (worst == "None" || indexOf(o) > indexOf(worst)) {
				worst = o
			}
		}
		v := map[string]any{
			"id": f.ID, "package": f.Package, "version": f.Version, "fix_version": f.FixVersion,
			"severity": f.Severity, "description": f.Description, "links": f.Links,
		}
		if f.Links == nil {
			v["links"] = []string{}
		}
		vulns = append(vulns, v)
	}
	return map[string]any{
		"generated_at":    sc.start.Add(sc.dur).UTC().Format(time.RFC3339Nano),
		"scanner":         map[string]any{"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
		"severity":        worst,
		"vulnerabilities": vulns,
	}
}

func indexOf(sev string) int {
	for i, o := range order {
		if o == sev {
			return i
		}
	}
	return -1
}
