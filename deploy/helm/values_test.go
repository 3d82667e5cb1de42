package helm

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"sigs.k8s.io/yaml"
)

// TestValuesRefused renders with values a user could get wrong and checks
// that the chart refuses them, saying where and what.
func TestValuesRefused(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   []string // all in the error
	}{
		{
			name:   "pool without a name",
			values: "runners: {pools: [{labels: [gpu]}]}",
			want:   []string{"/runners/pools/0", "missing property 'name'"},
		},
		{
			name:   "no Temporal address",
			values: "temporal: {address: ''}",
			want:   []string{"/temporal/address", "does not match pattern"},
		},
		{
			name:   "Temporal address without a port",
			values: "temporal: {address: temporal-frontend.temporal}",
			want:   []string{"/temporal/address", "does not match pattern"},
		},
		{
			name:   "no Temporal namespace",
			values: "temporal: {namespace: ''}",
			want:   []string{"/temporal/namespace", "minLength"},
		},
		{
			name:   "a pool name that is no DNS label",
			values: "runners: {pools: [{name: GPU_pool}]}",
			want:   []string{"/runners/pools/0/name", "does not match pattern"},
		},
		{
			name:   "a label with a comma",
			values: "runners: {pools: [{name: a, labels: ['linux,gpu']}]}",
			want:   []string{"/runners/pools/0/labels/0", "does not match pattern"},
		},
		{
			name:   "a drain timeout Go cannot parse",
			values: "runners: {pools: [{name: a, drainTimeout: 30 minutes}]}",
			want:   []string{"/runners/pools/0/drainTimeout", "does not match pattern"},
		},
		{
			name:   "an unknown BuildKit mode",
			values: "runners: {pools: [{name: a, buildkit: {mode: docker}}]}",
			want:   []string{"/runners/pools/0/buildkit/mode", "sidecar", "external", "none"},
		},
		{
			name:   "external BuildKit without a host",
			values: "runners: {pools: [{name: a, buildkit: {mode: external}}]}",
			want:   []string{"/runners/pools/0/buildkit", "missing property 'host'"},
		},
		{
			name:   "a misspelt key",
			values: "runners: {pools: [{name: a, replica: 3}]}",
			want:   []string{"/runners/pools/0", "additional properties 'replica' not allowed"},
		},
		{
			name:   "a plaintext webhook secret",
			values: "server: {github: {webhookSecret: hunter2}}",
			want:   []string{"/server/github", "additional properties 'webhookSecret' not allowed"},
		},
		{
			name:   "a GitHub App without its Secret",
			values: "server: {github: {appId: 123}}",
			want:   []string{"/server/github", "existingSecret"},
		},
		{
			name:   "an ingress without a host",
			values: "ingress: {enabled: true}",
			want:   []string{"/ingress", "host"},
		},
		{
			name:   "a name in the pools' defaults",
			values: "runners: {defaults: {name: x}}",
			want:   []string{"/runners/defaults"},
		},
		{
			name:   "a work volume of two sources",
			values: "runners: {pools: [{name: a, workVolume: {emptyDir: {}, hostPath: {path: /x}}}]}",
			want:   []string{"/runners/pools/0/workVolume", "maxProperties"},
		},
		{
			name:   "two pools of one name",
			values: "runners: {pools: [{name: a}, {name: a}]}",
			want:   []string{`two pools are named "a"`},
		},
		{
			name:   "a label the chart sets itself",
			values: "commonLabels: {app.kubernetes.io/component: x}",
			want:   []string{"/commonLabels/app.kubernetes.io~1component"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(tt.values), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := render(t, vals)
			if err == nil {
				t.Fatalf("rendered with %s", tt.values)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestValuesDocumented: every key of values.yaml has a comment above it,
// but for the fields of a Kubernetes object or a list item given as an
// example (podSecurityContext's, resources', a pool's), described by their
// parent's comment; and values.yaml passes its own schema, which refuses
// keys it does not have.
func TestValuesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if m := valuesKey.FindStringSubmatch(line); m != nil && !documented(lines, i) {
			t.Errorf("values.yaml:%d: %s has no comment", i+1, strings.TrimSpace(line))
		}
	}
	vals, err := loader.LoadValues(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := render(t, vals); err != nil {
		t.Errorf("values.yaml given as values: %v", err)
	}
}

var valuesKey = regexp.MustCompile(`^(\s*)(- )?([A-Za-z][A-Za-z0-9.]*):`)

// described are the keys whose fields their comment describes: Kubernetes
// objects passed through, and lists of examples.
var described = map[string]bool{
	"podSecurityContext": true, "containerSecurityContext": true, "seccompProfile": true, "capabilities": true,
	"resources": true, "requests": true, "limits": true, "paths": true, "pools": true,
}

// documented says whether the key on line i has a comment above it, or is
// a field of a described key that has one.
func documented(lines []string, i int) bool {
	m := valuesKey.FindStringSubmatch(lines[i])
	indent := len(m[1])
	if m[2] != "" { // "- key:": the item's first key
		indent += 2
	}
	j := i - 1
	if j >= 0 && strings.HasPrefix(strings.TrimSpace(lines[j]), "#") {
		return true
	}
	// The parent: the nearest line above that is indented less.
	for ; j >= 0; j-- {
		pm := valuesKey.FindStringSubmatch(lines[j])
		if pm == nil {
			continue
		}
		pindent := len(pm[1])
		if pm[2] != "" && pindent < indent && pindent+2 == indent && j != i {
			// A sibling key of a list item: the item's parent decides.
			return documented(lines, j)
		}
		if pindent < indent {
			return described[pm[3]] && documented(lines, j)
		}
	}
	return false
}

// TestDeployDocExample renders the values file docs/deploy.md shows
// (the YAML block that starts "# sluice-values.yaml"), so that the guide
// stays in step with the chart, and lints the chart with it.
func TestDeployDocExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n# sluice-values.yaml\n")
	if !ok {
		t.Fatal("docs/deploy.md has no ```yaml block that starts # sluice-values.yaml")
	}
	example, _, _ := strings.Cut(rest, "```")
	m := renderValues(t, example)
	checkNoSecrets(t, m)
	checkSecurity(t, m)
	checkRunners(t, m)
	checkServer(t, m)
	c := container(t, &m.deployment(t, "sluice-server").Spec.Template.Spec, "server")
	if v, _ := flagValue(c.Args, "--public-url"); v != "https://ci.example.com" {
		t.Errorf("the guide's values give --public-url=%s; the guide says https://ci.example.com", v)
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(example), &vals); err != nil {
		t.Fatal(err)
	}
	kv := kubeVersion
	for _, msg := range lint.RunAll(chartDir, vals, releaseNamespace, lint.WithKubeVersion(&kv)).Messages {
		if msg.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", msg)
		}
	}
}
