package junit

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxIndexed bounds the files of the workspace resolver looks through by
// name; a larger workspace is indexed in part.
const maxIndexed = 200000

// maxLocations bounds the locations of one failure's text resolver tries.
const maxLocations = 100

// resolver finds the files reports and failure texts name in the
// workspace. A test tool names them as it likes: relative to the step's
// working directory or to the package under test (go test's
// "calc_test.go:14"), by an absolute path on the runner or in a container,
// or by a bare file name (a Java stack trace's "CalcTest.java:17"). What
// is not found directly is looked up by name, and the directories the
// report gives choose among files of the same name.
type resolver struct {
	root  *os.Root
	wd    string   // the step's working directory, relative to the workspace
	roots []string // absolute paths of the workspace (workspaceRoots)

	index   map[string][]string // base name -> paths, built on first use
	indexed bool
	cache   map[string]string
}

// resolve returns the path in the workspace of the file p, or "". dirs are
// directories the file is likely in, innermost last, for a p without any.
func (r *resolver) resolve(p string, dirs []string) string {
	key := p + "\x00" + strings.Join(dirs, "/")
	if f, ok := r.cache[key]; ok {
		return f
	}
	f := r.find(p, dirs)
	if r.cache == nil {
		r.cache = map[string]string{}
	}
	r.cache[key] = f
	return f
}

func (r *resolver) find(p string, dirs []string) string {
	p = filepath.ToSlash(strings.TrimPrefix(p, "file://"))
	if p == "" {
		return ""
	}
	p = path.Clean(p)
	if path.IsAbs(p) {
		for _, root := range r.roots {
			if rel, ok := strings.CutPrefix(p, root+"/"); ok && r.isFile(rel) {
				return rel
			}
		}
	} else {
		for _, c := range []string{path.Join(r.wd, p), p} {
			if r.isFile(c) {
				return c
			}
		}
	}
	if d := path.Dir(p); d != "." && d != "/" {
		dirs = strings.Split(strings.TrimPrefix(d, "/"), "/")
	}
	return r.byName(path.Base(p), dirs)
}

// isFile says whether rel is a file of the workspace.
func (r *resolver) isFile(rel string) bool {
	if rel == ".." || strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
		return false
	}
	fi, err := r.root.Stat(rel)
	return err == nil && !fi.IsDir()
}

// byName looks a file up by its base name: the one file of that name, or
// the one whose directories match most of dirs, from the innermost out
// (and, between as many, the one whose directories all match).
func (r *resolver) byName(base string, dirs []string) string {
	if !r.indexed {
		r.buildIndex()
	}
	cands := r.index[base]
	if len(cands) == 1 {
		return cands[0]
	}
	type scored struct {
		path  string
		n     int
		whole bool
	}
	var best []scored
	for _, c := range cands {
		cd := []string{}
		if d := path.Dir(c); d != "." {
			cd = strings.Split(d, "/")
		}
		n := 0
		for n < len(cd) && n < len(dirs) && cd[len(cd)-1-n] == dirs[len(dirs)-1-n] {
			n++
		}
		best = append(best, scored{c, n, n == len(cd)})
	}
	sort.SliceStable(best, func(i, j int) bool {
		if best[i].n != best[j].n {
			return best[i].n > best[j].n
		}
		return best[i].whole && !best[j].whole
	})
	if len(best) == 0 || best[0].n == 0 || len(best) > 1 && best[1].n == best[0].n && best[1].whole == best[0].whole {
		return "" // none, or no telling which
	}
	return best[0].path
}

// buildIndex lists the workspace's files by base name, leaving out .git
// and node_modules, which hold no test of the repository's own.
func (r *resolver) buildIndex() {
	r.indexed = true
	r.index = map[string][]string{}
	n := 0
	_ = fs.WalkDir(r.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil
		case d.IsDir():
			if p != "." && (d.Name() == ".git" || d.Name() == "node_modules") {
				return fs.SkipDir
			}
			return nil
		case n >= maxIndexed:
			return fs.SkipAll
		}
		n++
		r.index[d.Name()] = append(r.index[d.Name()], p)
		return nil
	})
}

var (
	// pythonLocation is a frame of a Python traceback.
	pythonLocation = regexp.MustCompile(`File "([^"\n]+)", line (\d+)`)
	// fileLocation is "path/file.ext:line" or "...:line:column", as
	// compilers, go test, pytest, Node.js and Java stack traces write
	// it, after white space, a bracket or a quote.
	fileLocation = regexp.MustCompile(`(?:^|[\s(\[<'"=])([\w.@+\-/]*[\w\-]\.[A-Za-z]\w*):(\d+)(?::\d+)?`)
)

// location is a place a failure's text names, found in the workspace.
type location struct {
	file string
	line int
	at   int // the offset in the text
}

// locate finds where a failure's text says it failed: the first location
// in the file prefer when it is set, else the first in a test file (one
// whose name says test), else the first found in the workspace. at is the
// location's offset in text, -1 with none.
func (r *resolver) locate(text, prefer string, dirs []string) (file string, line, at int) {
	type match struct{ file, line [2]int }
	var ms []match
	for _, m := range pythonLocation.FindAllStringSubmatchIndex(text, maxLocations) {
		ms = append(ms, match{[2]int{m[2], m[3]}, [2]int{m[4], m[5]}})
	}
	for _, m := range fileLocation.FindAllStringSubmatchIndex(text, maxLocations) {
		ms = append(ms, match{[2]int{m[2], m[3]}, [2]int{m[4], m[5]}})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].file[0] < ms[j].file[0] })
	var first, test *location
	for _, m := range ms[:min(len(ms), maxLocations)] {
		name, at := text[m.file[0]:m.file[1]], m.file[0]
		n, err := strconv.Atoi(text[m.line[0]:m.line[1]])
		if err != nil || n <= 0 {
			continue
		}
		f := r.resolve(name, dirs)
		if f == "" {
			continue
		}
		loc := &location{f, n, at}
		if prefer != "" {
			if f == prefer {
				return f, n, at
			}
			continue
		}
		if first == nil {
			first = loc
		}
		if test == nil && strings.Contains(strings.ToLower(path.Base(f)), "test") {
			test = loc
		}
	}
	if test != nil {
		first = test
	}
	if first == nil {
		return "", 0, -1
	}
	return first.file, first.line, first.at
}
