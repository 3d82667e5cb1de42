package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// MaxBody is the largest delivery accepted: GitHub sends none bigger
// (it caps payloads at 25 MiB), so anything larger is not from GitHub and
// is refused before it is buffered.
const MaxBody = 25 << 20

// Header names of GitHub's webhook contract.
const (
	headerEvent       = "X-GitHub-Event"
	headerDelivery    = "X-GitHub-Delivery"
	headerSig256      = "X-Hub-Signature-256"
	headerSig1        = "X-Hub-Signature"
	sig256Prefix      = "sha256="
	contentTypeJSON   = "application/json"
	contentTypeForm   = "application/x-www-form-urlencoded"
	formPayloadField  = "payload"
	maxEchoedValueLen = 100
)

// Verifier checks webhook deliveries against the configured secrets. It
// holds several secrets so that one can be rotated (add the new one, change
// it on GitHub, then drop the old one) without refusing deliveries in
// between. A Verifier is safe for concurrent use.
type Verifier struct {
	secrets [][]byte
}

// NewVerifier returns a Verifier accepting deliveries signed with any of
// secrets. It refuses an empty list or an empty secret, because a server
// that verifies against nothing would accept anyone's forged events.
func NewVerifier(secrets []string) (*Verifier, error) {
	const hint = "set SLUICE_GITHUB_WEBHOOK_SECRET or webhook_secrets in server.hcl"
	if len(secrets) == 0 {
		return nil, fmt.Errorf("no webhook secret configured: %s", hint)
	}
	v := &Verifier{secrets: make([][]byte, len(secrets))}
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("webhook secret %d of %d is empty: %s", i+1, len(secrets), hint)
		}
		v.secrets[i] = []byte(s)
	}
	return v, nil
}

// Delivery is a verified delivery: its body carried a valid signature.
// Only Payload is covered by that signature; ID and Event come from
// unsigned headers.
type Delivery struct {
	ID      string // X-GitHub-Delivery: a GUID, the same for a redelivery
	Event   string // X-GitHub-Event: the event name, e.g. "push"
	Payload []byte // the JSON payload (decoded from the form when form-encoded)
}

// Error is a refused request: the HTTP status to answer and a message for
// the body, so the handler can reply without knowing why Read refused.
// For 405 the handler should also set "Allow: POST".
type Error struct {
	Status  int
	Message string
}

// Error returns the status and the message, for logs.
func (e *Error) Error() string {
	return fmt.Sprintf("webhook refused (%d %s): %s", e.Status, http.StatusText(e.Status), e.Message)
}

func refuse(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Read checks r and returns its verified delivery, or the refusal to
// answer. The checks run in this order, cheapest and least trusting first:
// the method (POST, else 405); the X-GitHub-Event and X-GitHub-Delivery
// headers (else 400); the content type (JSON or form, else 415); the body,
// read through http.MaxBytesReader capped at MaxBody (else 413); the
// signature (else 401); then the payload, which must be a JSON object
// (else 400). Read does not close r.Body; the HTTP server does.
func (v *Verifier) Read(r *http.Request) (*Delivery, *Error) {
	if r.Method != http.MethodPost {
		return nil, refuse(http.StatusMethodNotAllowed, "method %s not allowed: GitHub webhooks are delivered with POST", clip(r.Method))
	}
	event := r.Header.Get(headerEvent)
	if event == "" {
		return nil, refuse(http.StatusBadRequest, "missing %s header", headerEvent)
	}
	id := r.Header.Get(headerDelivery)
	if id == "" {
		return nil, refuse(http.StatusBadRequest, "missing %s header", headerDelivery)
	}
	form, herr := contentType(r.Header.Get("Content-Type"))
	if herr != nil {
		return nil, herr
	}
	body, herr := readBody(r)
	if herr != nil {
		return nil, herr
	}
	if herr := v.check(r.Header, body); herr != nil {
		return nil, herr
	}
	payload := body
	if form {
		values, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, refuse(http.StatusBadRequest, "malformed form body: %v", err)
		}
		if _, ok := values[formPayloadField]; !ok {
			return nil, refuse(http.StatusBadRequest, "form body has no %q field", formPayloadField)
		}
		payload = []byte(values.Get(formPayloadField))
	}
	if herr := checkObject(payload); herr != nil {
		return nil, herr
	}
	return &Delivery{ID: id, Event: event, Payload: payload}, nil
}

