package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/buildkit/client"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/internal/testing/buildtest"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/buildkit"
)

var env *buildtest.Env

func TestMain(m *testing.M) { os.Exit(buildtest.Main(m, &env)) }

type syncBuffer = buildtest.Log

func workspace(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func tpl(s ...string) []plan.Template {
	var out []plan.Template
	for _, v := range s {
		out = append(out, plan.Lit(v))
	}
	return out
}

func request(ws string, is *plan.ImageStep, log *syncBuffer) steps.Request {
	if is.Dockerfile == "" {
		is.Dockerfile = "Dockerfile"
	}
	if is.Context == "" {
		is.Context = "."
	}
	return steps.Request{
		RunID: "run-1", StageID: "build", Workspace: ws, Log: log,
		Step: plan.Step{Name: "img", Kind: plan.KindImage, Image: is},
		Git:  plan.Git{SHA: "0123456789abcdef0123456789abcdef01234567", Repo: "acme/web"},
	}
}

func newExecutor() *Executor {
	return &Executor{BuildKit: &buildkit.Conn{Addr: env.Addr}, DockerConfig: os.TempDir() + "/no-docker-config"}
}

func TestBuildPush(t *testing.T) {
	const secret = "tok-7c1f0e9a2b"
	ws := workspace(t, map[string]string{
		"build/app.Dockerfile": `FROM ` + env.Busybox + ` AS base
ARG VERSION
RUN echo "version $VERSION" > /version
RUN --mount=type=secret,id=token sha256sum < /run/secrets/token > /secret-check

FROM base AS final
COPY hello.txt /hello.txt

FROM base AS other
RUN exit 1
`,
		"hello.txt": "hello from the context\n",
	})
	log := &syncBuffer{}
	tag := env.Registry + "/private/app:v1"
	is := &plan.ImageStep{
		Dockerfile: "build/app.Dockerfile",
		Target:     "final",
		BuildArgs:  map[string]plan.Template{"VERSION": plan.Lit("1.2.3")},
		Labels:     map[string]plan.Template{"team": plan.Lit("web")},
		Tags:       tpl(tag, env.Registry+"/private/app:latest"),
		Push:       true,
		Secrets:    map[string]plan.Template{"token": plan.Lit(secret)},
		Username:   plan.Lit(env.User),
		Password:   plan.Lit(env.Password),
	}
	start := time.Now()
	res, err := newExecutor().Execute(context.Background(), request(ws, is, log))
	t.Logf("build and push took %v", time.Since(start))
	if err != nil {
		t.Fatalf("Execute: %v\nlog:\n%s", err, log)
	}
	d := res.Outputs["digest"]
	if !strings.HasPrefix(d, "sha256:") || res.Outputs["ref"] != tag || res.Outputs["digest_ref"] != env.Registry+"/private/app@"+d {
		t.Fatalf("outputs = %v", res.Outputs)
	}
	if strings.Contains(log.String(), secret) {
		t.Errorf("the secret's value appears in the log:\n%s", log)
	}
	if !strings.Contains(log.String(), "RUN echo") {
		t.Errorf("BuildKit's progress is not in the log:\n%s", log)
	}

	// The pushed image is the one built: its digest, labels, files.
	for _, ref := range []string{tag, env.Registry + "/private/app:latest", res.Outputs["digest_ref"]} {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(r)
		if err != nil {
			t.Fatalf("pulling %s: %v", ref, err)
		}
		got, _ := img.Digest()
		if got.String() != d {
			t.Errorf("%s has digest %s, the step said %s", ref, got, d)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"team": "web", labelRevision: "0123456789abcdef0123456789abcdef01234567", labelSource: "https://github.com/acme/web"}
		for k, v := range want {
			if cf.Config.Labels[k] != v {
				t.Errorf("label %s = %q, want %q (all: %v)", k, cf.Config.Labels[k], v, cf.Config.Labels)
			}
		}
		if _, ok := cf.Config.Labels["org.opencontainers.image.created"]; ok {
			t.Errorf("the image has a creation label, which makes builds irreproducible")
		}
		files := imageFiles(t, img)
		if sum := sha256.Sum256([]byte(secret)); !strings.HasPrefix(files["secret-check"], hex.EncodeToString(sum[:])) {
			t.Errorf("the build did not see the secret: /secret-check = %q", files["secret-check"])
		}
		if files["version"] != "version 1.2.3\n" || files["hello.txt"] != "hello from the context\n" {
			t.Errorf("/version = %q, /hello.txt = %q", files["version"], files["hello.txt"])
		}
		layers, _ := img.Layers()
		// busybox, /version, /secret-check, /hello.txt: target final, not other.
		if len(layers) != 4 {
			t.Errorf("image has %d layers, want 4", len(layers))
		}
	}
}

func TestNoPushStillReportsDigest(t *testing.T) {
	ws := workspace(t, map[string]string{"Dockerfile": "FROM " + env.Busybox + "\nRUN echo built > /f\n"})
	log := &syncBuffer{}
	tag := env.Registry + "/local/nopush:1"
	res, err := newExecutor().Execute(context.Background(), request(ws, &plan.ImageStep{Tags: tpl(tag)}, log))
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, log)
	}
	if !strings.HasPrefix(res.Outputs["digest"], "sha256:") {
		t.Fatalf("outputs = %v", res.Outputs)
	}
	r, _ := name.ParseReference(tag)
	if _, err := remote.Image(r); err == nil {
		t.Errorf("%s was pushed without push = true", tag)
	}
}

