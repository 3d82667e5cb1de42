package engine

import (
	"crypto/sha256"
	"encoding/hex"
)

// TraceID is the OpenTelemetry trace ID of a run, in lowercase hex (32
// digits): derived from the run ID alone, so that the run page can show
// and link the trace without anything stored, and so that a server that
// exports a run's spans again after a crash puts them in the same trace.
// Every execution of a run (a retry is one) shares the trace.
func TraceID(runID string) string {
	id := TraceIDBytes(runID)
	return hex.EncodeToString(id[:])
}

// TraceIDBytes is TraceID as the 16 bytes an OpenTelemetry trace ID is.
func TraceIDBytes(runID string) [16]byte {
	sum := sha256.Sum256([]byte("sluice trace\x00" + runID))
	var id [16]byte
	copy(id[:], sum[:])
	if id == ([16]byte{}) {
		// An all-zero ID is invalid; a hash that gives one is not going to
		// happen, but it must not make a trace that is dropped.
		id[15] = 1
	}
	return id
}
