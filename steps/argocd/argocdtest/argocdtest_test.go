package argocdtest

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestValidationCatchesAMalformedResponse(t *testing.T) {
	var mu sync.Mutex
	var violations []error
	s := New(t, Options{
		Apps: map[string]App{"web": {}},
		// A sync status that is a number, where Argo CD's SyncStatus has
		// a string.
		Malform: func(op string, body []byte) []byte {
			if op != "ApplicationService_Get" {
				return body
			}
			return bytes.Replace(body, []byte(`"status":"Synced"`), []byte(`"status":3`), 1)
		},
		Violation: func(err error) { mu.Lock(); violations = append(violations, err); mu.Unlock() },
	})
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/applications/web", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(violations) != 1 || !strings.Contains(violations[0].Error(), "ApplicationService_Get") || !strings.Contains(violations[0].Error(), "status") {
		t.Fatalf("violations = %v, want one about the sync status of ApplicationService_Get", violations)
	}
}

func TestValidationCatchesAMalformedRequest(t *testing.T) {
	var violations []error
	s := New(t, Options{Apps: map[string]App{"web": {}}, Violation: func(err error) { violations = append(violations, err) }})
	// revision is a string in ApplicationSyncRequest.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/applications/web/sync", strings.NewReader(`{"revision": 42}`))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || len(violations) != 1 || !strings.Contains(violations[0].Error(), "revision") {
		t.Fatalf("status %d, violations %v", resp.StatusCode, violations)
	}
	if len(s.Syncs()) != 0 {
		t.Errorf("an invalid request reached the fake: %v", s.Syncs())
	}
}

func TestAnswersAsArgoCD(t *testing.T) {
	s := New(t, Options{Apps: map[string]App{"web": {SyncPolls: 1}}})
	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, body := do("GET", "/api/v1/applications/web", "wrong", ""); code != 401 || !strings.Contains(body, "invalid session") {
		t.Errorf("wrong token: %d %s", code, body)
	}
	if code, body := do("GET", "/api/v1/applications/api", s.Token, ""); code != 404 || !strings.Contains(body, "not found") {
		t.Errorf("unknown app: %d %s", code, body)
	}
	if code, body := do("POST", "/api/v1/applications/web/sync", s.Token, `{"name":"web","revision":"abc"}`); code != 200 || !strings.Contains(body, `"phase":"Running"`) {
		t.Errorf("sync: %d %s", code, body)
	}
	if code, body := do("POST", "/api/v1/applications/web/sync", s.Token, `{"name":"web","revision":"abc"}`); code != 400 || !strings.Contains(body, "another operation is already in progress") {
		t.Errorf("second sync while running: %d %s", code, body)
	}
	do("GET", "/api/v1/applications/web", s.Token, "")
	if _, body := do("GET", "/api/v1/applications/web", s.Token, ""); !strings.Contains(body, `"revision":"abc","status":"Synced"`) {
		t.Errorf("after the sync: %s", body)
	}
}
