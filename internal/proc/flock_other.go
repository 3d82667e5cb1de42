//go:build !unix

package proc

import "os"

// TryLock does not lock where there is no flock: callers that share a
// file there must not use it at the same time.
func TryLock(*os.File) (bool, error) { return true, nil }

// Lock does not lock where there is no flock.
func Lock(*os.File) error { return nil }
