package server

import (
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// The graph: a column per depth, a matrix stage's instances in one box,
// an edge per need between boxes, and nothing drawn on top of another.
func TestLayoutGraph(t *testing.T) {
	p := plan.Plan{Stages: []plan.Stage{
		{ID: "build", Name: "build"},
		{ID: "test[go=1.22]", Name: "test", Matrix: map[string]string{"go": "1.22"}, MatrixKeys: []string{"go"}, Needs: []string{"build"}},
		{ID: "test[go=1.23]", Name: "test", Matrix: map[string]string{"go": "1.23"}, MatrixKeys: []string{"go"}, Needs: []string{"build"}},
		{ID: "lint", Name: "lint", Needs: []string{"build"}},
		{ID: "deploy", Name: "deploy", Needs: []string{"test[go=1.22]", "test[go=1.23]", "lint"}},
		{ID: "docs", Name: "docs"},
	}}
	states := []string{"succeeded", "running", "failed", "pending", "pending", "skipped"}
	anchors := []string{"s0", "s1", "s2", "s3", "s4", "s5"}
	g := layoutGraph(&p, states, anchors, "test")
	if len(g.Groups) != 5 {
		t.Fatalf("%d boxes, want 5 (the matrix in one)", len(g.Groups))
	}
	col := map[string]int{}
	for _, gr := range g.Groups {
		col[gr.Name] = gr.X
	}
	if !(col["build"] == col["docs"] && col["build"] < col["test"] && col["test"] == col["lint"] && col["lint"] < col["deploy"]) {
		t.Errorf("columns %v: want build and docs, then test and lint, then deploy", col)
	}
	var test graphGroup
	for _, gr := range g.Groups {
		if gr.Name == "test" {
			test = gr
		}
	}
	if !test.Matrix || len(test.Nodes) != 2 || test.Nodes[0].Label != "go=1.22" || test.Nodes[1].Class != "node st-failed focus" {
		t.Errorf("the matrix box %+v", test)
	}
	// Four needs between boxes: build→test, build→lint, test→deploy,
	// lint→deploy.
	if len(g.Edges) != 4 {
		t.Errorf("%d edges, want 4", len(g.Edges))
	}
	for _, e := range g.Edges {
		if !strings.HasPrefix(e.D, "M") || !strings.Contains(e.D, " C") {
			t.Errorf("edge %q is not a curve", e.D)
		}
	}
	for i, a := range g.Groups {
		for _, b := range g.Groups[i+1:] {
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("%s and %s overlap", a.Name, b.Name)
			}
		}
		if a.X+a.W > g.Width || a.Y+a.H > g.Height {
			t.Errorf("%s is outside the drawing (%dx%d)", a.Name, g.Width, g.Height)
		}
	}
}
