// Package local is the stack `sluice run` and `sluice dev` bring up on one
// machine: the embedded Temporal server (or a connection to an existing
// cluster), and an in-process runner with the host executors, workspaces
// checked out from the local repository, and a file log store, all kept
// under $SLUICE_HOME.
//
// Whoever hosts the embedded server writes its address to
// $SLUICE_HOME/server.json while it runs, so that other sluice commands
// (status, approve, logs) reach the same server from another terminal.
package local
