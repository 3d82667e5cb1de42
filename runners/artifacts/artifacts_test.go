package artifacts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sluice-ci/sluice/internal/bktemp"
)

var env *bktemp.Env

func TestMain(m *testing.M) { os.Exit(bktemp.Main(m, &env)) }

func producer(t *testing.T) string {
	ws := t.TempDir()
	for p, c := range map[string]string{"bin/app": "binary", "dist/x/pkg.tar.gz": "tarball", "dist/notes.txt": "no", "src/main.go": "package main", ".git/HEAD": "ref"} {
		os.MkdirAll(filepath.Dir(filepath.Join(ws, p)), 0o755)
		os.WriteFile(filepath.Join(ws, p), []byte(c), 0o755)
	}
	return ws
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store Store
	}{
		{"registry", Store{Registry: env.Registry}},
		{"directory", Store{Dir: t.TempDir()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := producer(t)
			ref, n, err := tc.store.Upload(context.Background(), "run-1", "build", ws, []string{"bin", "dist/**/*.tar.gz"})
			if err != nil || n != 2 {
				t.Fatalf("Upload = %q, %d, %v", ref, n, err)
			}
			if tc.store.Registry != "" {
				if !strings.HasPrefix(ref, env.Registry+"/sluice/artifacts@sha256:") {
					t.Errorf("ref = %q", ref)
				}
				r, _ := name.ParseReference(ref)
				m, err := remote.Get(r)
				if err != nil || !strings.Contains(string(m.Manifest), ArtifactType) {
					t.Errorf("manifest %s (%v) does not name the artifact type", m.Manifest, err)
				}
			}
			consumer := t.TempDir()
			got, err := tc.store.Download(context.Background(), ref, consumer)
			if err != nil || got != 2 {
				t.Fatalf("Download = %d, %v", got, err)
			}
			for p, c := range map[string]string{"bin/app": "binary", "dist/x/pkg.tar.gz": "tarball"} {
				b, err := os.ReadFile(filepath.Join(consumer, p))
				if err != nil || string(b) != c {
					t.Errorf("%s = %q, %v", p, b, err)
				}
			}
			for _, p := range []string{"dist/notes.txt", "src/main.go", ".git/HEAD"} {
				if _, err := os.Stat(filepath.Join(consumer, p)); err == nil {
					t.Errorf("%s was passed on although no pattern matches it", p)
				}
			}
			if fi, err := os.Stat(filepath.Join(consumer, "bin/app")); err != nil || fi.Mode()&0o100 == 0 {
				t.Errorf("bin/app lost its mode: %v %v", fi.Mode(), err)
			}
		})
	}
}
