package helm

import (
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// TestLint runs helm lint's checks (the SDK's lint.RunAll, as `helm lint
// --strict` does) with every value set: Chart.yaml, values.yaml against
// the schema, the templates rendered in lint mode, their YAML and names.
// Any warning or error fails.
func TestLint(t *testing.T) {
	kv := kubeVersion
	for _, file := range valueSets {
		t.Run(setName(file), func(t *testing.T) {
			res := lint.RunAll(chartDir, readValues(t, file), releaseNamespace, lint.WithKubeVersion(&kv))
			for _, msg := range res.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", msg)
				} else {
					t.Logf("helm lint: %s", msg)
				}
			}
		})
	}
}

// TestLintFails makes sure the lint above can fail: a chart whose values
// break the schema is reported as an error.
func TestLintFails(t *testing.T) {
	kv := kubeVersion
	vals := map[string]any{"runners": map[string]any{"pools": []any{map[string]any{"labels": []any{"gpu"}}}}}
	res := lint.RunAll(chartDir, vals, releaseNamespace, lint.WithKubeVersion(&kv))
	if res.HighestSeverity < support.ErrorSev {
		t.Fatalf("helm lint took a pool without a name; messages: %v", res.Messages)
	}
}
