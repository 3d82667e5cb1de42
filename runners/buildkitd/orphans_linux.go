package buildkitd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killOrphans kills the processes of build containers whose buildkitd
// died: their root file system is a snapshot under the daemon's state
// directory. A
// killed buildkitd leaves them running (runc is not told), holding their
// root file systems mounted.
func killOrphans(root string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	prefix := filepath.Clean(root) + string(filepath.Separator)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !strings.HasPrefix(rootMount(pid), prefix) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// rootMount is where the file system mounted at a process's "/" comes from,
// as its mount namespace sees it (the fourth field of mountinfo): for a
// build container, a directory under buildkitd's state.
func rootMount(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/" && f[3] != "/" {
			return f[3]
		}
	}
	return ""
}
