package webhook

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testSecret     = "new-secret"
	rotatedSecret  = "old-secret"
	testDeliveryID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
)

// testVerifier accepts the current secret and, during rotation, the old one.
func testVerifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := NewVerifier([]string{testSecret, rotatedSecret})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fixture returns a payload of testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post builds a delivery as GitHub sends it: JSON, signed with testSecret.
func post(event string, body []byte) *http.Request {
	r, err := http.NewRequest(http.MethodPost, "http://sluice.example/webhooks/github", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	r.Header.Set("X-GitHub-Event", event)
	r.Header.Set("X-GitHub-Delivery", testDeliveryID)
	r.Header.Set("X-Hub-Signature-256", Sign(testSecret, body))
	return r
}

func TestSign(t *testing.T) {
	// GitHub's documented test vector.
	got := Sign("It's a Secret to Everybody", []byte("Hello, World!"))
	want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestNewVerifier(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		wantErr string
	}{
		{name: "nil", secrets: nil, wantErr: "no webhook secret configured"},
		{name: "empty list", secrets: []string{}, wantErr: "no webhook secret configured"},
		{name: "one empty secret", secrets: []string{""}, wantErr: "secret 1 of 1 is empty"},
		{name: "empty secret beside a good one", secrets: []string{"good", ""}, wantErr: "secret 2 of 2 is empty"},
		{name: "one secret", secrets: []string{"good"}},
		{name: "two secrets", secrets: []string{"good", "older"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.secrets)
			if tt.wantErr == "" {
				if err != nil || v == nil {
					t.Fatalf("NewVerifier = %v, %v; want a verifier", v, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewVerifier(%q) succeeded, want an error", tt.secrets)
			}
			for _, want := range []string{tt.wantErr, "SLUICE_GITHUB_WEBHOOK_SECRET", "webhook_secrets in server.hcl"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestRead(t *testing.T) {
	push := fixture(t, "push/with-new-branch.payload.json")
	form := []byte(url.Values{"payload": {string(push)}}.Encode())
	formNoPayload := []byte(url.Values{"other": {string(push)}}.Encode())

	tests := []struct {
		name        string
		req         func() *http.Request
		wantStatus  int    // 0: accepted
		wantMessage string // a part of the refusal's message
		wantPayload []byte // for an accepted delivery; nil: the body
	}{
		{
			name: "valid JSON delivery",
			req:  func() *http.Request { return post("push", push) },
		},
		{
			name: "JSON with charset parameter",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Set("Content-Type", "application/json; charset=utf-8")
				return r
			},
		},
		{
			name: "second of two secrets (rotation)",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Set("X-Hub-Signature-256", Sign(rotatedSecret, push))
				return r
			},
		},
		{
			name: "uppercase hex signature",
			req: func() *http.Request {
				r := post("push", push)
				sig := Sign(testSecret, push)
				r.Header.Set("X-Hub-Signature-256", "sha256="+strings.ToUpper(strings.TrimPrefix(sig, "sha256=")))
				return r
			},
		},
		{
			name: "form-encoded, signed over the raw form body",
			req: func() *http.Request {
				r := post("push", form)
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			},
			wantPayload: push,
		},
		{
			name: "missing X-Hub-Signature-256",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Del("X-Hub-Signature-256")
				return r
			},
			wantStatus: http.StatusUnauthorized, wantMessage: "missing X-Hub-Signature-256 header",
		},
		{
			name: "flipped byte in body",
			req: func() *http.Request {
				r := post("push", push)
				tampered := bytes.Clone(push)
				tampered[len(tampered)/2] ^= 0x01
				r.Body = io.NopCloser(bytes.NewReader(tampered))
				return r
			},
			wantStatus: http.StatusUnauthorized, wantMessage: "does not match the body for any configured webhook secret",
		},
		{
			name: "SHA-1 signature only",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Del("X-Hub-Signature-256")
				r.Header.Set("X-Hub-Signature", "sha1=0123456789abcdef0123456789abcdef01234567")
				return r
			},
			wantStatus: http.StatusUnauthorized, wantMessage: "X-Hub-Signature-256 is required",
		},
		{
			name: "unknown secret",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Set("X-Hub-Signature-256", Sign("someone-else's", push))
				return r
			},
			wantStatus: http.StatusUnauthorized, wantMessage: "does not match the body for any configured webhook secret",
		},
		{
			name: "signature without sha256= prefix",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Set("X-Hub-Signature-256", strings.TrimPrefix(Sign(testSecret, push), "sha256="))
				return r
			},
			wantStatus: http.StatusUnauthorized, wantMessage: "malformed X-Hub-Signature-256",
		},
		{
			name: "signature not hex",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Set("X-Hub-Signature-256", "sha256=not-hex")
				return r
			},
			wantStatus: http.StatusUnauthorized, wantMessage: "malformed X-Hub-Signature-256",
		},
		{
			name:       "malformed JSON, signed correctly",
			req:        func() *http.Request { return post("push", []byte(`{"ref": "refs/heads/main",`)) },
			wantStatus: http.StatusBadRequest, wantMessage: "malformed JSON: ",
		},
		{
			name:       "JSON that is not an object",
			req:        func() *http.Request { return post("push", []byte(`["refs/heads/main"]`)) },
			wantStatus: http.StatusBadRequest, wantMessage: "malformed JSON: the payload is not a JSON object",
		},
		{
			name:       "empty body",
			req:        func() *http.Request { return post("push", nil) },
			wantStatus: http.StatusBadRequest, wantMessage: "malformed JSON: ",
		},
		{
			name: "form without payload field",
			req: func() *http.Request {
				r := post("push", formNoPayload)
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			},
			wantStatus: http.StatusBadRequest, wantMessage: `form body has no "payload" field`,
		},
		{
			name: "form payload field that is not JSON",
			req: func() *http.Request {
				r := post("push", []byte("payload=hello"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			},
			wantStatus: http.StatusBadRequest, wantMessage: "malformed JSON: ",
		},
		{
			name: "GET",
			req: func() *http.Request {
				r := post("push", push)
				r.Method = http.MethodGet
				return r
			},
			wantStatus: http.StatusMethodNotAllowed, wantMessage: "method GET not allowed",
		},
		{
			name: "missing X-GitHub-Event",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Del("X-GitHub-Event")
				return r
			},
			wantStatus: http.StatusBadRequest, wantMessage: "missing X-GitHub-Event header",
		},
		{
			name: "missing X-GitHub-Delivery",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Del("X-GitHub-Delivery")
				return r
			},
			wantStatus: http.StatusBadRequest, wantMessage: "missing X-GitHub-Delivery header",
		},
		{
			name: "text/plain",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Set("Content-Type", "text/plain")
				return r
			},
			wantStatus: http.StatusUnsupportedMediaType, wantMessage: `unsupported Content-Type "text/plain"`,
		},
		{
			name: "missing Content-Type",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Del("Content-Type")
				return r
			},
			wantStatus: http.StatusUnsupportedMediaType, wantMessage: "missing Content-Type",
		},
		{
			// The method is checked before anything else.
			name: "GET without headers or signature",
			req: func() *http.Request {
				r, _ := http.NewRequest(http.MethodGet, "http://sluice.example/webhooks/github", nil)
				return r
			},
			wantStatus: http.StatusMethodNotAllowed, wantMessage: "POST",
		},
		{
			// The content type is checked before the signature.
			name: "unsigned text/plain",
			req: func() *http.Request {
				r := post("push", push)
				r.Header.Del("X-Hub-Signature-256")
				r.Header.Set("Content-Type", "text/plain")
				return r
			},
			wantStatus: http.StatusUnsupportedMediaType, wantMessage: "text/plain",
		},
		{
			// The signature is checked before the payload is decoded.
			name: "malformed JSON with a bad signature",
			req: func() *http.Request {
				r := post("push", []byte(`{`))
				r.Header.Set("X-Hub-Signature-256", Sign("someone-else's", []byte(`{`)))
				return r
			},
			wantStatus: http.StatusUnauthorized, wantMessage: "does not match",
		},
	}
	v := testVerifier(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req()
			d, herr := v.Read(r)
			if tt.wantStatus == 0 {
				if herr != nil {
					t.Fatalf("Read refused: %v", herr)
				}
				if d.ID != testDeliveryID || d.Event != "push" {
					t.Errorf("Read = ID %q, Event %q; want %q, push", d.ID, d.Event, testDeliveryID)
				}
				want := tt.wantPayload
				if want == nil {
					want = push
				}
				if !bytes.Equal(d.Payload, want) {
					t.Errorf("Payload = %.80q..., want %.80q...", d.Payload, want)
				}
				return
			}
			if herr == nil {
				t.Fatalf("Read accepted the delivery, want %d", tt.wantStatus)
			}
			if d != nil {
				t.Errorf("Read returned a delivery with its refusal")
			}
			if herr.Status != tt.wantStatus || !strings.Contains(herr.Message, tt.wantMessage) {
				t.Errorf("Read refused with %d %q, want %d containing %q", herr.Status, herr.Message, tt.wantStatus, tt.wantMessage)
			}
			for _, s := range []string{testSecret, rotatedSecret} {
				if strings.Contains(herr.Message, s) {
					t.Errorf("message %q reveals a secret", herr.Message)
				}
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Status: http.StatusUnauthorized, Message: "missing X-Hub-Signature-256 header"}
	want := "webhook refused (401 Unauthorized): missing X-Hub-Signature-256 header"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

// endless is a body that never ends, counting what is read of it.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	e.read += int64(len(p))
	return len(p), nil
}

