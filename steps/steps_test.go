package steps

import (
	"bytes"
	"io"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
)

func TestBegin(t *testing.T) {
	img := &plan.ImageStep{Tags: []plan.Template{plan.Lit("r/app:1")}}
	var log bytes.Buffer
	cfg, w, err := Begin(Request{Step: plan.Step{Name: "app", Kind: plan.KindImage, Image: img}, Log: &log}, plan.KindImage, img)
	if err != nil || cfg != img || w != &log {
		t.Errorf("an image step for the image executor: got %v, %v, %v", cfg, w, err)
	}
	_, w, err = Begin(Request{Step: plan.Step{Name: "app", Kind: plan.KindImage, Image: img}}, plan.KindImage, img)
	if err != nil || w != io.Discard {
		t.Errorf("a request without a log: got %v, %v; want io.Discard", w, err)
	}
	_, _, err = Begin(Request{Step: plan.Step{Name: "unit", Kind: plan.KindRun}}, plan.KindImage, (*plan.ImageStep)(nil))
	if err == nil || err.Error() != `image executor given step "unit" of kind "run"` {
		t.Errorf("a run step for the image executor: got %v", err)
	}
}
