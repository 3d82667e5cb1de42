//go:build !linux

package proc

import (
	"errors"
	"fmt"
)

// Nice lowers the process's CPU priority on Linux; elsewhere it only
// checks n.
func Nice(n int) error {
	if n < 0 || n > 19 {
		return fmt.Errorf("nice %d: give 0 (as the parent) to 19 (the lowest priority)", n)
	}
	return nil
}

// ThreadNices reads the threads' nice values on Linux only.
func ThreadNices(pid int) ([]int, error) {
	return nil, errors.New("reading threads' nice values needs Linux's /proc")
}
