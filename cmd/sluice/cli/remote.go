package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/engine/logstore"
	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
)

// The commands that work on runs use a Sluice server's JSON API instead of
// Temporal with --server URL or SLUICE_SERVER (docs/api.md): a reviewer
// needs a token (sluice login), not access to Temporal.

const (
	envServer = "SLUICE_SERVER"
	envToken  = "SLUICE_TOKEN"
)

// remoteFlags is the --server flag.
type remoteFlags struct{ server string }

func (f *remoteFlags) register(cmd *cobra.Command, e *env) {
	def, _ := lookupIn(e.environ)(envServer)
	cmd.Flags().StringVar(&f.server, "server", def, "URL of a Sluice server to work through, with its API and the token of sluice login ("+envServer+"; default: Temporal, as the other flags say)")
}

// client is the API client of --server, or nil without it.
func (f *remoteFlags) client(e *env) (*apiClient, error) {
	if f.server == "" {
		return nil, nil
	}
	u := normalizeURL(f.server)
	tok, _ := lookupIn(e.environ)(envToken)
	if tok == "" {
		home, err := local.Home()
		if err != nil {
			return nil, err
		}
		creds, err := readCredentials(home)
		if err != nil {
			return nil, err
		}
		tok = creds.Servers[u].Token
	}
	if tok == "" {
		return nil, fmt.Errorf("no API token for %s: run sluice login %s (or set %s)", u, u, envToken)
	}
	return &apiClient{url: u, token: tok, http: &http.Client{Timeout: 90 * time.Second}}, nil
}

func normalizeURL(u string) string {
	u = strings.TrimSuffix(strings.TrimSpace(u), "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u
}

// credentials are the tokens sluice login stored, by server URL, in
// $SLUICE_HOME/credentials.json (mode 0600).
type credentials struct {
	Servers map[string]credential `json:"servers"`
}

type credential struct {
	Token string `json:"token"`
	User  string `json:"user,omitempty"`
}

func credentialsFile(home string) string { return filepath.Join(home, "credentials.json") }

func readCredentials(home string) (credentials, error) {
	c := credentials{Servers: map[string]credential{}}
	b, err := os.ReadFile(credentialsFile(home))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("reading %s: %w", credentialsFile(home), err)
	}
	if c.Servers == nil {
		c.Servers = map[string]credential{}
	}
	return c, nil
}

func writeCredentials(home string, c credentials) error {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	// proc.WriteRecord writes a temporary file with mode 0600 and renames
	// it: the tokens are never readable by others, nor half-written.
	return proc.WriteRecord(credentialsFile(home), c)
}

// apiClient calls a server's /api/v1.
type apiClient struct {
	url, token string
	http       *http.Client
}

// apiError is an answer of the API that is not a success: the server's
// message, in one line.
type apiError struct {
	status int
	msg    string
	server string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%d %s from %s)", e.msg, e.status, http.StatusText(e.status), e.server)
}

// do sends a request; out, when not nil, receives the JSON answer, or the
// body itself when it is a *[]byte.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the Sluice server: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", c.url, err)
	}
	if resp.StatusCode >= 300 {
		return c.refusal(resp.StatusCode, b)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer of %s %s is not what sluice expects: %w", method, path, err)
	}
	return nil
}

// refusal is the error of an answer that is not a success, with body b.
func (c *apiClient) refusal(status int, b []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		msg = "the server gave no reason"
	}
	if status == http.StatusUnauthorized {
		msg += "; run sluice login " + c.url
	}
	return &apiError{status: status, msg: strings.Join(strings.Fields(msg), " "), server: c.url}
}

func runPath(runID string, rest ...string) string {
	return "/runs/" + url.PathEscape(runID) + strings.Join(rest, "")
}

func (c *apiClient) status(ctx context.Context, runID string) (engine.RunStatus, error) {
	var st engine.RunStatus
	err := c.do(ctx, http.MethodGet, runPath(runID), nil, &st)
	return st, err
}

// logs returns the log of one step (stage/step), or of every step with a
// "==> stage/step <==" line before each.
func (c *apiClient) logs(ctx context.Context, runID, step string) ([]byte, error) {
	p := runPath(runID, "/logs")
	if step != "" {
		p += "?step=" + url.QueryEscape(step)
	}
	var b []byte
	err := c.do(ctx, http.MethodGet, p, nil, &b)
	return b, err
}

