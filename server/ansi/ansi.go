package ansi

import (
	"bytes"
	"unicode/utf8"
)

// Style is the graphic rendition in effect at a point of a log. It carries
// over from one line to the next, as in a terminal, until a reset: a
// program that turns red on and prints three lines shows three red lines.
// The zero Style is the default: no span at all.
type Style struct {
	FG, BG Color
	Attrs  Attr
}

// Attr is a set of text attributes.
type Attr uint8

// The attributes SGR sets and this package renders.
const (
	Bold Attr = 1 << iota
	Faint
	Italic
	Underline
	Inverse
	Strike
)

// Color is a foreground or background colour: the default (zero), one of
// the 256 of the indexed palette, or a 24-bit one. The first 16 of the
// palette are drawn by the page's style sheet (classes f0–f15 and g0–g15),
// so that they suit its background; the others have fixed values.
type Color uint32

const (
	kindIndexed = 1 << 24
	kindRGB     = 2 << 24
	kindMask    = 3 << 24
)

// Indexed is colour n of the 256-colour palette (SGR 30–37, 90–97, 38;5;n).
func Indexed(n uint8) Color { return Color(kindIndexed | uint32(n)) }

// RGB is a 24-bit colour (SGR 38;2;r;g;b).
func RGB(r, g, b uint8) Color {
	return Color(kindRGB | uint32(r)<<16 | uint32(g)<<8 | uint32(b))
}

// index says whether c is one of the palette's and which.
func (c Color) index() (uint8, bool) { return uint8(c), c&kindMask == kindIndexed }

// rgb is the 24-bit value of a colour that is not the default.
func (c Color) rgb() (r, g, b uint8) {
	if c&kindMask == kindRGB {
		return uint8(c >> 16), uint8(c >> 8), uint8(c)
	}
	n := int(uint8(c))
	switch {
	case n < 16:
		// Drawn by the style sheet; a value only for completeness.
		v := uint8(0x80)
		if n >= 8 {
			v = 0xff
		}
		n &= 7
		return v * uint8(n&1), v * uint8(n>>1&1), v * uint8(n>>2&1)
	case n < 232:
		// The 6×6×6 cube.
		n -= 16
		return cube[n/36], cube[n/6%6], cube[n%6]
	default:
		// The grey ramp.
		v := uint8(8 + 10*(n-232))
		return v, v, v
	}
}

var cube = [6]uint8{0, 95, 135, 175, 215, 255}

// Render appends the HTML of one line of a log, which starts in style st,
// to dst, and returns it with the style in effect at the end of the line.
// The line holds no newline. Text after a carriage return replaces the
// line's text before it (a progress bar shows its last state); carriage
// returns with no text after them, as at the end of a line, change
// nothing. The
// text is escaped (&, <, >, " and '), control characters but the tab are
// dropped, and bytes that are not UTF-8 become U+FFFD, so the result is
// safe as the content of an HTML element and fits on one line of a
// server-sent event.
func Render(dst, line []byte, st Style) ([]byte, Style) {
	start := len(dst)
	var open bool // a span is open, in style cur
	var cur Style
	var back bool // a carriage return came before the text to come
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case c == 0x1b:
			i, st = escape(line, i, st)
			continue
		case c == '\r':
			back = true
			i++
			continue
		case special(c):
			i++
			continue
		}
		if back {
			// Back at the start of the line: the text overwrites what
			// came before.
			dst, open, cur, back = dst[:start], false, Style{}, false
		}
		if st != cur {
			if open {
				dst = append(dst, "</span>"...)
				open = false
			}
			if st != (Style{}) {
				dst = st.appendOpen(dst)
				open = true
			}
			cur = st
		}
		j := i + 1
		for j < len(line) && line[j] != 0x1b && !special(line[j]) {
			j++
		}
		dst = appendEscaped(dst, line[i:j])
		i = j
	}
	if open {
		dst = append(dst, "</span>"...)
	}
	return dst, st
}

// Advance is the style at the end of a line that starts in style st, as
// Render returns it, without rendering the line: for lines that a reader
// already has.
func Advance(line []byte, st Style) Style {
	for {
		i := bytes.IndexByte(line, 0x1b)
		if i < 0 {
			return st
		}
		var next int
		next, st = escape(line, i, st)
		line = line[next:]
	}
}

// special says whether c is a control character that is dropped (every
// one but the tab; ESC and CR are handled before).
func special(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f || c == '\r' }

