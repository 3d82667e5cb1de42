package logstore

import (
	"fmt"
	"strings"
)

// escapeName turns a run, stage or step name into one path element. Stage
// IDs of matrix instances hold `[`, `=` and `,`, and names may hold `/`, so
// every byte outside [A-Za-z0-9_.-] is written as %XX, as is a leading dot
// (so that no name becomes ".", ".." or a hidden file). The encoding is
// reversible, which lets List give back the original names.
func escapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isSafe(c) && (c != '.' || i > 0) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func isSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// unescapeName reverses escapeName. It reports false for a name escapeName
// could not have produced, such as a file someone else put in the store.
func unescapeName(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if !isSafe(c) || c == '.' && i == 0 {
				return "", false
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	out := b.String()
	if escapeName(out) != s {
		return "", false
	}
	return out, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