// followLog streams the log of step (STAGE/STEP) into w from byte offset
// on, as the server receives it, until the log is complete (complete is
// true), the stream is cut or ctx ends.
func (c *apiClient) followLog(ctx context.Context, runID, step string, offset int64, w io.Writer) (complete bool, err error) {
	p := runPath(runID, "/logs") + "?follow=1&step=" + url.QueryEscape(step)
	if offset > 0 {
		p += "&offset=" + strconv.FormatInt(offset, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/api/v1"+p, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	// A step may write for hours: ctx ends the stream, not a timeout.
	stream := *c.http
	stream.Timeout = 0
	resp, err := stream.Do(req)
	if err != nil {
		return false, fmt.Errorf("reaching the Sluice server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return false, c.refusal(resp.StatusCode, b)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return false, err
	}
	// The server says the log is complete after its last byte; a stream
	// that ends without it was cut.
	return resp.Trailer.Get(server.LogCompleteTrailer) == "true", nil
}

// apiRuns follows a run through the API (see runSource).
type apiRuns struct {
	c *apiClient
}

func (a *apiRuns) Progress(ctx context.Context, runID string) (engine.RunStatus, bool, error) {
	st, err := a.c.status(ctx, runID)
	if err != nil {
		return st, false, err
	}
	return st, true, nil
}

// Wait leaves the end of the run to Progress, which the follower polls.
func (a *apiRuns) Wait(ctx context.Context, _ string) (engine.RunStatus, error) {
	<-ctx.Done()
	return engine.RunStatus{}, ctx.Err()
}

func (a *apiRuns) Cancel(ctx context.Context, runID string) error {
	return a.c.do(ctx, http.MethodPost, runPath(runID, "/cancel"), nil, nil)
}

// apiLogs is the log store of a run on a server, read through the API:
// Follow streams a step's log as the server receives it, from the
// server's own runner or from runners on other hosts.
type apiLogs struct {
	c     *apiClient
	match func(stage, step string) bool
}

// Follow reads the log until it is complete or ctx ends; a stream that is
// cut (the server restarted) is asked for again from the byte it reached.
func (l apiLogs) Follow(ctx context.Context, run, stage, step string) (io.ReadCloser, error) {
	if l.match != nil && !l.match(stage, step) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	pr, pw := io.Pipe()
	go func() {
		var read int64
		wait := 100 * time.Millisecond
		for {
			cw := &countingWriter{w: pw}
			complete, _ := l.c.followLog(ctx, run, stage+"/"+step, read, cw)
			read += cw.n
			switch {
			case complete:
				pw.Close()
				return
			case cw.err != nil: // the reader went
				return
			case ctx.Err() != nil:
				pw.CloseWithError(ctx.Err())
				return
			}
			if cw.n > 0 {
				wait = 100 * time.Millisecond
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}()
	return pr, nil
}

// countingWriter counts what it writes and keeps the error of a write.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// The rest of logstore.Store is not needed to follow a run.
func (apiLogs) Writer(string, string, string) (io.WriteCloser, error) {
	return nil, errors.New("the logs of a remote run are read-only")
}

func (apiLogs) Open(string, string, string) (io.ReadCloser, error) {
	return nil, errors.New("open the logs of a remote run with the API")
}

func (apiLogs) List(string) ([]logstore.Key, error) {
	return nil, errors.New("list the logs of a remote run with the API")
}

// printAPILogs prints what GET /runs/ID/logs returned as sluice logs does
// locally: each line prefixed with stage/step, or one step's log as it is.
func printAPILogs(w io.Writer, b []byte, prefix bool) {
	if !prefix {
		_, _ = w.Write(b)
		return
	}
	var step string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "==> "); ok && strings.HasSuffix(name, " <==") {
			step = strings.TrimSuffix(name, " <==")
			continue
		}
		fmt.Fprintf(w, "%s | %s\n", step, line)
	}
}

// followRemote follows a run on a server until it ends, as sluice run
// does, and turns a run that did not succeed into exit status 1.
func followRemote(ctx context.Context, e *env, c *apiClient, runID, mode string, match func(stage, step string) bool, summary bool) error {
	if _, err := c.status(ctx, runID); err != nil {
		return err
	}
	st, err := follow(ctx, &apiRuns{c: c}, apiLogs{c: c, match: match}, runID, mode, e.stdout)
	if err != nil || !summary {
		return err
	}
	return endOfRun(e, st, mode)
}