// sized is a body of n bytes, counting what is read of it.
type sized struct {
	r    io.Reader
	read int64
}

func (s *sized) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.read += int64(n)
	return n, err
}

func TestReadSizeCap(t *testing.T) {
	// A JSON object of exactly n bytes.
	object := func(n int) []byte {
		b := bytes.Repeat([]byte(" "), n)
		copy(b, `{"padding":"`)
		copy(b[n-2:], `"}`)
		return b
	}
	exact := object(MaxBody)
	over := object(MaxBody + 1)

	tests := []struct {
		name          string
		body          io.Reader
		contentLength int64 // -1: unknown (chunked)
		sig           []byte
		wantStatus    int   // 0: accepted
		wantMaxRead   int64 // the most the reader may have been read
	}{
		{
			name: "endless chunked body", body: &endless{}, contentLength: -1, sig: []byte("{}"),
			wantStatus: http.StatusRequestEntityTooLarge, wantMaxRead: MaxBody + 1,
		},
		{
			name: "one byte over, length unknown", body: &sized{r: bytes.NewReader(over)}, contentLength: -1, sig: over,
			wantStatus: http.StatusRequestEntityTooLarge, wantMaxRead: MaxBody + 1,
		},
		{
			name: "declared Content-Length over the cap is refused unread", body: &endless{}, contentLength: MaxBody + 1, sig: []byte("{}"),
			wantStatus: http.StatusRequestEntityTooLarge, wantMaxRead: 0,
		},
		{
			name: "exactly MaxBody accepted", body: &sized{r: bytes.NewReader(exact)}, contentLength: MaxBody, sig: exact,
			wantMaxRead: MaxBody + 1,
		},
	}
	v := testVerifier(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post("push", nil)
			r.Body = io.NopCloser(tt.body)
			r.ContentLength = tt.contentLength
			r.Header.Set("X-Hub-Signature-256", Sign(testSecret, tt.sig))
			d, herr := v.Read(r)
			var read int64
			switch b := tt.body.(type) {
			case *endless:
				read = b.read
			case *sized:
				read = b.read
			}
			if read > tt.wantMaxRead {
				t.Errorf("read %d bytes of the body, want at most %d", read, tt.wantMaxRead)
			}
			if tt.wantStatus == 0 {
				if herr != nil {
					t.Fatalf("Read refused: %v", herr)
				}
				if len(d.Payload) != MaxBody {
					t.Errorf("payload is %d bytes, want %d", len(d.Payload), MaxBody)
				}
				return
			}
			if herr == nil {
				t.Fatalf("Read accepted a body over MaxBody")
			}
			if herr.Status != tt.wantStatus || !strings.Contains(herr.Message, "larger than 26214400 bytes") {
				t.Errorf("Read refused with %d %q, want %d saying the body is too large", herr.Status, herr.Message, tt.wantStatus)
			}
		})
	}
}

func BenchmarkRead(b *testing.B) {
	v := testVerifier(b)
	body := fixture(b, "pull_request/opened.payload.json")
	sig := Sign(testSecret, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := post("pull_request", nil)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.Header.Set("X-Hub-Signature-256", sig)
		d, herr := v.Read(r)
		if herr != nil {
			b.Fatal(herr)
		}
		if _, err := Parse(d); err != nil {
			b.Fatal(err)
		}
	}
}
