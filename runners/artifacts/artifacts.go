package artifacts

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// ArtifactType marks Sluice's artifacts among a registry's manifests: it
// is the media type of the manifest's config, which OCI 1.1 reads as the
// artifact type.
const ArtifactType = "application/vnd.sluice.artifact.v1"

// LayerType is the media type of the artifact's one layer: a tar of the
// files at their workspace paths.
const LayerType = "application/vnd.sluice.artifact.layer.v1.tar"

// Store keeps artifacts: in Registry (host:port) when it is set, else in
// Dir.
type Store struct {
	Registry string
	// Dir holds artifacts without a registry, such as $SLUICE_HOME/artifacts.
	Dir string
	// Keychain gives registry credentials; nil means the runner's Docker
	// configuration.
	Keychain authn.Keychain
	// MaxSize bounds the bytes of one stage's files; zero means
	// DefaultMaxSize.
	MaxSize int64
}

// DefaultMaxSize is the most a stage's artifacts may hold. The files are
// packed into a temporary file and streamed to the registry, never held in
// memory; the bound keeps one stage from filling the runner's disk and the
// registry. Larger outputs belong in an image or a package registry.
const DefaultMaxSize = 8 << 30

// NoMatchError says which patterns matched no file of the workspace. A
// pattern that matches nothing is taken for a mistake (a typo, or a step
// that did not write what it was meant to), not for an empty artifact:
// the stages that need the files would fail later, further from the cause.
type NoMatchError struct {
	Patterns []string
}

// Permanent tells a caller that retrying will not help.
func (e *NoMatchError) Permanent() bool { return true }

func (e *NoMatchError) Error() string {
	return fmt.Sprintf("artifacts %s matched no file in the workspace; check the paths (relative to the workspace) and that the stage's steps wrote them", quote(e.Patterns))
}

// TooLargeError says the artifact's files exceed the store's limit.
type TooLargeError struct {
	Size, Limit int64
}

// Permanent tells a caller that retrying will not help.
func (e *TooLargeError) Permanent() bool { return true }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("artifacts hold more than %d MiB (the limit is %d MiB); narrow the patterns, or publish large outputs as an image", e.Size>>20, e.Limit>>20)
}

func quote(ps []string) string {
	q := make([]string, len(ps))
	for i, p := range ps {
		q[i] = fmt.Sprintf("%q", p)
	}
	return strings.Join(q, ", ")
}

var unsafeTag = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// Ref names the artifact of one stage of one run.
func (s Store) Ref(runID, stageID string) string {
	tag := unsafeTag.ReplaceAllString(runID+"-"+stageID, "_")
	if len(tag) > 128 {
		tag = tag[:128]
	}
	if s.Registry == "" {
		return filepath.Join(s.Dir, tag+".tar")
	}
	return s.Registry + "/sluice/artifacts:" + tag
}

