// Package logstore keeps the output of steps outside Temporal history.
//
// A workflow's history is limited in size and every event in it is kept for
// the life of the run, so a step's log never travels through it: the runner
// writes the log to a Store while the step runs, and the CLI and the server
// read it back, or follow it live, by run, stage and step.
//
// FS is the Store kept in plain files, one per step, which is what a single
// machine and a shared volume need. NewMasker hides secret values in a log
// stream before they reach any Store.
package logstore
