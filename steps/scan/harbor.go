package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	httptransport "github.com/go-openapi/runtime/client"
	v2 "github.com/goharbor/go-client/pkg/sdk/v2.0/client"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/artifact"
	harborscan "github.com/goharbor/go-client/pkg/sdk/v2.0/client/scan"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/models"
	"go.temporal.io/sdk/activity"
)

// Report MIME types, in the order Sluice asks for them, as Harbor's UI
// does: the scanner-neutral report first, Harbor's native one second.
const (
	MimeGeneric = "application/vnd.security.vulnerability.report; version=1.1"
	MimeNative  = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
)

// AcceptVulnerabilities is the X-Accept-Vulnerabilities header value.
var AcceptVulnerabilities = MimeGeneric + ", " + MimeNative

// Report is one vulnerability report as Harbor serves it under a MIME type
// from .../additions/vulnerabilities.
type Report struct {
	GeneratedAt     string          `json:"generated_at"`
	Scanner         *Scanner        `json:"scanner"`
	Severity        string          `json:"severity"`
	Vulnerabilities []Vulnerability `json:"vulnerabilities"`
}

// Scanner names the scanner that produced a report.
type Scanner struct {
	Name    string `json:"name"`
	Vendor  string `json:"vendor"`
	Version string `json:"version"`
}

// Vulnerability is one finding: a vulnerability in one package.
type Vulnerability struct {
	ID          string   `json:"id"`
	Package     string   `json:"package"`
	Version     string   `json:"version"`
	FixVersion  string   `json:"fix_version"`
	Severity    string   `json:"severity"`
	Description string   `json:"description"`
	Links       []string `json:"links"`
}

// harbor is one step's conversation with Harbor.
type harbor struct {
	t    *target
	api  *v2.HarborAPI
	http *http.Client
	poll time.Duration
	// lastError is the body of the last error response to go-client.
	lastError []byte
}

func (e *Executor) client(t *target) *harbor {
	hc := e.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	api := *t.harbor
	api.Path += "/api/v2.0"
	poll := e.PollInterval
	if poll <= 0 {
		poll = 2 * time.Second
	}
	h := &harbor{t: t, http: hc, poll: poll}
	h.api = v2.New(v2.Config{
		URL:       &api,
		Transport: roundTripper{c: hc, last: &h.lastError},
		AuthInfo:  httptransport.BasicAuth(t.username, t.password),
	})
	return h
}

// roundTripper sends go-client's requests through the executor's client,
// so both kinds of request share its transport and timeout. It keeps the
// body of the last error response: go-client does not read the body of a
// status the API description does not declare (Harbor's 409 and 412 on a
// scan), and Harbor's message is in it.
type roundTripper struct {
	c    *http.Client
	last *[]byte
}

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.c.Do(req)
	if err != nil || resp.StatusCode < 400 {
		return resp, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	*r.last = body
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// repoParam is the repository as Harbor's API paths take it: encoded twice
// when it has slashes (a/b → a%252Fb). go-client escapes once; this is the
// other.
func (h *harbor) repoParam() string { return url.PathEscape(h.t.repository) }

// scan starts a scan, or joins the one under way, waits for it and reads
// the report.
func (h *harbor) scan(ctx context.Context, log io.Writer) (*Report, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWait)
		defer cancel()
	}
	_, err := h.api.Scan.ScanArtifact(ctx, &harborscan.ScanArtifactParams{
		ProjectName:    h.t.project,
		RepositoryName: h.repoParam(),
		Reference:      h.t.digest,
	})
	switch code := statusOf(err); {
	case err == nil:
		fmt.Fprintln(log, "sluice: scan requested")
	case code == http.StatusConflict:
		fmt.Fprintf(log, "sluice: a scan of %s is already under way in Harbor; waiting for it\n", h.t.digest)
	default:
		return nil, h.explain("starting the scan", "scan", err)
	}
	sum, err := h.wait(ctx, log)
	if err != nil {
		return nil, err
	}
	if sum.ScanStatus != "Success" {
		return nil, h.failed(ctx, sum)
	}
	return h.report(ctx)
}

// statuses Harbor reports for a scan that has not ended.
func finished(status string) bool {
	switch status {
	case "Success", "Error", "Stopped":
		return true
	}
	return false
}

