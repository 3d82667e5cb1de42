package junit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-ci/sluice/steps"
)

// workspace makes a workspace holding the sources the reports in testdata
// name, and the reports themselves under reports/.
func workspace(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	for _, f := range []string{
		"calc/calc_test.go", "internal/calc/calc_test.go", "api/login_test.go",
		"tests/test_math.py", "tests/test_db.py", "src/db.py",
		"src/math.test.js", "node_modules/jest-circus/build/utils.js",
		"src/test/java/com/acme/CalcTest.java", "src/main/java/com/acme/Calc.java",
	} {
		write(t, ws, f, "source\n")
	}
	reports, err := filepath.Glob("testdata/*.xml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		b, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		write(t, ws, "reports/"+filepath.Base(r), string(b))
	}
	return ws
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The reports of the usual tools are read: counts, and for each failure
// its suite, name, file and line in the workspace, message and details.
func TestCollectReports(t *testing.T) {
	ws := workspace(t)
	for _, tc := range []struct {
		report string
		want   steps.TestReport
	}{
		{"gotestsum.xml", steps.TestReport{Total: 5, Failed: 2, Skipped: 1, Failures: []steps.TestFailure{{
			Suite: "github.com/acme/web/calc", Name: "TestDiv",
			// go test names the file in the package's directory; of the
			// two calc_test.go, the package path says which.
			File: "calc/calc_test.go", Line: 14,
			// "Failed" says nothing: the line that says where says why.
			Message: "Div(1, 0) = 0, want an error",
			Details: "=== RUN   TestDiv\n    calc_test.go:14: Div(1, 0) = 0, want an error\n--- FAIL: TestDiv (0.00s)",
		}, {
			Suite: "github.com/acme/web/internal/calc", Name: "TestRound",
			File: "internal/calc/calc_test.go", Line: 9,
			Message: "Round(2.5) = 2, want 3",
			Details: "=== RUN   TestRound\n    calc_test.go:9: Round(2.5) = 2, want 3\n--- FAIL: TestRound (0.00s)",
		}}}},
		{"go-junit-report.xml", steps.TestReport{Total: 2, Failed: 1, Failures: []steps.TestFailure{{
			Suite: "github.com/acme/web/api", Name: "TestLogin",
			File: "api/login_test.go", Line: 31,
			Message: "POST /login: status 500, want 200",
			Details: "    login_test.go:31: POST /login: status 500, want 200\n    login_test.go:32: body: {\"error\":\"token sk-live-12345 rejected\"}",
		}}}},
		{"pytest.xml", steps.TestReport{Total: 4, Failed: 2, Skipped: 1, Failures: []steps.TestFailure{{
			Suite: "tests.test_math", Name: "test_div",
			// The file attribute's line is the test's; the text's is the
			// failing assertion's.
			File: "tests/test_math.py", Line: 9,
			Message: "assert 0 == 1\n +  where 0 = div(1, 1)",
			Details: "def test_div():\n>       assert div(1, 1) == 1\nE       assert 0 == 1\nE        +  where 0 = div(1, 1)\n\ntests/test_math.py:9: AssertionError",
		}, {
			Suite: "tests.test_db", Name: "test_connect",
			File: "tests/test_db.py", Line: 2,
			Message: `failed on setup with "ConnectionRefusedError: [Errno 111] Connection refused"`,
			Details: "@pytest.fixture\n    def db():\n>       return connect(\"localhost:5432\")\n\ntests/test_db.py:2: \n" +
				strings.Repeat("_ ", 39) + "_\nsrc/db.py:5: in connect\n    raise ConnectionRefusedError(111, \"Connection refused\")\nE   ConnectionRefusedError: [Errno 111] Connection refused",
		}}}},
		{"jest-junit.xml", steps.TestReport{Total: 3, Failed: 1, Skipped: 1, Failures: []steps.TestFailure{{
			// The class name repeats the name: the suite is the describe.
			Suite: "math", Name: "math divides",
			// An absolute path from another machine, found by its name and
			// directory; the line is the stack trace's.
			File: "src/math.test.js", Line: 9,
			Message: "Error: expect(received).toBe(expected) // Object.is equality",
			Details: "Error: expect(received).toBe(expected) // Object.is equality\n\nExpected: 2\nReceived: 3\n" +
				"    at Object.toBe (/home/runner/ws/web/src/math.test.js:9:21)\n" +
				"    at Promise.then.completed (/home/runner/ws/web/node_modules/jest-circus/build/utils.js:298:28)",
		}}}},
		{"surefire.xml", steps.TestReport{Total: 5, Failed: 2, Skipped: 1, Failures: []steps.TestFailure{{
			Suite: "com.acme.CalcTest", Name: "divides",
			// JUnit's own frames are not in the workspace; the test's is.
			File: "src/test/java/com/acme/CalcTest.java", Line: 17,
			Message: "expected: <2> but was: <3>",
			Details: "org.opentest4j.AssertionFailedError: expected: <2> but was: <3>\n" +
				"\tat org.junit.jupiter.api.AssertionFailureBuilder.build(AssertionFailureBuilder.java:151)\n" +
				"\tat org.junit.jupiter.api.AssertEquals.assertEquals(AssertEquals.java:150)\n" +
				"\tat com.acme.CalcTest.divides(CalcTest.java:17)",
		}, {
			Suite: "com.acme.CalcTest", Name: "parses",
			// Calc.java is in the workspace too, but the test's frame is
			// where the test failed.
			File: "src/test/java/com/acme/CalcTest.java", Line: 23,
			Message: `For input string: "x"`,
			Details: "java.lang.NumberFormatException: For input string: \"x\"\n" +
				"\tat java.base/java.lang.NumberFormatException.forInputString(NumberFormatException.java:67)\n" +
				"\tat com.acme.Calc.parse(Calc.java:22)\n" +
				"\tat com.acme.CalcTest.parses(CalcTest.java:23)",
		}}}},
		{"nested.xml", steps.TestReport{Total: 2, Failed: 1, Failures: []steps.TestFailure{{
			Suite: "inner", Name: "deep", Message: "boom",
		}}}},
	} {
		t.Run(tc.report, func(t *testing.T) {
			var log bytes.Buffer
			got := Collect(Options{Workspace: ws, Patterns: []string{"reports/" + tc.report}, Log: &log})
			if got == nil {
				t.Fatalf("no report; log:\n%s", log.String())
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			summary := fmt.Sprintf("sluice: tests: %d passed, %d failed, %d skipped (1 report)\n", tc.want.Total-tc.want.Failed-tc.want.Skipped, tc.want.Failed, tc.want.Skipped)
			if !strings.Contains(log.String(), summary) {
				t.Errorf("log lacks %q:\n%s", summary, log.String())
			}
			for _, f := range tc.want.Failures {
				if line := "sluice: FAIL " + f.String() + "\n"; !strings.Contains(log.String(), line) {
					t.Errorf("log lacks %q:\n%s", line, log.String())
				}
			}
		})
	}
}

// Patterns are globs relative to the step's working directory; a file two
// patterns match is read once; a pattern that matches nothing, and a file
// that is no report, are lines in the log, and the rest is read.
func TestCollectGlobs(t *testing.T) {
	ws := workspace(t)
	write(t, ws, "svc/build/test-results/test/TEST-a.xml", `<testsuite name="a"><testcase name="one"/></testsuite>`)
	write(t, ws, "svc/build/test-results/integration/deep/TEST-b.xml", `<testsuite name="b"><testcase name="two"><failure message="no"/></testcase></testsuite>`)
	write(t, ws, "svc/build/test-results/test/binary/output.bin", "not xml")
	write(t, ws, "svc/report.xml", `<testsuites><testsuite name="c"><testcase name="three"><skipped/></testcase></testsuite></testsuites>`)

	var log bytes.Buffer
	got := Collect(Options{
		Workspace:  ws,
		WorkingDir: "svc",
		Patterns: []string{
			"build/test-results/**/*.xml", "build/test-results/test/TEST-a.xml",
			"report.xml", "missing/*.xml", "../reports/n*.xml", "../reports/truncated.xml", "../reports/notjunit.xml",
		},
		Log: &log,
	})
	if got == nil {
		t.Fatalf("no report; log:\n%s", log.String())
	}
	want := steps.TestReport{Total: 5, Failed: 2, Skipped: 1, Failures: []steps.TestFailure{
		{Suite: "b", Name: "two", Message: "no"},
		{Suite: "inner", Name: "deep", Message: "boom"},
	}}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	for _, line := range []string{
		"sluice: junit: \"missing/*.xml\" matched no file\n",
		"sluice: junit: reports/truncated.xml is not a JUnit XML report, left out: XML syntax error on line 5: unexpected EOF\n",
		"sluice: junit: reports/notjunit.xml is not a JUnit XML report, left out: the root element is <coverage>, not <testsuites> or <testsuite>\n",
		"sluice: tests: 2 passed, 2 failed, 1 skipped (4 reports)\n",
		"sluice: FAIL b.two: no\n",
	} {
		if !strings.Contains(log.String(), line) {
			t.Errorf("log lacks %q:\n%s", line, log.String())
		}
	}

	// Nothing to read is no report, and says why.
	log.Reset()
	if got := Collect(Options{Workspace: ws, Patterns: []string{"nothing.xml"}, Log: &log}); got != nil {
		t.Errorf("report %+v from no file", got)
	}
	if want := "sluice: junit: \"nothing.xml\" matched no file\n"; log.String() != want {
		t.Errorf("log %q, want %q", log.String(), want)
	}
}

// A report that is a symbolic link out of the workspace is not read: a
// container step must not make the runner read the runner's files.
func TestCollectStaysInWorkspace(t *testing.T) {
	ws := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.xml")
	if err := os.WriteFile(outside, []byte(`<testsuite><testcase name="x"><failure message="runner secret"/></testcase></testsuite>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(ws, "report.xml")); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if got := Collect(Options{Workspace: ws, Patterns: []string{"report.xml", "*.xml"}, Log: &log}); got != nil {
		t.Errorf("read %+v through a link out of the workspace", got)
	}
	if strings.Contains(log.String(), "runner secret") || !strings.Contains(log.String(), "report.xml is not a JUnit XML report") {
		t.Errorf("log:\n%s", log.String())
	}
}

// A report's paths under a container's mount of the workspace are paths
// in the workspace.
func TestCollectContainerPaths(t *testing.T) {
	ws := t.TempDir()
	write(t, ws, "pkg/a_test.py", "")
	write(t, ws, "pkg/b_test.py", "")
	write(t, ws, "other/pkg/b_test.py", "")
	write(t, ws, "out/r.xml", `<testsuite name="s">
<testcase name="a" file="/workspace/pkg/a_test.py" line="3"><failure message="m"/></testcase>
<testcase name="b"><failure>Traceback (most recent call last):
  File "/usr/lib/python3/unittest/case.py", line 58, in testPartExecutor
  File "/workspace/pkg/b_test.py", line 12, in test_b
AssertionError: 1 != 2</failure></testcase>
</testsuite>`)
	got := Collect(Options{Workspace: ws, WorkingDir: "out", Patterns: []string{"r.xml"}, Roots: []string{"/workspace"}})
	if got == nil {
		t.Fatal("no report")
	}
	want := []steps.TestFailure{
		{Suite: "s", Name: "a", File: "pkg/a_test.py", Line: 3, Message: "m"},
		{Suite: "s", Name: "b", File: "pkg/b_test.py", Line: 12, Message: "Traceback (most recent call last):", Details: "Traceback (most recent call last):\n" +
			"  File \"/usr/lib/python3/unittest/case.py\", line 58, in testPartExecutor\n" +
			"  File \"/workspace/pkg/b_test.py\", line 12, in test_b\nAssertionError: 1 != 2"},
	}
	if diff := cmp.Diff(want, got.Failures); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
}

// The counts of a huge report are exact; what it lists is bounded.
func TestCollectLimits(t *testing.T) {
	ws := t.TempDir()
	var b strings.Builder
	b.WriteString(`<testsuite name="big">`)
	for i := range 300 {
		fmt.Fprintf(&b, `<testcase name="t%d"><failure message="%s">%s</failure></testcase>`, i, strings.Repeat("m", 3000), strings.Repeat("é", 10000))
	}
	for i := range 50 {
		fmt.Fprintf(&b, `<testcase name="s%d"><skipped/></testcase><testcase name="p%d"/>`, i, i)
	}
	b.WriteString(`</testsuite>`)
	write(t, ws, "r.xml", b.String())
	got := Collect(Options{Workspace: ws, Patterns: []string{"r.xml"}})
	if got == nil {
		t.Fatal("no report")
	}
	if got.Total != 400 || got.Failed != 300 || got.Skipped != 50 || got.Passed() != 50 {
		t.Errorf("counts %d total, %d failed, %d skipped", got.Total, got.Failed, got.Skipped)
	}
	if len(got.Failures) == 0 || len(got.Failures) > steps.MaxTestFailures {
		t.Fatalf("%d failures listed", len(got.Failures))
	}
	text := 0
	for i, f := range got.Failures {
		if f.Name != fmt.Sprintf("t%d", i) {
			t.Errorf("failure %d is %s", i, f.Name)
		}
		if len(f.Message) > steps.MaxTestMessage || len(f.Details) > steps.MaxTestDetails {
			t.Errorf("failure %d: message of %d bytes, details of %d", i, len(f.Message), len(f.Details))
		}
		// Details go first when the report is full.
		if f.Details != "" && (!strings.HasPrefix(f.Details, "é") || strings.ToValidUTF8(f.Details, "?") != f.Details) {
			t.Errorf("failure %d: details cut inside a character", i)
		}
		text += len(f.Suite) + len(f.Name) + len(f.File) + len(f.Message) + len(f.Details)
	}
	if text > steps.MaxTestReportText {
		t.Errorf("failures hold %d bytes of text, more than %d", text, steps.MaxTestReportText)
	}
}

// Reports in ISO 8859-1 or with a byte order mark are read too.
func TestParseEncodings(t *testing.T) {
	for name, doc := range map[string][]byte{
		"latin1": append([]byte(`<?xml version="1.0" encoding="ISO-8859-1"?><testsuite name="s"><testcase name="caf`), append([]byte{0xE9}, []byte(`"><failure message="x"/></testcase></testsuite>`)...)...),
		"bom":    append([]byte{0xEF, 0xBB, 0xBF}, []byte(`<?xml version="1.0" encoding="UTF-8"?><testsuite name="s"><testcase name="café"><failure message="x"/></testcase></testsuite>`)...),
	} {
		var cases []Case
		if err := Parse(bytes.NewReader(doc), func(c Case) { cases = append(cases, c) }); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(cases) != 1 || cases[0].Name != "café" || !cases[0].Failed {
			t.Errorf("%s: cases %+v", name, cases)
		}
	}
	if err := Parse(strings.NewReader(""), func(Case) {}); err == nil {
		t.Error("an empty file parsed")
	}
}
