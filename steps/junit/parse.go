// Package junit reads the JUnit XML reports a run step declares (its junit
// attribute) when the step ends: the tests that ran, failed and were
// skipped, and for each failure its message, its text and, when the report
// or the text says, the file and line where it failed. Test tools of most
// languages write such reports: go-junit-report and gotestsum, pytest
// --junitxml, jest-junit, Maven Surefire and Gradle, among others.
package junit

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Case is one test case of a report.
type Case struct {
	// Suite is the name of the innermost test suite holding the case.
	Suite     string
	ClassName string
	Name      string
	// File and Line are the case's file and line attributes, as written.
	File string
	Line int
	// Failed is set by a failure or an error, Skipped by skipped.
	Failed  bool
	Skipped bool
	// Message is the message attribute of the case's first failure or
	// error, and Text the text of its failures and errors, cut to
	// maxText bytes.
	Message string
	Text    string
}

// maxText bounds the text kept of one case's failures while reading, so
// that a report with huge failures (a test that prints megabytes) is read
// in little memory. What is kept is cut further into the TestReport.
const maxText = 64 << 10

// Parse reads one JUnit XML report and calls each for every test case in
// it, in order. The root is <testsuites> or a single <testsuite>; suites may
// nest. It returns an error for what is not such a report; each has then
// been called for the cases before the error.
func Parse(r io.Reader, each func(Case)) error {
	d := xml.NewDecoder(skipBOM(r))
	d.CharsetReader = charsetReader
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return errors.New("no root element: the file is empty")
		}
		if err != nil {
			return err
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue // the XML declaration, comments, white space
		}
		switch se.Name.Local {
		case "testsuites", "testsuite":
			return suite(d, se, "", each)
		}
		return fmt.Errorf("the root element is <%s>, not <testsuites> or <testsuite>", se.Name.Local)
	}
}

// suite reads the content of a <testsuites> or <testsuite> element whose
// start was read.
func suite(d *xml.Decoder, start xml.StartElement, outer string, each func(Case)) error {
	name := outer
	if start.Name.Local == "testsuite" {
		if n := attr(start, "name"); n != "" {
			name = n
		}
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			switch t.Name.Local {
			case "testsuite", "testsuites":
				err = suite(d, t, name, each)
			case "testcase":
				var c Case
				c, err = testCase(d, t, name)
				if err == nil {
					each(c)
				}
			default: // properties, system-out, system-err
				err = d.Skip()
			}
			if err != nil {
				return err
			}
		}
	}
}

// testCase reads a <testcase> element whose start was read.
func testCase(d *xml.Decoder, start xml.StartElement, suite string) (Case, error) {
	c := Case{Suite: suite, ClassName: attr(start, "classname"), Name: attr(start, "name"), File: attr(start, "file")}
	if l, err := strconv.Atoi(attr(start, "line")); err == nil && l > 0 {
		c.Line = l
	}
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return c, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			c.Text = text.String()
			return c, nil
		case xml.StartElement:
			switch t.Name.Local {
			case "failure", "error":
				if !c.Failed {
					c.Message = attr(t, "message")
				}
				c.Failed = true
				if text.Len() > 0 {
					text.WriteString("\n")
				}
				if err := readText(d, &text); err != nil {
					return c, err
				}
			case "skipped":
				c.Skipped = true
				err = d.Skip()
			default: // system-out, system-err, properties, Surefire's flakyFailure and rerunFailure
				err = d.Skip()
			}
			if err != nil {
				return c, err
			}
		}
	}
}

// readText appends the text of the element whose start was read to b, up
// to maxText bytes in all, and reads to the element's end.
func readText(d *xml.Decoder, b *strings.Builder) error {
	depth := 1
	for depth > 0 {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if room := maxText - b.Len(); room > 0 {
				b.WriteString(cut(string(t), room))
			}
		}
	}
	return nil
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

// cut returns at most n bytes of s, without splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// skipBOM drops a UTF-8 byte order mark, which some Windows tools write
// and encoding/xml does not expect.
func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
	}
	return br
}

// charsetReader reads the encodings test reports are written in besides
// UTF-8: ASCII and ISO 8859-1, which some Java tools declare.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1":
		return latin1{bufio.NewReader(input)}, nil
	}
	return nil, fmt.Errorf("the report is encoded in %s; Sluice reads UTF-8 and ISO 8859-1", charset)
}

// latin1 decodes ISO 8859-1 into UTF-8.
type latin1 struct{ r *bufio.Reader }

func (l latin1) Read(p []byte) (int, error) {
	n := 0
	for n+utf8.UTFMax <= len(p) {
		c, err := l.r.ReadByte()
		if err != nil {
			if n > 0 && err == io.EOF {
				return n, nil
			}
			return n, err
		}
		n += utf8.EncodeRune(p[n:], rune(c))
	}
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}