// TestDryRunPushesNothing: a dry run builds the image and knows its
// digest, but the registry gets neither the image nor its cache.
func TestDryRunPushesNothing(t *testing.T) {
	ws := workspace(t, map[string]string{"Dockerfile": "FROM " + env.Busybox + "\nRUN echo dry > /f\n"})
	log := &syncBuffer{}
	tag := env.Registry + "/local/dry:1"
	cache := env.Registry + "/local/dry:buildcache"
	req := request(ws, &plan.ImageStep{Tags: tpl(tag), Push: true, CacheTo: tpl(cache)}, log)
	req.DryRun = true
	res, err := newExecutor().Execute(context.Background(), req)
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, log)
	}
	d := res.Outputs["digest"]
	if !strings.HasPrefix(d, "sha256:") || res.Outputs["digest_ref"] != env.Registry+"/local/dry@"+d || res.DryRun != "push and cache export" {
		t.Fatalf("outputs = %v, dry run %q", res.Outputs, res.DryRun)
	}
	for _, ref := range []string{tag, cache} {
		r, _ := name.ParseReference(ref)
		if _, err := remote.Head(r); err == nil {
			t.Errorf("a dry run pushed %s", ref)
		}
	}
	for _, want := range []string{"dry run: would push " + tag + " (" + d + ")", "dry run: would export the build cache to registry " + cache} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The same build pushed has the digest the dry run reported.
	req.DryRun = false
	pushed, err := newExecutor().Execute(context.Background(), req)
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, log)
	}
	if pushed.Outputs["digest"] != d || pushed.DryRun != "" {
		t.Errorf("pushed %v (dry run %q), the dry run reported digest %s", pushed.Outputs, pushed.DryRun, d)
	}
}

