package argocd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"go.temporal.io/sdk/activity"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/argocd/gitops"
)

// Executor runs plan.KindArgoCD steps, and rolls them back.
type Executor struct {
	// Server and Token are the runner's Argo CD, used by steps that name
	// none (ARGOCD_SERVER and ARGOCD_AUTH_TOKEN, as the argocd CLI reads
	// them). Without a server, a step commits and reports the sync it
	// would have asked for.
	Server, Token string
	// HTTP reaches Argo CD; nil is http.DefaultClient.
	HTTP *http.Client
	// PollInterval is how often the application is read while waiting;
	// 0 means 5s.
	PollInterval time.Duration
	// Attempts bounds how often a GitOps push that lost a race is tried
	// again; 0 means 5.
	Attempts int
}

var _ steps.Executor = (*Executor)(nil)

// Execute commits the step's image to the GitOps repository, then syncs
// the application and waits for it.
func (e *Executor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	as, _, err := steps.Begin(req, plan.KindArgoCD, req.Step.ArgoCD)
	if err != nil {
		return steps.Result{}, err
	}
	res, err := e.deploy(ctx, req, as.Image.Literal(), false)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	return res, nil
}

// Rollback puts previousImage back the way the step deployed its image:
// a commit to the same file, then the same sync and wait. The engine calls
// it for a verify step's on_failure = "rollback", with the Request the
// argocd step ran with (its templates resolved again) and that step's
// previous_image output; it returns the same outputs as Execute. It is
// as safe to retry as Execute.
func (e *Executor) Rollback(ctx context.Context, req steps.Request, previousImage string) (steps.Result, error) {
	if req.Step.Kind != plan.KindArgoCD || req.Step.ArgoCD == nil {
		return steps.Result{}, fmt.Errorf("argocd rollback given step %q of kind %q", req.Step.Name, req.Step.Kind)
	}
	if previousImage == "" {
		return steps.Result{}, fmt.Errorf("rolling back step %q: it recorded no previous image (the file held none before it), so there is nothing to roll back to", req.Step.Name)
	}
	res, err := e.deploy(ctx, req, previousImage, true)
	if err != nil {
		return steps.Result{}, fmt.Errorf("rolling back step %q: %w", req.Step.Name, err)
	}
	return res, nil
}

func (e *Executor) deploy(ctx context.Context, req steps.Request, image string, rollback bool) (steps.Result, error) {
	s := req.Step.ArgoCD
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	app := s.App.Literal()
	if app == "" {
		return steps.Result{}, errors.New("app is empty; set it to the name of the Argo CD application")
	}
	if s.GitOps == nil {
		return steps.Result{}, errors.New("the step has no gitops block; add one saying which file of which repository holds the image")
	}
	img, err := gitops.ParseImage(image)
	if err != nil {
		return steps.Result{}, err
	}
	o, err := e.gitopsOptions(req, img, rollback)
	if err != nil {
		return steps.Result{}, err
	}
	o.Log = log
	o.DryRun = req.DryRun
	where := fmt.Sprintf("%s on branch %s of %s", o.File, o.Branch, o.Repo)
	c, err := e.client(req)
	if err != nil {
		return steps.Result{}, err
	}
	committed, err := gitops.Commit(ctx, o)
	if err != nil {
		return steps.Result{}, err
	}
	out := map[string]string{"revision": committed.Revision, "image": img.String(), "previous_image": committed.Previous}
	if committed.Changed {
		fmt.Fprint(log, committed.Diff)
	}
	switch {
	case req.DryRun && committed.Changed:
		fmt.Fprintf(log, "dry run: would commit %s (%s, was %s)\n", where, img, orNone(committed.Previous))
	case committed.Changed:
		fmt.Fprintf(log, "sluice: committed %s to %s\n", short(committed.Revision), where)
	}
	dry := "sync"
	if req.DryRun && committed.Changed {
		dry = "commit and sync"
	}
	switch {
	case c == nil:
		fmt.Fprintf(log, "dry run: would sync %s and wait for %s (no Argo CD server configured: set server and token in the step, or ARGOCD_SERVER and ARGOCD_AUTH_TOKEN on the runner)\n", app, s.Wait)
		return steps.Result{Outputs: out, DryRun: dry}, nil
	case req.DryRun:
		fmt.Fprintf(log, "dry run: would sync %s on %s and wait for %s\n", app, c.server, s.Wait)
		return steps.Result{Outputs: out, DryRun: dry}, nil
	}
	if err := e.syncAndWait(ctx, c, app, committed.Revision, s.Wait, log); err != nil {
		return steps.Result{}, err
	}
	return steps.Result{Outputs: out}, nil
}

