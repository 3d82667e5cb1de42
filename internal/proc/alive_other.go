//go:build !unix

package local

import "os"

// alive reports whether a process exists, as well as this platform lets
// us tell: FindProcess fails for a process that is gone.
func alive(pid int) bool {
	_, err := os.FindProcess(pid)
	return err == nil
}
