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
