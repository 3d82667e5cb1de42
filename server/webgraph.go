package server

import (
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// The stage graph of the run page, laid out here and drawn as SVG by
// run.html: stages are boxes in columns by depth (a stage's column is one
// more than the deepest stage it needs), `needs` are curves between them,
// and the instances of a matrix stage are stacked in one box named after
// the stage. Each stage box carries data-stage, by which run.js colours
// it as the run goes on.
//
// The layout is the simple layered one: columns from the DAG's depth,
// then, column by column, the boxes sorted by the mean row of the boxes
// they need (one barycentre pass, which untangles the usual pipeline).
// It is linear in stages and needs, so a run of thousands of stages draws
// in milliseconds.

// Sizes of the drawing, in SVG user units (pixels).
const (
	gNodeW   = 176 // a stage box
	gNodeH   = 30
	gColGap  = 48 // between columns, where the edges run
	gRowGap  = 12 // between boxes of a column
	gPad     = 8
	gHeadH   = 22 // a matrix group's name above its instances
	gInstGap = 4
	gLabel   = 24 // characters of a label before it is cut
)

// graph is the laid-out stage graph.
type graph struct {
	Width, Height int
	Groups        []graphGroup
	Edges         []graphEdge
}

// graphGroup is one stage block: a single stage, or a matrix stage's
// instances.
type graphGroup struct {
	Name       string
	Label      string
	Matrix     bool
	X, Y, W, H int
	// LabelX, LabelY place a matrix group's name.
	LabelX, LabelY int
	Nodes          []graphNode
	layer          int
	needs          []int // groups it needs
	order          float64
}

// graphNode is one stage (instance): a box at Transform (its size is
// run.html's: a stage's, or a matrix instance's).
type graphNode struct {
	ID    string
	Label string
	// Class is the node's classes: its state, and whether it has focus.
	Class string
	// Anchor is the stage's section on the page.
	Anchor    string
	Transform string
}

// graphEdge is a need: a curve from the needed group to the needing one.
type graphEdge struct {
	D string
}

// layoutGraph lays out the stages of p; states and anchors give each
// stage's state and section (by index in p.Stages), focus the stage or
// stage block to mark.
func layoutGraph(p *plan.Plan, states []string, anchors []string, focus string) graph {
	// Groups by stage block, in the order of their first instance.
	groupOf := make(map[string]int, len(p.Stages)) // stage ID -> group
	byName := map[string]int{}
	var groups []graphGroup
	members := [][]int{}
	for i, st := range p.Stages {
		name := st.Name
		if name == "" {
			name = st.ID
		}
		g, ok := byName[name]
		if !ok {
			g = len(groups)
			byName[name] = g
			groups = append(groups, graphGroup{Name: name})
			members = append(members, nil)
		}
		members[g] = append(members[g], i)
		groupOf[st.ID] = g
		if len(st.Matrix) > 0 {
			groups[g].Matrix = true
		}
	}
	for g := range groups {
		var needs []int
		for _, i := range members[g] {
			for _, n := range p.Stages[i].Needs {
				if k, ok := groupOf[n]; ok && k != g && !slices.Contains(needs, k) {
					needs = append(needs, k)
				}
			}
		}
		groups[g].needs = needs
	}
	// Layers: the longest path from a root. Stages come in a topological
	// order, so groups mostly do too and this settles in one or two passes;
	// the bound keeps a (malformed) cycle from looping.
	for pass := 0; pass < len(groups); pass++ {
		changed := false
		for g := range groups {
			l := 0
			for _, k := range groups[g].needs {
				l = max(l, groups[k].layer+1)
			}
			if l != groups[g].layer {
				groups[g].layer, changed = l, true
			}
		}
		if !changed {
			break
		}
	}
	nLayers := 0
	for _, g := range groups {
		nLayers = max(nLayers, g.layer+1)
	}
	columns := make([][]int, nLayers)
	for g := range groups {
		columns[groups[g].layer] = append(columns[groups[g].layer], g)
	}
	// Rows: in plan order in the first column, then by the mean row of
	// what each group needs.
	height := 0
	for c, col := range columns {
		if c > 0 {
			for _, g := range col {
				sum, n := 0.0, 0
				for _, k := range groups[g].needs {
					sum += groups[k].order
					n++
				}
				if n > 0 {
					groups[g].order = sum / float64(n)
				} else {
					groups[g].order = float64(g)
				}
			}
			slices.SortStableFunc(col, func(a, b int) int {
				switch {
				case groups[a].order < groups[b].order:
					return -1
				case groups[a].order > groups[b].order:
					return 1
				}
				return 0
			})
		}
		y := gPad
		x := gPad + c*(gNodeW+gColGap)
		for row, g := range col {
			gr := &groups[g]
			gr.order = float64(row)
			gr.X, gr.Y, gr.W = x, y, gNodeW
			ms := members[g]
			if gr.Matrix {
				gr.Label = cutLabel(gr.Name)
				gr.LabelX, gr.LabelY = x+8, y+15
				ny := y + gHeadH
				for _, i := range ms {
					st := &p.Stages[i]
					gr.Nodes = append(gr.Nodes, graphNode{ID: st.ID, Label: cutLabel(matrixLabel(st)), Anchor: anchors[i],
						Class:     nodeClass(states[i], focus != "" && (st.ID == focus || gr.Name == focus)),
						Transform: translate(x+6, ny)})
					ny += gNodeH - 4 + gInstGap
				}
				gr.H = ny - y + 2
			} else {
				st := &p.Stages[ms[0]]
				gr.Nodes = []graphNode{{ID: st.ID, Label: cutLabel(st.ID), Anchor: anchors[ms[0]],
					Class: nodeClass(states[ms[0]], focus != "" && st.ID == focus), Transform: translate(x, y)}}
				gr.H = gNodeH
			}
			y += gr.H + gRowGap
		}
		height = max(height, y)
	}
	out := graph{Groups: groups, Width: gPad*2 + max(1, nLayers)*(gNodeW+gColGap) - gColGap, Height: max(height-gRowGap+gPad, gNodeH+2*gPad)}
	var b strings.Builder
	for g := range groups {
		to := &groups[g]
		for _, k := range to.needs {
			from := &groups[k]
			x1, y1 := from.X+from.W, from.Y+from.H/2
			x2, y2 := to.X, to.Y+to.H/2
			dx := max((x2-x1)/2, 12)
			b.Reset()
			b.WriteString("M")
			for i, v := range []int{x1, y1, x1 + dx, y1, x2 - dx, y2, x2, y2} {
				switch {
				case i == 2:
					b.WriteString(" C")
				case i%2 == 1:
					b.WriteString(",")
				default:
					b.WriteString(" ")
				}
				b.WriteString(strconv.Itoa(v))
			}
			out.Edges = append(out.Edges, graphEdge{D: b.String()})
		}
	}
	return out
}

// matrixLabel names a matrix instance by its values, in the order the
// matrix was written: "go=1.22, os=linux".
func matrixLabel(st *plan.Stage) string {
	keys := st.MatrixKeys
	if len(keys) == 0 {
		for k := range st.Matrix {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+st.Matrix[k])
	}
	return strings.Join(parts, ", ")
}

// cutLabel cuts a label that would overflow its box.
func cutLabel(s string) string {
	r := []rune(s)
	if len(r) <= gLabel {
		return s
	}
	return string(r[:gLabel-1]) + "…"
}

func nodeClass(state string, focus bool) string {
	if focus {
		return "node st-" + state + " focus"
	}
	return "node st-" + state
}

func translate(x, y int) string {
	return "translate(" + strconv.Itoa(x) + "," + strconv.Itoa(y) + ")"
}
