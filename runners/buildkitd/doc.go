// Package buildkitd gives the local stack a BuildKit daemon: the one
// BUILDKIT_HOST names, or one this user's Sluice already started for the
// same $SLUICE_HOME, or a new one started and supervised here.
//
// A started buildkitd is rootful, runs containers with runc, keeps its
// state in $SLUICE_HOME/buildkit and its log in $SLUICE_HOME/buildkitd.log,
// and listens on a unix socket under $SLUICE_HOME (or a short path under
// the runtime directory when that path is too long for a socket). It is a
// child of the sluice process that started it, in its own process group,
// and dies with it even on SIGKILL, like the embedded Temporal server: no
// daemon is left behind holding the state directory. That process
// publishes its address in $SLUICE_HOME/buildkitd.json, so that `sluice
// run` in another terminal uses the buildkitd of `sluice dev`.
//
// The process that started it supervises it: when buildkitd dies, it says
// so with the end of its log and starts it again on the same socket, so
// the next step finds it. A process that borrowed another's daemon starts
// its own when it finds that one gone.
package buildkitd
