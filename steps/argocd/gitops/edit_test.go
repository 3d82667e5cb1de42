package gitops

import (
	"testing"
)

func TestEdit(t *testing.T) {
	const kust = `# Deployed by Sluice; edit by hand only to pin.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:
  - deployment.yaml   # the API
images:
  - name: registry.example.com/api
    newTag: "1.0"   # pinned by the last deploy
  - name: busybox
    newTag: "1.36"
namespace: web
`
	const digest = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		name, in  string
		target    Target
		image     string
		want      string
		previous  string
		unchanged bool
	}{
		{
			name: "kustomize tag", in: kust, target: Target{Format: FormatKustomize},
			image: "registry.example.com/api:1.1", previous: "registry.example.com/api:1.0",
			want: `# Deployed by Sluice; edit by hand only to pin.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:
  - deployment.yaml   # the API
images:
  - name: registry.example.com/api
    newTag: "1.1"   # pinned by the last deploy
  - name: busybox
    newTag: "1.36"
namespace: web
`,
		},
		{
			name: "kustomize digest renames newTag in place", in: kust, target: Target{Format: FormatKustomize},
			image: "registry.example.com/api@" + digest, previous: "registry.example.com/api:1.0",
			want: `# Deployed by Sluice; edit by hand only to pin.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:
  - deployment.yaml   # the API
images:
  - name: registry.example.com/api
    digest: "` + digest + `"   # pinned by the last deploy
  - name: busybox
    newTag: "1.36"
namespace: web
`,
		},
		{
			name: "kustomize by image name, new repository", in: kust, target: Target{Format: FormatKustomize, ImageName: "busybox"},
			image: "localhost:5000/busybox:1.37", previous: "busybox:1.36",
			want: `# Deployed by Sluice; edit by hand only to pin.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml # the API
images:
  - name: registry.example.com/api
    newTag: "1.0" # pinned by the last deploy
  - name: busybox
    newTag: "1.37"
    newName: localhost:5000/busybox
namespace: web
`,
		},
		{
			name: "kustomize unchanged", in: kust, target: Target{Format: FormatKustomize},
			image: "registry.example.com/api:1.0", previous: "registry.example.com/api:1.0", unchanged: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := ParseImage(c.image)
			if err != nil {
				t.Fatal(err)
			}
			out, prev, err := Edit([]byte(c.in), c.target, img)
			if err != nil {
				t.Fatal(err)
			}
			if prev != c.previous {
				t.Errorf("previous = %q, want %q", prev, c.previous)
			}
			want := c.want
			if c.unchanged {
				want = c.in
			}
			if string(out) != want {
				t.Errorf("got:\n%s\nwant:\n%s", out, want)
			}
		})
	}
}

// FuzzEdit checks, for any file, that Edit does not panic and that an
// edited file holds the image: editing it again changes nothing and
// reports the image as the previous one.
func FuzzEdit(f *testing.F) {
	f.Add("images:\n  - name: r/api\n    newTag: \"1\" # c\n", "kustomize", "", "r/api:2")
	f.Add("image:\n  repository: r/api\n  tag: '1'\n", "helm", "image", "r/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	f.Add("image:\n  tag: 1.0\n", "helm", "image.tag", "r/api:1.20")
	f.Add("kustomize:\n  images: [\"a=r/api:1\"]\n", "argocd-source", "", "r/api:2")
	f.Add("helm:\n  parameters:\n  - name: image.tag\n    value: \"1\"\n", "argocd-source", "image.tag", "r/api:2")
	f.Fuzz(func(t *testing.T, content, format, key, image string) {
		img, err := ParseImage(image)
		if err != nil {
			return
		}
		tg := Target{Format: format, Key: key}
		out, _, err := Edit([]byte(content), tg, img)
		if err != nil {
			return
		}
		again, prev, err := Edit(out, tg, img)
		if err != nil {
			t.Fatalf("the edited file does not edit again: %v\n%s", err, out)
		}
		if string(again) != string(out) {
			t.Fatalf("a second edit changed the file:\n%s\n---\n%s", out, again)
		}
		if p, err := ParseImage(prev); err != nil || p != img {
			t.Fatalf("the edited file holds %q, not %q:\n%s", prev, img, out)
		}
	})
}
