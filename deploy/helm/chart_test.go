package helm

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/ from the chart")

// TestGolden keeps the rendered manifests of every value set in
// testdata/golden/, so that a change to the chart shows as a change to what
// it renders (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, file := range valueSets {
		t.Run(setName(file), func(t *testing.T) {
			files, err := render(t, readValues(t, file))
			if err != nil {
				t.Fatal(err)
			}
			got := joinRendered(files)
			golden := filepath.Join("testdata", "golden", setName(file)+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("the chart renders differently from %s; if the change is meant, go test -update and review the diff", golden)
			}
		})
	}
}

// TestRender renders every value set and checks what holds for all of
// them: strict decoding (in renderSet), no hooks, no Secrets, secrets only
// by reference, non-root containers, references that resolve.
func TestRender(t *testing.T) {
	for _, file := range valueSets {
		t.Run(setName(file), func(t *testing.T) {
			m := renderSet(t, file)
			if len(m.all) == 0 {
				t.Fatal("nothing rendered")
			}
			checkNoHooks(t, m)
			checkNoSecrets(t, m)
			checkLabels(t, m)
			checkSecurity(t, m)
			checkVolumes(t, m)
			checkSelectors(t, m)
			checkRunners(t, m)
			checkServer(t, m)
			if strings.TrimSpace(m.notes) == "" {
				t.Error("NOTES.txt rendered empty")
			}
		})
	}
}

// TestKubeVersion: the chart says which clusters it needs, and the one the
// tests render for is one of them.
func TestKubeVersion(t *testing.T) {
	ch := loadChart(t)
	if ch.Metadata.KubeVersion == "" {
		t.Fatal("Chart.yaml has no kubeVersion; the runners' native sidecars need Kubernetes 1.29")
	}
	if !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, kubeVersion.Version) {
		t.Errorf("Chart.yaml's kubeVersion %q refuses %s, the version the tests render for", ch.Metadata.KubeVersion, kubeVersion.Version)
	}
	if chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, "v1.28.9") {
		t.Errorf("Chart.yaml's kubeVersion %q allows 1.28, which has no native sidecars", ch.Metadata.KubeVersion)
	}
}

// Argo CD renders charts with `helm template` and runs no Helm hooks: the
// chart must work without them.
func checkNoHooks(t *testing.T, m *manifests) {
	t.Helper()
	for _, o := range m.all {
		for k := range o.meta.Annotations {
			if strings.HasPrefix(k, "helm.sh/hook") {
				t.Errorf("%s has the Helm hook annotation %s", o, k)
			}
		}
		if strings.Contains(o.raw, "helm.sh/hook") {
			t.Errorf("%s mentions helm.sh/hook", o)
		}
	}
	for _, d := range m.deployments {
		for k := range d.Spec.Template.Annotations {
			if strings.HasPrefix(k, "helm.sh/hook") {
				t.Errorf("Deployment %s's pods have the Helm hook annotation %s", d.Name, k)
			}
		}
	}
}

// secretish are names of environment variables that must come from a
// Secret, never from a value in the manifest.
var secretish = regexp.MustCompile(`SECRET|TOKEN|PASSWORD|API_KEY|PRIVATE_KEY$|CREDENTIAL`)

// The chart makes no Secret: every secret is a reference to one the user
// made (existingSecret), so no plaintext secret sits in values or in the
// rendered manifests.
func checkNoSecrets(t *testing.T, m *manifests) {
	t.Helper()
	for _, o := range m.all {
		if o.kind == "Secret" {
			t.Errorf("the chart makes a Secret (%s); it must only reference existing ones", o)
		}
	}
	for owner, spec := range m.pods() {
		for _, c := range allContainers(spec) {
			for _, e := range c.Env {
				if secretish.MatchString(e.Name) && e.ValueFrom == nil {
					t.Errorf("%s, container %s: %s has a plain value %q; it must come from a Secret (valueFrom.secretKeyRef)", owner, c.Name, e.Name, e.Value)
				}
			}
			for _, a := range c.Args {
				name, _, _ := strings.Cut(a, "=")
				if secretish.MatchString(strings.ToUpper(strings.ReplaceAll(strings.TrimLeft(name, "-"), "-", "_"))) && !strings.HasSuffix(name, "-file") && name != "--github-private-key" {
					t.Errorf("%s, container %s: the argument %q carries a secret on the command line", owner, c.Name, a)
				}
			}
		}
	}
	for _, cm := range m.configMaps {
		for k, v := range cm.Data {
			if regexp.MustCompile(`(?i)secret|token|password`).MatchString(v) {
				t.Errorf("ConfigMap %s, %s holds what looks like a secret:\n%s", cm.Name, k, v)
			}
		}
	}
}