func TestCacheExportImport(t *testing.T) {
	ws := workspace(t, map[string]string{"Dockerfile": "FROM " + env.Busybox + "\nARG N\nRUN echo expensive-$N > /a && sleep 0.1\nRUN echo second > /b\n"})
	cache := env.Registry + "/local/cached:buildcache"
	n := plan.Lit(time.Now().Format(time.RFC3339Nano))
	first := &plan.ImageStep{Tags: tpl(env.Registry + "/local/cached:1"), Push: true, BuildArgs: map[string]plan.Template{"N": n}, CacheTo: tpl("type=registry,ref=" + cache)}
	log := &syncBuffer{}
	if _, err := newExecutor().Execute(context.Background(), request(ws, first, log)); err != nil {
		t.Fatalf("first build: %v\n%s", err, log)
	}
	if got := cachedRuns(log.String()); got != 0 {
		t.Fatalf("the first build had %d cached RUN steps already:\n%s", got, log)
	}
	// Forget everything buildkitd has, so only the registry cache can help.
	c, err := client.New(context.Background(), env.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Prune(context.Background(), nil, client.PruneAll); err != nil {
		t.Fatal(err)
	}
	second := &plan.ImageStep{Tags: tpl(env.Registry + "/local/cached:2"), Push: true, BuildArgs: map[string]plan.Template{"N": n}, CacheFrom: tpl(cache)}
	log = &syncBuffer{}
	if _, err := newExecutor().Execute(context.Background(), request(ws, second, log)); err != nil {
		t.Fatalf("second build: %v\n%s", err, log)
	}
	if got := cachedRuns(log.String()); got != 2 {
		t.Errorf("the second build reported %d cached steps, want both RUNs from the registry cache:\n%s", got, log)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		step  plan.ImageStep
		want  []string
	}{
		{
			name:  "missing Dockerfile",
			files: map[string]string{"README": "x"},
			step:  plan.ImageStep{Tags: tpl(env.Registry + "/local/x:1")},
			want:  []string{`dockerfile "Dockerfile" is not in the workspace`, "set dockerfile"},
		},
		{
			name:  "failing RUN",
			files: map[string]string{"Dockerfile": "FROM " + env.Busybox + "\nRUN echo fine\nRUN echo about to fail && exit 3\n"},
			step:  plan.ImageStep{Tags: tpl(env.Registry + "/local/x:1")},
			want:  []string{"Dockerfile:3: RUN echo about to fail && exit 3", "exit code 3", "output is in the step log"},
		},
		{
			name:  "unknown base image",
			files: map[string]string{"Dockerfile": "FROM " + env.Registry + "/library/nonexistent:1\nRUN true\n"},
			step:  plan.ImageStep{Tags: tpl(env.Registry + "/local/x:1")},
			want:  []string{"/library/nonexistent:1 was not found", "check the image name and tag"},
		},
		{
			name:  "registry refuses the push",
			files: map[string]string{"Dockerfile": "FROM " + env.Busybox + "\nRUN echo refused > /f\n"},
			step:  plan.ImageStep{Tags: tpl(env.Registry + "/private/refused:1"), Push: true, Username: plan.Lit("sluice"), Password: plan.Lit("wrong-password")},
			want:  []string{"registry refused", "username and password"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &syncBuffer{}
			step := tc.step
			_, err := newExecutor().Execute(context.Background(), request(workspace(t, tc.files), &step, log))
			if err == nil {
				t.Fatalf("the step succeeded:\n%s", log)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "goroutine ") || strings.Contains(err.Error(), ".go:") {
				t.Errorf("error carries a stack trace: %v", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

// imageFiles reads the small regular files at the image's root.
func imageFiles(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && !strings.Contains(h.Name, "/") && h.Size < 1024 {
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
	}
}

// cachedRuns counts the RUN instructions BuildKit's progress reports as
// CACHED.
func cachedRuns(log string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		id, rest, ok := strings.Cut(line, " ")
		if ok && strings.HasPrefix(id, "#") && strings.Contains(rest, "] RUN ") && strings.Contains(log, "\n"+id+" CACHED") {
			n++
		}
	}
	return n
}

func TestBuildKitDiesMidBuild(t *testing.T) {
	// A daemon of its own: the shared one is not killed under the other
	// tests.
	own := buildtest.Start(t)
	ws := workspace(t, map[string]string{"Dockerfile": "FROM " + own.Busybox + "\nRUN echo started-long-step && sleep 20\n"})
	log := &syncBuffer{}
	e := &Executor{BuildKit: &buildkit.Conn{Addr: own.Addr}, DockerConfig: t.TempDir()}
	go func() {
		for !strings.Contains(log.String(), "started-long-step") {
			time.Sleep(20 * time.Millisecond)
		}
		if err := own.Kill(); err != nil {
			t.Errorf("killing buildkitd: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := e.Execute(ctx, request(ws, &plan.ImageStep{Tags: tpl(own.Registry + "/local/dies:1")}, log))
	if err == nil {
		t.Fatal("the step succeeded although buildkitd was killed")
	}
	var lost *buildkit.LostError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "lost the connection to buildkitd") || !strings.Contains(err.Error(), "retry") {
		t.Errorf("error = %v, want one that says buildkitd was lost and what to do", err)
	}
	if ctx.Err() != nil {
		t.Errorf("the step noticed only at its deadline")
	}
	t.Logf("error: %v", err)
}
