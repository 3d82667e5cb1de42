package engine

import "github.com/sluice-ci/sluice/internal/binaryid"

// setBinaryID gives the SDK the binary's name before it makes a worker, so
// that it does not hash the executable (see package binaryid).
func setBinaryID() { binaryid.Set() }
