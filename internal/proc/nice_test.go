//go:build linux

package proc

import (
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/sluice-ci/sluice/internal/testing/ownprocess"
)

// TestNice: after Nice, every thread of the process has the value,
// those the Go runtime makes later as well, and the parent's are left
// alone. It runs in a process of its own, as a nice value cannot be
// raised back without privileges.
func TestNice(t *testing.T) {
	if !ownprocess.Child(t) {
		nices, err := ThreadNices(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nices {
			if n != 0 {
				t.Errorf("a thread of the parent has nice %d after the child's Nice; want 0", n)
			}
		}
		return
	}
	if err := Nice(7); err != nil {
		t.Fatal(err)
	}
	// Threads made after: goroutines locked to threads of their own.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			wg.Done()
			<-release
		}()
	}
	wg.Wait()
	nices, err := ThreadNices(os.Getpid())
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if len(nices) < 9 {
		t.Fatalf("%d threads, want at least 9 (8 locked goroutines and main)", len(nices))
	}
	for i, n := range nices {
		if n != 7 {
			t.Errorf("thread %d of %d has nice %d, want 7", i, len(nices), n)
		}
	}
	for _, bad := range []int{-1, 20} {
		if err := Nice(bad); err == nil {
			t.Errorf("Nice(%d) = nil, want an error", bad)
		}
	}
}
