package dsl

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	hcljson "github.com/hashicorp/hcl/v2/json"
)

// DefaultDir is where a repository keeps its pipeline files.
const DefaultDir = ".sluice"

// Limits that keep hostile or mistaken input from exhausting the process.
const (
	// MaxFileSize bounds one pipeline file. Real pipelines are a few KiB.
	MaxFileSize = 4 << 20
	// MaxNesting bounds how deeply brackets and blocks may nest.
	MaxNesting = 64
	// MaxFiles bounds how many .hcl files a pipeline directory may hold.
	MaxFiles = 256
)

// Sources holds the parsed files of a pipeline and their bytes, which
// diagnostics need to show snippets.
type Sources struct {
	// Dir is the directory the pipeline was loaded from; Source fields in
	// the plan are relative to it.
	Dir   string
	Files map[string]*hcl.File
	// Order is the file names in the order they are read: by name.
	Order []string
	// lock is the module lock file as the last Compile read and used it.
	lock *moduleLock
}

// Load reads and parses a pipeline: every .hcl file of a directory but the
// module lock file (LockFileName), or one file. Files that cannot be parsed are reported and left out; the rest are
// returned so that later phases can still report their own problems.
func Load(path string) (*Sources, hcl.Diagnostics) {
	src := &Sources{Files: map[string]*hcl.File{}}
	info, err := os.Stat(path)
	if err != nil {
		detail := fmt.Sprintf("Sluice looks for pipeline files (*.hcl) in %q: %s.", path, errText(err))
		if path == DefaultDir && errorsIsNotExist(err) {
			detail = "There is no .sluice directory here. Run sluice from the root of a repository that has one, or give the path of a pipeline file or directory."
		}
		return src, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read pipeline", Detail: detail}}
	}
	var names []string
	if info.IsDir() {
		src.Dir = path
		entries, err := os.ReadDir(path)
		if err != nil {
			return src, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read pipeline directory", Detail: fmt.Sprintf("Reading %q: %s.", path, errText(err))}}
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") && e.Name() != LockFileName {
				names = append(names, filepath.Join(path, e.Name()))
			}
		}
		if len(names) == 0 {
			return src, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No pipeline files", Detail: fmt.Sprintf("The directory %q has no .hcl files. Pipeline files are named like %s, or kept in %s of a project's directory.", path, filepath.Join(path, "web.hcl"), DefaultDir+"/")}}
		}
		if len(names) > MaxFiles {
			return src, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Too many pipeline files", Detail: fmt.Sprintf("The directory %q has %d .hcl files; a pipeline may have at most %d.", path, len(names), MaxFiles)}}
		}
	} else {
		src.Dir = filepath.Dir(path)
		names = []string{path}
	}
	sort.Strings(names)
	return src, parseFiles(src, names, names)
}

// parseFiles parses the files read (named as in names) into src, in
// order. Files that cannot be parsed are reported and left out.
func parseFiles(src *Sources, read, names []string) hcl.Diagnostics {
	// Files are parsed in parallel: parsing dominates loading a large
	// pipeline, and files are independent until compilation.
	type result struct {
		file  *hcl.File
		diags hcl.Diagnostics
	}
	results := make([]result, len(names))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			b, err := os.ReadFile(read[i])
			if err != nil {
				results[i].diags = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read pipeline file", Detail: fmt.Sprintf("Reading %q: %s.", name, errText(err))}}
				return
			}
			results[i].file, results[i].diags = Parse(b, name)
		}()
	}
	wg.Wait()
	var diags hcl.Diagnostics
	for i, name := range names {
		diags = append(diags, results[i].diags...)
		if results[i].file == nil {
			continue
		}
		src.Files[name] = results[i].file
		src.Order = append(src.Order, name)
	}
	return diags
}

// Parse checks that b is pipeline text that is safe to hand to the HCL
// parser (size, encoding, nesting) and parses it. It never panics; on
// failure it returns a file holding the bytes, so diagnostics can show
// snippets, and diagnostics that say how to fix the input.
func Parse(b []byte, filename string) (*hcl.File, hcl.Diagnostics) {
	b, diags := checkText(b, filename)
	if diags.HasErrors() {
		return &hcl.File{Body: hcl.EmptyBody(), Bytes: b}, diags
	}
	f, diags := parseConfig(b, filename)
	if f == nil {
		f = &hcl.File{Bytes: b}
	}
	if f.Body == nil {
		f.Body = hcl.EmptyBody()
	}
	return f, diags
}

