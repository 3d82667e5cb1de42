package helm

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestPools checks each pool of the value sets as its values say it is:
// the pool's keys over runners.defaults, its labels on the runner's
// command line, its grace period, its BuildKit.
func TestPools(t *testing.T) {
	tests := []struct {
		set, deployment string
		replicas        int32
		labels          string // --labels; "" when none
		drain           string
		grace           int64
		buildkit        string // BUILDKIT_HOST; "" for none
		sidecarImage    string // "" without a sidecar
		privileged      bool
		server          bool // --server and SLUICE_TOKEN
		metrics         string
	}{
		{set: "", deployment: "sluice-runner-default", replicas: 1, labels: "linux", drain: "30m", grace: 1860,
			buildkit: "tcp://127.0.0.1:1234", sidecarImage: "moby/buildkit:v0.33.1-rootless", metrics: ":9464"},
		{set: "testdata/ingress-tls.yaml", deployment: "sluice-runner-linux", replicas: 3, labels: "linux,docker", drain: "1h30m", grace: 5460,
			buildkit: "tcp://127.0.0.1:1234", sidecarImage: "moby/buildkit:v0.33.1-rootless", server: true, metrics: ":9464"},
		{set: "testdata/ingress-tls.yaml", deployment: "sluice-runner-shared-build", replicas: 2, labels: "linux,small", drain: "10m", grace: 660,
			buildkit: "tcp://buildkitd.buildkit.svc:1234", server: true, metrics: ":9464"},
		{set: "testdata/cloud.yaml", deployment: "ci-runner-gpu", replicas: 1, labels: "gpu,cuda-12", drain: "2h", grace: 7320,
			buildkit: "tcp://127.0.0.1:1234", sidecarImage: "moby/buildkit:v0.33.1", privileged: true, metrics: ":9200"},
		{set: "testdata/cloud.yaml", deployment: "ci-runner-lint", replicas: 0, drain: "30m", grace: 1860},
	}
	rendered := map[string]*manifests{}
	for _, tt := range tests {
		t.Run(setName(tt.set)+"/"+tt.deployment, func(t *testing.T) {
			m := rendered[tt.set]
			if m == nil {
				m = renderSet(t, tt.set)
				rendered[tt.set] = m
			}
			d := m.deployment(t, tt.deployment)
			spec := &d.Spec.Template.Spec
			c := container(t, spec, "runner")
			if d.Spec.Replicas == nil || *d.Spec.Replicas != tt.replicas {
				t.Errorf("replicas %v, want %d", d.Spec.Replicas, tt.replicas)
			}
			labels, ok := flagValue(c.Args, "--labels")
			if labels != tt.labels || ok != (tt.labels != "") {
				t.Errorf("--labels=%q, want %q", labels, tt.labels)
			}
			if v, _ := flagValue(c.Args, "--drain-timeout"); v != tt.drain {
				t.Errorf("--drain-timeout=%s, want %s", v, tt.drain)
			}
			if g := spec.TerminationGracePeriodSeconds; g == nil || *g != tt.grace {
				t.Errorf("terminationGracePeriodSeconds %v, want %d", deref(g), tt.grace)
			}
			host := ""
			if e := env(c, "BUILDKIT_HOST"); e != nil {
				host = e.Value
			}
			if host != tt.buildkit {
				t.Errorf("BUILDKIT_HOST %q, want %q", host, tt.buildkit)
			}
			image, privileged := "", false
			for _, ic := range spec.InitContainers {
				if ic.Name == "buildkitd" {
					image = ic.Image
					privileged = ic.SecurityContext.Privileged != nil && *ic.SecurityContext.Privileged
				}
			}
			if image != tt.sidecarImage || privileged != tt.privileged {
				t.Errorf("buildkitd sidecar %q (privileged %v), want %q (privileged %v)", image, privileged, tt.sidecarImage, tt.privileged)
			}
			_, server := flagValue(c.Args, "--server")
			if server != tt.server || (env(c, "SLUICE_TOKEN") != nil) != tt.server {
				t.Errorf("--server %v, SLUICE_TOKEN %v; want both %v", server, env(c, "SLUICE_TOKEN") != nil, tt.server)
			}
			if v, _ := flagValue(c.Args, "--metrics-listen"); v != tt.metrics {
				t.Errorf("--metrics-listen=%q, want %q", v, tt.metrics)
			}
			if (c.LivenessProbe != nil) != (tt.metrics != "") {
				t.Errorf("a liveness probe %v, with metrics %q: the probe is the metrics listener's /healthz", c.LivenessProbe != nil, tt.metrics)
			}
		})
	}
}

