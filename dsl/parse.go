package dsl

import (
	"bytes"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// chunkSize is about how many bytes of a file parseConfig hands to the HCL
// parser at once. The parser's lexer appends every token of its input to
// one slice (96 bytes a token, about one token per 3.5 bytes of pipeline
// text), growing it by a quarter at a time: for a 73 KB file it allocates
// some 10 MB and copies most of it again and again. Cut into pieces of a
// few KB, a file's tokens are allocated about twice over and die young.
const chunkSize = 2 << 10

// parseConfig parses checked pipeline text as hclsyntax.ParseConfig does,
// and returns the same file and diagnostics, but parses a large file in
// pieces that end between top-level blocks (see chunkSize), then joins
// their bodies. A piece that does not parse cleanly on its own (an error,
// or an attribute set in two pieces) means the cut was not where it
// seemed, or the file has errors: the whole file is then parsed in one go,
// so that its diagnostics are HCL's own. TestParseConfigInPieces and
// FuzzParseConfigInPieces compare the two.
func parseConfig(b []byte, filename string) (*hcl.File, hcl.Diagnostics) {
	cuts := topLevelCuts(b, chunkSize)
	if len(cuts) == 0 {
		return hclsyntax.ParseConfig(b, filename, hcl.InitialPos)
	}
	if f, ok := parsePieces(b, filename, cuts); ok {
		return f, nil
	}
	return hclsyntax.ParseConfig(b, filename, hcl.InitialPos)
}

// parsePieces parses b cut at cuts and joins the pieces' bodies into the
// first piece's, whose navigation (block headers for diagnostics) then
// covers the whole file. It reports false when any piece has diagnostics.
func parsePieces(b []byte, filename string, cuts []int) (*hcl.File, bool) {
	var (
		first *hcl.File
		body  *hclsyntax.Body
		pos   = hcl.InitialPos
		from  = 0
	)
	for i := 0; i <= len(cuts); i++ {
		to := len(b)
		if i < len(cuts) {
			to = cuts[i]
		}
		f, diags := hclsyntax.ParseConfig(b[from:to], filename, pos)
		if len(diags) > 0 {
			return nil, false
		}
		piece := f.Body.(*hclsyntax.Body)
		if first == nil {
			first, body = f, piece
		} else {
			for name, attr := range piece.Attributes {
				if _, dup := body.Attributes[name]; dup {
					return nil, false
				}
				body.Attributes[name] = attr
			}
			body.Blocks = append(body.Blocks, piece.Blocks...)
		}
		if i == len(cuts) {
			// The whole body's range runs from the first piece's first
			// token to the last piece's end of file.
			body.SrcRange.End = piece.SrcRange.End
			body.EndRange = piece.EndRange
			break
		}
		// Every cut follows a newline, so the next piece starts a line.
		pos = hcl.Pos{Line: pos.Line + bytes.Count(b[from:to], []byte{'\n'}), Column: 1, Byte: to}
		from = to
	}
	first.Bytes = b
	return first, true
}

// topLevelCuts returns offsets in b, at least min bytes apart, where a
// line starts outside any block, bracket, string, heredoc or comment: where
// one top-level block or attribute ends and the next may begin. It follows
// HCL's lexical structure only as far as it needs to; on anything it does
// not follow (an unbalanced closing bracket, a heredoc marker it cannot
// read) it returns nil, and the file is parsed whole. A cut in the wrong
// place cannot go unnoticed: the piece before it would end inside an open
// construct, which HCL reports as an error, and parseConfig then parses the
// file whole.
func topLevelCuts(b []byte, min int) []int {
	if len(b) < 2*min {
		return nil
	}
	const (
		code    = 'c' // inside brackets
		interp  = 'i' // inside ${ } or %{ } in a template
		quoted  = 's' // a quoted string
		heredoc = 'h' // a heredoc's text
	)
	var (
		cuts      []int
		stack     []byte
		markers   [][]byte // the open heredocs' closing markers
		lineStart bool     // in a heredoc, at the start of a line
		last      = 0
	)
	for i := 0; i < len(b); i++ {
		c := b[i]
		top := byte(0)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch top {
		case quoted, heredoc:
			if top == heredoc && lineStart {
				lineStart = false
				end := bytes.IndexByte(b[i:], '\n')
				if end < 0 {
					return cuts // an unterminated heredoc: no more cuts
				}
				if bytes.Equal(bytes.TrimSpace(b[i:i+end]), markers[len(markers)-1]) {
					stack, markers = stack[:len(stack)-1], markers[:len(markers)-1]
					i += end - 1 // the newline is read as code, next round
					continue
				}
			}
			next := byte(0)
			if i+1 < len(b) {
				next = b[i+1]
			}
			switch {
			case c == '\\' && top == quoted:
				i++
			case c == '"' && top == quoted:
				stack = stack[:len(stack)-1]
			case (c == '$' || c == '%') && next == '{':
				stack = append(stack, interp)
				i++
			case (c == '$' || c == '%') && next == c:
				i++
			case c == '\n' && top == heredoc:
				lineStart = true
			}
			continue
		}
		switch c {
		case '"':
			stack = append(stack, quoted)
		case '#':
			i = lineEnd(b, i)
		case '/':
			if i+1 < len(b) && b[i+1] == '/' {
				i = lineEnd(b, i)
			} else if i+1 < len(b) && b[i+1] == '*' {
				end := bytes.Index(b[i+2:], []byte("*/"))
				if end < 0 {
					return cuts
				}
				i += 2 + end + 1
				continue
			}
		case '<':
			if i+1 < len(b) && b[i+1] == '<' {
				marker, next, ok := heredocMarker(b, i+2)
				if !ok {
					return nil
				}
				stack, markers, lineStart = append(stack, heredoc), append(markers, marker), true
				i = next - 1
				continue
			}
		case '{', '[', '(':
			stack = append(stack, code)
		case '}', ']', ')':
			if top != code && top != interp {
				return nil
			}
			stack = stack[:len(stack)-1]
		}
		// A line comment's newline ends it, as any other line.
		if i < len(b) && b[i] == '\n' && len(stack) == 0 && i+1-last >= min && len(b)-(i+1) >= min && !bytes.HasPrefix(b[i+1:], []byte("\xef\xbb\xbf")) {
			last = i + 1
			cuts = append(cuts, last)
		}
	}
	return cuts
}

// lineEnd returns the index of the newline that ends the line holding i,
// or the index of b's last byte.
func lineEnd(b []byte, i int) int {
	if k := bytes.IndexByte(b[i:], '\n'); k >= 0 {
		return i + k
	}
	return len(b) - 1
}

// heredocMarker reads a heredoc's opening after its "<<": an optional "-",
// an identifier, a newline. It returns the marker and the offset after the
// newline; false when this is not a heredoc it can read.
func heredocMarker(b []byte, i int) ([]byte, int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	for i < len(b) && (b[i] == '_' || b[i] >= 'a' && b[i] <= 'z' || b[i] >= 'A' && b[i] <= 'Z' || i > start && (b[i] == '-' || b[i] >= '0' && b[i] <= '9')) {
		i++
	}
	marker := b[start:i]
	if i < len(b) && b[i] == '\r' {
		i++
	}
	if len(marker) == 0 || i >= len(b) || b[i] != '\n' {
		return nil, 0, false
	}
	return marker, i + 1, true
}
