package githubapp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v62/github"
)

// RetryableError is a GitHub failure that a later try may not meet: a
// 5xx, a 429, a rate limit (a 403 with X-RateLimit-Remaining 0, or a
// secondary rate limit), or a network error. After is how long GitHub
// asked to wait (from Retry-After or X-RateLimit-Reset), 0 when it did
// not say. The client does not retry; its caller (a Temporal activity)
// does, waiting at least After.
type RetryableError struct {
	Err   error
	After time.Duration
}

func (e *RetryableError) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
	}
	return e.Err.Error()
}

func (e *RetryableError) Unwrap() error { return e.Err }

// NotFoundError is a 404: what names what GitHub did not find (or the
// installation cannot see: GitHub answers 404 for both).
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string {
	return e.What + " not found on GitHub (or the App's installation cannot see it)"
}

// classify turns an error of a GitHub call about what into a
// RetryableError, a NotFoundError or a plain error that names what.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	wrap := func(after time.Duration) error {
		return &RetryableError{Err: fmt.Errorf("%s: %w", what, err), After: max(after, 0)}
	}
	var rate *github.RateLimitError
	if errors.As(err, &rate) {
		return wrap(time.Until(rate.Rate.Reset.Time))
	}
	var abuse *github.AbuseRateLimitError
	if errors.As(err, &abuse) {
		return wrap(abuse.GetRetryAfter())
	}
	// The installation token could not be minted.
	var tokErr *ghinstallation.HTTPError
	if errors.As(err, &tokErr) {
		if tokErr.Response == nil { // a network error
			return wrap(0)
		}
		if retryable(tokErr.Response, "") {
			return wrap(waitOf(tokErr.Response))
		}
		return fmt.Errorf("%s: minting the installation token: %s", what, tokErr.Response.Status)
	}
	var resp *github.ErrorResponse
	if errors.As(err, &resp) && resp.Response != nil {
		if retryable(resp.Response, resp.Message) {
			return wrap(waitOf(resp.Response))
		}
		if resp.Response.StatusCode == http.StatusNotFound {
			return &NotFoundError{What: what}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return wrap(0)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// retryable says whether a response is one a later try may not get.
func retryable(r *http.Response, message string) bool {
	switch c := r.StatusCode; {
	case c >= 500, c == http.StatusTooManyRequests:
		return true
	case c == http.StatusForbidden:
		return r.Header.Get("X-RateLimit-Remaining") == "0" || r.Header.Get("Retry-After") != "" ||
			strings.Contains(strings.ToLower(message), "secondary rate limit")
	}
	return false
}

// waitOf is the wait a response asks for: Retry-After seconds, else the
// time to X-RateLimit-Reset when the limit is spent, else 0.
func waitOf(r *http.Response) time.Duration {
	if v := r.Header.Get("Retry-After"); v != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			return time.Duration(n) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(time.Until(t), 0)
		}
	}
	if r.Header.Get("X-RateLimit-Remaining") == "0" {
		if n, err := strconv.ParseInt(r.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Until(time.Unix(n, 0)), 0)
		}
	}
	return 0
}
