//go:build linux

// Command sluice-exec runs the command of a container step for Sluice's
// container executor and records how it ended.
//
//	sluice-exec STATUS_FILE -- COMMAND [ARG...]
//
// It runs COMMAND with the container's environment, working directory and
// standard streams, passes on the signals a container is stopped with,
// writes COMMAND's exit code to STATUS_FILE (128 plus the signal's number
// when a signal ended it, 127 when COMMAND cannot be found, 126 when it
// cannot be run), and exits 0 itself. BuildKit keeps what a command changed
// only when the command succeeds, so this is how a failed step keeps the
// files it wrote (test reports, coverage) and the outputs it set before it
// failed, as a step on the host does; the executor reads the exit code
// back and fails the step with it.
//
// The runner mounts it read-only into each container; it must be a static
// binary (`make build` builds it with CGO_ENABLED=0 next to sluice).
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) < 4 || os.Args[2] != "--" {
		fmt.Fprintln(os.Stderr, "usage: sluice-exec STATUS_FILE -- COMMAND [ARG...]")
		os.Exit(2)
	}
	code := run(os.Args[3:])
	if err := os.WriteFile(os.Args[1], []byte(strconv.Itoa(code)+"\n"), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-exec: recording the exit code %d: %v\n", code, err)
		os.Exit(max(code, 1))
	}
}

// forwarded are the signals passed on to the command: those a container
// runtime stops a container with, and the ones a user sends on purpose.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// run runs argv and returns its exit code as a shell reports it.
func run(argv []string) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-exec: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return 127
		}
		return 126
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	_ = cmd.Wait()
	signal.Stop(sigs)
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}
