package plan

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Ref is a value known only at run time: the output of an earlier step, or
// a secret that the runner resolves. Refs stay symbolic in the plan so that
// no run-time value, and above all no secret, passes through compilation.
type Ref struct {
	Step   string `json:"step,omitempty"`
	Output string `json:"output,omitempty"`
	Secret string `json:"secret,omitempty"`
}

// String gives the reference as it is written in a pipeline file.
func (r Ref) String() string {
	if r.Secret != "" {
		return "secret." + r.Secret
	}
	return "step." + r.Step + "." + r.Output
}

// Part is a piece of a Template: literal text, or a Ref.
type Part struct {
	Lit string
	Ref *Ref
}

// Template is a string that may contain run-time references. A template
// without references is a plain string, and is encoded as one in JSON;
// otherwise it is encoded as {"template": [...]} whose items are strings
// (literal text) and Ref objects.
type Template struct {
	Parts []Part
}

// Lit returns a template holding only literal text.
func Lit(s string) Template {
	if s == "" {
		return Template{}
	}
	return Template{Parts: []Part{{Lit: s}}}
}

// IsLiteral reports whether the template holds no references.
func (t Template) IsLiteral() bool {
	for _, p := range t.Parts {
		if p.Ref != nil {
			return false
		}
	}
	return true
}

// Literal returns the text of a template that holds no references. It
// panics on a template with references: callers check IsLiteral first.
func (t Template) Literal() string {
	var b strings.Builder
	for _, p := range t.Parts {
		if p.Ref != nil {
			panic("plan: Literal called on a template with references")
		}
		b.WriteString(p.Lit)
	}
	return b.String()
}

// IsZero reports whether the template is the empty string.
func (t Template) IsZero() bool { return len(t.Parts) == 0 }

// Refs returns the references of the template in order.
func (t Template) Refs() []Ref {
	var refs []Ref
	for _, p := range t.Parts {
		if p.Ref != nil {
			refs = append(refs, *p.Ref)
		}
	}
	return refs
}

// Resolve replaces every reference with the value lookup gives for it.
func (t Template) Resolve(lookup func(Ref) (string, error)) (string, error) {
	var b strings.Builder
	for _, p := range t.Parts {
		if p.Ref == nil {
			b.WriteString(p.Lit)
			continue
		}
		v, err := lookup(*p.Ref)
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", p.Ref, err)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// String shows the template as pipeline source would write it, with
// references as ${...} interpolations. It is for humans, not for parsing.
func (t Template) String() string {
	var b strings.Builder
	for _, p := range t.Parts {
		if p.Ref != nil {
			b.WriteString("${" + p.Ref.String() + "}")
			continue
		}
		b.WriteString(p.Lit)
	}
	return b.String()
}

// Append adds a part, merging adjacent literal text.
func (t *Template) Append(p Part) {
	if p.Ref == nil {
		if p.Lit == "" {
			return
		}
		if n := len(t.Parts); n > 0 && t.Parts[n-1].Ref == nil {
			t.Parts[n-1].Lit += p.Lit
			return
		}
	}
	t.Parts = append(t.Parts, p)
}

// MarshalJSON encodes a literal template as a JSON string, and one with
// references as {"template": [parts]}, each part a string or a Ref. It
// writes what encoding/json would write for those values, by hand: plans
// hold thousands of templates, and their encoding is much of Seal's cost.
func (t Template) MarshalJSON() ([]byte, error) {
	switch {
	case len(t.Parts) == 0:
		return []byte(`""`), nil
	case len(t.Parts) == 1 && t.Parts[0].Ref == nil:
		return jsonString(t.Parts[0].Lit)
	case t.IsLiteral():
		var b strings.Builder
		for _, p := range t.Parts {
			b.WriteString(p.Lit)
		}
		return jsonString(b.String())
	}
	size := 16
	for _, p := range t.Parts {
		size += len(p.Lit) + 3
		if p.Ref != nil {
			size += len(p.Ref.Step) + len(p.Ref.Output) + len(p.Ref.Secret) + 32
		}
	}
	b := append(make([]byte, 0, size), `{"template":[`...)
	for i, p := range t.Parts {
		if i > 0 {
			b = append(b, ',')
		}
		if p.Ref == nil {
			b = appendJSONString(b, p.Lit)
			continue
		}
		b = append(b, '{')
		first := true
		for _, f := range [...]struct{ name, value string }{{"step", p.Ref.Step}, {"output", p.Ref.Output}, {"secret", p.Ref.Secret}} {
			if f.value == "" { // omitempty, as Ref's tags say
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, '"')
			b = append(b, f.name...)
			b = append(b, '"', ':')
			b = appendJSONString(b, f.value)
		}
		b = append(b, '}')
	}
	return append(b, ']', '}'), nil
}

// jsonString is json.Marshal(s).
func jsonString(s string) ([]byte, error) {
	return appendJSONString(make([]byte, 0, len(s)+2), s), nil
}

// appendJSONString appends s encoded as json.Marshal encodes it. Most
// strings in a plan are printable ASCII that JSON does not escape: those
// are quoted here without encoding/json's machinery.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, err := json.Marshal(s)
			if err != nil {
				panic(err) // a string always encodes
			}
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// UnmarshalJSON accepts both encodings MarshalJSON produces.
func (t *Template) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*t = Lit(s)
		return nil
	}
	var obj struct {
		Template []json.RawMessage `json:"template"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("decoding template: want a string or {\"template\": [...]}: %w", err)
	}
	*t = Template{}
	for _, raw := range obj.Template {
		if err := json.Unmarshal(raw, &s); err == nil {
			t.Append(Part{Lit: s})
			continue
		}
		var r Ref
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("decoding template part %s: %w", raw, err)
		}
		if (r.Secret == "") == (r.Step == "" || r.Output == "") {
			return fmt.Errorf("decoding template part %s: a reference names either a secret or a step and an output", raw)
		}
		t.Parts = append(t.Parts, Part{Ref: &r})
	}
	return nil
}

// Duration is a time.Duration that reads and writes as a Go duration string
// such as "1h30m0s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return jsonString(d.String())
}

// String writes the duration without zero units: "24h", "1h30m", "90ms".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("decoding duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("decoding duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
