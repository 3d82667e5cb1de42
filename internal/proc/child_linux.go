package proc

import "syscall"

// ChildAttrs puts a service child (the embedded Temporal server,
// buildkitd) in its own process group, so that Ctrl-C reaches only sluice,
// which cancels runs before it stops the child, and has it killed when
// sluice dies, even by SIGKILL.
func ChildAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