// checkText refuses input the HCL parsers should not see: too large, not
// UTF-8, or nested too deeply. It strips a UTF-8 byte order mark. The bytes
// it returns are safe to show in snippets (nil when they are not text).
func checkText(b []byte, filename string) ([]byte, hcl.Diagnostics) {
	start := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
	if len(b) > MaxFileSize {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Pipeline file too large",
			Detail:   fmt.Sprintf("This file is %d bytes; a pipeline file may be at most %d bytes (%d MiB). Split the pipeline into several files, or check that this is the file you meant.", len(b), MaxFileSize, MaxFileSize>>20),
			Subject:  &start,
		}}
	}
	if enc := unsupportedEncoding(b); enc != "" {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Unsupported file encoding",
			Detail:   fmt.Sprintf("This file is %s. Pipeline files must be UTF-8 text; save the file as UTF-8 without a byte order mark.", enc),
			Subject:  &start,
		}}
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if pos, ok := invalidUTF8(b); !ok {
		r := hcl.Range{Filename: filename, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}}
		return b, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid UTF-8",
			Detail:   "This file has bytes that are not UTF-8 text here. Pipeline files must be UTF-8 text; if this is a binary file, move it out of the pipeline directory.",
			Subject:  &r,
		}}
	}
	if pos, ok := nestingWithin(b, MaxNesting); !ok {
		r := hcl.Range{Filename: filename, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}}
		return b, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Nesting too deep",
			Detail:   fmt.Sprintf("Blocks, brackets and parentheses nest more than %d levels deep here. Flatten the structure, for example by moving values into locals.", MaxNesting),
			Subject:  &r,
		}}
	}
	return b, nil
}

// unsupportedEncoding names encodings that are recognisable from their first
// bytes and are not UTF-8.
func unsupportedEncoding(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0xff, 0xfe, 0, 0}), bytes.HasPrefix(b, []byte{0, 0, 0xfe, 0xff}):
		return "UTF-32 (it starts with a UTF-32 byte order mark)"
	case bytes.HasPrefix(b, []byte{0xff, 0xfe}), bytes.HasPrefix(b, []byte{0xfe, 0xff}):
		return "UTF-16 (it starts with a UTF-16 byte order mark)"
	case len(b) >= 4 && (b[0] == 0 && b[1] != 0 && b[2] == 0 || b[0] != 0 && b[1] == 0 && b[2] != 0 && b[3] == 0):
		return "UTF-16 (every other byte is zero)"
	case bytes.IndexByte(b, 0) >= 0:
		return "binary data (it contains NUL bytes)"
	}
	return ""
}

// invalidUTF8 returns the position of the first byte that is not valid UTF-8.
func invalidUTF8(b []byte) (hcl.Pos, bool) {
	if utf8.Valid(b) {
		return hcl.Pos{}, true
	}
	pos := hcl.InitialPos
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return pos, false
		}
		pos = advance(pos, r, size)
		i += size
	}
	return pos, true
}

func advance(pos hcl.Pos, r rune, size int) hcl.Pos {
	pos.Byte += size
	if r == '\n' {
		pos.Line++
		pos.Column = 1
	} else {
		pos.Column++
	}
	return pos
}

// nestingWithin scans for nesting depth, skipping strings and comments well
// enough to be conservative: it only has to stop pathological input before
// the recursive-descent parser sees it. Interpolations inside strings count
// as a level, and brackets inside them count as usual.
func nestingWithin(b []byte, limit int) (hcl.Pos, bool) {
	const (
		code   = 'c' // a bracket opened in code
		interp = 'i' // a ${ inside a string
		str    = 's' // a quoted string
	)
	var stack []byte
	top := func() byte {
		if len(stack) == 0 {
			return code
		}
		return stack[len(stack)-1]
	}
	pos := hcl.InitialPos
	inLineComment, inBlockComment := false, false
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		next := byte(0)
		if i+1 < len(b) {
			next = b[i+1]
		}
		skip := 0 // extra bytes consumed with r
		switch {
		case inLineComment:
			inLineComment = r != '\n'
		case inBlockComment:
			if r == '*' && next == '/' {
				inBlockComment, skip = false, 1
			}
		case top() == str:
			switch {
			case r == '\\':
				skip = 1
			case r == '"':
				stack = stack[:len(stack)-1]
			case (r == '$' || r == '%') && next == '{':
				stack, skip = append(stack, interp), 1
			case (r == '$' || r == '%') && rune(next) == r:
				skip = 1
			}
		default:
			switch r {
			case '"':
				stack = append(stack, str)
			case '#':
				inLineComment = true
			case '/':
				if next == '/' {
					inLineComment, skip = true, 1
				} else if next == '*' {
					inBlockComment, skip = true, 1
				}
			case '{', '[', '(':
				stack = append(stack, code)
			case '}', ']', ')':
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
			}
		}
		if len(stack) > limit {
			return pos, false
		}
		pos = advance(pos, r, size)
		i += size
		for ; skip > 0 && i < len(b); skip-- {
			pos = advance(pos, rune(b[i]), 1)
			i++
		}
	}
	return pos, true
}

func errText(err error) string {
	var pe *fs.PathError
	if ok := asPathError(err, &pe); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// parseJSON parses a JSON var file after the same safety checks as Parse.
func parseJSON(b []byte, filename string) (*hcl.File, hcl.Diagnostics) {
	b, diags := checkText(b, filename)
	if diags.HasErrors() {
		return &hcl.File{Body: hcl.EmptyBody(), Bytes: b}, diags
	}
	f, diags := hcljson.Parse(b, filename)
	if f == nil || f.Body == nil {
		return &hcl.File{Body: hcl.EmptyBody(), Bytes: b}, diags
	}
	return f, diags
}
