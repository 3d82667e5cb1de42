package harbortest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/sluice-ci/sluice/internal/testing/apicheck"
)

// ClientModule is the Harbor client whose API description the fake obeys,
// at ClientVersion, the version go.mod requires (TestClientVersion).
const (
	ClientModule  = "github.com/goharbor/go-client"
	ClientVersion = "v0.213.1"
)

// SpecPath is the API description's path inside ClientModule.
const SpecPath = "api/v2.0/swagger.yaml"

// Spec returns Harbor's API description from the go-client module at the
// version this module requires, converted to OpenAPI 3.
func Spec() (*openapi3.T, error) {
	return apicheck.ModuleSpec(ClientModule, ClientVersion, SpecPath)
}

// validator checks requests to /api/v2.0 and their responses against the
// API description, with the exceptions below.
type validator struct {
	*apicheck.Checker
}

func newValidator(serverURL string) (*validator, error) {
	doc, err := Spec()
	if err != nil {
		return nil, err
	}
	c, err := apicheck.New("Harbor", doc, serverURL+"/api/v2.0")
	if err != nil {
		return nil, err
	}
	return &validator{c}, nil
}

// undeclared lists the error statuses Harbor sends although the
// description does not declare them for the operation: scanArtifact
// answers 409 when a scan of the artifact is under way and 412 when the
// project has no scanner (Harbor's scan controller, ConflictError and
// PreconditionFailedError). Their body is checked as the description's
// Errors.
var undeclared = map[string][]int{"scanArtifact": {http.StatusConflict, http.StatusPreconditionFailed}}

// response validates a response to a validated request.
func (v *validator) response(in *openapi3filter.RequestValidationInput, status int, h http.Header, body []byte) error {
	op := in.Route.Operation.OperationID
	what := fmt.Sprintf("response %d to %s (%s)", status, in.Request.URL.EscapedPath(), op)
	for _, code := range undeclared[op] {
		if status == code {
			if err := v.Schema("Errors").VisitJSON(decode(body)); err != nil {
				return fmt.Errorf("%s is not Harbor's Errors: %v", what, err)
			}
			return nil
		}
	}
	if op == "getVulnerabilitiesAddition" && status == http.StatusOK {
		if err := checkReport(h, body); err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		return nil
	}
	return v.Response(in, status, h, body)
}

func decode(body []byte) any {
	var x any
	if err := json.Unmarshal(body, &x); err != nil {
		return string(body)
	}
	return x
}

// reportSchema is the vulnerability report as Harbor serves it from
// .../additions/vulnerabilities: a JSON object from report MIME type to
// report. The API description declares this body a string
// (goharbor/go-client#41), so the fake checks it against this schema,
// written from Harbor's report model (src/pkg/scan/vuln: Report,
// VulnerabilityItem, Severity) instead.
const reportSchema = `{
  "type": "object",
  "additionalProperties": {
    "type": "object",
    "required": ["vulnerabilities"],
    "properties": {
      "generated_at": {"type": "string"},
      "severity": {"type": "string", "enum": ["None", "Unknown", "Negligible", "Low", "Medium", "High", "Critical"]},
      "scanner": {"type": "object", "properties": {
        "name": {"type": "string"}, "vendor": {"type": "string"}, "version": {"type": "string"}}},
      "vulnerabilities": {"type": "array", "items": {
        "type": "object",
        "required": ["id", "package", "version", "severity"],
        "properties": {
          "id": {"type": "string", "minLength": 1},
          "package": {"type": "string"},
          "version": {"type": "string"},
          "fix_version": {"type": "string"},
          "severity": {"type": "string", "enum": ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"]},
          "description": {"type": "string"},
          "links": {"type": "array", "items": {"type": "string"}},
          "artifact_digests": {"type": "array", "items": {"type": "string"}},
          "cwe_ids": {"type": "array", "items": {"type": "string"}},
          "vendor_attributes": {"type": "object"},
          "preferred_cvss": {"type": "object"}
        }
      }}
    }
  }
}`

var report = func() *openapi3.Schema {
	var s openapi3.Schema
	if err := json.Unmarshal([]byte(reportSchema), &s); err != nil {
		panic(err)
	}
	return &s
}()

// reportMimes are the report MIME types Harbor serves.
var reportMimes = []string{MimeGeneric, MimeNative}

func checkReport(h http.Header, body []byte) error {
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("the vulnerability report's Content-Type is %q, not application/json", ct)
	}
	var x map[string]any
	if err := json.Unmarshal(body, &x); err != nil {
		return fmt.Errorf("the vulnerability report is not a JSON object: %v", err)
	}
	for m := range x {
		known := false
		for _, k := range reportMimes {
			known = known || m == k
		}
		if !known {
			return fmt.Errorf("the vulnerability report has the unknown MIME type %q", m)
		}
	}
	if err := report.VisitJSON(decode(body)); err != nil {
		return fmt.Errorf("the vulnerability report does not have Harbor's report shape: %v", err)
	}
	return nil
}
