//go:build !linux

package proc

import "runtime/debug"

// Trim gives the heap's free pages back to the system; see the Linux
// version, which also releases the executable's pages start-up read.
func Trim() int64 {
	debug.FreeOSMemory()
	return 0
}