// contentType reports whether the body is form-encoded, or refuses a media
// type GitHub does not send.
func contentType(header string) (form bool, _ *Error) {
	const want = "Content-Type must be " + contentTypeJSON + " or " + contentTypeForm
	if header == "" {
		return false, refuse(http.StatusUnsupportedMediaType, "missing Content-Type: %s", want)
	}
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return false, refuse(http.StatusUnsupportedMediaType, "malformed Content-Type %q: %s", clip(header), want)
	}
	switch mt {
	case contentTypeJSON:
		return false, nil
	case contentTypeForm:
		return true, nil
	}
	return false, refuse(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: %s", clip(mt), want)
}

// readBody reads the whole body, but never more than MaxBody+1 bytes of it.
func readBody(r *http.Request) ([]byte, *Error) {
	tooLarge := refuse(http.StatusRequestEntityTooLarge, "body larger than %d bytes: GitHub sends no payload over 25 MiB", MaxBody)
	if r.ContentLength > MaxBody {
		return nil, tooLarge
	}
	if r.Body == nil {
		return nil, refuse(http.StatusBadRequest, "empty body")
	}
	// The ResponseWriter is not at hand; MaxBytesReader accepts nil and
	// then only limits the read, which is all this needs.
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, refuse(http.StatusBadRequest, "reading body: %v", err)
	}
	return body, nil
}

// check verifies the X-Hub-Signature-256 header of body against every
// secret. It compares against all of them whichever matches, so the time
// taken does not tell which secret is in use.
func (v *Verifier) check(h http.Header, body []byte) *Error {
	sig := h.Get(headerSig256)
	if sig == "" {
		if h.Get(headerSig1) != "" {
			return refuse(http.StatusUnauthorized, "only the legacy SHA-1 %s header was sent: %s is required (SHA-256)", headerSig1, headerSig256)
		}
		return refuse(http.StatusUnauthorized, "missing %s header", headerSig256)
	}
	hexSum, ok := strings.CutPrefix(sig, sig256Prefix)
	if !ok {
		return refuse(http.StatusUnauthorized, "malformed %s header: want %s followed by a hex HMAC-SHA256", headerSig256, sig256Prefix)
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return refuse(http.StatusUnauthorized, "malformed %s header: want %s followed by a hex HMAC-SHA256", headerSig256, sig256Prefix)
	}
	match := false
	for _, secret := range v.secrets {
		if hmac.Equal(got, sum(secret, body)) {
			match = true
		}
	}
	if !match {
		return refuse(http.StatusUnauthorized, "%s does not match the body for any configured webhook secret", headerSig256)
	}
	return nil
}

// checkObject refuses a payload that is not one JSON object, the only shape
// GitHub sends, so Parse never sees anything else from Read.
func checkObject(payload []byte) *Error {
	if !json.Valid(payload) {
		var v any
		err := json.Unmarshal(payload, &v)
		if err == nil { // cannot happen: json.Valid said no
			err = errors.New("invalid JSON")
		}
		return refuse(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	if trimmed := bytes.TrimLeft(payload, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		return nil
	}
	return refuse(http.StatusBadRequest, "malformed JSON: the payload is not a JSON object")
}

func sum(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(nil)
}

// Sign returns the X-Hub-Signature-256 header value for body with secret,
// exactly as GitHub computes it: tests, the benchmark and the git hook
// client use it to produce deliveries that Read accepts.
func Sign(secret string, body []byte) string {
	return sig256Prefix + hex.EncodeToString(sum([]byte(secret), body))
}

// clip shortens a client-supplied value before it is echoed in a message.
func clip(s string) string {
	if len(s) > maxEchoedValueLen {
		return s[:maxEchoedValueLen] + "..."
	}
	return s
}
