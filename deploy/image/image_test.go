package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/tonistiigi/fsutil"

	"github.com/sluice-ci/sluice/internal/testing/buildtest"
	"github.com/sluice-ci/sluice/steps/buildkit"
)

// TestRuntimeStage builds deploy/image/Dockerfile with a real buildkitd and
// registry, then checks the image as a runner uses it: as uid 65532, sluice
// answers its three commands, git clones, SLUICE_HOME is writable, and the
// configuration is what the Helm chart expects (entrypoint sluice, command
// server).
//
// The Dockerfile's build stage compiles sluice, sluice-temporal and
// sluice-exec from scratch, which takes minutes on a 2-core machine; make
// image builds it for real. Here a named build context stands in for that
// stage: this package's sluice (built by the go command as the tests are),
// the tests' sluice-exec, and a script in place of sluice-temporal, which
// only sluice server starts. The rest of the Dockerfile is built as it is:
// the Debian packages that prepare.sh downloads with apt (git, its
// libraries, the CA certificates) unpacked onto busybox:local, the user,
// SLUICE_HOME and the labels.
func TestRuntimeStage(t *testing.T) {
	env := buildtest.Start(t)
	repo, err := buildtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The build context: what prepare.sh puts in .image (the Dockerfile's
	// other inputs belong to the build stage).
	buildCtx := t.TempDir()
	prep := exec.CommandContext(ctx, "sh", filepath.Join(repo, "deploy", "image", "prepare.sh"), "debs", filepath.Join(buildCtx, ".image"))
	if out, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("prepare.sh debs: %v\n%s", err, out)
	}

	// The build stage's /out.
	bins := t.TempDir()
	out := filepath.Join(bins, "out")
	gobuild := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(out, "sluice"), "./cmd/sluice")
	gobuild.Dir = repo
	if b, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("building sluice: %v\n%s", err, b)
	}
	helper, err := os.ReadFile(env.Helper)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(out, "sluice-exec"), string(helper), 0o755)
	writeFile(t, filepath.Join(out, "sluice-temporal"), "#!/bin/sh\necho 'a stand-in for sluice-temporal' >&2\nexit 1\n", 0o755)

	c, err := client.New(ctx, env.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ref := env.Registry + "/sluice/sluice:test"
	solve(ctx, t, c, client.SolveOpt{
		Frontend: "dockerfile.v0",
		FrontendAttrs: map[string]string{
			"filename":           "Dockerfile",
			"build-arg:REGISTRY": env.Registry,
			"build-arg:VERSION":  "v0.0.0-test",
			"context:build":      "local:binaries",
		},
		LocalMounts: map[string]fsutil.FS{
			"context":    mustFS(t, buildCtx),
			"dockerfile": mustFS(t, filepath.Join(repo, "deploy", "image")),
			"binaries":   mustFS(t, bins),
		},
		Exports: []client.ExportEntry{{Type: client.ExporterImage, Attrs: map[string]string{"name": ref, "push": "true"}}},
	})

	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	if cfg.User != "65532:65532" {
		t.Errorf("User = %q; want 65532:65532, the non-root user the Helm chart runs as", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"sluice"}) {
		t.Errorf("Entrypoint = %q; want [sluice]", cfg.Entrypoint)
	}
	if len(cfg.Cmd) == 0 || cfg.Cmd[0] != "server" {
		t.Errorf("Cmd = %q; want server first", cfg.Cmd)
	}
	if !slices.Contains(cfg.Env, "SLUICE_HOME=/var/lib/sluice") {
		t.Errorf("Env = %q; want SLUICE_HOME=/var/lib/sluice", cfg.Env)
	}
	for k, v := range map[string]string{"org.opencontainers.image.title": "sluice", "org.opencontainers.image.version": "v0.0.0-test"} {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q; want %q", k, cfg.Labels[k], v)
		}
	}

	// The image as a runner uses it: a build FROM it runs its RUN as the
	// image's user, in its environment.
	check := t.TempDir()
	writeFile(t, filepath.Join(check, "Dockerfile"), "FROM "+ref+"\nCOPY check.sh /tmp/\nRUN sh -ex /tmp/check.sh\n", 0o644)
	writeFile(t, filepath.Join(check, "check.sh"), `test "$(id -u):$(id -g)" = 65532:65532
sluice version
sluice --help >/dev/null
sluice server --help >/dev/null
sluice runner --help >/dev/null
test -s /etc/ssl/certs/ca-certificates.crt
touch "$SLUICE_HOME/written"
# What a runner does to prepare a workspace (runners/workspace).
git --version
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com
git init -q /tmp/repo
echo hello > /tmp/repo/f
git -C /tmp/repo add f
git -C /tmp/repo commit -q -m first
git clone -q --shared --no-checkout /tmp/repo /tmp/shared
git -C /tmp/shared checkout -q --detach HEAD
test "$(cat /tmp/shared/f)" = hello
git init -q --bare /tmp/mirror.git
git -C /tmp/mirror.git fetch -q --no-tags file:///tmp/repo HEAD
test "$(git -C /tmp/mirror.git cat-file -t FETCH_HEAD)" = commit
`, 0o644)
	solve(ctx, t, c, client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: map[string]string{"filename": "Dockerfile", "no-cache": ""},
		LocalMounts:   map[string]fsutil.FS{"context": mustFS(t, check), "dockerfile": mustFS(t, check)},
	})
}

// solve runs one build and fails the test with BuildKit's log when it
// fails.
func solve(ctx context.Context, t *testing.T, c *client.Client, opt client.SolveOpt) {
	t.Helper()
	auth, err := buildkit.Auth(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	opt.Session = append(opt.Session, []session.Attachable{auth}...)
	ch := make(chan *client.SolveStatus)
	var log bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st := range ch {
			for _, l := range st.Logs {
				log.Write(l.Data)
			}
			for _, v := range st.Vertexes {
				if v.Error != "" {
					fmt.Fprintf(&log, "%s: %s\n", v.Name, v.Error)
				}
			}
		}
	}()
	_, err = c.Solve(ctx, nil, opt, ch)
	<-done
	if err != nil {
		t.Fatalf("building: %v\nBuildKit's log:\n%s", err, strings.TrimSpace(log.String()))
	}
}

func mustFS(t *testing.T, dir string) fsutil.FS {
	t.Helper()
	fs, err := fsutil.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
