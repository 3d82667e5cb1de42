package local

import "syscall"

// childAttrs puts the server in its own process group, so that Ctrl-C
// reaches only sluice, which cancels runs before it stops the server, and
// kills it when sluice dies, even by SIGKILL.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
