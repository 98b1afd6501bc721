package fusionbench

import "math"

// Growth is a least-squares fit of the throughput table's cost per belief
// and per posterior, c · modules^M · latent^L: how the cost grows per
// doubling of each.
type Growth struct {
	BeliefLatentExp     float64 `json:"belief_latent_exp"`
	BeliefModulesExp    float64 `json:"belief_modules_exp"`
	PosteriorLatentExp  float64 `json:"posterior_latent_exp"`
	PosteriorModulesExp float64 `json:"posterior_modules_exp"`
	Latents, Modules    bool    `json:"-"` // whether the table varies them
}

// FitGrowth fits log2 cost = a + M·log2 modules + L·log2 latent over the
// cells by least squares, for the wall time per belief and per posterior.
// It is nil when the cells vary neither.
func FitGrowth(cells []Cell) *Growth {
	var xs [][2]float64
	var yb, yp []float64
	ms, ds := map[int]bool{}, map[int]bool{}
	for _, c := range cells {
		if c.Beliefs == 0 || c.Posteriors == 0 {
			continue
		}
		xs = append(xs, [2]float64{math.Log2(float64(c.Modules)), math.Log2(float64(c.Latent))})
		yb = append(yb, math.Log2(c.Seconds/float64(c.Beliefs)))
		yp = append(yp, math.Log2(c.Seconds/float64(c.Posteriors)))
		ms[c.Modules], ds[c.Latent] = true, true
	}
	if len(ms) < 2 && len(ds) < 2 {
		return nil
	}
	g := &Growth{Modules: len(ms) > 1, Latents: len(ds) > 1}
	g.BeliefModulesExp, g.BeliefLatentExp = fit2(xs, yb, g.Modules, g.Latents)
	g.PosteriorModulesExp, g.PosteriorLatentExp = fit2(xs, yp, g.Modules, g.Latents)
	return g
}

// fit2 is the least-squares fit y = a + b0·x0 + b1·x1, with a variable
// that does not vary left out (its coefficient 0).
func fit2(xs [][2]float64, y []float64, use0, use1 bool) (b0, b1 float64) {
	n := float64(len(y))
	var m0, m1, my float64
	for i := range y {
		m0 += xs[i][0] / n
		m1 += xs[i][1] / n
		my += y[i] / n
	}
	var s00, s01, s11, s0y, s1y float64
	for i := range y {
		a, b, c := xs[i][0]-m0, xs[i][1]-m1, y[i]-my
		s00, s01, s11, s0y, s1y = s00+a*a, s01+a*b, s11+b*b, s0y+a*c, s1y+b*c
	}
	switch {
	case use0 && use1:
		det := s00*s11 - s01*s01
		if det == 0 {
			return 0, 0
		}
		return (s11*s0y - s01*s1y) / det, (s00*s1y - s01*s0y) / det
	case use0:
		return s0y / s00, 0
	case use1:
		return 0, s1y / s11
	}
	return 0, 0
}