// wait polls the artifact's scan overview until the scan ends, recording
// a heartbeat at each poll when it runs in an activity.
func (h *harbor) wait(ctx context.Context, log io.Writer) (models.NativeReportSummary, error) {
	start := time.Now()
	deadline, _ := ctx.Deadline()
	withOverview, accept := true, AcceptVulnerabilities
	last := ""
	for {
		art, err := h.api.Artifact.GetArtifact(ctx, &artifact.GetArtifactParams{
			ProjectName:            h.t.project,
			RepositoryName:         h.repoParam(),
			Reference:              h.t.digest,
			WithScanOverview:       &withOverview,
			XAcceptVulnerabilities: &accept,
		})
		if err != nil {
			if ctx.Err() != nil {
				return models.NativeReportSummary{}, h.timeout(start, deadline, last)
			}
			return models.NativeReportSummary{}, h.explain("reading the scan's status", "read", err)
		}
		sum, ok := overview(art.Payload.ScanOverview)
		status := sum.ScanStatus
		if !ok {
			status = "Pending"
		}
		if status != last {
			fmt.Fprintf(log, "sluice: scan %s\n", progress(status, sum.CompletePercent))
			last = status
		}
		if ok && finished(status) {
			return sum, nil
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, status)
		}
		select {
		case <-ctx.Done():
			return models.NativeReportSummary{}, h.timeout(start, deadline, last)
		case <-time.After(h.poll):
		}
	}
}

func progress(status string, pct int64) string {
	if status == "Running" && pct > 0 {
		return fmt.Sprintf("%s (%d%%)", status, pct)
	}
	return status
}

// overview picks the summary of the report Sluice reads.
func overview(o models.ScanOverview) (models.NativeReportSummary, bool) {
	for _, m := range []string{MimeGeneric, MimeNative} {
		if s, ok := o[m]; ok {
			return s, true
		}
	}
	for _, s := range o {
		return s, true
	}
	return models.NativeReportSummary{}, false
}

func (h *harbor) timeout(start, deadline time.Time, last string) error {
	limit := "its timeout"
	if !deadline.IsZero() {
		limit = deadline.Sub(start).Round(time.Second).String()
	}
	if last == "" {
		last = "unknown"
	}
	return fmt.Errorf("Harbor's scan of %s did not finish within %s (last status: %s); Harbor's scanner may be busy: raise the step's timeout, or look at the scan's job in Harbor (Interrogation Services)", h.t.ref, limit, last)
}

// failed explains a scan that ended without a report, with the end of its
// log when Harbor gives it.
func (h *harbor) failed(ctx context.Context, sum models.NativeReportSummary) error {
	if sum.ScanStatus == "Stopped" {
		return fmt.Errorf("the scan of %s was stopped in Harbor before it finished; run the step again", h.t.ref)
	}
	msg := fmt.Sprintf("Harbor's scan of %s ended with status %s", h.t.ref, sum.ScanStatus)
	if sum.ReportID == "" {
		return errors.New(msg + "; its log is in Harbor, on the artifact's page")
	}
	msg += fmt.Sprintf(" (report %s; its log: GET %s/api/v2.0/projects/%s/repositories/%s/artifacts/%s/scan/%s/log)",
		sum.ReportID, h.t.harbor, h.t.project, url.PathEscape(h.repoParam()), h.t.digest, sum.ReportID)
	got, err := h.api.Scan.GetReportLog(ctx, &harborscan.GetReportLogParams{
		ProjectName:    h.t.project,
		RepositoryName: h.repoParam(),
		Reference:      h.t.digest,
		ReportID:       sum.ReportID,
	})
	if err == nil && strings.TrimSpace(got.Payload) != "" {
		msg += ":\n" + tail(got.Payload, 20)
	}
	return errors.New(msg)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// report reads the vulnerability report with plain HTTP: the API
// description declares the body a string (goharbor/go-client#41), so the
// generated client cannot decode it.
func (h *harbor) report(ctx context.Context) (*Report, error) {
	u := fmt.Sprintf("%s/api/v2.0/projects/%s/repositories/%s/artifacts/%s/additions/vulnerabilities",
		h.t.harbor, url.PathEscape(h.t.project), url.PathEscape(h.repoParam()), h.t.digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the vulnerability report: %w", err)
	}
	req.SetBasicAuth(h.t.username, h.t.password)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Accept-Vulnerabilities", AcceptVulnerabilities)
	resp, err := h.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the vulnerability report from Harbor %s: %w", h.t.harbor, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the vulnerability report from Harbor %s: %w", h.t.harbor, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, h.explain("reading the vulnerability report", "read", &httpError{code: resp.StatusCode, body: body})
	}
	var reports map[string]json.RawMessage
	if err := json.Unmarshal(body, &reports); err != nil {
		return nil, fmt.Errorf("reading the vulnerability report: Harbor's answer is not a JSON object of reports (%v)", err)
	}
	for _, m := range []string{MimeGeneric, MimeNative} {
		raw, ok := reports[m]
		if !ok {
			continue
		}
		var r Report
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("reading the vulnerability report (%s): %v", m, err)
		}
		return &r, nil
	}
	var got []string
	for m := range reports {
		got = append(got, m)
	}
	return nil, fmt.Errorf("Harbor has no vulnerability report of %s in a format Sluice reads (%s); it has %q", h.t.ref, AcceptVulnerabilities, got)
}

