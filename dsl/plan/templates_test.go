package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fillTemplates sets every Template in v (a pointer) to a template with one
// reference, and makes every nil pointer, slice and map non-empty, so that
// the walker's coverage of all kinds can be checked.
func fillTemplates(v reflect.Value, n *int) {
	switch {
	case v.Type() == templateType:
		*n++
		v.Set(reflect.ValueOf(tmpl("<", out("s", "o"), ">")))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fillTemplates(v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillTemplates(v.Field(i), n)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		for i := range v.Len() {
			fillTemplates(v.Index(i), n)
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.Set(reflect.MakeMap(v.Type()))
			k := reflect.New(v.Type().Key()).Elem()
			if k.Kind() == reflect.String {
				k.SetString("k")
			}
			e := reflect.New(v.Type().Elem())
			fillTemplates(e.Elem(), n)
			v.SetMapIndex(k, e.Elem())
		}
	}
}

func TestMapTemplatesCoversEveryKind(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			s := Step{Name: "x", Kind: kind}
			s.SetConfig(KindConfig(kind))
			n := 0
			fillTemplates(reflect.ValueOf(&s).Elem(), &n)
			before := cloneJSON(t, s)

			var seen int
			got, err := MapTemplates(s, func(tp Template) (Template, error) {
				seen++
				v, err := tp.Resolve(func(r Ref) (string, error) { return "V", nil })
				return Lit(v), err
			})
			if err != nil {
				t.Fatal(err)
			}
			if seen != n || n == 0 {
				t.Errorf("walked %d templates, the step holds %d", seen, n)
			}
			Templates(got, func(path string, tp Template) {
				if !tp.IsLiteral() || tp.Literal() != "<V>" {
					t.Errorf("%s = %s after substitution", path, tp)
				}
			})
			if diff := cmp.Diff(before, cloneJSON(t, s)); diff != "" {
				t.Errorf("MapTemplates changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestMapTemplatesErrorIsDeterministic(t *testing.T) {
	s := Step{Name: "s", Kind: KindRun, Run: &RunStep{Command: []Template{Lit("ok")}}}
	s.Env = map[string]Template{}
	for _, k := range []string{"Z", "A", "M", "B", "Q"} {
		s.Env[k] = tmpl(out("s", k))
	}
	fail := func(tp Template) (Template, error) {
		if tp.IsLiteral() {
			return tp, nil
		}
		return tp, errors.New("unresolved " + tp.Refs()[0].Output)
	}
	for range 20 {
		_, err := MapTemplates(s, fail)
		if err == nil || err.Error() != "Env[A]: unresolved A" {
			t.Fatalf("error %v, want the first key in order", err)
		}
	}
}

// tmpl builds a template from strings (literal text) and Refs.
func tmpl(parts ...any) Template {
	var t Template
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			t.Append(Part{Lit: p})
		case Ref:
			r := p
			t.Append(Part{Ref: &r})
		default:
			panic(fmt.Sprintf("tmpl: %T", p))
		}
	}
	return t
}

func out(step, output string) Ref { return Ref{Step: step, Output: output} }

func cloneJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCompactJSONIsMarshal checks that the parallel encoding behind the
// digest gives exactly json.Marshal's bytes, for a plan large enough to use
// it, with text that JSON escapes.
func TestCompactJSONIsMarshal(t *testing.T) {
	p := &Plan{Pipeline: `p "stages":null, <&>`, Vars: map[string]json.RawMessage{"v": json.RawMessage(`"x"`)}}
	for i := range 200 {
		p.Stages = append(p.Stages, Stage{ID: fmt.Sprintf("s%d", i), Name: "s<>&\u2028", Needs: []string{"a"},
			Steps: []Step{{Name: "x", Kind: KindRun, Run: &RunStep{Command: []Template{tmpl("a", out("b", "c"))}}}}})
	}
	want, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.compactJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("compactJSON differs from json.Marshal:\n%s\n%s", got, want)
	}
	// Seal hashes the same bytes as they are written.
	if err := p.Seal(); err != nil {
		t.Fatal(err)
	}
	digest := p.Digest
	p.Digest = ""
	want, err = json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(want); digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("Seal's digest %s is not the SHA-256 of the plan's JSON", digest)
	}
}

// TestJSONStringIsMarshal checks the quick string encoding of literal
// templates against encoding/json, for every byte and some text that JSON
// escapes.
func TestJSONStringIsMarshal(t *testing.T) {
	cases := []string{"", "plain text", "go test ./... -run x", `a"b`, `a\b`, "<&>", "\u2028\u2029", "é", "\xff", "tab\there", "\x7f"}
	for c := range 256 {
		cases = append(cases, "x"+string(rune(c))+"y", "x"+string([]byte{byte(c)})+"y")
	}
	for _, s := range cases {
		got, err := jsonString(s)
		want, _ := json.Marshal(s)
		if err != nil || string(got) != string(want) {
			t.Errorf("jsonString(%q) = %s, %v; json.Marshal gives %s", s, got, err, want)
		}
	}
}

// TestTemplateMarshalJSON checks the hand-written encoding of templates
// against encoding/json's encoding of the same values: a string for a
// literal template, {"template": [parts]} for one with references.
func TestTemplateMarshalJSON(t *testing.T) {
	templates := []Template{
		{},
		Lit("plain"),
		Lit("<&> \"quoted\" \u2028"),
		{Parts: []Part{{Lit: "a"}, {Lit: "b"}}},
		tmpl("go test # ", out("build", "artifact")),
		tmpl(Ref{Secret: "token"}),
		tmpl("a\tb ", out("s<1>", "o&"), " c", Ref{Secret: "é"}),
		tmpl(Ref{}),
	}
	for _, tt := range templates {
		var want []byte
		if tt.IsLiteral() {
			want, _ = json.Marshal(tt.Literal())
		} else {
			items := make([]any, len(tt.Parts))
			for i, p := range tt.Parts {
				items[i] = p.Lit
				if p.Ref != nil {
					items[i] = p.Ref
				}
			}
			want, _ = json.Marshal(struct {
				Template []any `json:"template"`
			}{items})
		}
		got, err := tt.MarshalJSON()
		if err != nil || string(got) != string(want) {
			t.Errorf("MarshalJSON of %#v = %s, %v; want %s", tt, got, err, want)
		}
	}
}
