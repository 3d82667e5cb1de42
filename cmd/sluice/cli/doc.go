// Package cli implements the sluice command line. Every command writes to
// the streams it is given, so that tests run it exactly as a user types it.
package cli
