package baseimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sluice-ci/sluice/runners/registry"
)

// The images' repository names and tag, below the registry address.
const (
	BusyboxName = "busybox"
	GolangName  = "golang"
	Tag         = "local"
)

// DefaultBusybox is where Debian's busybox-static installs busybox.
const DefaultBusybox = "/bin/busybox"

// epoch is the time of every file in the images, so that they are
// reproducible.
var epoch = time.Unix(0, 0).UTC()

// Options configures Push.
type Options struct {
	// Registry is host:port, optionally followed by a repository prefix
	// (localhost:5000/go-service), that the images are pushed under.
	Registry string
	// Busybox is the static busybox binary; default DefaultBusybox.
	Busybox string
	// GOROOT is the Go toolchain put in golang:local; default `go env GOROOT`.
	GOROOT string
	// Cache keeps the toolchain's layer between runs; "" builds it in a
	// temporary file every time.
	Cache string
	// SkipGolang pushes only busybox:local.
	SkipGolang bool
	// Out receives one line per image; nil discards.
	Out io.Writer
}

// Result is one image Push made sure of.
type Result struct {
	Ref    string
	Digest v1.Hash
	// Pushed is false when the registry already had it.
	Pushed bool
}

// Push builds busybox:local and golang:local and pushes them to
// o.Registry, skipping those it already has.
func Push(ctx context.Context, o Options) ([]Result, error) {
	if o.Registry == "" {
		return nil, errors.New("pushing the base images: no registry address")
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	bb, err := Busybox(o.Busybox)
	if err != nil {
		return nil, err
	}
	images := []struct {
		name string
		img  func() (v1.Image, func(), error)
	}{
		{BusyboxName, func() (v1.Image, func(), error) { return bb, func() {}, nil }},
	}
	if !o.SkipGolang {
		images = append(images, struct {
			name string
			img  func() (v1.Image, func(), error)
		}{GolangName, func() (v1.Image, func(), error) { return Golang(ctx, bb, o.GOROOT, o.Cache) }})
	}
	var results []Result
	for _, im := range images {
		img, done, err := im.img()
		if err != nil {
			return results, err
		}
		r, err := push(ctx, img, o.Registry+"/"+im.name+":"+Tag)
		done()
		if err != nil {
			return results, err
		}
		verb := "pushed"
		if !r.Pushed {
			verb = "up to date"
		}
		fmt.Fprintf(out, "%s: %s (%s)\n", r.Ref, verb, r.Digest)
		results = append(results, r)
	}
	return results, nil
}

// push pushes img as ref unless the registry has that digest there.
func push(ctx context.Context, img v1.Image, ref string) (Result, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return Result{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return Result{}, fmt.Errorf("building %s: %w", ref, err)
	}
	res := Result{Ref: ref, Digest: d}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if desc, err := remote.Head(r, opts...); err == nil && desc.Digest == d {
		return res, nil
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return res, registry.PushError(ref, err)
	}
	res.Pushed = true
	return res, nil
}

// Busybox returns busybox:local: the static busybox at bin (default
// DefaultBusybox) as /bin/busybox, a link to it for each of its applets,
// /tmp, and a root user.
func Busybox(bin string) (v1.Image, error) {
	if bin == "" {
		bin = DefaultBusybox
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w; install Debian's busybox-static (make tools does)", err)
	}
	list, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the applets of %s: %w; it must be a busybox binary (Debian's busybox-static)", bin, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	dir := func(p string, mode int64) {
		if dirs[p] {
			return
		}
		dirs[p] = true
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, ModTime: epoch})
	}
	for _, d := range []string{"bin", "etc", "root", "sbin", "usr", "usr/bin", "usr/sbin"} {
		dir(d, 0o755)
	}
	dir("tmp", 0o1777)
	file := func(p string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := file("bin/busybox", 0o755, exe); err != nil {
		return nil, err
	}
	_ = file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	_ = file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	applets := strings.Fields(string(list))
	sort.Strings(applets)
	for _, a := range applets {
		a = strings.TrimPrefix(path.Clean("/"+a), "/")
		if a == "bin/busybox" || a == "" {
			continue
		}
		dir(path.Dir(a), 0o755)
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: "/bin/busybox", Mode: 0o777, ModTime: epoch})
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	return image(empty.Image, layer, v1.Config{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"sh"},
	})
}

