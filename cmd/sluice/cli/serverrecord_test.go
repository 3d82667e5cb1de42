package cli

import (
	"os"
	"os/exec"
	"testing"

	"github.com/sluice-ci/sluice/internal/proc"
)

// TestOtherServerIgnoresOwnPID: a server in a container is PID 1 at every
// start, so a record its killed predecessor left names the new process;
// that record does not stop it. A record of another live process does.
func TestOtherServerIgnoresOwnPID(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(home+"/server", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := proc.WriteRecord(serverRecordFile(home), serverRecord{URL: "http://127.0.0.1:1", PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if r, ok := otherServer(home); ok {
		t.Errorf("a record naming this process counts as another server: %+v", r)
	}
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	if err := proc.WriteRecord(serverRecordFile(home), serverRecord{URL: "http://127.0.0.1:2", PID: other.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	if r, ok := otherServer(home); !ok || r.URL != "http://127.0.0.1:2" {
		t.Errorf("the record of a live server: %+v, %v; want it found", r, ok)
	}
}
