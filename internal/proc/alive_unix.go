//go:build unix

package local

import (
	"errors"
	"syscall"
)

// alive reports whether a process exists, by sending it no signal.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