// httpError is a failed plain HTTP request to Harbor.
type httpError struct {
	code int
	body []byte
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, harborMessage(e.body)) }

func harborMessage(body []byte) string {
	var errs models.Errors
	if json.Unmarshal(body, &errs) == nil && len(errs.Errors) > 0 {
		var msgs []string
		for _, e := range errs.Errors {
			msgs = append(msgs, e.Message)
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimSpace(string(body))
}

// statusOf is the HTTP status of a failed go-client call, 0 for errors
// without one.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.code
	}
	var c interface{ IsCode(int) bool }
	if errors.As(err, &c) {
		for _, code := range []int{400, 401, 403, 404, 409, 412, 422, 500} {
			if c.IsCode(code) {
				return code
			}
		}
	}
	return 0
}

// message is what Harbor said in a failed call.
func (h *harbor) message(err error) string {
	var he *httpError
	if errors.As(err, &he) {
		return harborMessage(he.body)
	}
	var p interface{ GetPayload() *models.Errors }
	if errors.As(err, &p) && p.GetPayload() != nil {
		var msgs []string
		for _, e := range p.GetPayload().Errors {
			msgs = append(msgs, e.Message)
		}
		return strings.Join(msgs, "; ")
	}
	if statusOf(err) != 0 && len(h.lastError) > 0 {
		return harborMessage(h.lastError)
	}
	return err.Error()
}

// explain turns a failed call into what the user can do about it. perm is
// the permission the call needs on the project ("scan" or "read").
func (h *harbor) explain(doing, perm string, err error) error {
	t := h.t
	switch statusOf(err) {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: Harbor %s refused the credentials of %q (401 Unauthorized); check username and password (for a robot account, the full name such as \"robot$ci\" and its current secret)", doing, t.harbor, t.username)
	case http.StatusForbidden:
		return fmt.Errorf("%s: %q may not %s artifacts of project %q in Harbor %s (403 Forbidden); give the robot account the %q permission on the repository (Harbor: project %s → Robot Accounts)", doing, t.username, perm, t.project, t.harbor, scanPermission(perm), t.project)
	case http.StatusNotFound:
		return fmt.Errorf("%s: Harbor %s has no artifact %s in project %q, repository %q (404: %s); was the image pushed to this Harbor? The image step must push (push = true) to %s/%s/%s", doing, t.harbor, t.digest, t.project, t.repository, h.message(err), t.harbor.Host, t.project, t.repository)
	case http.StatusPreconditionFailed:
		return fmt.Errorf("%s: Harbor %s cannot scan in project %q: %s (412); an administrator must configure a scanner (Administration → Interrogation Services) and enable it for the project", doing, t.harbor, t.project, h.message(err))
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return fmt.Errorf("%s: Harbor %s refused to scan %s: %s", doing, t.harbor, t.ref, h.message(err))
	case 0:
		return fmt.Errorf("%s: reaching Harbor %s: %w", doing, t.harbor, err)
	}
	return fmt.Errorf("%s: Harbor %s answered %d: %s", doing, t.harbor, statusOf(err), h.message(err))
}

func scanPermission(perm string) string {
	if perm == "scan" {
		return "Create Scan"
	}
	return "Read Artifact"
}