// escape reads the escape sequence at line[i] (an ESC) and returns where
// the text after it starts and the style it leaves. Only SGR changes the
// style; every other sequence is dropped, as is one cut short by the end
// of the line.
func escape(line []byte, i int, st Style) (int, Style) {
	j := i + 1
	if j >= len(line) {
		return j, st
	}
	switch b := line[j]; {
	case b == '[': // CSI: parameters, intermediates, a final byte
		j++
		ps := j
		for j < len(line) && line[j] >= 0x30 && line[j] <= 0x3f {
			j++
		}
		pe := j
		for j < len(line) && line[j] >= 0x20 && line[j] <= 0x2f {
			j++
		}
		if j >= len(line) {
			return j, st
		}
		if f := line[j]; f < 0x40 || f > 0x7e {
			// Malformed: the sequence ends before the stray byte,
			// which is read as text again.
			return j, st
		}
		if line[j] == 'm' && pe == j {
			st = sgr(line[ps:pe], st)
		}
		return j + 1, st
	case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
		// OSC (titles, hyperlinks), DCS, SOS, PM, APC: a string that ends
		// at ST (ESC \) or BEL. Another ESC cuts it short and starts a
		// sequence of its own.
		for j++; j < len(line); j++ {
			switch line[j] {
			case 0x07:
				return j + 1, st
			case 0x1b:
				if j+1 < len(line) && line[j+1] == '\\' {
					return j + 2, st
				}
				return j, st
			}
		}
		return j, st
	case b >= 0x20 && b <= 0x2f: // intermediates and a final: ESC ( B
		for j < len(line) && line[j] >= 0x20 && line[j] <= 0x2f {
			j++
		}
		if j < len(line) && line[j] >= 0x30 && line[j] <= 0x7e {
			j++
		}
		return j, st
	case b >= 0x30 && b <= 0x7e: // two bytes: ESC 7, ESC M, ESC =
		return j + 1, st
	default:
		// ESC before a control character or non-ASCII: only the ESC
		// goes.
		return j, st
	}
}

// param is one parameter of a CSI sequence: v[0] its value, then the
// sub-parameters that follow it after colons (38:2::255:0:0).
type param struct {
	v [6]int
	n int // values given, counting those beyond v's room
}

// maxParam caps a parameter's value: larger ones mean nothing to SGR.
const maxParam = 1 << 16

// params splits a CSI sequence's parameter bytes. A private marker (<, =,
// >, ?) makes it a sequence other than SGR: none.
func params(b []byte, into []param) []param {
	p := param{n: 1}
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if k := p.n - 1; k < len(p.v) && p.v[k] < maxParam {
				p.v[k] = p.v[k]*10 + int(c-'0')
			}
		case c == ':':
			p.n++
		case c == ';':
			into = append(into, p)
			p = param{n: 1}
		default:
			return nil
		}
	}
	return append(into, p)
}

// sgr applies the parameters of an SGR sequence (CSI ... m) to st.
func sgr(b []byte, st Style) Style {
	var room [16]param
	ps := params(b, room[:0])
	for k := 0; k < len(ps); k++ {
		p := ps[k]
		switch v := p.v[0]; {
		case v == 0:
			st = Style{}
		case v == 1:
			st.Attrs |= Bold
		case v == 2:
			st.Attrs |= Faint
		case v == 3:
			st.Attrs |= Italic
		case v == 4:
			// 4:0 is "no underline"; 4:1 to 4:5 are kinds of it.
			if p.n > 1 && p.v[1] == 0 {
				st.Attrs &^= Underline
			} else {
				st.Attrs |= Underline
			}
		case v == 7:
			st.Attrs |= Inverse
		case v == 9:
			st.Attrs |= Strike
		case v == 21: // double underline
			st.Attrs |= Underline
		case v == 22:
			st.Attrs &^= Bold | Faint
		case v == 23:
			st.Attrs &^= Italic
		case v == 24:
			st.Attrs &^= Underline
		case v == 27:
			st.Attrs &^= Inverse
		case v == 29:
			st.Attrs &^= Strike
		case v >= 30 && v <= 37:
			st.FG = Indexed(uint8(v - 30))
		case v == 39:
			st.FG = 0
		case v >= 40 && v <= 47:
			st.BG = Indexed(uint8(v - 40))
		case v == 49:
			st.BG = 0
		case v >= 90 && v <= 97:
			st.FG = Indexed(uint8(v - 90 + 8))
		case v >= 100 && v <= 107:
			st.BG = Indexed(uint8(v - 100 + 8))
		case v == 38 || v == 48 || v == 58:
			// An extended colour: 38;5;N or 38;2;R;G;B, or the same
			// with colons in one parameter. 58 (the underline's colour)
			// is read so that its values are not taken for attributes,
			// and ignored.
			var c Color
			var ok bool
			if p.n > 1 {
				c, ok = colonColor(p)
			} else {
				var used int
				c, ok, used = semicolonColor(ps[k+1:])
				k += used
			}
			if ok && v == 38 {
				st.FG = c
			} else if ok && v == 48 {
				st.BG = c
			}
		}
	}
	return st
}

