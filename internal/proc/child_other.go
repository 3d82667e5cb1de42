//go:build !linux && !windows

package proc

import "syscall"

// ChildAttrs puts a service child in its own process group; where there is
// no parent-death signal, a child that can stops when its stdin closes.
func ChildAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
