//go:build !unix

package proc

import "os"

// Alive reports whether a process exists, as well as this platform lets
// us tell: FindProcess fails for a process that is gone.
func Alive(pid int) bool {
	_, err := os.FindProcess(pid)
	return err == nil
}
