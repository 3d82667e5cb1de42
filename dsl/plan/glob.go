package plan

import "strings"

// MatchGlob matches name against a pattern where `*` matches any run of
// characters except `/`, `**` matches any run including `/` (and, as a
// whole path segment, zero segments), and `?` matches one character other
// than `/`. It is the pattern language of branch, tag and path filters and of
// stage artifacts.
func MatchGlob(pattern, name string) bool {
	for len(pattern) > 0 {
		switch {
		case strings.HasPrefix(pattern, "**"):
			rest := strings.TrimLeft(pattern, "*")
			// "**/" also matches no directory at all.
			if strings.HasPrefix(rest, "/") && MatchGlob(rest[1:], name) {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if MatchGlob(rest, name[i:]) {
					return true
				}
			}
			return false
		case pattern[0] == '*':
			rest := pattern[1:]
			for i := 0; i <= len(name); i++ {
				if MatchGlob(rest, name[i:]) {
					return true
				}
				if i < len(name) && name[i] == '/' {
					return false
				}
			}
			return false
		case pattern[0] == '?':
			if name == "" || name[0] == '/' {
				return false
			}
		default:
			if name == "" || pattern[0] != name[0] {
				return false
			}
		}
		pattern, name = pattern[1:], name[1:]
	}
	return name == ""
}

// matchAny reports whether name matches one of the patterns.
