//go:build unix

package embedded

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockFile holds an exclusive flock on a file for as long as it is open. The
// kernel drops the lock when the process dies, so a crash never leaves a
// stale lock behind.
type lockFile struct {
	f *os.File
}

// acquireLock takes the lock at path without waiting. If another process
// (or another Server in this process) holds it, the error wraps
// ErrDataDirInUse and names the holder's pid when it is known.
func acquireLock(path string) (*lockFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, lockHeldError(path)
		}
		return nil, fmt.Errorf("locking %q: %w", path, err)
	}
	// The pid is only for the error message another process prints.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &lockFile{f: f}, nil
}

func lockHeldError(path string) error {
	b, _ := os.ReadFile(path)
	pid := strings.TrimSpace(string(b))
	switch _, err := strconv.Atoi(pid); {
	case err != nil:
		return fmt.Errorf("%w: lock %q is held by another process; stop the other sluice process, or give this one another data directory", ErrDataDirInUse, path)
	case pid == strconv.Itoa(os.Getpid()):
		return fmt.Errorf("%w: lock %q is held by another server in this process; stop that one first", ErrDataDirInUse, path)
	default:
		return fmt.Errorf("%w: lock %q is held by process %s; stop that sluice process, or give this one another data directory", ErrDataDirInUse, path, pid)
	}
}

// release drops the lock. The file stays: removing it would let a third
// process lock a new file while a second still waits on the old one.
func (l *lockFile) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