// colonColor reads 38:5:N, 38:2:R:G:B and 38:2:ID:R:G:B (ITU T.416, with
// a colour space ID, often empty).
func colonColor(p param) (Color, bool) {
	switch p.v[1] {
	case 5:
		if p.n >= 3 && p.v[2] <= 255 {
			return Indexed(uint8(p.v[2])), true
		}
	case 2:
		switch {
		case p.n == 5:
			return rgbOf(p.v[2], p.v[3], p.v[4])
		case p.n >= 6:
			return rgbOf(p.v[3], p.v[4], p.v[5])
		}
	}
	return 0, false
}

// semicolonColor reads the parameters after a 38: 5;N or 2;R;G;B. It
// returns how many it used, so that they are not read as attributes.
func semicolonColor(rest []param) (Color, bool, int) {
	if len(rest) == 0 {
		return 0, false, 0
	}
	switch rest[0].v[0] {
	case 5:
		if len(rest) < 2 {
			return 0, false, len(rest)
		}
		if n := rest[1].v[0]; n <= 255 {
			return Indexed(uint8(n)), true, 2
		}
		return 0, false, 2
	case 2:
		if len(rest) < 4 {
			return 0, false, len(rest)
		}
		c, ok := rgbOf(rest[1].v[0], rest[2].v[0], rest[3].v[0])
		return c, ok, 4
	}
	return 0, false, 1
}

func rgbOf(r, g, b int) (Color, bool) {
	if r > 255 || g > 255 || b > 255 {
		return 0, false
	}
	return RGB(uint8(r), uint8(g), uint8(b)), true
}

// appendOpen appends the span that starts text in style st: classes for
// the attributes and the first 16 colours, and the others as six hex
// digits in data-fg and data-bg, which the page's script applies (a
// Content-Security-Policy without 'unsafe-inline' ignores style
// attributes).
func (st Style) appendOpen(dst []byte) []byte {
	fg, bg := st.FG, st.BG
	var fgDefault, bgDefault string // classes of the default colours swapped
	if st.Attrs&Inverse != 0 {
		fg, bg = bg, fg
		fgDefault, bgDefault = "fi", "gi"
	}
	var classRoom, colourRoom [64]byte
	classes, colours := classRoom[:0], colourRoom[:0]
	class := func(c ...string) {
		if len(classes) > 0 {
			classes = append(classes, ' ')
		}
		for _, s := range c {
			classes = append(classes, s...)
		}
	}
	for _, a := range attrClasses {
		if st.Attrs&a.attr != 0 {
			class(a.class)
		}
	}
	for _, side := range [2]struct {
		c                   Color
		prefix, deflt, attr string
	}{{fg, "f", fgDefault, ` data-fg="`}, {bg, "g", bgDefault, ` data-bg="`}} {
		switch i, ok := side.c.index(); {
		case side.c == 0:
			if side.deflt != "" {
				class(side.deflt)
			}
		case ok && i < 16:
			class(side.prefix, smallNumbers[i])
		default:
			r, g, b := side.c.rgb()
			colours = append(colours, side.attr...)
			colours = appendHex(colours, r, g, b)
			colours = append(colours, '"')
		}
	}
	dst = append(dst, "<span"...)
	if len(classes) > 0 {
		dst = append(dst, ` class="`...)
		dst = append(dst, classes...)
		dst = append(dst, '"')
	}
	dst = append(dst, colours...)
	return append(dst, '>')
}

var attrClasses = [...]struct {
	attr  Attr
	class string
}{{Bold, "b"}, {Faint, "d"}, {Italic, "i"}, {Underline, "u"}, {Strike, "s"}}

var smallNumbers = [16]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"}

func appendHex(dst []byte, v ...uint8) []byte {
	const digits = "0123456789abcdef"
	for _, b := range v {
		dst = append(dst, digits[b>>4], digits[b&15])
	}
	return dst
}

// appendEscaped appends text (no control characters but tabs) escaped for
// HTML, with bytes that are not UTF-8 replaced.
func appendEscaped(dst, text []byte) []byte {
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			switch c {
			case '&':
				dst = append(dst, "&amp;"...)
			case '<':
				dst = append(dst, "&lt;"...)
			case '>':
				dst = append(dst, "&gt;"...)
			case '"':
				dst = append(dst, "&#34;"...)
			case '\'':
				dst = append(dst, "&#39;"...)
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, text[i:i+size]...)
		}
		i += size
	}
	return dst
}
