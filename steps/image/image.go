package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/buildkit"
)

// Executor runs plan.KindImage steps on a runner with BuildKit.
type Executor struct {
	// BuildKit is the runner's connection to buildkitd, shared with its
	// container executor.
	BuildKit *buildkit.Conn
	// DockerConfig is the directory of the runner's Docker config.json
	// (registry credentials); empty means $DOCKER_CONFIG or ~/.docker.
	DockerConfig string
}

var _ steps.Executor = (*Executor)(nil)

// Labels Sluice sets from the run's commit unless the step sets them. The
// creation time is left out on purpose: it would make every build of the
// same commit a different image.
const (
	labelSource   = "org.opencontainers.image.source"
	labelRevision = "org.opencontainers.image.revision"
)

// Execute builds the image, pushes it when asked, and returns its digest.
func (e *Executor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	is, log, err := steps.Begin(req, plan.KindImage, req.Step.Image)
	if err != nil {
		return steps.Result{}, err
	}
	b, err := e.prepare(req)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	what := fmt.Sprintf("building image %s", b.tags[0])
	conn := e.BuildKit
	if conn == nil {
		conn = &buildkit.Conn{}
	}
	c, err := conn.Client(ctx)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	auth, err := buildkit.Auth(e.DockerConfig, b.creds)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	b.opt.Session = []session.Attachable{auth, secretsprovider.FromMap(b.secrets)}

	ch := make(chan *client.SolveStatus)
	display, err := progressui.NewDisplay(log, progressui.PlainMode)
	if err != nil {
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, err)
	}
	var resp *client.SolveResponse
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var err error
		resp, err = c.Solve(gctx, nil, b.opt, ch)
		return err
	})
	eg.Go(func() error {
		_, err := display.UpdateFrom(context.WithoutCancel(gctx), ch)
		return err
	})
	if err := eg.Wait(); err != nil {
		if buildkit.Lost(err) {
			conn.Drop(c)
		}
		return steps.Result{}, fmt.Errorf("step %q: %w", req.Step.Name, buildkit.Describe(ctx, err, conn.Addr, what))
	}
	digest := resp.ExporterResponse["containerimage.digest"]
	if digest == "" {
		return steps.Result{}, fmt.Errorf("step %q: %s: BuildKit reported no image digest", req.Step.Name, what)
	}
	out := map[string]string{"digest": digest, "ref": b.tags[0], "digest_ref": b.repo + "@" + digest}
	res := steps.Result{Outputs: out}
	for _, c := range b.skippedCache {
		fmt.Fprintf(log, "dry run: would export the build cache to %s\n", c)
		res.DryRun = "cache export"
	}
	switch {
	case is.Push && req.DryRun:
		fmt.Fprintf(log, "dry run: would push %s (%s)\n", strings.Join(b.tags, ", "), digest)
		res.DryRun = strings.TrimSuffix("push and "+res.DryRun, " and ")
	case is.Push:
		fmt.Fprintf(log, "sluice: pushed %s (%s)\n", strings.Join(b.tags, ", "), digest)
	default:
		fmt.Fprintf(log, "sluice: built %s (%s); not pushed, since the step does not set push = true\n", b.tags[0], digest)
	}
	return res, nil
}

// build is a step turned into a solve.
type build struct {
	opt     client.SolveOpt
	tags    []string
	repo    string
	creds   map[string]buildkit.Credentials
	secrets map[string][]byte
	// skippedCache are the cache exports a dry run leaves out.
	skippedCache []string
}