// Every object carries the chart's labels, so that `kubectl get -l
// app.kubernetes.io/instance=RELEASE` finds them all.
func checkLabels(t *testing.T, m *manifests) {
	t.Helper()
	for _, o := range m.all {
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if o.meta.Labels[k] == "" {
				t.Errorf("%s has no label %s", o, k)
			}
		}
		if o.meta.Namespace != "" {
			t.Errorf("%s sets its namespace (%q); the release's namespace applies", o, o.meta.Namespace)
		}
	}
}

func allContainers(spec *corev1.PodSpec) []corev1.Container {
	return append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
}

// Every container runs as a non-root user with a read-only root file
// system, no privilege escalation and no capabilities. The exception is
// buildkitd: rootless it needs setuid helpers and its own state under its
// home; rootful (runners.*.buildkit.rootless: false) it is privileged.
func checkSecurity(t *testing.T, m *manifests) {
	t.Helper()
	for owner, spec := range m.pods() {
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s mounts a ServiceAccount token; Sluice does not use the Kubernetes API", owner)
		}
		psc := spec.SecurityContext
		if psc == nil {
			t.Errorf("%s has no pod securityContext", owner)
			continue
		}
		for _, c := range allContainers(spec) {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s, container %s: no securityContext", owner, c.Name)
				continue
			}
			nonRoot := pick(sc.RunAsNonRoot, psc.RunAsNonRoot)
			uid := pick(sc.RunAsUser, psc.RunAsUser)
			if c.Name == "buildkitd" {
				rootful := sc.Privileged != nil && *sc.Privileged
				if rootful {
					if uid == nil || *uid != 0 {
						t.Errorf("%s: a privileged buildkitd must run as root", owner)
					}
					continue
				}
				if nonRoot == nil || !*nonRoot || uid == nil || *uid == 0 {
					t.Errorf("%s: the rootless buildkitd does not run as a non-root user", owner)
				}
				if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
					t.Errorf("%s: rootless buildkitd needs seccomp Unconfined to mount in its user namespace", owner)
				}
				continue
			}
			if nonRoot == nil || !*nonRoot {
				t.Errorf("%s, container %s: runAsNonRoot is not true", owner, c.Name)
			}
			if uid == nil || *uid == 0 {
				t.Errorf("%s, container %s: runs as uid 0 or the image's user", owner, c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s, container %s: the root file system is writable", owner, c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s, container %s: privilege escalation is allowed", owner, c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s, container %s: privileged", owner, c.Name)
			}
			if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s, container %s: capabilities are not all dropped: %+v", owner, c.Name, sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s, container %s: no RuntimeDefault seccomp profile", owner, c.Name)
			}
			// A read-only root needs somewhere to write: /tmp at least.
			if !mounted(&c, "/tmp") {
				t.Errorf("%s, container %s: /tmp is not a volume, and the root file system is read-only", owner, c.Name)
			}
		}
	}
}

func pick[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}

func mounted(c *corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return true
		}
	}
	return false
}

