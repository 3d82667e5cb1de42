package buildkit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	gwpb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ExitError is a command in a container (a Dockerfile RUN or a run step)
// that exited non-zero.
type ExitError struct {
	Code int
	// Where is the Dockerfile instruction that failed, as
	// "Dockerfile:3: RUN make", when BuildKit said.
	Where string
}

// Error gives the message shown under the failed step.
func (e *ExitError) Error() string {
	if e.Where != "" {
		return fmt.Sprintf("%s failed with exit code %d; the command's output is in the step log", e.Where, e.Code)
	}
	return fmt.Sprintf("command exited with code %d", e.Code)
}

// LostError says the connection to buildkitd broke during a build: most
// likely buildkitd stopped or crashed.
type LostError struct {
	Addr string
	Err  error
}

// Error says what happened and what to do.
func (e *LostError) Error() string {
	return fmt.Sprintf("lost the connection to buildkitd at %s during the build (%v): buildkitd stopped or crashed; check that it runs (and its log), then run the step again, or give the step retry { attempts = 2 } to retry on its own", e.Addr, e.Err)
}

// Unwrap gives the underlying error.
func (e *LostError) Unwrap() error { return e.Err }

// Lost reports whether err means the connection to buildkitd is gone, so
// that the connection is dropped and dialled again by the next step.
func Lost(err error) bool {
	var le *LostError
	if errors.As(err, &le) {
		return true
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return true
	}
	msg := err.Error()
	if registryCall(msg) {
		// buildkitd answered: its own request to a registry failed.
		return false
	}
	for _, m := range []string{"connection reset", "transport is closing", "error reading from server", "connection refused", "broken pipe", "rpc error: code = Unavailable", "EOF"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// registryCall says whether a solve's error is buildkitd's report of a
// request to a registry that failed (a pull's resolve, a push), rather
// than of the connection to buildkitd.
func registryCall(msg string) bool {
	for _, m := range []string{"failed to resolve source metadata", "failed to do request", "failed to push", "failed to fetch", "failed to copy"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// Describe turns an error of a BuildKit solve into one a user can act on.
// what names what was being done ("building image registry/app:1").
func Describe(ctx context.Context, err error, addr, what string) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: cancelled: %w", what, ctx.Err())
	}
	var exit *gwpb.ExitError
	if errors.As(err, &exit) {
		e := &ExitError{Code: int(exit.ExitCode), Where: where(err)}
		return e
	}
	msg := err.Error()
	switch {
	case Lost(err):
		return &LostError{Addr: addr, Err: errors.New(firstLine(msg))}
	case strings.Contains(msg, "failed to resolve source metadata") || strings.HasSuffix(firstLine(msg), ": not found"):
		img := "?"
		if i := strings.Index(msg, "failed to resolve source metadata for "); i >= 0 {
			rest := msg[i+len("failed to resolve source metadata for "):]
			if j := strings.Index(rest, ": "); j >= 0 {
				img = rest[:j]
			}
		} else if parts := strings.Split(firstLine(msg), ": "); len(parts) >= 2 {
			img = parts[len(parts)-2]
		}
		hint := "check the image name and tag, that it was pushed, and that the runner may pull it (docker login on the runner, or the step's username and password)"
		if strings.Contains(msg, "connection refused") {
			host, _, _ := strings.Cut(img, "/")
			return fmt.Errorf("%s: could not resolve image %s: nothing answers at %s (%s); start that registry (sluice dev and sluice run serve the local one) or fix the address", what, img, host, lastPart(msg))
		}
		if strings.Contains(msg, "not found") {
			return fmt.Errorf("%s: image %s was not found in its registry: %s", what, img, hint)
		}
		return fmt.Errorf("%s: could not resolve image %s (%s): %s", what, img, lastPart(msg), hint)
	case strings.Contains(msg, "401 Unauthorized") || strings.Contains(msg, "403 Forbidden") || strings.Contains(msg, "unauthorized") || strings.Contains(msg, "failed to authorize") || strings.Contains(msg, "denied"):
		return fmt.Errorf("%s: the registry refused access (%s): give the step username and password (password = secret.<name>) for that registry, or log the runner in with docker login", what, lastPart(msg))
	}
	if srcs := errdefs.Sources(err); len(srcs) > 0 {
		return fmt.Errorf("%s: %s: %s", what, where(err), firstLine(msg))
	}
	return fmt.Errorf("%s: %s", what, firstLine(msg))
}

// where names the Dockerfile line an error is about, as "Dockerfile:3:
// RUN make".
func where(err error) string {
	srcs := errdefs.Sources(err)
	if len(srcs) == 0 {
		return ""
	}
	s := srcs[len(srcs)-1]
	if s.Info == nil || len(s.Ranges) == 0 || s.Ranges[0].Start == nil {
		return ""
	}
	line := int(s.Ranges[0].Start.Line)
	lines := strings.Split(string(s.Info.Data), "\n")
	text := ""
	if line >= 1 && line <= len(lines) {
		text = strings.TrimSpace(lines[line-1])
	}
	if len(text) > 120 {
		text = text[:117] + "..."
	}
	return fmt.Sprintf("%s:%d: %s", s.Info.Filename, line, text)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// lastPart is the innermost cause of a chain of "doing x: doing y: cause".
func lastPart(msg string) string {
	msg = firstLine(msg)
	parts := strings.Split(msg, ": ")
	if len(parts) <= 2 {
		return msg
	}
	return strings.Join(parts[len(parts)-2:], ": ")
}
