package run

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"time"
)

// maxLine bounds how much of a line without a newline is held before it is
// written anyway, so that a program printing a progress bar with \r, or
// binary data, cannot grow the buffer without end.
const maxLine = 64 << 10

// drainTimeout is how long the output pipe may stay open once every process
// of the step's group is gone: only a process that left the group (setsid)
// can hold it, and the step does not wait for such a process.
const drainTimeout = 2 * time.Second

// process is a started step: its main process, its process group and the
// goroutine copying its output to the log.
type process struct {
	cmd    *exec.Cmd
	grace  time.Duration
	pipe   *os.File
	copied chan struct{} // closed when the output pipe is drained
	waited chan error    // receives cmd.Wait's result
	// logErr is the first error writing to the log; set before copied
	// is closed.
	logErr error
	// escaped is true when the pipe had to be closed while a process
	// outside the group still held it.
	escaped bool
}

// start starts cmd in a process group of its own, with stdout and stderr
// both writing to one pipe, so that the log shows them in the order the
// program wrote them.
func start(cmd *exec.Cmd, log io.Writer, grace time.Duration) (*process, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pw.Close() // the children hold the write end now
	p := &process{cmd: cmd, grace: grace, pipe: pr, copied: make(chan struct{}), waited: make(chan error, 1)}
	go func() {
		lw := &lineWriter{w: log}
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			lw.write(buf[:n])
			if err != nil {
				break
			}
		}
		lw.flush()
		p.logErr = lw.err
		close(p.copied)
	}()
	go func() { p.waited <- cmd.Wait() }()
	return p, nil
}

// wait waits for the step to end, or stops it when ctx ends. Either way it
// returns only when the main process has been reaped and no process of the
// group is left. It reports the main process's result and whether the
// step was cancelled.
func (p *process) wait(ctx context.Context) (waitErr error, cancelled bool) {
	select {
	case waitErr = <-p.waited:
		// Processes the step left in the background are stopped too.
		if groupAlive(p.cmd) {
			p.stop()
		}
	case <-ctx.Done():
		cancelled = true
		p.stop()
		waitErr = <-p.waited
	}
	select {
	case <-p.copied:
	case <-time.After(drainTimeout):
		p.escaped = true
		p.pipe.Close() // ends the copying goroutine's Read
		<-p.copied
	}
	p.pipe.Close()
	return waitErr, cancelled
}

// stop sends SIGTERM to the group, waits for the group to end for the
// grace period, then sends SIGKILL to whatever is left.
func (p *process) stop() {
	terminateGroup(p.cmd)
	deadline := time.NewTimer(p.grace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for groupAlive(p.cmd) {
		select {
		case <-deadline.C:
			killGroup(p.cmd)
			// SIGKILL cannot be caught, but the processes take a moment
			// to go. Orphans are reaped by init, which may be slow or, in
			// some containers, never happen: a zombie counts as alive,
			// so the wait is bounded.
			for range 50 {
				if !groupAlive(p.cmd) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			return
		case <-tick.C:
		}
	}
}

// exitStatus turns cmd.Wait's error into an *ExitError, or returns the
// error when the process could not be waited for at all.
func exitStatus(waitErr error) (*ExitError, error) {
	if waitErr == nil {
		return nil, nil
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return nil, waitErr
	}
	return exitError(ee.ProcessState), nil
}

// lineWriter passes whole lines to w, so that a log reader (and a masker)
// never sees half a line unless the line is very long or the last one.
type lineWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func (l *lineWriter) write(p []byte) {
	l.buf = append(l.buf, p...)
	if i := bytes.LastIndexByte(l.buf, '\n'); i >= 0 {
		l.emit(l.buf[:i+1])
		l.buf = append(l.buf[:0], l.buf[i+1:]...)
	}
	if len(l.buf) >= maxLine {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}

func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}

// emit writes to the log. After a failed write it drops output but keeps
// reading, so that the step does not block on a full pipe.
func (l *lineWriter) emit(p []byte) {
	if l.err != nil {
		return
	}
	if _, err := l.w.Write(p); err != nil {
		l.err = err
	}
}
