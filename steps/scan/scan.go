package scan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
)

// Environment variables a runner reads when a step does not say.
const (
	EnvURL      = "SLUICE_HARBOR_URL"
	EnvUsername = "HARBOR_USERNAME"
	EnvPassword = "HARBOR_PASSWORD"
)

// DefaultWait bounds the wait for a scan when the step has no deadline.
const DefaultWait = 30 * time.Minute

// Executor runs plan.KindScan steps against Harbor.
type Executor struct {
	// HTTP sends every request to Harbor; nil means a client with the
	// default transport.
	HTTP *http.Client
	// PollInterval is how often the scan's status is read; zero means two
	// seconds.
	PollInterval time.Duration
	// Getenv reads the runner's environment; nil means os.Getenv.
	Getenv func(string) string
	// Now tells the date against which allow entries expire; nil means
	// time.Now.
	Now func() time.Time
}

var _ steps.Executor = (*Executor)(nil)

// target is a scan step resolved against the runner: what to scan, where,
// and as whom.
type target struct {
	ref        string // the image reference as given
	project    string
	repository string // inside the project, possibly with slashes
	digest     string
	harbor     *url.URL // nil when no Harbor is configured
	why        string   // why harbor is nil
	username   string
	password   string
	failOn     string
}

// Execute scans the step's image and judges the report.
func (e *Executor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	ss, log, err := steps.Begin(req, plan.KindScan, req.Step.Scan)
	if err != nil {
		return steps.Result{}, err
	}
	t, err := e.resolve(ss)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	allow, err := parseAllow(ss.Allow)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	if req.DryRun || t.harbor == nil {
		where := "Harbor"
		if t.harbor != nil {
			where = "Harbor " + t.harbor.String()
		}
		fmt.Fprintf(log, "dry run: would scan %s in %s and fail on %s\n", t.ref, where, failOnText(t.failOn))
		if t.harbor == nil {
			fmt.Fprintf(log, "sluice: no scan, since %s\n", t.why)
		}
		return steps.Result{Outputs: map[string]string{}, DryRun: "scan"}, nil
	}
	if t.username == "" || t.password == "" {
		missing := "username"
		if t.username != "" {
			missing = "password"
		}
		return steps.Result{}, fmt.Errorf("step %q: no %s for Harbor %s: set username and password on the step (a robot account with the Create Scan permission on project %q; password = secret.<name>), or %s and %s on the runner",
			req.Step.Name, missing, t.harbor, t.project, EnvUsername, EnvPassword)
	}
	fmt.Fprintf(log, "sluice: scanning %s in Harbor %s (project %q, repository %q); failing on %s\n", t.ref, t.harbor, t.project, t.repository, failOnText(t.failOn))
	h := e.client(t)
	rep, err := h.scan(ctx, log)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	v := judge(rep.Vulnerabilities, t.failOn, allow, e.now())
	v.write(log, rep)
	res := steps.Result{Outputs: v.outputs()}
	if len(v.blocking) > 0 {
		return res, fmt.Errorf("step %q: %s", req.Step.Name, v.failure(t.failOn))
	}
	return res, nil
}

func (e *Executor) getenv(k string) string {
	if e.Getenv != nil {
		return e.Getenv(k)
	}
	return os.Getenv(k)
}

func (e *Executor) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// resolve reads the image reference and finds the Harbor server and the
// credentials: the step's, else the runner's environment. A registry on
// loopback (the local stack's) is never taken for Harbor unless harbor or
// SLUICE_HARBOR_URL names it.
func (e *Executor) resolve(ss *plan.ScanStep) (*target, error) {
	t := &target{ref: strings.TrimSpace(ss.Image.Literal()), failOn: ss.FailOn}
	if t.failOn == "" {
		t.failOn = "critical"
	}
	if _, ok := rank[t.failOn]; !ok && t.failOn != "none" {
		return nil, fmt.Errorf("fail_on %q is not a severity; use none, low, medium, high or critical", t.failOn)
	}
	if t.ref == "" {
		return nil, errors.New("image is empty; set it to the pushed image pinned by digest, usually step.<image step>.digest_ref")
	}
	named, err := reference.ParseNormalizedNamed(t.ref)
	if err != nil {
		return nil, fmt.Errorf("image %q is not an image reference (%v); write it as harbor.example.com/project/repository@sha256:..., usually step.<image step>.digest_ref", t.ref, err)
	}
	dig, ok := named.(reference.Digested)
	if !ok {
		return nil, fmt.Errorf("image %q is not pinned by digest; scan what was pushed: image = step.<image step>.digest_ref", t.ref)
	}
	t.digest = dig.Digest().String()
	host := reference.Domain(named)
	project, repo, ok := strings.Cut(reference.Path(named), "/")
	if !ok {
		return nil, fmt.Errorf("image %q has no Harbor project: Harbor names images host/project/repository, like harbor.example.com/web/api", t.ref)
	}
	t.project, t.repository = project, repo

	// What the step leaves out comes from the runner: a step may give the
	// robot account's token as a secret and leave its name to the runner.
	t.username, t.password = ss.Username.Literal(), ss.Password.Literal()
	if t.username == "" {
		t.username = e.getenv(EnvUsername)
	}
	if t.password == "" {
		t.password = e.getenv(EnvPassword)
	}

	raw, from := ss.Harbor.Literal(), "harbor"
	if raw == "" {
		raw, from = e.getenv(EnvURL), EnvURL
	}
	switch {
	case raw != "":
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s %q is not a URL; write the Harbor server's address, like https://harbor.example.com", from, raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawQuery, u.Fragment, u.User = "", "", nil
		t.harbor = u
	case loopback(host):
		t.why = fmt.Sprintf("the image's registry %s is on this machine, which is not Harbor; set harbor = \"https://...\" on the step or %s on the runner to scan", host, EnvURL)
	case t.username == "" || t.password == "":
		t.why = fmt.Sprintf("no Harbor is configured: set harbor on the step or %s on the runner, or give credentials (username and password, or %s and %s) and https://%s is taken for Harbor", EnvURL, EnvUsername, EnvPassword, host)
	default:
		t.harbor = &url.URL{Scheme: "https", Host: host}
	}
	return t, nil
}

func loopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func failOnText(failOn string) string {
	if failOn == "none" {
		return "nothing (fail_on = \"none\")"
	}
	return failOn + "+"
}
