package gitops

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// Image is an image reference split the way deploy files hold it.
type Image struct {
	// Repo is the repository, as written (not normalised: "nginx" stays
	// "nginx", so that it matches what the file says).
	Repo   string
	Tag    string
	Digest string
}

// ParseImage reads "repo:tag", "repo@sha256:..." or "repo:tag@sha256:...".
func ParseImage(s string) (Image, error) {
	ref, err := reference.Parse(s)
	if err != nil {
		return Image{}, fmt.Errorf("image %q is not an image reference (%v); write registry/name:tag or registry/name@sha256:<digest>, like step.<image step>.digest_ref", s, err)
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return Image{}, fmt.Errorf("image %q has no repository; write registry/name:tag or registry/name@sha256:<digest>", s)
	}
	img := Image{Repo: named.Name()}
	if t, ok := ref.(reference.Tagged); ok {
		img.Tag = t.Tag()
	}
	if d, ok := ref.(reference.Digested); ok {
		img.Digest = d.Digest().String()
	}
	if img.Tag == "" && img.Digest == "" {
		return Image{}, fmt.Errorf("image %q has neither tag nor digest; deploying it would mean \"latest\", which Argo CD cannot tell apart from the image already running: give a tag or, better, a digest (step.<image step>.digest_ref)", s)
	}
	return img, nil
}

// String writes the reference back: repo[:tag][@digest].
func (i Image) String() string {
	var b strings.Builder
	b.WriteString(i.Repo)
	if i.Tag != "" {
		b.WriteString(":" + i.Tag)
	}
	if i.Digest != "" {
		b.WriteString("@" + i.Digest)
	}
	return b.String()
}
