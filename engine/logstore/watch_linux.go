package logstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// watch wakes a follower when another process writes to the log at path
// or marks it complete (chmod), so that lines and the end of a log show at
// once instead of at the next poll. The returned channel gets a value
// after each change (values coalesce); stop releases the watch. It returns
// a nil channel when the kernel cannot watch the file (no inotify, or too
// many watches): the follower then polls.
func watch(path string) (<-chan struct{}, func()) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, func() {}
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY|unix.IN_ATTRIB|unix.IN_CLOSE_WRITE|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF); err != nil {
		unix.Close(fd)
		return nil, func() {}
	}
	// The runtime's poller waits on the non-blocking descriptor, so the
	// reading goroutine holds no thread, and Close wakes it.
	f := os.NewFile(uintptr(fd), "inotify "+path)
	ch := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }
}
