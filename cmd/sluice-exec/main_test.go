//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(data, []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
		want int
	}{
		{"success", []string{"true"}, 0},
		{"exit code", []string{"sh", "-c", "exit 7"}, 7},
		{"killed by a signal", []string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
		{"not found", []string{"no-such-command-here"}, 127},
		{"not a program", []string{data}, 126},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.argv); got != tc.want {
				t.Errorf("run(%q) = %d, want %d", tc.argv, got, tc.want)
			}
		})
	}
}

// TestMain runs the program itself when a test runs the test binary as
// sluice-exec.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_EXEC_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The program records the command's exit code, exits 0, and passes on the
// command's output.
func TestMainRecordsExitCode(t *testing.T) {
	status := filepath.Join(t.TempDir(), "exit")
	cmd := exec.Command(os.Args[0], status, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	cmd.Env = append(os.Environ(), "SLUICE_EXEC_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sluice-exec exited %v, want 0\n%s", err, out)
	}
	if string(out) != "out\nerr\n" {
		t.Errorf("output %q", out)
	}
	if b, err := os.ReadFile(status); err != nil || string(b) != "3\n" {
		t.Errorf("status file %q, %v; want \"3\\n\"", b, err)
	}

	// Wrong usage is refused with 2 and no status.
	cmd = exec.Command(os.Args[0], status+".2", "sh")
	cmd.Env = append(os.Environ(), "SLUICE_EXEC_TEST_MAIN=1")
	if out, err := cmd.CombinedOutput(); !strings.Contains(string(out), "usage: sluice-exec") || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("bad usage: %v\n%s", err, out)
	}
}
