//go:build !linux

package buildtest

// unmountUnder does nothing where buildkitd does not run.
func unmountUnder(string) {}
