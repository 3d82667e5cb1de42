package ansi

import (
	"bytes"
	"encoding/xml"
	"io"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name  string
		line  string
		start Style
		want  string
		end   Style
	}{
		{name: "plain", line: "hello, world", want: "hello, world"},
		{name: "HTML escaped", line: `<script>alert("x" & 'y')</script>`, want: `&lt;script&gt;alert(&#34;x&#34; &amp; &#39;y&#39;)&lt;/script&gt;`},
		{name: "escaped inside a span", line: "\x1b[31m<b>\x1b[0m", want: `<span class="f1">&lt;b&gt;</span>`},
		{name: "16 colours", line: "\x1b[31mred\x1b[39m \x1b[42mgreen\x1b[49m \x1b[93myellow\x1b[0m \x1b[104mblue", want: `<span class="f1">red</span> <span class="g2">green</span> <span class="f11">yellow</span> <span class="g12">blue</span>`, end: Style{BG: Indexed(12)}},
		{name: "256 colours", line: "\x1b[38;5;196mA\x1b[48;5;21mB\x1b[38;5;244mC\x1b[38;5;9mD", want: `<span data-fg="ff0000">A</span><span data-fg="ff0000" data-bg="0000ff">B</span><span data-fg="808080" data-bg="0000ff">C</span><span class="f9" data-bg="0000ff">D</span>`, end: Style{FG: Indexed(9), BG: Indexed(21)}},
		{name: "truecolor", line: "\x1b[38;2;255;128;0morange\x1b[48;2;1;2;3m on dark", want: `<span data-fg="ff8000">orange</span><span data-fg="ff8000" data-bg="010203"> on dark</span>`, end: Style{FG: RGB(255, 128, 0), BG: RGB(1, 2, 3)}},
		{name: "truecolor with colons", line: "\x1b[38:2::10:20:30mA\x1b[38:2:40:50:60mB\x1b[48:5:1mC", want: `<span data-fg="0a141e">A</span><span data-fg="28323c">B</span><span class="g1" data-fg="28323c">C</span>`, end: Style{FG: RGB(40, 50, 60), BG: Indexed(1)}},
		{name: "attributes", line: "\x1b[1mbold\x1b[22m \x1b[3mitalic\x1b[23m \x1b[4munder\x1b[24m \x1b[9mstrike\x1b[29m \x1b[2mfaint", want: `<span class="b">bold</span> <span class="i">italic</span> <span class="u">under</span> <span class="s">strike</span> <span class="d">faint</span>`, end: Style{Attrs: Faint}},
		{name: "attributes together", line: "\x1b[1;3;4;31;44mall", want: `<span class="b i u f1 g4">all</span>`, end: Style{FG: Indexed(1), BG: Indexed(4), Attrs: Bold | Italic | Underline}},
		{name: "reset", line: "\x1b[1;31mA\x1b[0mB\x1b[1mC\x1b[mD", want: `<span class="b f1">A</span>B<span class="b">C</span>D`},
		{name: "inverse", line: "\x1b[7mA\x1b[31mB\x1b[27mC", want: `<span class="fi gi">A</span><span class="fi g1">B</span><span class="f1">C</span>`, end: Style{FG: Indexed(1)}},
		{name: "underline off by sub-parameter", line: "\x1b[4mA\x1b[4:0mB\x1b[4:3mC", want: `<span class="u">A</span>B<span class="u">C</span>`, end: Style{Attrs: Underline}},
		{name: "extended colour does not eat attributes", line: "\x1b[38;5;1;1mA", want: `<span class="b f1">A</span>`, end: Style{FG: Indexed(1), Attrs: Bold}},
		{name: "underline colour ignored", line: "\x1b[58;2;1;2;3;4mA", want: `<span class="u">A</span>`, end: Style{Attrs: Underline}},
		{name: "bad colours ignored", line: "\x1b[38;5;300mA\x1b[38;2;1;2mB\x1b[38;2;999;0;0mC", want: "ABC"},
		{name: "style carried in", line: "still red\x1b[0m", start: Style{FG: Indexed(1)}, want: `<span class="f1">still red</span>`},
		{name: "style carried out", line: "\x1b[32mgreen", want: `<span class="f2">green</span>`, end: Style{FG: Indexed(2)}},
		{name: "no empty spans", line: "\x1b[31m\x1b[0mA\x1b[32m", want: "A", end: Style{FG: Indexed(2)}},
		{name: "other CSI dropped", line: "\x1b[2K\x1b[1Gdone\x1b[?25h\x1b[>4;2m!", want: "done!"},
		{name: "OSC dropped", line: "\x1b]0;title\x07A \x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", want: "A link"},
		{name: "OSC cut short by CSI", line: "\x1b]0;title\x1b[31mA", want: `<span class="f1">A</span>`, end: Style{FG: Indexed(1)}},
		{name: "two-byte and charset escapes dropped", line: "\x1b7A\x1b(BB\x1b8", want: "AB"},
		{name: "escape cut short", line: "A\x1b[31", want: "A"},
		{name: "lone escape", line: "A\x1b", want: "A"},
		{name: "stray byte ends CSI", line: "\x1b[3\x01xA", want: "xA"},
		{name: "controls dropped, tab kept", line: "a\x00b\x07c\td\x7fe\x08", want: "abc\tde"},
		{name: "invalid UTF-8 replaced", line: "caf\xe9 \xff ok ünïcödé", want: "caf\uFFFD \uFFFD ok ünïcödé"},
		{name: "carriage return at the end", line: "progress 100%\r", want: "progress 100%"},
		{name: "carriage return overwrites", line: "10%\r20%\r\x1b[32m30%\r", want: `<span class="f2">30%</span>`, end: Style{FG: Indexed(2)}},
		{name: "style before a carriage return carries on", line: "\x1b[31mold\rnew", want: `<span class="f1">new</span>`, end: Style{FG: Indexed(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, end := Render([]byte("kept:"), []byte(tc.line), tc.start)
			if diff := cmp.Diff("kept:"+tc.want, string(got)); diff != "" {
				t.Errorf("Render(%q) (-want +got):\n%s", tc.line, diff)
			}
			if end != tc.end {
				t.Errorf("Render(%q) ends in %+v, want %+v", tc.line, end, tc.end)
			}
			if adv := Advance([]byte(tc.line), tc.start); adv != end {
				t.Errorf("Advance(%q) = %+v, Render ends in %+v", tc.line, adv, end)
			}
		})
	}
}

