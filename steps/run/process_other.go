//go:build !unix

package run

import (
	"os"
	"os/exec"
	"syscall"
)

// Without process groups only the main process can be stopped; host steps
// are meant for Unix runners.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func terminateGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func groupAlive(*exec.Cmd) bool { return false }

func exitError(ps *os.ProcessState) *ExitError { return &ExitError{Code: ps.ExitCode()} }
