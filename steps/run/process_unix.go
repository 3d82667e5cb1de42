//go:build unix

package run

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// The group's ID is the main process's PID, since Setpgid made it the
// leader. The group outlives its leader while any member is left.

func terminateGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

// groupAlive reports whether any process of the group is left. A process
// that has ended but is not reaped yet (a zombie) does not count: the
// step's orphans are reaped by init, which in some containers takes
// seconds.
func groupAlive(cmd *exec.Cmd) bool {
	pgid := cmd.Process.Pid
	if err := syscall.Kill(-pgid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	alive, ok := liveMembers(pgid)
	return alive || !ok
}

func exitError(ps *os.ProcessState) *ExitError {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return &ExitError{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal())}
	}
	return &ExitError{Code: ps.ExitCode()}
}
