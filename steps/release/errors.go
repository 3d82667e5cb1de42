package release

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v62/github"
)

// errNotFound matches a 404 answer: a tag or release that does not exist,
// or a repository the credentials cannot see.
var errNotFound = errors.New("not found")

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == errNotFound }

// passing is a failure that may pass: a timeout, a server error or a rate
// limit. wait is how long GitHub asked to wait; zero means back off.
type passing struct {
	err  error
	wait time.Duration
}

func (p *passing) Error() string { return p.err.Error() }
func (p *passing) Unwrap() error { return p.err }

// status returns the HTTP status of GitHub's answer behind err, or 0.
func status(err error) int {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

// explain turns a failed request into an error that says what to do, or
// into a passing one.
func (a *api) explain(ctx context.Context, what string, err error) error {
	t := a.t
	maxWait := a.e.MaxWait
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	// The installation token exchange of a GitHub App.
	var he *ghinstallation.HTTPError
	if errors.As(err, &he) {
		code := 0
		if he.Response != nil {
			code = he.Response.StatusCode
			he.Response.Body.Close()
		}
		switch {
		case code == 0 || code >= 500:
			return &passing{err: fmt.Errorf("%s: getting a token for installation %d of GitHub App %d: %w", what, t.app.installation, t.app.id, err)}
		case code == http.StatusUnauthorized:
			return fmt.Errorf("%s: GitHub rejected GitHub App %d's signed request (401): check app_id and that private_key is a current private key of that app", what, t.app.id)
		case code == http.StatusNotFound:
			return fmt.Errorf("%s: GitHub App %d has no installation %d (404): check installation_id, the number at the end of the installation's settings URL, and that the app is installed on %s", what, t.app.id, t.app.installation, t.slug())
		case code == http.StatusForbidden:
			return fmt.Errorf("%s: GitHub refused a token for installation %d of GitHub App %d (403): the installation may be suspended; check the app's installation settings", what, t.app.installation, t.app.id)
		}
		return fmt.Errorf("%s: %w", what, err)
	}

	var rl *github.RateLimitError
	if errors.As(err, &rl) {
		wait := time.Until(rl.Rate.Reset.Time) + time.Second
		if wait <= maxWait {
			return &passing{err: fmt.Errorf("%s: GitHub's rate limit for these credentials is used up until %s", what, rl.Rate.Reset.Format(time.TimeOnly)), wait: wait}
		}
		return fmt.Errorf("%s: GitHub's rate limit for these credentials is used up until %s; run the step again after then, or use other credentials (a GitHub App installation has its own limit)", what, rl.Rate.Reset.Format(time.RFC3339))
	}
	var abuse *github.AbuseRateLimitError
	if errors.As(err, &abuse) {
		return secondary(what, abuse.RetryAfter, maxWait)
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		code := er.Response.StatusCode
		msg := er.Message
		if msg == "" {
			msg = http.StatusText(code)
		}
		switch {
		case code == http.StatusTooManyRequests:
			var after *time.Duration
			if s, err := strconv.Atoi(er.Response.Header.Get("Retry-After")); err == nil {
				d := time.Duration(s) * time.Second
				after = &d
			}
			return secondary(what, after, maxWait)
		case code >= 500:
			return &passing{err: fmt.Errorf("%s: GitHub %s answered %d %s", what, t.server(), code, msg)}
		case code == http.StatusUnauthorized:
			if t.app != nil {
				return fmt.Errorf("%s: GitHub rejected the installation token of GitHub App %d (401 %s); check app_id and installation_id", what, t.app.id, msg)
			}
			return fmt.Errorf("%s: GitHub %s rejected the token (401 %s): it is wrong, expired or revoked; give a valid token with contents: write on %s (token on the step, or %s on the runner)", what, t.server(), msg, t.slug(), EnvToken)
		case code == http.StatusForbidden:
			return fmt.Errorf("%s: the credentials may not do this on %s (403 %s); give them the contents: write permission on the repository (a fine-grained token's or the GitHub App's repository permission, or the repo scope of a classic token)", what, t.slug(), msg)
		case code == http.StatusNotFound:
			return &notFoundError{msg: fmt.Sprintf("%s: repository %s was not found on %s, or the credentials cannot see it (404); check repo and that the token, or the GitHub App's installation, has access to it", what, t.slug(), t.server())}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return &passing{err: fmt.Errorf("%s: reaching GitHub %s: %w", what, t.server(), err)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// secondary handles GitHub's secondary rate limit, which asks for a wait
// (a minute when it does not say) before the next request.
func secondary(what string, after *time.Duration, maxWait time.Duration) error {
	wait := time.Minute
	if after != nil && *after > 0 {
		wait = *after
	}
	if wait <= maxWait {
		return &passing{err: fmt.Errorf("%s: GitHub's secondary rate limit asks to wait %s", what, wait), wait: wait}
	}
	return fmt.Errorf("%s: GitHub's secondary rate limit asks to wait %s, longer than the step waits (%s); run the step again later", what, wait, maxWait)
}