// Every volume mount names a volume of its pod, every ConfigMap and claim
// a pod uses is rendered (or an existing claim the values name), and every
// Secret is one the values name.
func checkVolumes(t *testing.T, m *manifests) {
	t.Helper()
	configMaps := map[string]bool{}
	for _, cm := range m.configMaps {
		configMaps[cm.Name] = true
	}
	claims := map[string]bool{"sluice-state": true} // testdata/cloud.yaml's existingClaim
	for _, c := range m.claims {
		claims[c.Name] = true
	}
	for owner, spec := range m.pods() {
		vols := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			if _, dup := vols[v.Name]; dup {
				t.Errorf("%s: two volumes are named %s", owner, v.Name)
			}
			vols[v.Name] = v
			if n := countSources(v.VolumeSource); n != 1 {
				t.Errorf("%s: volume %s has %d sources", owner, v.Name, n)
			}
			if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
				t.Errorf("%s: volume %s uses ConfigMap %s, which is not rendered", owner, v.Name, v.ConfigMap.Name)
			}
			if v.PersistentVolumeClaim != nil && !claims[v.PersistentVolumeClaim.ClaimName] {
				t.Errorf("%s: volume %s uses claim %s, which is neither rendered nor given as existingClaim", owner, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
			if v.Secret != nil && v.Secret.SecretName == "" {
				t.Errorf("%s: volume %s names no Secret", owner, v.Name)
			}
		}
		for _, c := range allContainers(spec) {
			for _, vm := range c.VolumeMounts {
				if _, ok := vols[vm.Name]; !ok {
					t.Errorf("%s, container %s: mounts %s, which is no volume of the pod", owner, c.Name, vm.Name)
				}
			}
			for _, e := range c.Env {
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && (r.SecretKeyRef.Name == "" || r.SecretKeyRef.Key == "") {
					t.Errorf("%s, container %s: %s names no Secret or key", owner, c.Name, e.Name)
				}
			}
		}
	}
}

func countSources(s corev1.VolumeSource) int {
	n := 0
	for _, set := range []bool{s.EmptyDir != nil, s.Secret != nil, s.ConfigMap != nil, s.PersistentVolumeClaim != nil,
		s.Ephemeral != nil, s.HostPath != nil, s.Projected != nil, s.NFS != nil, s.CSI != nil, s.DownwardAPI != nil} {
		if set {
			n++
		}
	}
	return n
}

// Deployments select their own pods, Services, budgets and
// ServiceMonitors select something, and ports are found by name.
func checkSelectors(t *testing.T, m *manifests) {
	t.Helper()
	type pods struct {
		owner  string
		labels labels.Set
		spec   *corev1.PodSpec
	}
	var all []pods
	for _, d := range m.deployments {
		sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
		if len(d.Spec.Selector.MatchExpressions) > 0 || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s does not select its own pods", d.Name)
		}
		all = append(all, pods{"Deployment " + d.Name, d.Spec.Template.Labels, &d.Spec.Template.Spec})
	}
	// Two Deployments whose selectors overlap would fight over pods.
	for i, a := range m.deployments {
		for _, b := range m.deployments[i+1:] {
			if labels.SelectorFromSet(a.Spec.Selector.MatchLabels).Matches(labels.Set(b.Spec.Template.Labels)) {
				t.Errorf("Deployment %s's selector matches Deployment %s's pods", a.Name, b.Name)
			}
		}
	}
	matching := func(sel map[string]string) []pods {
		var out []pods
		for _, p := range all {
			if labels.SelectorFromSet(sel).Matches(p.labels) {
				out = append(out, p)
			}
		}
		return out
	}
	for _, s := range m.services {
		selected := matching(s.Spec.Selector)
		if len(selected) == 0 {
			t.Errorf("Service %s selects no pods", s.Name)
		}
		for _, port := range s.Spec.Ports {
			name := port.TargetPort.StrVal
			if name == "" {
				t.Errorf("Service %s: port %s targets a number, not a container port's name", s.Name, port.Name)
				continue
			}
			found := false
			for _, p := range selected {
				for _, c := range allContainers(p.spec) {
					for _, cp := range c.Ports {
						found = found || cp.Name == name
					}
				}
			}
			if !found {
				t.Errorf("Service %s: no pod it selects has a port named %s", s.Name, name)
			}
		}
	}
	for _, b := range m.budgets {
		if len(matching(b.Spec.Selector.MatchLabels)) == 0 {
			t.Errorf("PodDisruptionBudget %s selects no pods", b.Name)
		}
		if (b.Spec.MinAvailable == nil) == (b.Spec.MaxUnavailable == nil) {
			t.Errorf("PodDisruptionBudget %s must set one of minAvailable and maxUnavailable", b.Name)
		}
	}
	for _, sm := range m.serviceMonitors {
		var found *corev1.Service
		for _, s := range m.services {
			if labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
				if found != nil {
					t.Errorf("ServiceMonitor %s selects both Service %s and %s", sm.Name, found.Name, s.Name)
				}
				found = s
			}
		}
		if found == nil {
			t.Errorf("ServiceMonitor %s selects no Service", sm.Name)
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			ok := false
			for _, p := range found.Spec.Ports {
				ok = ok || p.Name == ep.Port
			}
			if !ok {
				t.Errorf("ServiceMonitor %s scrapes port %q, which Service %s does not have", sm.Name, ep.Port, found.Name)
			}
		}
	}
	for _, ing := range m.ingresses {
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				s := m.service(p.Backend.Service.Name)
				if s == nil {
					t.Errorf("Ingress %s routes to Service %s, which is not rendered", ing.Name, p.Backend.Service.Name)
					continue
				}
				if p.Backend.Service.Port.Name != "http" {
					t.Errorf("Ingress %s routes to port %q; only the server's http port may be public (metrics stay inside)", ing.Name, p.Backend.Service.Port.Name)
				}
			}
		}
	}
}

