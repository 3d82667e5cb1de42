package netns

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func supported() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("not root (uid %d)", uid)
	}
	return nil
}

// procAttr puts a command in a process group of its own (KillAll kills
// the group) and has it killed when the test process dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func kill(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// enter moves the calling thread, locked to its goroutine, into the
// network namespace at path; leave moves it back to where it was.
func enter(path string) (leave func() error, err error) {
	back, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		back.Close()
		return nil, err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		back.Close()
		return nil, err
	}
	return func() error {
		defer back.Close()
		return unix.Setns(int(back.Fd()), unix.CLONE_NEWNET)
	}, nil
}

// processesIn lists the processes, other than this one, whose network
// namespace is the one at path. Zombies, which have none, are not listed.
func processesIn(path string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// startTime is a live process's start time in clock ticks after boot,
// which tells it from a later process with the same pid, or "".
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	// The command name, in parentheses, may hold spaces: the fields
	// after it are counted from its closing parenthesis (starttime is the
	// 22nd field, the 20th after it).
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		// A zombie is dead.
		return ""
	}
	return f[19]
}

func ownerRecord(pid int) string { return fmt.Sprintf("%d %s\n", pid, startTime(pid)) }

func ownerAlive(rec string) bool {
	var pid int
	var start string
	if _, err := fmt.Sscan(rec, &pid, &start); err != nil {
		// Half-written, or not ours: left alone.
		return true
	}
	return startTime(pid) == start
}
