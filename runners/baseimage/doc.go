// Package baseimage makes the base images that the examples and tests
// build on, because no public registry is reachable from every machine
// Sluice runs on: busybox:local (FROM scratch: Debian's static busybox with
// its applets, /bin/sh, /tmp) and golang:local (busybox plus this machine's
// Go toolchain). It assembles them with go-containerregistry, without
// BuildKit and without pulling anything, and pushes them to a registry,
// skipping an image the registry already holds with the same digest.
//
// The images are reproducible: every file has a fixed time and owner, so
// the same busybox and Go give the same digests on every run.
package baseimage
