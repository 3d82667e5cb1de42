package binaryid

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"runtime/debug"
	"sync"

	"go.temporal.io/sdk/worker"
)

var once sync.Once

// Set gives the SDK the binary's name, once per process. Call it before
// making the first worker, in every process that makes one: an SDK that
// has no name by then hashes the executable.
func Set() {
	once.Do(func() {
		if id := ID(); id != "" {
			worker.SetBinaryChecksum(id)
		}
	})
}

// ID names this binary: "sluice-" and the commit, or a hash of the
// executable's path, size and modification time; empty when the
// executable cannot be found, which leaves the name to the SDK.
func ID() string {
	var rev, modified string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	if rev != "" && modified == "false" {
		return "sluice-" + rev
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", rev, exe, fi.Size(), fi.ModTime().UnixNano()))
	return "sluice-" + hex.EncodeToString(h[:16])
}
