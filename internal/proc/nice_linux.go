package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Nice lowers this process's CPU priority to n (0 to 19) for all its
// threads. On Linux a nice value belongs to a thread, and a new thread
// takes that of the thread that made it: setting it on every thread that
// exists, early, covers the ones the Go runtime makes later.
func Nice(n int) error {
	if n < 0 || n > 19 {
		return fmt.Errorf("nice %d: give 0 (as the parent) to 19 (the lowest priority)", n)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return syscall.Setpriority(syscall.PRIO_PROCESS, 0, n)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that ended meanwhile is no error.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("nice %d: thread %d: %w", n, tid, err)
		}
	}
	return nil
}

// ThreadNices reads the nice value of every thread of process pid.
func ThreadNices(pid int) ([]int, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var nices []int
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// The fields after the command's name, which is in parentheses
		// and may hold spaces: state is the 3rd field, nice the 19th.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		if len(fields) < 17 {
			return nil, fmt.Errorf("%s/%s/stat: %q", dir, t.Name(), s)
		}
		n, err := strconv.Atoi(fields[16])
		if err != nil {
			return nil, fmt.Errorf("%s/%s/stat: nice %q", dir, t.Name(), fields[16])
		}
		nices = append(nices, n)
	}
	return nices, nil
}