// Each runner pool: the runner's drain timeout is shorter than the time
// Kubernetes gives the pod to stop, its labels reach --labels, and
// buildkitd is a native sidecar or an external BUILDKIT_HOST.
func checkRunners(t *testing.T, m *manifests) {
	t.Helper()
	for _, d := range m.runners() {
		spec := &d.Spec.Template.Spec
		c := container(t, spec, "runner")
		if len(c.Args) == 0 || c.Args[0] != "runner" {
			t.Errorf("Deployment %s: the runner's args do not start with the command runner: %q", d.Name, c.Args)
			continue
		}
		v, ok := flagValue(c.Args, "--drain-timeout")
		if !ok {
			t.Errorf("Deployment %s: no --drain-timeout", d.Name)
			continue
		}
		drain, err := time.ParseDuration(v)
		if err != nil {
			t.Errorf("Deployment %s: --drain-timeout=%s: %v", d.Name, v, err)
			continue
		}
		grace := spec.TerminationGracePeriodSeconds
		// After the drain timeout the runner cancels its steps (SIGKILL
		// 10 s after SIGTERM) and ships its logs (up to 30 s).
		if grace == nil || time.Duration(*grace)*time.Second < drain+40*time.Second {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %v is not above the drain timeout %s and 40 s to cancel and ship logs", d.Name, deref(grace), drain)
		}
		if _, ok := flagValue(c.Args, "--temporal-address"); !ok {
			t.Errorf("Deployment %s: no --temporal-address", d.Name)
		}
		if v, _ := flagValue(c.Args, "--name"); v != "$(SLUICE_RUNNER_NAME)" || env(c, "SLUICE_RUNNER_NAME") == nil || env(c, "SLUICE_RUNNER_NAME").ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Errorf("Deployment %s: the runner is not named after its pod", d.Name)
		}
		host := env(c, "BUILDKIT_HOST")
		var sidecar *corev1.Container
		for i := range spec.InitContainers {
			if spec.InitContainers[i].Name == "buildkitd" {
				sidecar = &spec.InitContainers[i]
			}
		}
		if sidecar != nil {
			if sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Errorf("Deployment %s: buildkitd is not a native sidecar (restartPolicy: Always): it would stop while the runner drains", d.Name)
			}
			addr, _ := flagValue(sidecar.Args, "--addr")
			if host == nil || host.Value != addr || !strings.HasPrefix(addr, "tcp://127.0.0.1:") {
				t.Errorf("Deployment %s: BUILDKIT_HOST %v is not the sidecar's loopback address %q", d.Name, host, addr)
			}
		}
		for _, cont := range spec.Containers {
			if cont.Name == "buildkitd" {
				t.Errorf("Deployment %s: buildkitd is an ordinary container; it would get SIGTERM with the runner and break the builds of a drain", d.Name)
			}
		}
		if sidecar == nil && host != nil && !strings.Contains(host.Value, "://") {
			t.Errorf("Deployment %s: BUILDKIT_HOST %q is no address", d.Name, host.Value)
		}
		if tok := env(c, "SLUICE_TOKEN"); tok != nil {
			if _, ok := flagValue(c.Args, "--server"); !ok {
				t.Errorf("Deployment %s: SLUICE_TOKEN without --server", d.Name)
			}
		} else if _, ok := flagValue(c.Args, "--server"); ok {
			t.Errorf("Deployment %s: --server without SLUICE_TOKEN: the runner would refuse to start", d.Name)
		}
		if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
			t.Errorf("Deployment %s: a rollout may stop runners before new ones run", d.Name)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return "(none)"
	}
	return *p
}

