package helm

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test.
const chartDir = "sluice"

// Release is what the tests install the chart as: the release name and
// namespace docs/deploy.md uses.
const (
	releaseName      = "sluice"
	releaseNamespace = "ci"
)

// kubeVersion is the cluster the chart is rendered for: the oldest its
// Chart.yaml allows (native sidecars), so that nothing newer slips in.
var kubeVersion = common.KubeVersion{Version: "v1.29.0", Major: "1", Minor: "29"}

// valueSets are the values the chart is rendered, decoded, linted and
// checked with: the defaults, and the files in testdata/.
var valueSets = []string{"", "testdata/ingress-tls.yaml", "testdata/cloud.yaml"}

func setName(file string) string {
	if file == "" {
		return "defaults"
	}
	return strings.TrimSuffix(filepath.Base(file), ".yaml")
}

// readValues reads a values file; "" is no values (the chart's defaults).
func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := loader.LoadValues(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	return vals
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// render renders the chart as `helm template` does: the values coalesced
// with the chart's, checked against values.schema.json, then the templates
// executed. It returns the rendered files by their name in the chart.
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	opts := common.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, IsInstall: true, Revision: 1}
	top, err := util.ToRenderValuesWithSchemaValidation(ch, vals, opts, caps, false)
	if err != nil {
		return nil, err
	}
	var e engine.Engine
	e.Strict = true // a template that reads a value values.yaml lacks fails
	out, err := e.Render(ch, top)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for name, text := range out {
		files[strings.TrimPrefix(name, ch.Name()+"/")] = text
	}
	return files, nil
}

// manifests are the objects a render made, decoded into their API types.
type manifests struct {
	all             []object
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	claims          []*corev1.PersistentVolumeClaim
	ingresses       []*networkingv1.Ingress
	budgets         []*policyv1.PodDisruptionBudget
	jobs            []*batchv1.Job
	serviceMonitors []*monitoringv1.ServiceMonitor
	notes           string
}

// object is one rendered manifest: where it came from and its metadata.
type object struct {
	file string
	kind string
	meta *metav1.ObjectMeta
	raw  string
}

func (o object) String() string { return fmt.Sprintf("%s %s (%s)", o.kind, o.meta.Name, o.file) }

// kinds are the kinds the chart may make, with their API version. A kind
// not listed here fails the tests: add it, with its type, to decode.
var kinds = map[string]string{
	"Deployment":            "apps/v1",
	"Service":               "v1",
	"ServiceAccount":        "v1",
	"ConfigMap":             "v1",
	"PersistentVolumeClaim": "v1",
	"Ingress":               "networking.k8s.io/v1",
	"PodDisruptionBudget":   "policy/v1",
	"Job":                   "batch/v1",
	"ServiceMonitor":        "monitoring.coreos.com/v1",
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decode splits the rendered files into manifests and decodes each one
// strictly into its API type: a field the type does not have, or one given
// twice, is an error.
func decode(t *testing.T, files map[string]string) *manifests {
	t.Helper()
	m := &manifests{}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if path.Base(name) == "NOTES.txt" {
			m.notes = files[name]
			continue
		}
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		for i, doc := range docSeparator.Split(files[name], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s, document %d", name, i+1)
			if err := m.add(name, doc); err != nil {
				t.Errorf("%s: %v\n%s", where, err, doc)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func (m *manifests) add(file, doc string) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	want, ok := kinds[tm.Kind]
	if !ok {
		return fmt.Errorf("kind %q is not one the tests know; add it to kinds and decode it", tm.Kind)
	}
	if tm.APIVersion != want {
		return fmt.Errorf("%s has apiVersion %q, want %q", tm.Kind, tm.APIVersion, want)
	}
	var meta *metav1.ObjectMeta
	var err error
	switch tm.Kind {
	case "Deployment":
		meta, err = decodeAs(doc, &m.deployments)
	case "Service":
		meta, err = decodeAs(doc, &m.services)
	case "ServiceAccount":
		meta, err = decodeAs(doc, &m.serviceAccounts)
	case "ConfigMap":
		meta, err = decodeAs(doc, &m.configMaps)
	case "PersistentVolumeClaim":
		meta, err = decodeAs(doc, &m.claims)
	case "Ingress":
		meta, err = decodeAs(doc, &m.ingresses)
	case "PodDisruptionBudget":
		meta, err = decodeAs(doc, &m.budgets)
	case "Job":
		meta, err = decodeAs(doc, &m.jobs)
	case "ServiceMonitor":
		meta, err = decodeAs(doc, &m.serviceMonitors)
	}
	if err != nil {
		return fmt.Errorf("decoding a %s strictly: %w", tm.Kind, err)
	}
	m.all = append(m.all, object{file: file, kind: tm.Kind, meta: meta, raw: doc})
	return nil
}

// decodeAs decodes a manifest strictly as a T and adds it to list.
func decodeAs[T any, PT interface {
	*T
	metav1.ObjectMetaAccessor
}](doc string, list *[]*T) (*metav1.ObjectMeta, error) {
	o := PT(new(T))
	if err := strict(doc, o); err != nil {
		return nil, err
	}
	*list = append(*list, (*T)(o))
	return o.GetObjectMeta().(*metav1.ObjectMeta), nil
}

// strict decodes YAML into v, refusing unknown and duplicate fields.
func strict(doc string, v any) error {
	return yaml.UnmarshalStrict([]byte(doc), v)
}

// renderSet renders and decodes one of valueSets, failing the test on any
// error.
func renderSet(t *testing.T, file string) *manifests {
	t.Helper()
	files, err := render(t, readValues(t, file))
	if err != nil {
		t.Fatalf("rendering with %s: %v", setName(file), err)
	}
	return decode(t, files)
}

// pods are the pod templates of the Deployments and Jobs, by the name of
// their owner.
func (m *manifests) pods() map[string]*corev1.PodSpec {
	out := map[string]*corev1.PodSpec{}
	for _, d := range m.deployments {
		out["Deployment "+d.Name] = &d.Spec.Template.Spec
	}
	for _, j := range m.jobs {
		out["Job "+j.Name] = &j.Spec.Template.Spec
	}
	return out
}

func (m *manifests) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range m.deployments {
		if d.Name == name {
			return d
		}
	}
	var have []string
	for _, d := range m.deployments {
		have = append(have, d.Name)
	}
	t.Fatalf("no Deployment %q; there are %v", name, have)
	return nil
}

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// runners are the runner pools' Deployments.
func (m *manifests) runners() []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range m.deployments {
		if d.Labels["app.kubernetes.io/component"] == "runner" {
			out = append(out, d)
		}
	}
	return out
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == name {
			return &spec.InitContainers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// flagValue is the value of --name=value in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name {
			return "", true
		}
	}
	return "", false
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// joinRendered is the rendered files as one YAML stream, in the order of
// their names, each document headed by its source as `helm template` does.
func joinRendered(files map[string]string) string {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		for _, doc := range docSeparator.Split(files[name], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, strings.Trim(doc, "\n"))
		}
	}
	return b.String()
}
