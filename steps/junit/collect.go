package junit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// The limits of what Collect reads: reports larger than MaxReportSize are
// left out, and at most MaxReports files are read.
const (
	MaxReportSize = 256 << 20
	MaxReports    = 10000
)

// logFailures is how many failures Collect lists in the step's log.
const logFailures = 10

// Options says which reports Collect reads, and where.
type Options struct {
	// Workspace is the stage's workspace on the runner.
	Workspace string
	// WorkingDir is the step's working_dir, relative to Workspace.
	WorkingDir string
	// Patterns are the step's junit patterns, relative to WorkingDir.
	Patterns []string
	// Roots are other absolute paths the step knew Workspace by, like
	// the mount point of a container's workspace: a report's path under
	// one of them is a path in the workspace.
	Roots []string
	// Log receives what Collect has to say: patterns that matched no
	// file, files that are no report, and the tests that failed.
	Log io.Writer
}

// Collect reads the reports the patterns match in the workspace and sums
// them up. Nothing it meets fails the step: a pattern that matches no file
// or a file that is no JUnit report is a line in the log. It returns nil
// when no report could be read.
func Collect(o Options) *steps.TestReport {
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	root, err := os.OpenRoot(o.Workspace)
	if err != nil {
		fmt.Fprintf(log, "sluice: junit: opening the workspace: %v\n", err)
		return nil
	}
	defer root.Close()
	wd := path.Clean(filepath.ToSlash(o.WorkingDir))
	files := match(root, wd, o.Patterns, log)
	if len(files) > MaxReports {
		fmt.Fprintf(log, "sluice: junit: the patterns match %d files; reading the first %d\n", len(files), MaxReports)
		files = files[:MaxReports]
	}
	b := builder{res: resolver{root: root, wd: wd, roots: workspaceRoots(o.Workspace, o.Roots)}}
	read := 0
	for _, f := range files {
		if err := b.read(root, f); err != nil {
			fmt.Fprintf(log, "sluice: junit: %s is not a JUnit XML report, left out: %v\n", f, err)
			continue
		}
		read++
	}
	if read == 0 {
		return nil
	}
	r := &b.report
	fmt.Fprintf(log, "sluice: tests: %s (%s)\n", r.Summary(), plural(read, "report"))
	for _, f := range r.Failures[:min(len(r.Failures), logFailures)] {
		fmt.Fprintf(log, "sluice: FAIL %s\n", f)
	}
	if more := r.Failed - min(len(r.Failures), logFailures); more > 0 {
		fmt.Fprintf(log, "sluice: ... and %s\n", plural(more, "more failure"))
	}
	return r
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// workspaceRoots are the absolute paths that name the workspace: its own,
// with symbolic links resolved too, and the others the step knew.
func workspaceRoots(ws string, others []string) []string {
	var roots []string
	add := func(p string) {
		if p = filepath.ToSlash(filepath.Clean(p)); path.IsAbs(p) && !slices.Contains(roots, p) {
			roots = append(roots, p)
		}
	}
	add(ws)
	if real, err := filepath.EvalSymlinks(ws); err == nil {
		add(real)
	}
	for _, r := range others {
		add(r)
	}
	return roots
}

// match lists the workspace's files that the patterns match, relative to
// the workspace, once each, in the order of the patterns and then of
// their paths. A pattern that matches nothing is said in the log.
func match(root *os.Root, wd string, patterns []string, log io.Writer) []string {
	var files []string
	fsys := root.FS()
	for _, p := range patterns {
		full := path.Join(wd, filepath.ToSlash(p))
		if p == "" || path.IsAbs(p) || full == ".." || strings.HasPrefix(full, "../") {
			fmt.Fprintf(log, "sluice: junit: %q is not a path in the workspace, left out\n", p)
			continue
		}
		var found []string
		if !hasMeta(full) {
			if fi, err := root.Stat(full); err == nil && !fi.IsDir() {
				found = append(found, full)
			}
		} else {
			base := literalDir(full)
			_ = fs.WalkDir(fsys, base, func(name string, d fs.DirEntry, err error) error {
				switch {
				case err != nil:
					return nil // an unreadable directory holds no report we can read
				case d.IsDir():
					if d.Name() == ".git" && name != base {
						return fs.SkipDir
					}
				case plan.MatchGlob(full, name):
					found = append(found, name)
				}
				return nil
			})
		}
		if len(found) == 0 {
			fmt.Fprintf(log, "sluice: junit: %q matched no file\n", p)
		}
		for _, f := range found {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
	}
	return files
}

func hasMeta(p string) bool { return strings.ContainsAny(p, "*?") }

// literalDir is the directory of a pattern before its first element with
// a wildcard: where a walk for its matches starts.
func literalDir(pattern string) string {
	elems := strings.Split(pattern, "/")
	i := slices.IndexFunc(elems, hasMeta)
	if i <= 0 {
		return "."
	}
	return path.Join(elems[:i]...)
}

// builder adds the cases of reports to a TestReport.
type builder struct {
	report steps.TestReport
	res    resolver
	text   int  // bytes of text in report.Failures
	full   bool // no more failures are listed
}

// read adds the cases of one report, a path in the workspace.
func (b *builder) read(root *os.Root, name string) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	case fi.Size() > MaxReportSize:
		return fmt.Errorf("it holds %d MiB; Sluice reads reports of up to %d MiB", fi.Size()>>20, MaxReportSize>>20)
	}
	// The cases of a report that turns out broken are not counted.
	var cases []Case
	if err := Parse(f, func(c Case) { cases = append(cases, c) }); err != nil {
		return err
	}
	for _, c := range cases {
		b.add(c)
	}
	return nil
}

