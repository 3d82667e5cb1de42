// Package registry is the OCI registry of the local stack: an in-process
// distribution (v3) registry with filesystem storage under
// $SLUICE_HOME/registry, on 127.0.0.1.
//
// It is shared like the embedded Temporal server: the sluice process that
// starts it serves it and publishes its address in
// $SLUICE_HOME/registry.json; other sluice processes of the same home find
// it there while that process lives. Its storage outlives every process, so
// what one command pushed is there for the next one whoever serves it.
// SLUICE_REGISTRY names an existing registry to use instead.
package registry
