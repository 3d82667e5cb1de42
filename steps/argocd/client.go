package argocd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// client is a small client of Argo CD's REST API: the two calls a deploy
// needs, with a bearer token. (Importing Argo CD's own client would bring
// Kubernetes versions that conflict with the Temporal server's.)
type client struct {
	server string // https://host[:port], no trailing slash
	token  string
	http   *http.Client
}

// application is the part of Argo CD's Application a deploy reads.
type application struct {
	Status struct {
		Sync struct {
			Status    string   `json:"status"`
			Revision  string   `json:"revision"`
			Revisions []string `json:"revisions"`
		} `json:"sync"`
		Health struct {
			Status string `json:"status"`
		} `json:"health"`
		OperationState *struct {
			Phase      string `json:"phase"`
			Message    string `json:"message"`
			SyncResult *struct {
				Revision string `json:"revision"`
			} `json:"syncResult"`
		} `json:"operationState"`
		Resources  []resource `json:"resources"`
		Conditions []struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

// resource is one Kubernetes resource of an application.
type resource struct {
	Group     string `json:"group"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Health    *struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	} `json:"health"`
}

// apiError is an error answer of Argo CD (its runtimeError).
type apiError struct {
	Status  int
	Code    int    `json:"code"`
	Message string `json:"message"`
	Err     string `json:"error"`
	app     string
	server  string
}

// errInProgress is the message of Argo CD's ErrAnotherOperationInProgress
// (gRPC FailedPrecondition, HTTP 400): a sync asked while another
// operation of the application runs.
const errInProgress = "another operation is already in progress"

func (e *apiError) inProgress() bool {
	return strings.Contains(e.Message, errInProgress) || strings.Contains(e.Err, errInProgress)
}

func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Err
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("Argo CD at %s refused the token (401 %s): give the step a valid token (token = secret.<name>), or set ARGOCD_AUTH_TOKEN on the runner", e.server, msg)
	case http.StatusForbidden:
		return fmt.Sprintf("Argo CD at %s denied access to application %q (403 %s): give the token's account the applications sync and get permissions for it; Argo CD also answers this for an application that does not exist, so check app", e.server, e.app, msg)
	case http.StatusNotFound:
		return fmt.Sprintf("Argo CD at %s has no application %q (404 %s): check app, or create the application", e.server, e.app, msg)
	}
	return fmt.Sprintf("Argo CD at %s answered %d for application %q: %s", e.server, e.Status, e.app, msg)
}

// sync asks Argo CD to sync app to revision.
func (c *client) sync(ctx context.Context, app, revision string) error {
	body, _ := json.Marshal(map[string]any{"name": app, "revision": revision, "prune": false})
	return c.do(ctx, http.MethodPost, "/api/v1/applications/"+url.PathEscape(app)+"/sync", app, body, nil)
}

// get reads app.
func (c *client) get(ctx context.Context, app string) (*application, error) {
	var a application
	if err := c.do(ctx, http.MethodGet, "/api/v1/applications/"+url.PathEscape(app), app, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

func (c *client) do(ctx context.Context, method, path, app string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.http
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reaching Argo CD at %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading Argo CD's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode, app: app, server: c.server}
		if json.Unmarshal(data, e) != nil || (e.Message == "" && e.Err == "") {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("reading Argo CD's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}
