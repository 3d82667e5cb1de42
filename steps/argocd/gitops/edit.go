package gitops

import (
	"fmt"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// The formats of GitOps files, as the DSL's gitops block names them.
const (
	FormatKustomize    = "kustomize"
	FormatHelm         = "helm"
	FormatArgoCDSource = "argocd-source"
)

// Target says where in a file the image is.
type Target struct {
	// Format is FormatKustomize, FormatHelm or FormatArgoCDSource.
	Format string
	// ImageName picks the entry of a kustomization's images (or of an
	// .argocd-source file's kustomize.images) by its name; empty picks the
	// entry whose name or newName is the image's repository.
	ImageName string
	// Key is the dotted path of the image in Helm values (or the name of
	// the Helm parameter of an .argocd-source file).
	Key string
}

// Edit writes img into content, a file of the target's format, and
// returns the new content and the image the file held before (empty when
// it held none). Content comes back unchanged, byte for byte, when the
// file already holds img.
func Edit(content []byte, t Target, img Image) (out []byte, previous string, err error) {
	d, err := parseDoc(content)
	if err != nil {
		return nil, "", err
	}
	switch t.Format {
	case FormatKustomize:
		previous, err = d.kustomize(t, img)
	case FormatHelm:
		previous, err = d.helm(d.root, strings.Split(t.Key, "."), t.Key, img)
	case FormatArgoCDSource:
		previous, err = d.argoCDSource(t, img)
	default:
		return nil, "", fmt.Errorf("unknown GitOps file format %q: use kustomize, helm or argocd-source", t.Format)
	}
	if err != nil {
		return nil, "", err
	}
	if !d.rewrite && len(d.patches) == 0 {
		return content, previous, nil
	}
	out, err = d.bytes()
	return out, previous, err
}

// imageKeys name the keys of a map that holds an image in parts.
type imageKeys struct{ repo, tag, digest string }

var (
	kustomizeKeys = imageKeys{"newName", "newTag", "digest"}
	helmKeys      = imageKeys{"repository", "tag", "digest"}
)

// fromMap reads the image a map holds; repo is used when it holds none.
func fromMap(m *yaml.Node, k imageKeys, repo string) string {
	if r := scalar(m, k.repo); r != "" {
		repo = r
	}
	img := Image{Repo: repo, Tag: scalar(m, k.tag), Digest: scalar(m, k.digest)}
	return img.String()
}

// setParts writes img into a map that holds it in parts. A digest pins
// the image: the tag is kept only when img has one too, since kustomize
// and most charts prefer the digest but a stale tag next to it misleads
// readers. Without a digest, a digest left in the map would win over the
// new tag, so it goes. Where the map holds the other key, it is renamed in
// place, keeping the file's layout.
func (d *doc) setParts(m *yaml.Node, k imageKeys, img Image, setRepo bool) {
	if setRepo {
		d.put(m, k.repo, img.Repo)
	}
	_, tag := field(m, k.tag)
	_, dig := field(m, k.digest)
	switch {
	case img.Digest != "" && dig == nil && tag != nil && img.Tag == "":
		d.rename(m, k.tag, k.digest, img.Digest)
	case img.Digest != "":
		d.put(m, k.digest, img.Digest)
		if img.Tag != "" {
			d.put(m, k.tag, img.Tag)
		} else {
			d.del(m, k.tag)
		}
	case tag == nil && dig != nil:
		d.rename(m, k.digest, k.tag, img.Tag)
	default:
		d.put(m, k.tag, img.Tag)
		d.del(m, k.digest)
	}
}

// kustomize edits the images list of a kustomization, as
// `kustomize edit set image` would.
func (d *doc) kustomize(t Target, img Image) (string, error) {
	images, err := d.child(d.root, "images", yaml.SequenceNode)
	if err != nil {
		return "", fmt.Errorf("not a kustomization: %w", err)
	}
	var entry *yaml.Node
	for _, e := range images.Content {
		if e.Kind != yaml.MappingNode {
			continue
		}
		name := scalar(e, "name")
		if (t.ImageName != "" && name == t.ImageName) || (t.ImageName == "" && (name == img.Repo || scalar(e, "newName") == img.Repo)) {
			entry = e
			break
		}
	}
	previous := ""
	if entry == nil {
		name := t.ImageName
		if name == "" {
			name = img.Repo
		}
		entry = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: "name"}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: name},
		}}
		images.Content = append(images.Content, entry)
		d.rewrite = true
	} else {
		previous = fromMap(entry, kustomizeKeys, scalar(entry, "name"))
	}
	_, newName := field(entry, "newName")
	d.setParts(entry, kustomizeKeys, img, newName != nil || scalar(entry, "name") != img.Repo)
	return previous, nil
}

