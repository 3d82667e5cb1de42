package proc

import "syscall"

// ChildAttrs starts a service child as a plain child; one that can stops
// when its stdin closes, which happens when sluice exits.
func ChildAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
