package binaryid

import (
	"strings"
	"testing"
)

// TestID checks that the name the SDK gets for this binary (instead of
// hashing the executable) is set and stable within a process.
func TestID(t *testing.T) {
	id := ID()
	if !strings.HasPrefix(id, "sluice-") || len(id) < len("sluice-")+32 {
		t.Fatalf("ID() = %q; want sluice- and a commit or a hash", id)
	}
	if again := ID(); again != id {
		t.Errorf("ID() changed within a process: %q, then %q", id, again)
	}
}
