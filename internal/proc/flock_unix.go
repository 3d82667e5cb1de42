//go:build unix

package proc

import (
	"os"
	"syscall"
)

// TryLock takes an exclusive flock on f without waiting; ok is false when
// another process holds it. Closing f releases it.
func TryLock(f *os.File) (ok bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == syscall.EWOULDBLOCK {
		return false, nil
	}
	return err == nil, err
}

// Lock takes an exclusive flock on f, waiting for it. Closing f releases
// it.
func Lock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}