// Golang returns golang:local: busybox plus the Go toolchain at goroot
// (default: `go env GOROOT`) in /usr/local/go, set up to build without cgo
// and without downloading another toolchain. The toolchain's layer is kept
// uncompressed in cacheDir ("" means a temporary file, removed by done).
func Golang(ctx context.Context, busybox v1.Image, goroot, cacheDir string) (img v1.Image, done func(), err error) {
	if goroot == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
		if err != nil {
			return nil, nil, fmt.Errorf("finding this machine's Go toolchain (go env GOROOT): %w; install Go or pass its GOROOT", err)
		}
		goroot = strings.TrimSpace(string(out))
	}
	version, err := os.ReadFile(filepath.Join(goroot, "VERSION"))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the Go toolchain at %s: %w", goroot, err)
	}
	goVersion, _, _ := strings.Cut(string(version), "\n")
	done = func() {}
	if cacheDir == "" {
		dir, err := os.MkdirTemp("", "sluice-golang-")
		if err != nil {
			return nil, nil, err
		}
		cacheDir, done = dir, func() { _ = os.RemoveAll(dir) }
	}
	layer, err := goLayer(goroot, goVersion, cacheDir)
	if err != nil {
		done()
		return nil, nil, err
	}
	cf, err := busybox.ConfigFile()
	if err != nil {
		done()
		return nil, nil, err
	}
	cfg := cf.Config
	cfg.Env = []string{
		"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"GOROOT=/usr/local/go",
		"GOPATH=/go",
		"GOCACHE=/root/.cache/go-build",
		"CGO_ENABLED=0",
		"GOTOOLCHAIN=local",
		"GOTELEMETRY=off",
		"GOLANG_VERSION=" + strings.TrimPrefix(goVersion, "go"),
	}
	cfg.WorkingDir = "/go"
	img, err = image(busybox, layer, cfg)
	if err != nil {
		done()
		return nil, nil, err
	}
	return img, done, nil
}

// image appends layer to base and sets the config, for linux on this
// machine's architecture.
func image(base v1.Image, layer v1.Layer, cfg v1.Config) (v1.Image, error) {
	base = mutate.MediaType(base, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, cfg
	cf.Created = v1.Time{Time: epoch}
	cf.History = nil
	return mutate.ConfigFile(img, cf)
}

// skipped are the parts of GOROOT that building and testing Go code does
// not use: the toolchain's own sources (its tools are built already in
// pkg/tool), tests and documentation, and `go fix`. Every megabyte counts
// twice or more: buildkitd's native snapshotter copies the whole tree for
// every step that runs in it.
func skipped(rel string, d fs.DirEntry) bool {
	switch rel {
	case "test", "api", "doc", "misc", ".git", "pkg/obj", "src/cmd":
		return true
	}
	if strings.HasPrefix(rel, "pkg/tool/") && d.Name() == "fix" {
		return true
	}
	return d.IsDir() && d.Name() == "testdata"
}

// goLayer writes GOROOT as usr/local/go into an uncompressed tar in dir,
// once per toolchain: the file's name holds the toolchain's path, version
// and platform. Compressing ~200 MB would cost seconds at every change and
// saves nothing on a registry on the same machine.
func goLayer(goroot, version, dir string) (v1.Layer, error) {
	key := sha256.Sum256([]byte(goroot + "\x00" + version + "\x00" + runtime.GOOS + "/" + runtime.GOARCH))
	file := filepath.Join(dir, "golang-"+version+"-"+hex.EncodeToString(key[:6])+".tar")
	if _, err := os.Stat(file); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := writeTree(goroot, "usr/local/go", file); err != nil {
			return nil, fmt.Errorf("packing the Go toolchain at %s: %w", goroot, err)
		}
	}
	return newFileLayer(file)
}

// writeTree writes the tree at root into a tar at file, under prefix, with
// fixed times and owners, atomically.
func writeTree(root, prefix, file string) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".golang-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	for _, d := range []string{"usr", "usr/local", "usr/local/go"} {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch})
	}
	for _, d := range []string{"go", "go/bin", "go/pkg", "root", "root/.cache"} {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o777, ModTime: epoch})
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if skipped(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: prefix + "/" + rel, Mode: int64(info.Mode().Perm()), ModTime: epoch}
		switch {
		case d.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			return tw.WriteHeader(h)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
			return tw.WriteHeader(h)
		case info.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, info.Size()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		tmp.Close()
		return err
	}
	return os.Rename(tmp.Name(), file)
}
