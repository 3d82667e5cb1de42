package baseimage_test

import (
	"archive/tar"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/sluice-ci/sluice/runners/baseimage"
	"github.com/sluice-ci/sluice/runners/registry"
)

func TestBusyboxIsReproducibleWithShellAndTmp(t *testing.T) {
	a, err := baseimage.Busybox("")
	if err != nil {
		t.Fatal(err)
	}
	b, err := baseimage.Busybox("")
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of busybox:local differ: %s, %s", da, db)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(mutate.Extract(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
	if h := files["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/bin/busybox" {
		t.Errorf("bin/sh is %+v, want a link to /bin/busybox", h)
	}
	if h := files["tmp"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
		t.Errorf("tmp is %+v, want a sticky world-writable directory", h)
	}
	if h := files["bin/busybox"]; h == nil || h.Size < 1<<20 {
		t.Errorf("bin/busybox is %+v, want the static busybox", h)
	}
	cf, _ := a.ConfigFile()
	if cf.OS != "linux" || len(cf.Config.Cmd) != 1 || cf.Config.Cmd[0] != "sh" {
		t.Errorf("config: os %q, cmd %q", cf.OS, cf.Config.Cmd)
	}
}

func TestPushRefusedWithoutCredentials(t *testing.T) {
	r, err := registry.Serve(registry.ServeOptions{Dir: t.TempDir(), Port: -1, Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method != http.MethodGet && req.Method != http.MethodHead {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, req)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = baseimage.Push(context.Background(), baseimage.Options{Registry: r.Host + "/team", SkipGolang: true})
	if err == nil {
		t.Fatal("the push succeeded without credentials")
	}
	for _, want := range []string{r.Host + "/team/busybox:local", "401 Unauthorized", "needs credentials", "docker login"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
