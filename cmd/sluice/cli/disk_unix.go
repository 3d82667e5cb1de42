//go:build unix

package cli

import "syscall"

// diskFree is how many bytes an unprivileged user may still write in
// dir's file system.
func diskFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
