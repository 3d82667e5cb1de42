package dsl

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
)

// didYouMean returns ` Did you mean "x"?` when one of the candidates is
// close to name, and "" otherwise, so it can be appended to a Detail.
func didYouMean(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(name, c, nil); d < bestDist || (d == bestDist && best == "" && strings.HasPrefix(c, name)) {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

// quoteList renders names as "a", "b" and "c" for diagnostics.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	switch len(q) {
	case 0:
		return "(none)"
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

func errorDiag(summary, detail string, subject *hcl.Range, context *hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: subject, Context: context}
}

// dedupe drops repeated diagnostics, which matrix expansion produces when
// every instance of a stage has the same mistake, and sorts them by place.
func dedupe(diags hcl.Diagnostics) hcl.Diagnostics {
	type key struct {
		sev             hcl.DiagnosticSeverity
		summary, detail string
		file            string
		start, end      int
	}
	seen := map[key]bool{}
	var out hcl.Diagnostics
	for _, d := range diags {
		if _, upstream := d.Extra.(upstreamError); upstream {
			continue
		}
		k := key{sev: d.Severity, summary: d.Summary, detail: d.Detail}
		if d.Subject != nil {
			k.file, k.start, k.end = d.Subject.Filename, d.Subject.Start.Byte, d.Subject.End.Byte
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Subject, out[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return out
}

// WriteDiagnostics renders diagnostics the way compilers do, so editors
// and terminals can jump to them: a file:line:column: severity: summary
// line, the source line with the problem underlined, the enclosing block,
// and the detail wrapped to width. Colour uses ANSI escapes.
func WriteDiagnostics(w io.Writer, src *Sources, diags hcl.Diagnostics, width uint, color bool) error {
	if width < 40 {
		width = 40
	}
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	var b strings.Builder
	for i, d := range diags {
		if i > 0 {
			b.WriteString("\n")
		}
		sev := paint("1;31", "error")
		if d.Severity == hcl.DiagWarning {
			sev = paint("1;33", "warning")
		}
		var file *hcl.File
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: %s: %s\n", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, sev, paint("1", d.Summary))
			if src != nil {
				file = src.Files[d.Subject.Filename]
			}
		} else {
			fmt.Fprintf(&b, "%s: %s\n", sev, paint("1", d.Summary))
		}
		if file != nil && d.Subject.Start.Byte <= len(file.Bytes) {
			writeSnippet(&b, file, d.Subject, paint)
		}
		if d.Detail != "" {
			for _, para := range strings.Split(d.Detail, "\n") {
				if strings.HasPrefix(para, "  ") {
					b.WriteString("    " + para + "\n") // an example: keep as written
					continue
				}
				for _, line := range wrap(para, int(width)-4) {
					b.WriteString("    " + line + "\n")
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// contextStringer is implemented by the navigation of native HCL files: it
// names the block enclosing a byte offset, like `stage "deploy"`.
type contextStringer interface {
	ContextString(offset int) string
}

func writeSnippet(b *strings.Builder, file *hcl.File, r *hcl.Range, paint func(string, string) string) {
	src := file.Bytes
	start := r.Start.Byte
	lineStart := strings.LastIndexByte(string(src[:start]), '\n') + 1
	lineEnd := len(src)
	if k := strings.IndexByte(string(src[start:]), '\n'); k >= 0 {
		lineEnd = start + k
	}
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	line = strings.ReplaceAll(line, "\t", " ")
	if !utf8.ValidString(line) || len(line) > 300 {
		return
	}
	num := fmt.Sprint(r.Start.Line)
	pad := strings.Repeat(" ", len(num))
	if cs, ok := file.Nav.(contextStringer); ok {
		if ctx := cs.ContextString(start); ctx != "" {
			fmt.Fprintf(b, "%s | in %s\n", pad, ctx)
		}
	}
	fmt.Fprintf(b, "%s | %s\n", num, line)
	col := utf8.RuneCountInString(string(src[lineStart:start]))
	n := 1
	if r.End.Line == r.Start.Line && r.End.Byte > start && r.End.Byte <= lineEnd {
		n = utf8.RuneCountInString(string(src[start:r.End.Byte]))
	} else if r.End.Line > r.Start.Line {
		n = utf8.RuneCountInString(line) - col
	}
	if n < 1 {
		n = 1
	}
	fmt.Fprintf(b, "%s | %s%s\n", pad, strings.Repeat(" ", col), paint("1;31", strings.Repeat("^", n)))
}

// wrap breaks text into lines of at most width characters at spaces.
func wrap(text string, width int) []string {
	words := strings.Fields(text)
	if len(words) == 0 {
		return []string{""}
	}
	var lines []string
	cur := words[0]
	for _, w := range words[1:] {
		if utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(w) > width {
			lines = append(lines, cur)
			cur = w
			continue
		}
		cur += " " + w
	}
	return append(lines, cur)
}

// upstreamError marks a diagnostic that only stops work depending on a
// value whose own failure was already reported; it is never shown.
type upstreamError struct{}
