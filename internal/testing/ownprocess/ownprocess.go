// Package ownprocess runs a test again in a process of its own, for what
// belongs to a whole process and cannot be undone within it (a name the
// Temporal SDK keeps once set, a lowered CPU priority).
package ownprocess

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const envChild = "SLUICE_TEST_OWN_PROCESS"

// Child reports whether this is the test's own process. When it is not, it
// runs the test binary again with only this test, fails the test with the
// child's output when the child fails, and returns false: the caller
// returns (after checking what the parent should see, if anything).
func Child(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envChild) == t.Name() {
		return true
	}
	run := "^" + strings.Join(splitQuote(t.Name()), "$/^") + "$"
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"="+t.Name())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s in a process of its own: %v\n%s", t.Name(), err, out)
	}
	return false
}

// splitQuote splits a test's name at its subtests and quotes each part
// for -test.run.
func splitQuote(name string) []string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return parts
}
