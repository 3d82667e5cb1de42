//go:build !unix

package embedded

// lockFile is a no-op where flock is not available: there, nothing stops
// two processes from opening the same database.
type lockFile struct{}

func acquireLock(string) (*lockFile, error) { return &lockFile{}, nil }

func (*lockFile) release() error { return nil }
