package apicheck

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadOpenAPI3 loads a small OpenAPI 3.0 JSON description and checks
// a request and a response against it.
func TestLoadOpenAPI3(t *testing.T) {
	file := filepath.Join(t.TempDir(), "api.json")
	os.WriteFile(file, []byte(`{
  "openapi": "3.0.3",
  "info": {"title": "t", "version": "1"},
  "paths": {"/things/{id}": {"get": {
    "operationId": "get-thing",
    "parameters": [{"$ref": "#/components/parameters/id"}],
    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/thing"}}}}}
  }}},
  "components": {
    "parameters": {"id": {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}},
    "schemas": {"thing": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}
  }
}`), 0o644)
	doc, err := LoadOpenAPI3(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New("Things", doc, "http://things.test")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://things.test/things/7", nil)
	in, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if err := c.Response(in, 200, h, []byte(`{"name": "x"}`)); err != nil {
		t.Error(err)
	}
	if err := c.Response(in, 200, h, []byte(`{"name": 1}`)); err == nil || !strings.Contains(err.Error(), "get-thing") {
		t.Errorf("a bad response: %v", err)
	}
	bad, _ := http.NewRequest("GET", "http://things.test/things/seven", nil)
	if _, err := c.Request(bad); err == nil {
		t.Error("a bad path parameter passed")
	}
	if _, err := LoadOpenAPI3(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Error("a missing file loaded")
	}
}
