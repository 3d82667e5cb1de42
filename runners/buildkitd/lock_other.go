//go:build !unix

package buildkitd

import "errors"

// lockHome fails: Sluice starts buildkitd only on Linux.
func lockHome(string) (func(), error) {
	return nil, errors.New("Sluice starts buildkitd only on Linux; set " + EnvAddress + " to a running buildkitd")
}
