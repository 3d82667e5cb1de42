// Package binaryid names the running executable for the Temporal SDK.
//
// The SDK names the binary a worker runs (its "binary checksum", kept with
// each workflow task the worker completes, so that the workflows a bad
// build touched can be found and reset) by reading and hashing the whole
// executable when the first worker is made or started, unless it was told
// a name: 83 MB of sluice and 211 MB of sluice-temporal, whose embedded
// Temporal server starts workers of its own. That hash was most of the
// CPU of `sluice run` once, and then about a second of the first `sluice
// run` on a fresh home (see docs/benchmarks.md). The commit the binary was
// built from names it as well; a build with uncommitted changes, or
// without version control information, is named by its executable's path,
// size and modification time, which change with every build.
package binaryid
