package harbortest

import (
	"bytes"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
)

func get(t *testing.T, s *Server, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("robot$ci", "s3cret")
	req.Header.Set("X-Accept-Vulnerabilities", MimeGeneric)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func artifactPath(repo, digest string) string {
	project, name, _ := strings.Cut(repo, "/")
	return "/api/v2.0/projects/" + project + "/repositories/" + url.PathEscape(url.PathEscape(name)) + "/artifacts/" + digest
}

func digestOf(ref string) string { _, d, _ := strings.Cut(ref, "@"); return d }

// TestValidationCatchesMalformedResponse shows that the fake can fail a
// test: a response that breaks Harbor's API description is a violation.
func TestValidationCatchesMalformedResponse(t *testing.T) {
	for _, tc := range []struct {
		name, op, path string
		malform        func([]byte) []byte
		want           string
	}{
		{
			name: "artifact id of the wrong type", op: "getArtifact",
			malform: func(b []byte) []byte { return bytes.Replace(b, []byte(`"id":1`), []byte(`"id":"one"`), 1) },
			want:    "getArtifact",
		},
		{
			name: "report severity Harbor does not have", op: "getVulnerabilitiesAddition", path: "/additions/vulnerabilities",
			malform: func(b []byte) []byte { return bytes.Replace(b, []byte(`"High"`), []byte(`"Severe"`), -1) },
			want:    "report shape",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(Options{
				Findings: []Finding{{ID: "CVE-2024-1", Package: "openssl", Version: "3.0.1", Severity: "High"}},
				Malform: func(op string, b []byte) []byte {
					if op == tc.op {
						return tc.malform(b)
					}
					return b
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ref := s.Push(t, "web/api")
			s.StartScan(digestOf(ref))
			get(t, s, artifactPath("web/api", digestOf(ref))+tc.path)
			v := s.Violations()
			if len(v) != 1 || !strings.Contains(v[0], tc.want) {
				t.Fatalf("violations = %q, want one about %s", v, tc.want)
			}
		})
	}
}

// TestValidationCatchesMalformedRequest: a repository name with slashes
// encoded once is not a path of Harbor's API.
func TestValidationCatchesMalformedRequest(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ref := s.Push(t, "web/team/api")
	resp := get(t, s, "/api/v2.0/projects/web/repositories/team%2Fapi/artifacts/"+digestOf(ref))
	if v := s.Violations(); len(v) != 1 || !strings.Contains(v[0], "not encoded twice") || resp.StatusCode == http.StatusOK {
		t.Fatalf("status %d, violations %q; want a violation for the once-encoded repository", resp.StatusCode, v)
	}

	s2 := New(t, Options{})
	ref = s2.Push(t, "web/team/api")
	if resp := get(t, s2, artifactPath("web/team/api", digestOf(ref))); resp.StatusCode != http.StatusOK {
		t.Fatalf("twice-encoded repository: status %d, want 200", resp.StatusCode)
	}
}

// The fake obeys the API description of the go-client version the scan
// step is built with.
func TestClientVersion(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", ClientModule).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", ClientModule, err)
	}
	if got := strings.TrimSpace(string(out)); got != ClientVersion {
		t.Errorf("go.mod requires %s %s; the fake checks against %s: update ClientVersion", ClientModule, got, ClientVersion)
	}
}