// helm edits the values at the dotted path in m. At a map (image:
// {repository, tag, digest}) it sets the parts; at a single value it
// writes the tag when the key's last part is "tag", the digest when it is
// "digest", and the whole reference otherwise.
func (d *doc) helm(m *yaml.Node, path []string, key string, img Image) (string, error) {
	if key == "" {
		return "", fmt.Errorf("a Helm values file needs key, the dotted path of the image in it, like key = \"image\" or \"image.tag\"")
	}
	for _, p := range path[:len(path)-1] {
		next, err := d.child(m, p, yaml.MappingNode)
		if err != nil {
			return "", fmt.Errorf("key %q: %w", key, err)
		}
		m = next
	}
	last := path[len(path)-1]
	_, v := field(m, last)
	if v != nil && v.Kind == yaml.MappingNode {
		previous := ""
		if scalar(v, "tag") != "" || scalar(v, "digest") != "" {
			previous = fromMap(v, helmKeys, img.Repo)
		}
		d.setParts(v, helmKeys, img, true)
		return previous, nil
	}
	if v != nil && v.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("key %q is %s; point key at the image's map or at a single value", key, kindName(v.Kind))
	}
	value, err := scalarImage(key, img)
	if err != nil {
		return "", err
	}
	previous := ""
	if v != nil && v.Tag != "!!null" && v.Value != "" {
		previous = previousScalar(key, v.Value, img.Repo, scalar(m, "repository"))
	}
	d.put(m, last, value)
	return previous, nil
}

// scalarImage is what a single value at key holds of img.
func scalarImage(key string, img Image) (string, error) {
	switch key[strings.LastIndexByte(key, '.')+1:] {
	case "tag":
		if img.Tag == "" {
			return "", fmt.Errorf("key %q holds a tag, but image %q has a digest and no tag; point key at the image's map (like \"image\", with repository and digest in it) or at its digest (\"image.digest\"), or deploy a tagged image", key, img)
		}
		return img.Tag, nil
	case "digest":
		if img.Digest == "" {
			return "", fmt.Errorf("key %q holds a digest, but image %q has none; deploy step.<image step>.digest_ref, or point key at the tag", key, img)
		}
		return img.Digest, nil
	}
	return img.String(), nil
}

// previousScalar turns the old single value at key back into a whole
// reference, so that a rollback can write it the same way.
func previousScalar(key, old, repo, sibling string) string {
	if sibling != "" {
		repo = sibling
	}
	switch key[strings.LastIndexByte(key, '.')+1:] {
	case "tag":
		return repo + ":" + old
	case "digest":
		return repo + "@" + old
	}
	return old
}

// argoCDSource edits an .argocd-source-<app>.yaml file: the parameter
// overrides Argo CD applies on top of the application's source. With a
// key, the image goes into helm.parameters; without one, into
// kustomize.images.
func (d *doc) argoCDSource(t Target, img Image) (string, error) {
	if t.Key != "" {
		helm, err := d.child(d.root, "helm", yaml.MappingNode)
		if err != nil {
			return "", err
		}
		params, err := d.child(helm, "parameters", yaml.SequenceNode)
		if err != nil {
			return "", fmt.Errorf("helm: %w", err)
		}
		value, err := scalarImage(t.Key, img)
		if err != nil {
			return "", err
		}
		repoParam := t.Key[:strings.LastIndexByte(t.Key, '.')+1] + "repository"
		var entry *yaml.Node
		sibling := ""
		for _, p := range params.Content {
			if p.Kind != yaml.MappingNode {
				continue
			}
			switch scalar(p, "name") {
			case t.Key:
				entry = p
			case repoParam:
				sibling = scalar(p, "value")
			}
		}
		if entry == nil {
			entry = &yaml.Node{Kind: yaml.MappingNode}
			d.put(entry, "name", t.Key)
			d.put(entry, "value", value)
			// Argo CD passes parameters with --set, which would read a tag
			// such as 1.20 as a number.
			entry.Content = append(entry.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "forceString"}, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
			params.Content = append(params.Content, entry)
			d.rewrite = true
			return "", nil
		}
		previous := ""
		if old := scalar(entry, "value"); old != "" {
			previous = previousScalar(t.Key, old, img.Repo, sibling)
		}
		d.put(entry, "value", value)
		return previous, nil
	}
	kust, err := d.child(d.root, "kustomize", yaml.MappingNode)
	if err != nil {
		return "", err
	}
	images, err := d.child(kust, "images", yaml.SequenceNode)
	if err != nil {
		return "", fmt.Errorf("kustomize: %w", err)
	}
	// Entries read [name=]newName[:tag][@digest], as in `argocd app set
	// --kustomize-image`.
	value := img.String()
	if t.ImageName != "" && t.ImageName != img.Repo {
		value = t.ImageName + "=" + value
	}
	for _, e := range images.Content {
		if e.Kind != yaml.ScalarNode {
			continue
		}
		name, rest, renamed := strings.Cut(e.Value, "=")
		if !renamed {
			rest = name
			name = repoOf(name)
		}
		if (t.ImageName != "" && name == t.ImageName) || (t.ImageName == "" && (name == img.Repo || repoOf(rest) == img.Repo)) {
			d.set(e, value)
			return rest, nil
		}
	}
	images.Content = append(images.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
	d.rewrite = true
	return "", nil
}

// repoOf strips the tag and digest of a reference.
func repoOf(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}
