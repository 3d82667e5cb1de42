package local

import "syscall"

// childAttrs starts the server as a plain child; it stops when its stdin
// closes, which happens when sluice exits.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
