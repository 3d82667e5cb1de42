//go:build !unix

package cli

import (
	"os"
	"syscall"
)

// tryLock does not lock where flock is missing: two commands started at
// the same moment may then both start a server, and one says the
// database is in use.
func tryLock(*os.File) (bool, error) { return true, nil }

func detached() *syscall.SysProcAttr { return nil }
