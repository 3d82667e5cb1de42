package gitops

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// doc is a YAML file being edited. Changes to existing scalars (a value,
// or a key renamed) are patched into the original text, so that
// everything else of the file stays byte for byte; a change of structure
// (a key or list entry added or removed) re-encodes the file with kyaml,
// which keeps comments, key order and the list indentation but not blank
// lines.
type doc struct {
	src     string
	top     *yaml.Node // the document node
	root    *yaml.Node // its mapping
	patches []patch
	rewrite bool
}

// patch replaces the scalar that started at line:col and read old.
type patch struct {
	line, col int
	old       string
	style     yaml.Style
	text      string
}

func parseDoc(src []byte) (*doc, error) {
	d := &doc{src: string(src)}
	if strings.TrimSpace(d.src) == "" {
		d.root = &yaml.Node{Kind: yaml.MappingNode}
		d.top = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{d.root}}
		d.rewrite = true
		return d, nil
	}
	rn, err := yaml.Parse(d.src)
	if err != nil {
		return nil, fmt.Errorf("the file is not valid YAML: %w", err)
	}
	d.top = rn.YNode()
	d.root = d.top
	if d.top.Kind == yaml.DocumentNode && len(d.top.Content) == 1 {
		d.root = d.top.Content[0]
	}
	if d.root.Kind == yaml.ScalarNode && d.root.Tag == "!!null" {
		*d.root = yaml.Node{Kind: yaml.MappingNode}
		d.rewrite = true
	}
	if d.root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the file's top level is not a map of keys")
	}
	return d, nil
}

// field returns the key and value nodes of key in the mapping m.
func field(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// scalar returns the value of key in m when it is a scalar.
func scalar(m *yaml.Node, key string) string {
	if _, v := field(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// set gives the scalar n the string value v.
func (d *doc) set(n *yaml.Node, v string) {
	if n.Kind == yaml.ScalarNode && n.Value == v {
		return
	}
	if n.Kind != yaml.ScalarNode || n.Line == 0 {
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
		d.rewrite = true
		return
	}
	p := patch{line: n.Line, col: n.Column, old: n.Value, style: n.Style}
	n.Value, n.Tag = v, "!!str"
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		n.Style = 0
	}
	text, err := yaml.String(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: n.Style}, yaml.Trim)
	if err != nil || strings.Contains(text, "\n") {
		d.rewrite = true
		return
	}
	p.text = text
	d.patches = append(d.patches, p)
}

// put sets key in m to v, adding the key when m has none.
func (d *doc) put(m *yaml.Node, key, v string) {
	if _, n := field(m, key); n != nil {
		d.set(n, v)
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v})
	d.rewrite = true
}

// rename renames key from to to, keeping its place, and sets its value.
func (d *doc) rename(m *yaml.Node, from, to, v string) {
	k, n := field(m, from)
	d.set(k, to)
	d.set(n, v)
}

func (d *doc) del(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			d.rewrite = true
			return
		}
	}
}

// child returns the mapping or sequence at key in m, adding an empty one
// of that kind when m has none.
func (d *doc) child(m *yaml.Node, key string, kind yaml.Kind) (*yaml.Node, error) {
	_, v := field(m, key)
	if v == nil || (v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
		n := &yaml.Node{Kind: kind}
		if v == nil {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, n)
		} else {
			*v = *n
			n = v
		}
		d.rewrite = true
		return n, nil
	}
	if v.Kind != kind {
		return nil, fmt.Errorf("%q is %s, where a %s was expected", key, kindName(v.Kind), kindName(kind))
	}
	return v, nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "an alias"
}

// bytes writes the edited document.
func (d *doc) bytes() ([]byte, error) {
	if d.rewrite {
		var b bytes.Buffer
		style := yaml.CompactSequenceStyle
		if d.src != "" {
			style = yaml.SequenceIndentStyle(yaml.DeriveSeqIndentStyle(d.src))
		}
		e := yaml.NewEncoderWithOptions(&b, &yaml.EncoderOptions{SeqIndent: style})
		if err := e.Encode(d.top); err != nil {
			return nil, fmt.Errorf("writing the file: %w", err)
		}
		if err := e.Close(); err != nil {
			return nil, fmt.Errorf("writing the file: %w", err)
		}
		return b.Bytes(), nil
	}
	out := d.src
	// Last first, so that earlier offsets stay valid.
	ps := slices.Clone(d.patches)
	slices.SortFunc(ps, func(a, b patch) int {
		if a.line != b.line {
			return b.line - a.line
		}
		return b.col - a.col
	})
	for _, p := range ps {
		start, end, ok := extent(out, p)
		if !ok {
			d.rewrite = true
			return d.bytes()
		}
		out = out[:start] + p.text + out[end:]
	}
	return []byte(out), nil
}

// extent finds the bytes of the scalar a patch replaces.
func extent(src string, p patch) (start, end int, ok bool) {
	off := 0
	for line := 1; line < p.line; line++ {
		i := strings.IndexByte(src[off:], '\n')
		if i < 0 {
			return 0, 0, false
		}
		off += i + 1
	}
	lineEnd := len(src)
	if i := strings.IndexByte(src[off:], '\n'); i >= 0 {
		lineEnd = off + i
	}
	text := src[off:lineEnd]
	// Columns count characters, from 1.
	col := 0
	for i := 1; i < p.col; i++ {
		if col >= len(text) {
			return 0, 0, false
		}
		_, size := utf8.DecodeRuneInString(text[col:])
		col += size
	}
	text = text[col:]
	start = off + col
	switch {
	case p.style&yaml.DoubleQuotedStyle != 0:
		for i := 1; i < len(text); i++ {
			switch text[i] {
			case '\\':
				i++
			case '"':
				return start, start + i + 1, true
			}
		}
	case p.style&yaml.SingleQuotedStyle != 0:
		for i := 1; i < len(text); i++ {
			if text[i] == '\'' {
				if i+1 < len(text) && text[i+1] == '\'' {
					i++
					continue
				}
				return start, start + i + 1, true
			}
		}
	case p.style == 0 || p.style == yaml.FlowStyle:
		if strings.HasPrefix(text, p.old) && p.old != "" {
			return start, start + len(p.old), true
		}
	}
	return 0, 0, false
}
