package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"runtime/debug"
	"sync"

	"go.temporal.io/sdk/worker"
)

// The Temporal SDK names the binary a worker runs (its "binary checksum",
// kept with each workflow task it completes, so that the workflows a bad
// build touched can be found and reset) by hashing the whole executable
// when a worker starts: 70 MB of sluice, about 120 ms of CPU at every
// `sluice run`, more than the rest of starting the CLI's workers. The
// commit the binary was built from names it as well; a build with
// uncommitted changes, or without version control information, is named
// by its executable's path, size and modification time, which change with
// every build.
var binaryIDOnce sync.Once

// setBinaryID gives the SDK the binary's name before it makes a worker.
func setBinaryID() {
	binaryIDOnce.Do(func() {
		if id := binaryID(); id != "" {
			worker.SetBinaryChecksum(id)
		}
	})
}

// binaryID names this binary; empty leaves it to the SDK.
func binaryID() string {
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