// The server: one replica (its state is one volume), no runner of its
// own, probes on /healthz, metrics on their own port.
func checkServer(t *testing.T, m *manifests) {
	t.Helper()
	var server *appsv1.Deployment
	for _, d := range m.deployments {
		if d.Labels["app.kubernetes.io/component"] == "server" {
			if server != nil {
				t.Fatalf("two server Deployments: %s and %s", server.Name, d.Name)
			}
			server = d
		}
	}
	if server == nil {
		t.Fatal("no server Deployment")
	}
	if server.Spec.Replicas == nil || *server.Spec.Replicas != 1 || server.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("the server must run one replica, replaced with Recreate: its state volume is ReadWriteOnce")
	}
	spec := &server.Spec.Template.Spec
	c := container(t, spec, "server")
	if len(c.Args) == 0 || c.Args[0] != "server" {
		t.Fatalf("the server's args do not start with the command server: %q", c.Args)
	}
	if v, _ := flagValue(c.Args, "--log"); v != "-" {
		t.Errorf("the server logs to %q, want - (stderr, for kubectl logs)", v)
	}
	for _, f := range []string{"--no-runner", "--listen", "--metrics-listen", "--public-url", "--temporal-address", "--namespace"} {
		if _, ok := flagValue(c.Args, f); !ok {
			t.Errorf("the server has no %s", f)
		}
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.StrVal != "http" {
			t.Errorf("the server's %s probe is not GET /healthz on the http port: %+v", name, p)
		}
	}
	listen, _ := flagValue(c.Args, "--listen")
	metrics, _ := flagValue(c.Args, "--metrics-listen")
	for _, port := range c.Ports {
		want := map[string]string{"http": listen, "metrics": metrics}[port.Name]
		if want != fmt.Sprintf(":%d", port.ContainerPort) {
			t.Errorf("the server's port %s is %d, and it listens on %q", port.Name, port.ContainerPort, want)
		}
	}
	if _, ok := flagValue(c.Args, "--github-app-id"); ok {
		key, _ := flagValue(c.Args, "--github-private-key")
		if key == "" || !underMount(c, key) {
			t.Errorf("--github-private-key=%s is not in a mounted volume", key)
		}
		if e := env(c, "SLUICE_GITHUB_WEBHOOK_SECRET"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("a GitHub App without its webhook secret from a Secret")
		}
	}
	for _, f := range []string{"--tls-ca", "--tls-cert", "--tls-key", "--config"} {
		if v, ok := flagValue(c.Args, f); ok && !underMount(c, v) {
			t.Errorf("%s=%s is not in a mounted volume", f, v)
		}
	}
}

func underMount(c *corev1.Container, file string) bool {
	for _, vm := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}