// The colours 16–255 of the palette are the xterm cube and grey ramp.
func TestPalette(t *testing.T) {
	for _, tc := range []struct {
		n    uint8
		want string
	}{{16, "000000"}, {17, "00005f"}, {67, "5f87af"}, {231, "ffffff"}, {232, "080808"}, {255, "eeeeee"}} {
		r, g, b := Indexed(tc.n).rgb()
		if got := string(appendHex(nil, r, g, b)); got != tc.want {
			t.Errorf("colour %d = %s, want %s", tc.n, got, tc.want)
		}
	}
}

var (
	classPattern = regexp.MustCompile(`^(b|d|i|u|s|fi|gi|[fg]([0-9]|1[0-5]))( (b|d|i|u|s|fi|gi|[fg]([0-9]|1[0-5])))*$`)
	hexPattern   = regexp.MustCompile(`^[0-9a-f]{6}$`)
)

// checkHTML fails unless out is text and unnested spans with only the
// attributes Render makes, and returns the text.
func checkHTML(t *testing.T, out []byte) string {
	t.Helper()
	if !utf8.Valid(out) {
		t.Fatalf("not UTF-8: %q", out)
	}
	if bytes.ContainsFunc(out, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
		t.Fatalf("a control character: %q", out)
	}
	d := xml.NewDecoder(strings.NewReader("<line>" + string(out) + "</line>"))
	d.Strict = true
	var text strings.Builder
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well formed: %v: %q", err, out)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			if tok.Name.Local == "line" && depth == 1 {
				continue
			}
			if tok.Name.Local != "span" || depth != 2 || len(tok.Attr) == 0 {
				t.Fatalf("element %q at depth %d: %q", tok.Name.Local, depth, out)
			}
			for _, a := range tok.Attr {
				switch {
				case a.Name.Local == "class" && classPattern.MatchString(a.Value):
				case (a.Name.Local == "data-fg" || a.Name.Local == "data-bg") && hexPattern.MatchString(a.Value):
				default:
					t.Fatalf("attribute %s=%q: %q", a.Name.Local, a.Value, out)
				}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			text.Write(tok)
		default:
			t.Fatalf("token %T: %q", tok, out)
		}
	}
	return text.String()
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{
		"plain", "\x1b[1;31mred\x1b[0m", "\x1b[38;2;1;2;3m\x1b[48;5;200mx", "<&>\"'",
		"\x1b]8;;http://x\x1b\\y", "a\rb\r", "\x1b[38:2::1:2:3m", "\xff\xfe", "\x1b[7m\x1b[", "\x1b(B\x1b7",
	} {
		f.Add([]byte(s), uint8(0), uint32(0), uint32(0))
	}
	f.Fuzz(func(t *testing.T, line []byte, attrs uint8, fg, bg uint32) {
		line = bytes.ReplaceAll(line, []byte("\n"), nil)
		start := Style{FG: fuzzColor(fg), BG: fuzzColor(bg), Attrs: Attr(attrs) & (Bold | Faint | Italic | Underline | Inverse | Strike)}
		out, end := Render(nil, line, start)
		text := checkHTML(t, out)
		if adv := Advance(line, start); adv != end {
			t.Fatalf("Advance = %+v, Render ends in %+v: %q", adv, end, line)
		}
		if !bytes.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			if want := validText(line); text != want {
				t.Fatalf("text %q, want %q", text, want)
			}
		}
	})
}

// validText is text with each byte that is not UTF-8 replaced.
func validText(b []byte) string {
	var s strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		s.WriteRune(r)
		b = b[n:]
	}
	return s.String()
}

// fuzzColor makes any colour Render can be given.
func fuzzColor(v uint32) Color {
	switch v % 3 {
	case 1:
		return Indexed(uint8(v >> 8))
	case 2:
		return RGB(uint8(v>>8), uint8(v>>16), uint8(v>>24))
	}
	return 0
}

func BenchmarkRender(b *testing.B) {
	lines := [][]byte{
		[]byte("ok  \tgithub.com/sluice-ci/sluice/engine\t12.345s"),
		[]byte("\x1b[1m\x1b[32m   Compiling\x1b[0m sluice v0.1.0 (/work/main)"),
		[]byte("#12 [build 3/4] RUN go build -o /out/app ./cmd/app"),
	}
	var dst []byte
	var st Style
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range lines {
			dst, st = Render(dst[:0], l, st)
		}
	}
}
