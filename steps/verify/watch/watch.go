// Package watch decides, check after check, how a verify step's watch
// goes on: another check after a wait, a failure, or the end. It reads no
// clock and does no I/O, so that the engine's workflow (which measures
// time with workflow.Now) and an executor that watches in one process
// (which uses the wall clock) follow the same rules.
package watch

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// Reading is what one check of the query found.
type Reading struct {
	Value float64 `json:"value"`
	// Crossed says that Value is outside the step's bounds.
	Crossed bool `json:"crossed,omitempty"`
	// NoData says why the check read no value; empty when it read one.
	NoData string `json:"no_data,omitempty"`
}

// Watch is the state of one verify step's watch.
type Watch struct {
	step *plan.VerifyStep
	// Checks counts the checks so far.
	Checks int
	// Value is the last value read, valid when HasValue.
	Value    float64
	HasValue bool
	// Note is why the last check read no value, or empty.
	Note string
}

// New starts the watch of a verify step.
func New(v *plan.VerifyStep) *Watch { return &Watch{step: v} }

// Decision is what comes after a check.
type Decision struct {
	// Done ends the watch: it failed when Fail is set, else it passed.
	Done bool
	Fail string
	// Crossed says the failure is the value crossing its bound (as
	// opposed to a watch that read nothing); only then is a deploy rolled
	// back.
	Crossed bool
	// Wait is the time to the next check, when not Done.
	Wait time.Duration
	// Log is a line about the check for the step's log.
	Log string
}

// Next takes the reading of a check made elapsed after the watch started.
func (w *Watch) Next(elapsed time.Duration, r Reading) Decision {
	w.Checks++
	var d Decision
	if r.NoData != "" {
		w.Note = r.NoData
		d.Log = fmt.Sprintf("verify: check %d at %s: %s", w.Checks, round(elapsed), r.NoData)
	} else {
		w.Value, w.HasValue, w.Note = r.Value, true, ""
		d.Log = fmt.Sprintf("verify: check %d at %s: %s", w.Checks, round(elapsed), Format(r.Value))
	}
	forD := w.step.For.Std()
	switch {
	case r.NoData == "" && r.Crossed:
		d.Done, d.Crossed = true, true
		d.Fail = fmt.Sprintf("the value %s crossed its bound (the step fails when %s) at check %d, %s into the %s watch", Format(r.Value), Bound(w.step), w.Checks, round(elapsed), forD)
	case elapsed >= forD && !w.HasValue:
		d.Done = true
		d.Fail = fmt.Sprintf("no check in %s read a value (%d checks); the last said: %s. Check that the query returns one number in Prometheus's expression browser", forD, w.Checks, w.Note)
	case elapsed >= forD:
		d.Done = true
	default:
		d.Wait = min(w.step.Interval.Std(), forD-elapsed)
	}
	return d
}

// Outputs are the step's outputs so far: value, once a check read one.
func (w *Watch) Outputs() map[string]string {
	if !w.HasValue {
		return nil
	}
	return map[string]string{"value": Format(w.Value)}
}

// Crossed tells whether value is outside the step's bounds: at or above
// below, or at or below above.
func Crossed(v *plan.VerifyStep, value float64) bool {
	return (v.Below != nil && value >= *v.Below) || (v.Above != nil && value <= *v.Above)
}

// Bound says in words when a value crosses the step's bounds.
func Bound(v *plan.VerifyStep) string {
	var parts []string
	if v.Below != nil {
		parts = append(parts, "the value reaches "+Format(*v.Below))
	}
	if v.Above != nil {
		parts = append(parts, "the value drops to "+Format(*v.Above))
	}
	return strings.Join(parts, " or ")
}

// Format writes a value as the step's value output holds it.
func Format(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