// TestPublicURL: the URL GitHub is given comes from server.publicURL, else
// the Ingress, else the Service.
func TestPublicURL(t *testing.T) {
	tests := []struct{ name, values, want string }{
		{"service", "{}", "http://sluice-server.ci.svc:8080"},
		{"ingress", "ingress: {enabled: true, host: ci.example.com}", "http://ci.example.com"},
		{"ingress with TLS", "ingress: {enabled: true, host: ci.example.com, tls: {enabled: true}}", "https://ci.example.com"},
		{"given", "{server: {publicURL: 'https://ci.example.com/sluice/'}, ingress: {enabled: true, host: x.example.com}}", "https://ci.example.com/sluice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := renderValues(t, tt.values)
			c := container(t, &m.deployment(t, "sluice-server").Spec.Template.Spec, "server")
			if got, _ := flagValue(c.Args, "--public-url"); got != tt.want {
				t.Errorf("--public-url=%s, want %s", got, tt.want)
			}
			if !strings.Contains(m.notes, tt.want) {
				t.Errorf("NOTES.txt does not give %s:\n%s", tt.want, m.notes)
			}
		})
	}
}

// TestAdminSetupJobName: the setup Job's name follows what it runs, so
// that an upgrade to a new image makes a new Job (a Job's pod template
// cannot be changed) and an unchanged one keeps its name (nothing reruns).
func TestAdminSetupJobName(t *testing.T) {
	name := func(values string) string {
		m := renderValues(t, values)
		if len(m.jobs) != 1 {
			t.Fatalf("%d Jobs rendered, want 1", len(m.jobs))
		}
		return m.jobs[0].Name
	}
	a := name("adminSetup: {enabled: true}")
	if b := name("adminSetup: {enabled: true}"); a != b {
		t.Errorf("the same values name the Job %s and %s", a, b)
	}
	if b := name("{adminSetup: {enabled: true}, image: {tag: v2}}"); a == b {
		t.Errorf("a new image keeps the Job's name %s", a)
	}
	if b := name("{adminSetup: {enabled: true, retention: 24h}}"); a == b {
		t.Errorf("a new retention keeps the Job's name %s", a)
	}
	if !strings.HasPrefix(a, "sluice-admin-setup-") || len(a) > 63 {
		t.Errorf("the Job is named %q", a)
	}
	if m := renderValues(t, "{}"); len(m.jobs) != 0 {
		t.Errorf("the setup Job is made by default; it needs an administrator's credentials and is off unless asked for")
	}
}