func (e *Executor) gitopsOptions(req steps.Request, img gitops.Image, rollback bool) (gitops.Options, error) {
	s := req.Step.ArgoCD
	g := s.GitOps
	repo := g.Repo.Literal()
	if repo == "" {
		return gitops.Options{}, errors.New("gitops repo is empty; set it to the URL of the repository Argo CD watches")
	}
	if !strings.Contains(repo, "://") && !strings.Contains(repo, "@") && !filepath.IsAbs(repo) && req.Workspace != "" {
		// A local repository written relative to the workspace.
		repo = filepath.Join(req.Workspace, repo)
	}
	format := g.Format
	if format == "" {
		return gitops.Options{}, fmt.Errorf("the gitops block has no format for %q; set format = \"kustomize\", \"helm\" or \"argocd-source\"", g.File)
	}
	app := s.App.Literal()
	msg := g.Message.Literal()
	switch {
	case rollback:
		msg = fmt.Sprintf("roll back %s to %s (sluice run %s)", app, img, req.RunID)
	case msg == "":
		msg = fmt.Sprintf("deploy %s: %s (sluice run %s)", app, img, req.RunID)
	}
	return gitops.Options{
		Repo: repo, Branch: g.Branch, File: g.File, Image: img, Token: g.Token.Literal(),
		Target:   gitops.Target{Format: format, ImageName: g.ImageName, Key: g.Key},
		Message:  msg,
		Author:   author(req.Env),
		Attempts: e.Attempts,
	}, nil
}

// author signs GitOps commits: GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL of the
// step's environment or the runner's, else Sluice.
func author(env map[string]string) object.Signature {
	get := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	a := object.Signature{Name: get("GIT_AUTHOR_NAME"), Email: get("GIT_AUTHOR_EMAIL")}
	if a.Name == "" {
		a.Name = "Sluice"
	}
	if a.Email == "" {
		a.Email = "sluice@localhost"
	}
	return a
}

// client returns the Argo CD client of the step, or of the runner; nil
// when neither names a server.
func (e *Executor) client(req steps.Request) (*client, error) {
	s := req.Step.ArgoCD
	server, token := s.Server.Literal(), s.Token.Literal()
	if server == "" {
		server = e.Server
		if token == "" {
			token = e.Token
		}
	}
	if server == "" {
		return nil, nil
	}
	if token == "" {
		return nil, fmt.Errorf("Argo CD server %s is set but no token: set token = secret.<name> in the step, or ARGOCD_AUTH_TOKEN on the runner", server)
	}
	if !strings.Contains(server, "://") {
		server = "https://" + server // as ARGOCD_SERVER is written for the argocd CLI
	}
	return &client{server: strings.TrimRight(server, "/"), token: token, http: e.HTTP}, nil
}

// Health statuses of Argo CD that end a wait with a failure.
var failedHealth = []string{"Degraded", "Missing"}

