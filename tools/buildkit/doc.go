// Package buildkit pins the BuildKit daemon and CLI that Sluice starts when
// no BUILDKIT_HOST is given: `make tools` builds bin/buildkitd and
// bin/buildctl from this module's tool directives, at the same version as
// the client library in the main module.
package buildkit
