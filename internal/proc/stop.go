package proc

import (
	"os"
	"syscall"
	"time"
)

// Stop asks a child to stop (SIGTERM) and waits until done is closed (the
// child was waited for), killing the child when it takes longer than grace.
func Stop(p *os.Process, done <-chan struct{}, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		<-done
	}
}