// TestTemporalTLS: TLS is turned on however the values ask for it: with a
// CA, a client certificate, a server name, an API key, or only
// tls.enabled (the address's host then names the certificate).
func TestTemporalTLS(t *testing.T) {
	tests := []struct {
		name, values string
		want         []string // flags of the server
		none         []string
	}{
		{"off", "{}", nil, []string{"--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name"}},
		{"system CAs", "temporal: {tls: {enabled: true}}",
			[]string{"--tls-server-name=temporal-frontend.temporal.svc"}, []string{"--tls-ca", "--tls-cert"}},
		{"CA only", "temporal: {tls: {enabled: true, existingSecret: t, certKey: ''}}",
			[]string{"--tls-ca=/etc/sluice/temporal-tls/ca.crt"}, []string{"--tls-cert", "--tls-key", "--tls-server-name"}},
		{"mTLS", "temporal: {tls: {enabled: true, existingSecret: t, serverName: temporal.internal}}",
			[]string{"--tls-ca=/etc/sluice/temporal-tls/ca.crt", "--tls-cert=/etc/sluice/temporal-tls/tls.crt", "--tls-key=/etc/sluice/temporal-tls/tls.key", "--tls-server-name=temporal.internal"}, nil},
		{"API key", "temporal: {address: 'ns.acct.tmprl.cloud:7233', tls: {enabled: true}, apiKey: {existingSecret: k}}",
			nil, []string{"--tls-ca", "--tls-server-name"}},
		{"a secret named but TLS off", "temporal: {tls: {existingSecret: t}}", nil, []string{"--tls-ca", "--tls-cert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := renderValues(t, tt.values)
			c := container(t, &m.deployment(t, "sluice-server").Spec.Template.Spec, "server")
			for _, w := range tt.want {
				name, _, _ := strings.Cut(w, "=")
				if v, _ := flagValue(c.Args, name); name+"="+v != w {
					t.Errorf("%s=%s, want %s", name, v, w)
				}
			}
			for _, n := range tt.none {
				if v, ok := flagValue(c.Args, n); ok {
					t.Errorf("%s=%s given", n, v)
				}
			}
		})
	}
}

func renderValues(t *testing.T, values string) *manifests {
	t.Helper()
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		t.Fatal(err)
	}
	files, err := render(t, vals)
	if err != nil {
		t.Fatalf("rendering with %s: %v", values, err)
	}
	return decode(t, files)
}

// TestRunnerImagePinned: during an upgrade the server moves to the new
// image while runners.defaults.image keeps the runners on the old one.
func TestRunnerImagePinned(t *testing.T) {
	tests := []struct{ name, values, server, runner string }{
		{"one image", "image: {repository: r/sluice, tag: v2}", "r/sluice:v2", "r/sluice:v2"},
		{"runners pinned", "{image: {repository: r/sluice, tag: v2}, runners: {defaults: {image: {tag: v1}}}}", "r/sluice:v2", "r/sluice:v1"},
		{"runners pinned by digest", "{image: {repository: r/sluice, tag: v2}, runners: {defaults: {image: {digest: 'sha256:" + strings.Repeat("ab", 32) + "'}}}}",
			"r/sluice:v2", "r/sluice@sha256:" + strings.Repeat("ab", 32)},
		{"server by digest, runners by tag", "{image: {repository: r/sluice, digest: 'sha256:" + strings.Repeat("cd", 32) + "'}, runners: {defaults: {image: {tag: v1}}}}",
			"r/sluice@sha256:" + strings.Repeat("cd", 32), "r/sluice:v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := renderValues(t, tt.values)
			if got := container(t, &m.deployment(t, "sluice-server").Spec.Template.Spec, "server").Image; got != tt.server {
				t.Errorf("server image %s, want %s", got, tt.server)
			}
			if got := container(t, &m.deployment(t, "sluice-runner-default").Spec.Template.Spec, "runner").Image; got != tt.runner {
				t.Errorf("runner image %s, want %s", got, tt.runner)
			}
		})
	}
}

// TestAutoscaledPool: a pool whose replicas is null leaves them to an
// autoscaler (a HorizontalPodAutoscaler, KEDA): the Deployment has none
// that a sync would put back.
func TestAutoscaledPool(t *testing.T) {
	m := renderValues(t, "runners: {pools: [{name: a, replicas: null}, {name: b}]}")
	if r := m.deployment(t, "sluice-runner-a").Spec.Replicas; r != nil {
		t.Errorf("the autoscaled pool has replicas %d", *r)
	}
	if r := m.deployment(t, "sluice-runner-b").Spec.Replicas; r == nil || *r != 1 {
		t.Errorf("the other pool has replicas %v, want the default 1", r)
	}
	if !strings.Contains(m.notes, "autoscaled") {
		t.Errorf("NOTES.txt does not say the pool is autoscaled:\n%s", m.notes)
	}
}