func (b *builder) add(c Case) {
	r := &b.report
	r.Total++
	switch {
	case c.Failed:
		r.Failed++
	case c.Skipped:
		r.Skipped++
		return
	default:
		return
	}
	if b.full || len(r.Failures) >= steps.MaxTestFailures {
		return
	}
	f := b.failure(c)
	size := len(f.Suite) + len(f.Name) + len(f.File) + len(f.Message)
	if b.text+size+len(f.Details) > steps.MaxTestReportText {
		f.Details = ""
	}
	if b.text+size+len(f.Details) > steps.MaxTestReportText {
		b.full = true
		return
	}
	b.text += size + len(f.Details)
	r.Failures = append(r.Failures, f)
}

// failure describes a failed case.
func (b *builder) failure(c Case) steps.TestFailure {
	f := steps.TestFailure{Suite: c.ClassName, Name: c.Name}
	if f.Suite == "" || f.Suite == f.Name {
		// jest-junit repeats the name as the class name.
		f.Suite = c.Suite
	}
	if f.Name == "" {
		f.Name = "(unnamed test)"
	}
	hint := classDirs(c.ClassName)
	if c.File != "" {
		f.File = b.res.resolve(c.File, hint)
		if f.File != "" {
			f.Line = c.Line
		}
	}
	// The failure's text says more precisely where it failed (pytest's
	// line is the test's def, the text's the failing assertion), and
	// where the report has no file.
	file, line, at := b.res.locate(c.Text, f.File, hint)
	if file != "" && (f.File == "" || file == f.File) {
		f.File, f.Line = file, line
	} else {
		at = -1
	}
	f.Message = c.Message
	if f.Message == "" || isGeneric(f.Message) {
		// The line that says where it failed says why, in Go's
		// "calc_test.go:14: want 2", else the text's first line.
		msg := ""
		if l := firstLine(c.Text, at); at >= 0 && locationPrefix.MatchString(l) {
			msg = stripLocation(l)
		}
		if msg == "" {
			msg = stripLocation(firstLine(c.Text, -1))
		}
		if msg != "" {
			f.Message = msg
		}
	}
	f.Message = cut(f.Message, steps.MaxTestMessage)
	f.Details = cut(strings.TrimRight(c.Text, " \t\r\n"), steps.MaxTestDetails)
	return f
}

// isGeneric says whether a message says nothing but that the test failed,
// as go-junit-report's and gotestsum's "Failed" does.
func isGeneric(msg string) bool {
	switch strings.ToLower(strings.TrimSpace(msg)) {
	case "failed", "failure", "error":
		return true
	}
	return false
}

// firstLine is the first line of text that says something: not empty and
// not a line go test writes around every test. With at >= 0, the line
// holding that offset.
func firstLine(text string, at int) string {
	if at >= 0 {
		start := strings.LastIndexByte(text[:at], '\n') + 1
		line, _, _ := strings.Cut(text[start:], "\n")
		return strings.TrimSpace(line)
	}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "=== ") || strings.HasPrefix(line, "--- FAIL") {
			continue
		}
		return line
	}
	return ""
}

var locationPrefix = regexp.MustCompile(`^[\w./\\-]+\.\w+:\d+(?::\d+)?:\s*`)

// stripLocation drops a leading "file.go:12: " from a message, which the
// failure's File and Line say.
func stripLocation(line string) string {
	if s := locationPrefix.ReplaceAllString(line, ""); s != "" {
		return s
	}
	return line
}

// classDirs guesses the directories of a test's class name: a Go package
// path is one ("github.com/acme/web/calc"); a Java class or a Python
// module is in the directories its dotted name gives before the last
// part ("com.acme.CalcTest", "tests.test_calc").
func classDirs(class string) []string {
	if class == "" || strings.ContainsAny(class, " \t") {
		return nil
	}
	if strings.Contains(class, "/") {
		return strings.Split(class, "/")
	}
	parts := strings.Split(class, ".")
	return parts[:len(parts)-1]
}
