package web

import (
	"math"
	"sort"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/serket-go/serket/bus"
)

// latentView is the latent event: recent posterior means and beliefs,
// projected on their first two principal components.
type latentView struct {
	By        string        `json:"by"` // "module", or "concept" when beliefs carry one
	Points    []latentPoint `json:"points"`
	Groups    []string      `json:"groups"`
	Explained [2]float64    `json:"explained"` // the share of variance of each axis
	N         int           `json:"n"`
}

type latentPoint struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
	G string  `json:"g"`
}

// latentBook keeps the latest means of each group (a module's posteriors,
// the beliefs, or the beliefs of a concept) for the projection.
type latentBook struct {
	dim    int
	rows   map[string][][]float32 // ring per group, newest last
	view   *latentView
	viewAt time.Time
	sent   time.Time
}

// perGroup bounds each group's points: recent ones only, and a
// projection of a few hundred points costs the view milliseconds.
const perGroup = 200

func newLatentBook(dim int) *latentBook { return &latentBook{dim: dim, rows: map[string][][]float32{}} }

// latentSize is the size beliefs and posteriors must have (0: any; the
// latent book then keeps the first size it saw).
func (h *Hub) latentSize() int { return h.cfg.Latent }

// add keeps one mean of group.
func (b *latentBook) add(group string, mu []float32) {
	if b.dim == 0 {
		b.dim = len(mu)
	}
	if len(mu) != b.dim {
		return
	}
	r := b.rows[group]
	if len(r) == perGroup {
		r = append(r[:0], r[1:]...)
	}
	b.rows[group] = append(r, append([]float32{}, mu...))
}

// addRows keeps the present rows of a batch of means (B×D).
func (b *latentBook) addRows(group string, mu bus.Tensor, present []bool) {
	rows, cols := mu.Rows(), mu.Cols()
	step := max(rows/50, 1) // a batch contributes at most ~50 points
	for i := 0; i < rows; i += step {
		if len(present) == 0 || present[i] {
			b.add(group, mu.Data[i*cols:(i+1)*cols])
		}
	}
}

// groupedRows is a snapshot of the points, for projecting outside the lock.
type groupedRows struct {
	groups []string
	rows   [][]float32
	of     []int // group index per row
}

func (b *latentBook) points() groupedRows {
	var g groupedRows
	for name := range b.rows {
		g.groups = append(g.groups, name)
	}
	sort.Strings(g.groups)
	for i, name := range g.groups {
		for _, r := range b.rows[name] {
			g.rows = append(g.rows, r)
			g.of = append(g.of, i)
		}
	}
	return g
}

func (b *latentBook) set(v latentView, ok bool) {
	if ok {
		b.view, b.viewAt = &v, time.Now()
	}
}

func (b *latentBook) last() (latentView, bool) {
	if b.view == nil {
		return latentView{}, false
	}
	return *b.view, true
}

func (b *latentBook) changed(time.Time) (latentView, bool) {
	if b.view == nil || !b.viewAt.After(b.sent) {
		return latentView{}, false
	}
	b.sent = b.viewAt
	return *b.view, true
}

// projectPoints projects the rows on their first two principal
// components; false when there are too few rows to say anything.
func projectPoints(g groupedRows) (latentView, bool) {
	n := len(g.rows)
	if n < 3 {
		return latentView{}, false
	}
	d := len(g.rows[0])
	x := mat.NewDense(n, d, nil)
	for i, r := range g.rows {
		for j, v := range r {
			x.Set(i, j, float64(v))
		}
	}
	for j := 0; j < d; j++ {
		col := mat.Col(nil, j, x)
		m := 0.0
		for _, v := range col {
			m += v
		}
		m /= float64(n)
		for i := range col {
			x.Set(i, j, col[i]-m)
		}
	}
	var svd mat.SVD
	if !svd.Factorize(x, mat.SVDThin) {
		return latentView{}, false
	}
	s := svd.Values(nil)
	var v mat.Dense
	svd.VTo(&v)
	total := 0.0
	for _, sv := range s {
		total += sv * sv
	}
	out := latentView{By: "module", Groups: g.groups, N: n, Points: make([]latentPoint, n)}
	k := min(2, len(s))
	for c := 0; c < k; c++ {
		if total > 0 {
			out.Explained[c] = s[c] * s[c] / total
		}
	}
	for i := 0; i < n; i++ {
		var p [2]float64
		for c := 0; c < k; c++ {
			p[c] = mat.Dot(x.RowView(i), v.ColView(c))
		}
		if math.IsNaN(p[0]) || math.IsNaN(p[1]) {
			return latentView{}, false
		}
		out.Points[i] = latentPoint{X: p[0], Y: p[1], G: g.groups[g.of[i]]}
	}
	for _, name := range g.groups {
		if len(name) > 8 && name[:8] == "concept " {
			out.By = "concept"
		}
	}
	return out, true
}