// Upload packs the workspace files matching patterns and stores them as
// the stage's artifact. It returns the artifact's reference (by digest in
// a registry) and the number of files, which may be zero.
func (s Store) Upload(ctx context.Context, runID, stageID, workspace string, patterns []string) (string, int, error) {
	limit := s.MaxSize
	if limit <= 0 {
		limit = DefaultMaxSize
	}
	dest := s.Ref(runID, stageID)
	tmpDir := ""
	if s.Registry == "" {
		if s.Dir == "" {
			return "", 0, errors.New("storing artifacts: the runner has neither a registry nor an artifacts directory")
		}
		// Packed beside its place, so that it lands there in one rename.
		if err := os.MkdirAll(s.Dir, 0o755); err != nil {
			return "", 0, fmt.Errorf("storing artifacts: %w", err)
		}
		tmpDir = s.Dir
	}
	f, err := os.CreateTemp(tmpDir, ".sluice-artifact-*")
	if err != nil {
		return "", 0, fmt.Errorf("storing artifacts: %w", err)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := Pack(io.MultiWriter(f, h), workspace, patterns, limit)
	size, serr := f.Seek(0, io.SeekCurrent)
	if cerr := f.Close(); err == nil {
		err = errors.Join(serr, cerr)
	}
	if err != nil {
		return "", 0, err
	}
	if s.Registry == "" {
		if err := os.Rename(f.Name(), dest); err != nil {
			return "", 0, fmt.Errorf("storing artifacts: %w", err)
		}
		return dest, n, nil
	}
	layer := fileLayer{path: f.Name(), size: size, digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: layer})
	if err != nil {
		return "", 0, err
	}
	img = mutate.ConfigMediaType(img, types.MediaType(ArtifactType))
	ref, err := name.ParseReference(dest)
	if err != nil {
		return "", 0, fmt.Errorf("artifact reference %q: %w", dest, err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(s.keychain())); err != nil {
		return "", 0, fmt.Errorf("pushing the artifacts of stage %q to %s: %w; check that the runner reaches the registry and may push to it (docker login)", stageID, dest, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", 0, err
	}
	return ref.Context().Digest(d.String()).String(), n, nil
}

// fileLayer is an artifact's tar in a file, as the one layer of its
// manifest: stored as it is, so its digest is the file's.
type fileLayer struct {
	path   string
	size   int64
	digest v1.Hash
}

func (l fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l fileLayer) MediaType() (types.MediaType, error)  { return LayerType, nil }

// Download unpacks the artifact ref (as Upload returned it) into the
// workspace.
func (s Store) Download(ctx context.Context, ref, workspace string) (int, error) {
	var r io.ReadCloser
	if filepath.IsAbs(ref) {
		f, err := os.Open(ref)
		if err != nil {
			return 0, fmt.Errorf("reading artifacts %s: %w", ref, err)
		}
		r = f
	} else {
		pr, err := name.ParseReference(ref)
		if err != nil {
			return 0, fmt.Errorf("artifact reference %q: %w", ref, err)
		}
		img, err := remote.Image(pr, remote.WithContext(ctx), remote.WithAuthFromKeychain(s.keychain()))
		if err != nil {
			return 0, fmt.Errorf("pulling artifacts %s: %w; check that the runner reaches the registry and may pull from it", ref, err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			return 0, fmt.Errorf("artifacts %s: not a Sluice artifact (one tar layer): %v", ref, err)
		}
		if r, err = layers[0].Uncompressed(); err != nil {
			return 0, fmt.Errorf("pulling artifacts %s: %w", ref, err)
		}
	}
	defer r.Close()
	return Unpack(r, workspace)
}

func (s Store) keychain() authn.Keychain {
	if s.Keychain != nil {
		return s.Keychain
	}
	return authn.DefaultKeychain
}

// Pack writes to w a tar of the regular files (and symbolic links) of the
// workspace whose path matches a pattern, and returns how many it holds; a
// pattern matching a directory takes everything under it. Modification times are zeroed so the same files make the same
// artifact. Every pattern must match a file (else a *NoMatchError), and
// the files may hold at most limit bytes (else a *TooLargeError).
func Pack(w io.Writer, workspace string, patterns []string, limit int64) (int, error) {
	tw := tar.NewWriter(w)
	n := 0
	var size int64
	matched := make([]bool, len(patterns))
	err := filepath.WalkDir(workspace, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(workspace, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !matches(patterns, rel, matched) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if size += info.Size(); size > limit {
			return &TooLargeError{Size: size, Limit: limit}
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() {
			return nil
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, h.Uname, h.Gname = rel, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = zeroTime, zeroTime, zeroTime
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if link == "" {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		n++
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("packing artifacts: %w", err)
	}
	var none []string
	for i, ok := range matched {
		if !ok {
			none = append(none, patterns[i])
		}
	}
	if none != nil {
		return 0, &NoMatchError{Patterns: none}
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("packing artifacts: %w", err)
	}
	return n, nil
}

var zeroTime = time.Unix(0, 0)

// matches says whether a workspace path is one of the artifacts, and
// marks the patterns that match it.
func matches(patterns []string, rel string, matched []bool) bool {
	hit := false
	for i, p := range patterns {
		p = strings.TrimSuffix(p, "/")
		if plan.MatchGlob(p, rel) || plan.MatchGlob(p+"/**", rel) {
			matched[i], hit = true, true
		}
	}
	return hit
}

// Unpack writes the files of an artifact into the workspace, refusing any
// path that would leave it.
func Unpack(r io.Reader, workspace string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("unpacking artifacts: %w", err)
		}
		if !filepath.IsLocal(h.Name) {
			return n, fmt.Errorf("unpacking artifacts: %q leaves the workspace", h.Name)
		}
		dest := filepath.Join(workspace, filepath.FromSlash(path.Clean(h.Name)))
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return n, err
		}
		os.Remove(dest)
		switch h.Typeflag {
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dest); err != nil {
				return n, err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(h.Mode)&0o777)
			if err != nil {
				return n, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return n, fmt.Errorf("unpacking artifact %s: %w", h.Name, err)
			}
		default:
			continue
		}
		n++
	}
}
