package logstore

import (
	"context"
	"io"
)

// Key names one step's log. Stage is a stage instance ID, so a matrix stage
// such as `test[go=1.22]` has one log per instance.
type Key struct {
	Run, Stage, Step string
}

// Store is where step logs live, so that runners, the server and the CLI can
// share them without passing them through workflow history.
type Store interface {
	// Writer appends to a step's log, creating it if needed. Every Write is
	// visible to readers as soon as it returns. Closing the writer marks the
	// log complete, which ends Follow; opening a writer again (a retried
	// attempt, or a runner restarted after a crash) appends and marks the log
	// incomplete again.
	Writer(run, stage, step string) (io.WriteCloser, error)
	// Open reads the whole log written so far. A log that does not exist
	// gives an error wrapping fs.ErrNotExist.
	Open(run, stage, step string) (io.ReadCloser, error)
	// Follow reads the log from its start and then waits for more, until
	// the log is marked complete (Read returns io.EOF) or ctx ends (Read
	// returns ctx.Err()). It waits for a log that does not exist yet, since
	// a follower usually attaches before the step starts.
	Follow(ctx context.Context, run, stage, step string) (io.ReadCloser, error)
	// List returns the logs of a run, sorted by stage and then step so that
	// repeated listings agree. A run without logs gives an error wrapping
	// fs.ErrNotExist.
	List(run string) ([]Key, error)
}
