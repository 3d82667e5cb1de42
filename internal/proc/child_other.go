//go:build !linux && !windows

package local

import "syscall"

// childAttrs puts the server in its own process group; where there is no
// parent-death signal, the server stops when its stdin closes.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