func (e *Executor) prepare(req steps.Request) (*build, error) {
	is := req.Step.Image
	if req.Workspace == "" {
		return nil, errors.New("no workspace to build in")
	}
	ctxDir, err := inWorkspace(req.Workspace, is.Context, "context")
	if err != nil {
		return nil, err
	}
	dfPath, err := inWorkspace(req.Workspace, is.Dockerfile, "dockerfile")
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dfPath); err != nil {
		return nil, fmt.Errorf("dockerfile %q is not in the workspace: add it to the repository, or set dockerfile to its path relative to the repository root", is.Dockerfile)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("dockerfile %q is a directory; set dockerfile to the file, such as %q", is.Dockerfile, filepath.Join(is.Dockerfile, "Dockerfile"))
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("context %q is not a directory of the workspace; set context to a directory relative to the repository root", is.Context)
	}

	b := &build{secrets: map[string][]byte{}}
	if len(is.Tags) == 0 {
		return nil, errors.New("the step has no tags; give it at least one, such as tags = [\"registry.example.com/app:1.0\"]")
	}
	for i, t := range is.Tags {
		ref, err := reference.ParseNormalizedNamed(t.Literal())
		if err != nil {
			return nil, fmt.Errorf("tag %q is not an image reference (%v); write it as registry/name:tag", t.Literal(), err)
		}
		ref = reference.TagNameOnly(ref)
		b.tags = append(b.tags, ref.String())
		if i == 0 {
			b.repo = ref.Name()
		}
	}
	attrs := map[string]string{"filename": filepath.Base(dfPath)}
	if is.Target != "" {
		attrs["target"] = is.Target
	}
	if len(is.Platforms) > 0 {
		attrs["platform"] = strings.Join(is.Platforms, ",")
	}
	for k, v := range is.BuildArgs {
		attrs["build-arg:"+k] = v.Literal()
	}
	labels := map[string]string{}
	if src := sourceURL(req.Git.Repo); src != "" {
		labels[labelSource] = src
	}
	if req.Git.SHA != "" {
		labels[labelRevision] = req.Git.SHA
	}
	for k, v := range is.Labels {
		labels[k] = v.Literal()
	}
	for k, v := range labels {
		attrs["label:"+k] = v
	}
	for k, v := range is.Secrets {
		b.secrets[k] = []byte(v.Literal())
	}

	imports, err := cacheEntries(is.CacheFrom, "cache_from")
	if err != nil {
		return nil, err
	}
	exports, err := cacheEntries(is.CacheTo, "cache_to")
	if err != nil {
		return nil, err
	}
	// The step's credentials are for its tags' registries and the
	// registries of its cache.
	refs := slices.Clone(b.tags)
	for _, c := range append(slices.Clone(imports), exports...) {
		refs = append(refs, c.Attrs["ref"])
	}
	if b.creds, err = buildkit.StepCredentials(is.Username.Literal(), is.Password.Literal(), refs...); err != nil {
		return nil, err
	}

	ctxFS, err := fsutil.NewFS(ctxDir)
	if err != nil {
		return nil, fmt.Errorf("opening context %q: %w", is.Context, err)
	}
	dfFS, err := fsutil.NewFS(filepath.Dir(dfPath))
	if err != nil {
		return nil, fmt.Errorf("opening dockerfile %q: %w", is.Dockerfile, err)
	}
	exp := client.ExportEntry{Type: client.ExporterImage, Attrs: map[string]string{"name": strings.Join(b.tags, ",")}}
	if is.Push && !req.DryRun {
		exp.Attrs["push"] = "true"
	}
	if req.DryRun {
		// A dry run builds (the digest is known) but writes nothing to a
		// registry: neither the image nor its cache.
		for _, c := range exports {
			b.skippedCache = append(b.skippedCache, c.Type+" "+c.Attrs["ref"])
		}
		exports = nil
	}
	b.opt = client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports:       []client.ExportEntry{exp},
		CacheImports:  imports,
		CacheExports:  exports,
		// The same key for the same context lets buildkitd send only what
		// changed since the last build of this directory.
		SharedKey: ctxDir,
	}
	return b, nil
}

// inWorkspace resolves a path of the step inside the workspace.
func inWorkspace(ws, p, attr string) (string, error) {
	if p == "" {
		p = "."
	}
	if !filepath.IsLocal(p) && p != "." {
		return "", fmt.Errorf("%s %q leaves the workspace; use a path relative to the repository root", attr, p)
	}
	return filepath.Join(ws, p), nil
}

// cacheEntries reads cache_from or cache_to: each entry is an image
// reference (registry cache) or BuildKit's CSV form,
// "type=registry,ref=registry/app:cache,mode=max".
func cacheEntries(list []plan.Template, attr string) ([]client.CacheOptionsEntry, error) {
	var out []client.CacheOptionsEntry
	for _, t := range list {
		s := strings.TrimSpace(t.Literal())
		e := client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{}}
		if !strings.Contains(s, "=") {
			e.Attrs["ref"] = s
		} else {
			for _, f := range strings.Split(s, ",") {
				k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
				if !ok {
					return nil, fmt.Errorf("%s entry %q: %q is not key=value; write \"type=registry,ref=registry/app:cache\" or just the reference", attr, s, f)
				}
				if k == "type" {
					e.Type = v
				} else {
					e.Attrs[k] = v
				}
			}
		}
		if e.Type == "registry" && e.Attrs["ref"] == "" {
			return nil, fmt.Errorf("%s entry %q has no ref; write \"type=registry,ref=registry/app:cache\"", attr, s)
		}
		if attr == "cache_to" && e.Attrs["mode"] == "" {
			// Cache of every stage, not only the final one: intermediate
			// stages are what a warm build saves most on.
			e.Attrs["mode"] = "max"
		}
		out = append(out, e)
	}
	return out, nil
}

// sourceURL is the repository's address for the source label: a
// GitHub owner/name becomes its https URL, a URL is kept.
func sourceURL(repo string) string {
	switch {
	case repo == "":
		return ""
	case strings.Contains(repo, "://"):
		return repo
	case strings.Count(repo, "/") == 1:
		return "https://github.com/" + repo
	}
	return ""
}
