package engine

import (
	"strings"
	"testing"
)

// TestBinaryID checks that the name the SDK gets for this binary (instead
// of hashing the executable) is set and stable within a process.
func TestBinaryID(t *testing.T) {
	id := binaryID()
	if !strings.HasPrefix(id, "sluice-") || len(id) < len("sluice-")+32 {
		t.Fatalf("binaryID() = %q; want sluice- and a commit or a hash", id)
	}
	if again := binaryID(); again != id {
		t.Errorf("binaryID() changed within a process: %q, then %q", id, again)
	}
}
