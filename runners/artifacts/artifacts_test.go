package artifacts

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sluice-ci/sluice/internal/testing/buildtest"
)

var env *buildtest.Env

func TestMain(m *testing.M) { os.Exit(buildtest.Main(m, &env)) }

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

func TestPatternMatchingNothingFails(t *testing.T) {
	ws := producer(t)
	_, _, err := Store{Dir: t.TempDir()}.Upload(context.Background(), "run-1", "build", ws, []string{"bin", "out/**", "dist/*.zip"})
	var nm *NoMatchError
	if !errors.As(err, &nm) || len(nm.Patterns) != 2 || nm.Patterns[0] != "out/**" || nm.Patterns[1] != "dist/*.zip" {
		t.Fatalf("error = %v, want one naming out/** and dist/*.zip", err)
	}
	if !strings.Contains(err.Error(), `"out/**", "dist/*.zip" matched no file`) {
		t.Errorf("message does not say which patterns matched nothing: %v", err)
	}
}

func TestSizeLimit(t *testing.T) {
	ws := producer(t)
	os.WriteFile(filepath.Join(ws, "bin", "big"), make([]byte, 3<<20), 0o644)
	_, _, err := Store{Dir: t.TempDir(), MaxSize: 2 << 20}.Upload(context.Background(), "run-1", "build", ws, []string{"bin"})
	var tl *TooLargeError
	if !errors.As(err, &tl) || !strings.Contains(err.Error(), "the limit is 2 MiB") {
		t.Fatalf("error = %v, want the size limit", err)
	}
	if _, n, err := (Store{Dir: t.TempDir(), MaxSize: 4 << 20}).Upload(context.Background(), "run-1", "build", ws, []string{"bin"}); err != nil || n != 2 {
		t.Fatalf("under the limit: %d files, %v", n, err)
	}
}

func TestUnpackRefusesPathsLeavingTheWorkspace(t *testing.T) {
	for _, name := range []string{"../escape", "/etc/escape", "a/../../escape"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
		tw.Write([]byte("x"))
		tw.Close()
		ws := filepath.Join(t.TempDir(), "ws")
		os.MkdirAll(ws, 0o755)
		if _, err := Unpack(&buf, ws); err == nil || !strings.Contains(err.Error(), "leaves the workspace") {
			t.Errorf("%s: error = %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(ws, "..", "escape")); err == nil {
			t.Errorf("%s was written outside the workspace", name)
		}
	}
}

// Artifacts stream from a temporary file to the registry and back: their
// size is not held in memory, and no temporary file stays behind.
func TestLargeArtifactStreams(t *testing.T) {
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "out"), 0o755)
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	os.WriteFile(filepath.Join(ws, "out", "data.bin"), big, 0o644)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	for _, store := range []Store{{Registry: env.Registry}, {Dir: dir}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ref, n, err := store.Upload(context.Background(), "run-big", "build", ws, []string{"out"})
		runtime.ReadMemStats(&after)
		if err != nil || n != 1 {
			t.Fatalf("Upload = %q, %d, %v", ref, n, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("store %+v: uploading 64 MiB allocated %d MiB", store, alloc>>20)
		}
		consumer := t.TempDir()
		if n, err := store.Download(context.Background(), ref, consumer); err != nil || n != 1 {
			t.Fatalf("Download = %d, %v", n, err)
		}
		if b, err := os.ReadFile(filepath.Join(consumer, "out", "data.bin")); err != nil || !bytes.Equal(b, big) {
			t.Errorf("store %+v: the file came back different (%d bytes, %v)", store, len(b), err)
		}
	}
	for _, d := range []string{tmp, dir} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".sluice-artifact-") {
				t.Errorf("temporary file %s left in %s", e.Name(), d)
			}
		}
	}
}