// syncAndWait asks for a sync of app to revision and, unless wait is
// "none", polls the application until it is Synced at revision (and
// Healthy, for "healthy"). The step's timeout bounds it through ctx.
func (e *Executor) syncAndWait(ctx context.Context, c *client, app, revision, wait string, log io.Writer) error {
	asked, err := e.askSync(ctx, c, app, revision, log)
	if err != nil {
		return err
	}
	if wait == "none" {
		return nil
	}
	fmt.Fprintf(log, "sluice: waiting for %s to be %s at %s\n", app, wantState(wait), short(revision))
	interval := e.PollInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	last := ""
	for {
		a, err := c.get(ctx, app)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for %s to be %s at %s: %w (last seen: %s)", app, wantState(wait), short(revision), ctx.Err(), orNone(last))
			}
			return err
		}
		st := a.Status
		atRevision := st.Sync.Revision == revision || slices.Contains(st.Sync.Revisions, revision)
		state := fmt.Sprintf("%s at %s, %s", orNone(st.Sync.Status), short(st.Sync.Revision), orNone(st.Health.Status))
		if state != last {
			fmt.Fprintf(log, "sluice: %s is %s\n", app, state)
			last = state
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, state)
		}
		op := st.OperationState
		ours := op != nil && op.SyncResult != nil && op.SyncResult.Revision == revision
		if ours && (op.Phase == "Failed" || op.Phase == "Error") {
			return fmt.Errorf("Argo CD's sync of %s to %s failed: %s%s", app, short(revision), op.Message, unhealthy(a.Status.Resources))
		}
		synced := atRevision && st.Sync.Status == "Synced" && (op == nil || op.Phase != "Running")
		switch {
		case synced && wait == "synced":
			fmt.Fprintf(log, "sluice: %s is synced at %s\n", app, short(revision))
			return nil
		case synced && st.Health.Status == "Healthy":
			fmt.Fprintf(log, "sluice: %s is synced and healthy at %s\n", app, short(revision))
			return nil
		case synced && slices.Contains(failedHealth, st.Health.Status):
			return fmt.Errorf("%s is %s after syncing to %s%s", app, st.Health.Status, short(revision), unhealthy(a.Status.Resources))
		}
		if !asked && (op == nil || op.Phase != "Running") {
			// The operation that kept ours out has ended: ask again.
			if asked, err = e.askSync(ctx, c, app, revision, log); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be %s at %s: %w (last seen: %s)%s", app, wantState(wait), short(revision), ctx.Err(), last, unhealthy(a.Status.Resources))
		case <-time.After(interval):
		}
	}
}

// askSync posts the sync. It reports false, without an error, when Argo
// CD runs another operation of the application (a retried step's own
// sync, or an automatic one): the wait asks again once it ends.
func (e *Executor) askSync(ctx context.Context, c *client, app, revision string, log io.Writer) (bool, error) {
	err := c.sync(ctx, app, revision)
	var ae *apiError
	switch {
	case err == nil:
		fmt.Fprintf(log, "sluice: asked Argo CD at %s to sync %s to %s\n", c.server, app, short(revision))
		return true, nil
	case errors.As(err, &ae) && ae.inProgress():
		fmt.Fprintf(log, "sluice: %s has an operation in progress; waiting for it\n", app)
		return false, nil
	}
	return false, fmt.Errorf("syncing: %w", err)
}

// unhealthy lists the resources whose health is known and not Healthy.
func unhealthy(rs []resource) string {
	var b strings.Builder
	for _, r := range rs {
		if r.Health == nil || r.Health.Status == "" || r.Health.Status == "Healthy" {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("; resources not healthy:")
		}
		name := r.Name
		if r.Namespace != "" {
			name = r.Namespace + "/" + name
		}
		fmt.Fprintf(&b, "\n  %s %s: %s", r.Kind, name, r.Health.Status)
		if r.Health.Message != "" {
			b.WriteString(" (" + r.Health.Message + ")")
		}
	}
	return b.String()
}

func wantState(wait string) string {
	if wait == "synced" {
		return "Synced"
	}
	return "Synced and Healthy"
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return orNone(rev)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
