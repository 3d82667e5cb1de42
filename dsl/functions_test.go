package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// TestFileStaysInRepository checks that file() and fileexists() read only
// below the repository, whatever the path or the symbolic links say.
func TestFileStaysInRepository(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("s3cret"), 0o644)
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "VERSION"), []byte("1.2.3\n"), 0o644)
	os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(root, "link.txt"))
	os.Symlink("/dev/zero", filepath.Join(root, "zero"))
	os.Symlink("VERSION", filepath.Join(root, "alias"))
	fns := functions(root, nil, false)
	tests := []struct {
		name, path, want, err string
	}{
		{"a file", "VERSION", "1.2.3\n", ""},
		{"a link inside", "alias", "1.2.3\n", ""},
		{"dot dot", "../secret.txt", "", "outside the repository"},
		{"absolute", filepath.Join(outside, "secret.txt"), "", "is absolute"},
		{"a link outside", "link.txt", "", "outside the repository"},
		{"a device", "zero", "", "outside the repository"},
		{"missing", "nope", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := fns["file"].Call([]cty.Value{cty.StringVal(tt.path)})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("file(%q) error = %v; want %q", tt.path, err, tt.err)
				}
				return
			}
			if err != nil || v.AsString() != tt.want {
				t.Fatalf("file(%q) = %v, %v; want %q", tt.path, v, err, tt.want)
			}
		})
	}
	if v, err := fns["fileexists"].Call([]cty.Value{cty.StringVal("nope")}); err != nil || v.True() {
		t.Errorf("fileexists(nope) = %v, %v", v, err)
	}
	if _, err := fns["fileexists"].Call([]cty.Value{cty.StringVal("link.txt")}); err == nil {
		t.Error("fileexists follows a link out of the repository")
	}
}
