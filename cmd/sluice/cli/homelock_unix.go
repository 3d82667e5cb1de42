//go:build unix

package cli

import (
	"os"
	"syscall"

	"github.com/sluice-ci/sluice/internal/proc"
)

// tryLock takes an exclusive flock on f without waiting; ok is false when
// another process holds it.
func tryLock(f *os.File) (bool, error) { return proc.TryLock(f) }

// detached makes a child its own session's leader: it outlives the
// command that starts it, and the terminal's Ctrl-C does not reach it.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
