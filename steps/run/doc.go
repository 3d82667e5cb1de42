// Package run implements the `run` step on the runner's own host: a command
// or a shell script started in the stage's workspace, with a clean
// environment, its output streamed to the step's log and its declared
// outputs read back from the file named by $SLUICE_OUTPUT. When its command
// has ended, successfully or not, the JUnit XML reports the step declares
// (junit) are read from the workspace into the result (see package junit),
// for steps with an image too.
//
// A run step with an image runs in a container, which needs a runner with
// BuildKit; this package refuses such steps with ErrNeedsContainer so that
// a container executor can take them.
//
// The step's processes form a process group of their own. When the step is
// cancelled the whole group gets SIGTERM and, after a grace period, SIGKILL;
// when the step's main process ends, processes it left running in the
// background are stopped the same way, so no process outlives its step.
// Host steps therefore need a Unix runner.
package run
