// Package buildkit holds what the step executors that use BuildKit share:
// one connection to buildkitd per runner, registry credentials for its
// sessions, and errors that tell a user what went wrong in words instead
// of BuildKit's stack traces.
package buildkit
