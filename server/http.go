package server

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/sluice-ci/sluice/server/webhook"
)

// Handler serves the server's HTTP API: webhooks, git hooks, the JSON API
// and a health check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/webhooks/github", s.metrics.observeHook(ViaGitHub, s.githubWebhook))
	mux.HandleFunc("/hooks/git", s.metrics.observeHook(ViaGit, s.gitHook))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	// Unauthenticated, like /healthz (see metrics.go).
	mux.Handle("GET /metrics", s.metrics.handler())
	s.apiRoutes(mux)
	s.webRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A scraper's requests do not keep an idle server up.
		if r.URL.Path != "/metrics" {
			s.touch()
		}
		mux.ServeHTTP(w, r)
	})
}

// queued is the answer to a delivery the server took.
type queued struct {
	Delivery string `json:"delivery"`
	// Workflow is the Delivery workflow's ID: GET /api/v1/deliveries/ID
	// tells what it started.
	Workflow  string `json:"workflow"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Ignored   string `json:"ignored,omitempty"`
	Ref       string `json:"ref,omitempty"`
	URL       string `json:"url,omitempty"`
}

func (s *Server) githubWebhook(w http.ResponseWriter, r *http.Request) {
	if s.verifier == nil {
		httpError(w, http.StatusNotFound, "this server takes no GitHub webhooks: start it with SLUICE_GITHUB_WEBHOOK_SECRET set to the GitHub App's webhook secret")
		return
	}
	// Capped here too, so that the server closes the connection of a
	// request it refuses for its size.
	r.Body = http.MaxBytesReader(w, r.Body, webhook.MaxBody+1)
	d, werr := s.verifier.Read(r)
	if werr != nil {
		if werr.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		s.log.Warn("webhook refused", "status", werr.Status, "reason", werr.Message, "delivery", r.Header.Get("X-GitHub-Delivery"))
		httpError(w, werr.Status, werr.Message)
		return
	}
	ev, err := webhook.Parse(d)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.installations.set(ev.Repo, ev.InstallationID)
	switch ev.Kind {
	case webhook.KindPing:
		noteHook(r, hookPing)
		writeJSON(w, http.StatusOK, map[string]string{"pong": d.ID})
		return
	case webhook.KindIgnored:
		s.log.Info("webhook ignored", "event", ev.Name, "action", ev.Action, "delivery", d.ID, "reason", ev.Ignored)
		noteHook(r, hookIgnored)
		writeJSON(w, http.StatusOK, queued{Delivery: d.ID, Ignored: ev.Ignored})
		return
	case webhook.KindInstallation:
		// The App learns which installation reaches which repository (for
		// approvers' teams and schedules' firings).
		if in := ev.Installation; in != nil {
			for _, r := range append(append([]string(nil), in.All...), in.Added...) {
				s.installations.set(r, ev.InstallationID)
			}
			for _, r := range in.Removed {
				s.installations.remove(r)
			}
			if in.Action == "deleted" {
				for _, r := range in.All {
					s.installations.remove(r)
				}
			}
		}
		s.log.Info("installation", "action", ev.Action, "installation", ev.InstallationID)
		noteHook(r, hookNoted)
		writeJSON(w, http.StatusOK, queued{Delivery: d.ID, Ignored: "installation noted"})
		return
	}
	id := "github-" + d.ID
	q, status, err := s.take(r.Context(), id, DeliveryInput{Via: ViaGitHub, Event: ev})
	if err != nil {
		httpError(w, status, err.Error())
		return
	}
	q.Delivery = d.ID
	if q.Duplicate {
		noteHook(r, hookDuplicate)
	}
	writeJSON(w, status, q)
}

// inboxForwarders is how many deliveries the inbox hands to Temporal at
// once.
const inboxForwarders = 8

// take takes a webhook's or git hook's delivery: into the inbox when the
// server has one (answered once it is on disk), else straight into
// Temporal (deliver).
func (s *Server) take(ctx context.Context, id string, in DeliveryInput) (queued, int, error) {
	if s.inbox == nil {
		return s.deliver(ctx, id, in)
	}
	in.Received = time.Now().UTC()
	q := queued{Workflow: id, Ref: in.Event.Ref, URL: s.URL() + "/api/v1/deliveries/" + id}
	payload, err := json.Marshal(in)
	if err != nil {
		return q, http.StatusInternalServerError, err
	}
	dup, err := s.inbox.Put(id, payload)
	switch {
	case err != nil:
		s.log.Error("taking a delivery into the inbox", "delivery", id, "error", err)
		return q, http.StatusServiceUnavailable, fmt.Errorf("the delivery could not be taken (%v); it was not: deliver it again", err)
	case dup:
		q.Duplicate = true
		return q, http.StatusOK, nil
	}
	return q, http.StatusAccepted, nil
}

// forward hands a delivery from the inbox to Temporal.
func (s *Server) forward(id string, payload []byte, _ time.Time) error {
	var in DeliveryInput
	if err := json.Unmarshal(payload, &in); err != nil {
		// Not retried: the inbox holds what take wrote, so this is a
		// corrupt record that passed its checksum, or an older format.
		s.log.Error("a delivery in the inbox cannot be read; dropped", "delivery", id, "error", err)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.startDelivery(ctx, id, in)
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &dup) {
		// A redelivery after the inbox forgot the first, or a forward
		// whose done record a crash lost: it ran once.
		return nil
	}
	return err
}

// deliver starts the Delivery workflow id for in, or finds it started. It
// returns only once Temporal has the workflow: the delivery is then never
// lost, whatever happens to this process.
func (s *Server) deliver(ctx context.Context, id string, in DeliveryInput) (queued, int, error) {
	in.Received = time.Now().UTC()
	ctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	err := s.startDelivery(ctx, id, in)
	q := queued{Workflow: id, Ref: in.Event.Ref, URL: s.URL() + "/api/v1/deliveries/" + id}
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &dup):
		q.Duplicate = true
		return q, http.StatusOK, nil
	case err != nil:
		s.log.Error("queueing a delivery", "delivery", id, "error", err)
		return q, http.StatusServiceUnavailable, fmt.Errorf("the delivery could not be queued (Temporal: %v); it was not taken: deliver it again", err)
	}
	return q, http.StatusAccepted, nil
}

// startDelivery starts the Delivery workflow id; a workflow of that ID
// started before is an error, WorkflowExecutionAlreadyStarted.
func (s *Server) startDelivery(ctx context.Context, id string, in DeliveryInput) error {
	in.Local = true
	_, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                Queue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("%s %s %s@%.12s", in.Via, in.Event.Kind, in.Event.Repo, in.Event.After),
		// This server's worker takes the first workflow task in the
		// start's answer, not through a task queue: fewer writes and
		// round trips per delivery.
		EnableEagerStart: true,
	}, DeliveryWorkflowName, in)
	return err
}

// GitHookRequest is what `sluice hook post-receive` sends for one push:
// every ref it updated.
type GitHookRequest struct {
	// Repository is the repository's name, as the server's repository
	// blocks call it.
	Repository string `json:"repository"`
	// URL is where runners clone it from.
	URL     string      `json:"url"`
	Pusher  string      `json:"pusher,omitempty"`
	Updates []GitUpdate `json:"updates"`
}

// GitUpdate is one ref a push updated, as post-receive reads it.
type GitUpdate struct {
	Old string `json:"old"`
	New string `json:"new"`
	Ref string `json:"ref"`
	// Message is the new head commit's message, for [skip ci].
	Message string `json:"message,omitempty"`
}

// GitHookSignatureHeader carries the HMAC-SHA256 of a git hook request's
// body, as GitHub's X-Hub-Signature-256 does.
const GitHookSignatureHeader = "X-Sluice-Signature-256"

// maxGitHookBody bounds a hook request: a push of thousands of refs fits.
const maxGitHookBody = 4 << 20

func (s *Server) gitHook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "git hooks POST their pushes here")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxGitHookBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a git hook request may be at most %d bytes", maxGitHookBody))
		return
	}
	sig := r.Header.Get(GitHookSignatureHeader)
	if sig == "" {
		httpError(w, http.StatusUnauthorized, "missing "+GitHookSignatureHeader+": install the hook with `sluice hook install`, which signs its requests")
		return
	}
	ok := false
	for _, k := range s.hookKeys {
		if hmac.Equal([]byte(webhook.Sign(string(k), body)), []byte(sig)) {
			ok = true
		}
	}
	if !ok {
		httpError(w, http.StatusUnauthorized, "the hook's signature matches no git hook secret of this server; reinstall the hook with the server's secret (sluice hook install --secret)")
		return
	}
	var req GitHookRequest
	if err := json.Unmarshal(body, &req); err != nil {
		httpError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return
	}
	if req.Repository == "" {
		httpError(w, http.StatusBadRequest, "the request names no repository")
		return
	}
	url := req.URL
	if len(s.cfg.Repositories) > 0 {
		var ok bool
		if url, ok = s.cfg.repositoryURL(req.Repository); !ok {
			httpError(w, http.StatusForbidden, fmt.Sprintf("repository %q is not one of this server's repositories; add a repository block for it to server.hcl", req.Repository))
			return
		}
	}
	if url == "" {
		httpError(w, http.StatusBadRequest, "the request has no clone URL for runners")
		return
	}
	var answers []queued
	status := http.StatusOK
	for _, u := range req.Updates {
		ev, ignored := gitEvent(req, url, u)
		if ignored != "" {
			answers = append(answers, queued{Ref: u.Ref, Ignored: ignored})
			continue
		}
		id := gitDeliveryID(req.Repository, u.Ref, u.New)
		ev.Delivery = id
		q, st, err := s.take(r.Context(), id, DeliveryInput{Via: ViaGit, Event: ev})
		if err != nil {
			httpError(w, st, err.Error())
			return
		}
		if st == http.StatusAccepted {
			status = st
		}
		if q.Duplicate && status != http.StatusAccepted {
			noteHook(r, hookDuplicate)
		}
		answers = append(answers, q)
	}
	if status == http.StatusAccepted {
		noteHook(r, hookQueued)
	}
	writeJSON(w, status, map[string]any{"updates": answers})
}

// gitEvent is the event of one ref a push updated, or why it is none.
func gitEvent(req GitHookRequest, url string, u GitUpdate) (webhook.Event, string) {
	ev := webhook.Event{Name: "git-push", Repo: req.Repository, CloneURL: url, Actor: req.Pusher, Ref: u.Ref, Before: u.Old, After: u.New, HeadCommitMessage: u.Message}
	if !shaPattern.MatchString(u.New) || !shaPattern.MatchString(u.Old) {
		return ev, fmt.Sprintf("%q is not an update of a ref (old and new commits)", u.Ref)
	}
	if zeroSHA.MatchString(u.New) {
		return ev, "deletion of " + u.Ref
	}
	ev.Created = zeroSHA.MatchString(u.Old)
	switch {
	case strings.HasPrefix(u.Ref, "refs/heads/"):
		ev.Kind, ev.Branch = webhook.KindPush, strings.TrimPrefix(u.Ref, "refs/heads/")
	case strings.HasPrefix(u.Ref, "refs/tags/"):
		ev.Kind, ev.Tag = webhook.KindTag, strings.TrimPrefix(u.Ref, "refs/tags/")
	default:
		return ev, u.Ref + " is neither a branch nor a tag"
	}
	return ev, ""
}

// gitDeliveryID derives a git push's delivery from what it pushed: the
// repository, the ref and the new commit. A hook that runs again for the
// same push finds the first delivery.
func gitDeliveryID(repo, ref, sha string) string {
	return "git-" + repo + "-" + ref + "-" + sha
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
