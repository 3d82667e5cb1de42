package container

import (
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// A step's command runs once per attempt: a deploy script or a test with
// side effects must not run twice because the executor reads two mounts.
func TestCommandRunsOnce(t *testing.T) {
	ws := t.TempDir()
	res, log, err := execute(t, ws, step("once", plan.RunStep{
		Script:  plan.Lit("echo ran-$(cat /proc/sys/kernel/random/uuid); echo n=1 >> $SLUICE_OUTPUT"),
		Outputs: []string{"n"},
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log, "ran-"); n != 1 {
		t.Fatalf("the command ran %d times:\n%s", n, log)
	}
	if res.Outputs["n"] != "1" {
		t.Errorf("outputs = %v; want n=1", res.Outputs)
	}
}
