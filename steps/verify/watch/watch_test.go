package watch

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
)

func TestWatch(t *testing.T) {
	below := 0.05
	step := &plan.VerifyStep{Below: &below, For: plan.Duration(6 * time.Second), Interval: plan.Duration(4 * time.Second)}
	type check struct {
		at   time.Duration
		r    Reading
		want Decision
	}
	tests := []struct {
		name   string
		checks []check
		fail   string // in the last decision
		value  string
	}{
		{name: "passes after for, the last wait cut to the end", checks: []check{
			{0, Reading{Value: 0.01}, Decision{Wait: 4 * time.Second}},
			{4 * time.Second, Reading{Value: 0.02}, Decision{Wait: 2 * time.Second}},
			{6 * time.Second, Reading{Value: 0.03}, Decision{Done: true}},
		}, value: "0.03"},
		{name: "fails at the first crossing", checks: []check{
			{0, Reading{Value: 0.01}, Decision{Wait: 4 * time.Second}},
			{4 * time.Second, Reading{Value: 0.2, Crossed: true}, Decision{Done: true, Crossed: true}},
		}, fail: "the value 0.2 crossed its bound (the step fails when the value reaches 0.05) at check 2", value: "0.2"},
		{name: "no data goes on", checks: []check{
			{0, Reading{NoData: "matched no series"}, Decision{Wait: 4 * time.Second}},
			{4 * time.Second, Reading{Value: 0.01}, Decision{Wait: 2 * time.Second}},
			{6 * time.Second, Reading{NoData: "matched no series"}, Decision{Done: true}},
		}, value: "0.01"},
		{name: "never any data fails", checks: []check{
			{0, Reading{NoData: "matched no series"}, Decision{Wait: 4 * time.Second}},
			{6 * time.Second, Reading{NoData: "did not answer"}, Decision{Done: true}},
		}, fail: "no check in 6s read a value (2 checks); the last said: did not answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := New(step)
			var d Decision
			for i, c := range tc.checks {
				d = w.Next(c.at, c.r)
				if d.Done != c.want.Done || d.Crossed != c.want.Crossed || d.Wait != c.want.Wait {
					t.Fatalf("check %d: got %+v, want %+v", i+1, d, c.want)
				}
				if !strings.HasPrefix(d.Log, "verify: check ") {
					t.Errorf("log line %q", d.Log)
				}
			}
			if !strings.Contains(d.Fail, tc.fail) || (tc.fail == "") != (d.Fail == "") {
				t.Errorf("Fail = %q; want %q", d.Fail, tc.fail)
			}
			if got := w.Outputs()["value"]; got != tc.value {
				t.Errorf("value = %q; want %q", got, tc.value)
			}
		})
	}
}

func TestCrossedBand(t *testing.T) {
	lo, hi := 10.0, 20.0
	v := &plan.VerifyStep{Above: &lo, Below: &hi}
	for value, want := range map[float64]bool{9: true, 10: true, 15: false, 20: true, 25: true} {
		if got := Crossed(v, value); got != want {
			t.Errorf("Crossed(%v) = %v; want %v", value, got, want)
		}
	}
	if b := Bound(v); b != "the value reaches 20 or the value drops to 10" {
		t.Errorf("Bound = %q", b)
	}
}
