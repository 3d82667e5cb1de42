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
	got := labelQueues([]string{"linux", "gpu"})
	want := []string{"sluice", "sluice@gpu", "sluice@gpu,linux", "sluice@linux"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("label queues (-want +got):\n%s", diff)
	}
}
