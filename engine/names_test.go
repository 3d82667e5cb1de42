package engine

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStageQueue(t *testing.T) {
	if q := StageQueue(nil); q != "sluice" {
		t.Errorf("no labels: %q", q)
	}
	if a, b := StageQueue([]string{"linux", "gpu"}), StageQueue([]string{"gpu", "linux", "gpu"}); a != b || a != "sluice@gpu,linux" {
		t.Errorf("queues %q and %q", a, b)
	}
	// A runner polls the queues of the label sets in use that it has, and
	// of no labels: not one per subset of its labels.
	r := &Runner{labels: normLabels([]string{"linux", "gpu", "docker", "a", "b", "c"})}
	got := r.stageQueues([][]string{{"gpu"}, {"docker", "linux"}, {"arm"}, {"gpu", "windows"}})
	want := []string{"sluice", "sluice@gpu", "sluice@docker,linux"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stage queues (-want +got):\n%s", diff)
	}
}
