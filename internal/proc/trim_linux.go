package proc

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout is MADV_PAGEOUT (Linux 5.4): reclaim the range's pages now.
const madvPageout = 21

// Trim gives back what an idle process holds and does not use: the heap's
// free pages (debug.FreeOSMemory) and the pages of its own executable that
// start-up read and nothing since has (MADV_PAGEOUT on the read-only
// mappings of the binary: the initialisers of every linked package, most
// of them for commands this process does not run). Pages touched again
// come back from the file as any page of a binary does. It returns the
// bytes of executable mappings advised; errors are ignored, as the kernel
// may refuse the advice (before 5.4) and nothing depends on it.
func Trim() int64 {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var advised int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue // only the binary's text and read-only data
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), madvPageout); errno == 0 {
			advised += int64(end - start)
		}
	}
	return advised
}
