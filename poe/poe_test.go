package poe

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// poeCase is a random batch of experts with float64 copies of their
// parameters, so that reference computations do not go through float32.
type poeCase struct {
	b, d    int
	experts []Expert
	mu, lv  [][]float64 // [k][i]
	mask    [][]bool    // [k][row], always non-nil
}

// newPoECase draws k experts with mu, logvar uniform in [-3, 3]. With masks,
// rows are randomly absent and row 0 is absent from every expert so that the
// all-absent case is always exercised.
func newPoECase(t testing.TB, rng *rand.Rand, k, b, d int, masks bool) *poeCase {
	t.Helper()
	c := &poeCase{b: b, d: d}
	for range k {
		e := Expert{Mu: make([]float32, b*d), LogVar: make([]float32, b*d)}
		mu, lv := make([]float64, b*d), make([]float64, b*d)
		for i := range mu {
			e.Mu[i] = float32(rng.Float64()*6 - 3)
			e.LogVar[i] = float32(rng.Float64()*6 - 3)
			mu[i], lv[i] = float64(e.Mu[i]), float64(e.LogVar[i])
		}
		m := make([]bool, b)
		for r := range m {
			m[r] = true
			if masks {
				m[r] = r != 0 && rng.IntN(3) != 0
			}
		}
		if masks {
			e.Present = m
		}
		c.experts = append(c.experts, e)
		c.mu, c.lv, c.mask = append(c.mu, mu), append(c.lv, lv), append(c.mask, m)
	}
	return c
}

func randNormal(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

func closeTo(got, want, rel, abs float64) bool {
	return math.Abs(got-want) <= abs+rel*math.Abs(want)
}

// refProduct multiplies Gaussians one pair at a time starting from the prior,
// a different route to the product than the precision sum in Fuse.
func refProduct(c *poeCase, i int) (mu, v float64) {
	mu, v = 0, 1
	r := i / c.d
	for k := range c.mu {
		if !c.mask[k][r] {
			continue
		}
		vk := math.Exp(c.lv[k][i])
		mu = (mu*vk + c.mu[k][i]*v) / (v + vk)
		v = v * vk / (v + vk)
	}
	return mu, v
}

func TestFuseClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for k := 1; k <= 8; k++ {
		for _, masks := range []bool{false, true} {
			c := newPoECase(t, rng, k, 7, 5, masks)
			var f Fused
			f.Fuse(c.experts, c.b, c.d)
			if f.B != c.b || f.D != c.d {
				t.Fatalf("k=%d: shape %d×%d, want %d×%d", k, f.B, f.D, c.b, c.d)
			}
			for i := range f.Mu {
				wm, wv := refProduct(c, i)
				if !closeTo(float64(f.Mu[i]), wm, 1e-5, 1e-6) ||
					!closeTo(float64(f.Var[i]), wv, 1e-5, 0) ||
					!closeTo(float64(f.LogVar[i]), math.Log(wv), 1e-5, 1e-6) {
					t.Errorf("k=%d masks=%v i=%d: (mu, var, logvar) = (%g, %g, %g), want (%g, %g, %g)",
						k, masks, i, f.Mu[i], f.Var[i], f.LogVar[i], wm, wv, math.Log(wv))
				}
			}
			if masks {
				// Row 0 has no expert: exactly the prior.
				for j := range c.d {
					if f.Mu[j] != 0 || f.Var[j] != 1 || f.LogVar[j] != 0 {
						t.Errorf("k=%d all-absent row, dim %d: (%g, %g, %g), want (0, 1, 0)",
							k, j, f.Mu[j], f.Var[j], f.LogVar[j])
					}
				}
			}
		}
	}
}

func TestFuseSpecialCases(t *testing.T) {
	const m = 1.5
	full := func(v float32) []float32 { return []float32{v, v, v, v} }
	a := Expert{Mu: full(m), LogVar: full(0)}
	tests := []struct {
		name            string
		experts         []Expert
		wantMu, wantVar float64
	}{
		{"no experts is the prior", nil, 0, 1},
		{"one unit-variance expert halves", []Expert{a}, m / 2, 0.5},
		{"two identical experts", []Expert{a, a}, 2 * m / 3, 1.0 / 3},
		{"two experts, var 1/2 and 1", []Expert{
			{Mu: full(2), LogVar: full(float32(math.Log(0.5)))},
			{Mu: full(-1), LogVar: full(0)},
		}, (2*2 - 1) / 4.0, 0.25},
		{"absent expert contributes nothing", []Expert{
			a, {Mu: full(9), LogVar: full(-2), Present: []bool{false, false}},
		}, m / 2, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Fused
			f.Fuse(tt.experts, 2, 2)
			for i := range f.Mu {
				if !closeTo(float64(f.Mu[i]), tt.wantMu, 1e-6, 1e-7) || !closeTo(float64(f.Var[i]), tt.wantVar, 1e-6, 0) {
					t.Errorf("element %d: (mu, var) = (%g, %g), want (%g, %g)", i, f.Mu[i], f.Var[i], tt.wantMu, tt.wantVar)
				}
			}
		})
	}

	// An expert absent from a row must leave that row bit-for-bit as if the
	// expert had not been passed at all.
	t.Run("absent equals not passed", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		c := newPoECase(t, rng, 3, 4, 3, false)
		absent := c.experts[2]
		absent.Present = make([]bool, c.b)
		var with, without Fused
		with.Fuse([]Expert{c.experts[0], absent, c.experts[1]}, c.b, c.d)
		without.Fuse(c.experts[:2], c.b, c.d)
		for i := range with.Mu {
			if with.Mu[i] != without.Mu[i] || with.Var[i] != without.Var[i] || with.LogVar[i] != without.LogVar[i] {
				t.Errorf("element %d: with absent expert (%g, %g, %g), without (%g, %g, %g)", i,
					with.Mu[i], with.Var[i], with.LogVar[i], without.Mu[i], without.Var[i], without.LogVar[i])
			}
		}
	})
}

func TestFuseKL(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for k := 0; k <= 8; k++ {
		c := newPoECase(t, rng, k, 6, 4, true)
		var f Fused
		f.Fuse(c.experts, c.b, c.d)
		kl := make([]float32, c.b)
		got := f.KL(kl)
		var want float64
		for r := range c.b {
			var row float64
			for j := range c.d {
				m, v := refProduct(c, r*c.d+j)
				row += 0.5 * (v + m*m - 1 - math.Log(v))
			}
			if !closeTo(float64(kl[r]), row, 1e-5, 1e-6) {
				t.Errorf("k=%d row %d: KL = %g, want %g", k, r, kl[r], row)
			}
			want += row
		}
		if !closeTo(got, want, 1e-6, 1e-9) {
			t.Errorf("k=%d: total KL = %g, want %g", k, got, want)
		}
		if kl[0] != 0 {
			t.Errorf("k=%d: KL of the all-absent (prior) row = %g, want exactly 0", k, kl[0])
		}
	}
}

// termObjective is one ELBO term, sum(w·z) - beta*KL, evaluated in float64
// from the float64 parameters, independently of the package code.
type termObjective struct {
	members []int // expert indices in this subset
	w, eps  []float32
	beta    float64
	prior   Prior // the prior expert (zero: N(0, I))
}

// priorAt is o's prior's precision and mean at element i, in float64.
func (o termObjective) priorAt(i int) (prec, mu float64) {
	if o.prior.Standard() {
		return 1, 0
	}
	return math.Exp(-float64(o.prior.LogVar[i])), float64(o.prior.Mu[i])
}

func (o termObjective) eval(c *poeCase, mu, lv [][]float64) float64 {
	var s float64
	for i := range c.b * c.d {
		r := i / c.d
		tp, mp := o.priorAt(i)
		T, num := tp, tp*mp
		for _, k := range o.members {
			if !c.mask[k][r] {
				continue
			}
			l := math.Max(-MaxLogVar, math.Min(MaxLogVar, lv[k][i]))
			tk := math.Exp(-l)
			T += tk
			num += tk * mu[k][i]
		}
		m, v := num/T, 1/T
		z := m + math.Sqrt(v)*float64(o.eps[i])
		s += float64(o.w[i])*z - o.beta*0.5*(tp*v+tp*(m-mp)*(m-mp)-1-math.Log(tp*v))
	}
	return s
}

// analytic runs Fuse, TermGrad and Backward for every term, accumulating into
// grads (indexed like c.experts).
func analytic(c *poeCase, terms []termObjective, grads []ExpertGrad) {
	n := c.b * c.d
	dmu, dvar := make([]float32, n), make([]float32, n)
	for _, o := range terms {
		exps := make([]Expert, len(o.members))
		g := make([]ExpertGrad, len(o.members))
		for j, k := range o.members {
			exps[j], g[j] = c.experts[k], grads[k]
		}
		var f Fused
		f.FuseWith(o.prior, exps, c.b, c.d)
		f.TermGrad(dmu, dvar, o.w, o.eps, float32(o.beta))
		f.Backward(g, exps, dmu, dvar)
	}
}

// checkGrads compares grads (minus offset, which was there before Backward)
// with central differences of the summed term objectives.
func checkGrads(t *testing.T, c *poeCase, terms []termObjective, grads []ExpertGrad, offset float32) {
	t.Helper()
	const h = 1e-3
	total := func() float64 {
		var s float64
		for _, o := range terms {
			s += o.eval(c, c.mu, c.lv)
		}
		return s
	}
	fd := func(p []float64, i int) float64 {
		x := p[i]
		p[i] = x + h
		up := total()
		p[i] = x - h
		down := total()
		p[i] = x
		return (up - down) / (2 * h)
	}
	for k := range c.experts {
		for i := range c.b * c.d {
			for _, p := range []struct {
				name   string
				params []float64
				got    float32
			}{
				{"dmu", c.mu[k], grads[k].DMu[i]},
				{"dlogvar", c.lv[k], grads[k].DLogVar[i]},
			} {
				got, want := float64(p.got-offset), fd(p.params, i)
				if !closeTo(got, want, 1e-3, 1e-3) {
					t.Errorf("expert %d element %d: %s = %g, finite difference %g", k, i, p.name, got, want)
				}
			}
		}
	}
}

func newGrads(k, n int, fill float32) []ExpertGrad {
	g := make([]ExpertGrad, k)
	for j := range g {
		g[j] = ExpertGrad{DMu: make([]float32, n), DLogVar: make([]float32, n)}
		for i := range n {
			g[j].DMu[i], g[j].DLogVar[i] = fill, fill
		}
	}
	return g
}

func TestFuseGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for k := 1; k <= 8; k++ {
		for _, beta := range []float64{0, 0.5, 1} {
			c := newPoECase(t, rng, k, 4, 3, true)
			n := c.b * c.d
			o := termObjective{w: randNormal(rng, n), eps: randNormal(rng, n), beta: beta}
			for j := range k {
				o.members = append(o.members, j)
			}
			grads := newGrads(k, n, 0)
			analytic(c, []termObjective{o}, grads)
			checkGrads(t, c, []termObjective{o}, grads, 0)
			for j, e := range c.experts {
				for i := range n {
					if !e.Present[i/c.d] && (grads[j].DMu[i] != 0 || grads[j].DLogVar[i] != 0) {
						t.Errorf("k=%d beta=%g: absent expert %d element %d has gradient (%g, %g)",
							k, beta, j, i, grads[j].DMu[i], grads[j].DLogVar[i])
					}
				}
			}
		}
	}
}

// randomPrior is a prior of b×d elements, means in [-2, 2] and
// log-variances in [-2, 1] (a concept's category is narrower than N(0, I)).
func randomPrior(rng *rand.Rand, n int) Prior {
	p := Prior{Mu: make([]float32, n), LogVar: make([]float32, n)}
	for i := range n {
		p.Mu[i] = float32(rng.Float64()*4 - 2)
		p.LogVar[i] = float32(rng.Float64()*3 - 2)
	}
	return p
}

// TestFuseGradUnderPrior checks the gradients by finite differences when
// the prior expert is another Gaussian per element: it moves both the
// product and the KL's reference.
func TestFuseGradUnderPrior(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for k := 0; k <= 4; k++ {
		for _, beta := range []float64{0.5, 1} {
			c := newPoECase(t, rng, k, 4, 3, true)
			n := c.b * c.d
			o := termObjective{w: randNormal(rng, n), eps: randNormal(rng, n), beta: beta, prior: randomPrior(rng, n)}
			for j := range k {
				o.members = append(o.members, j)
			}
			grads := newGrads(k, n, 0)
			analytic(c, []termObjective{o}, grads)
			checkGrads(t, c, []termObjective{o}, grads, 0)
		}
	}
}

// TestFuseKLUnderPrior compares KL with the closed form between two
// Gaussians, the product being built pairwise from the prior, and checks
// that a row no expert observed is exactly the prior (KL 0).
func TestFuseKLUnderPrior(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	for k := 0; k <= 4; k++ {
		c := newPoECase(t, rng, k, 5, 3, true)
		p := randomPrior(rng, c.b*c.d)
		var f Fused
		f.FuseWith(p, c.experts, c.b, c.d)
		kl := make([]float32, c.b)
		f.KL(kl)
		for r := range c.b {
			var want float64
			for j := range c.d {
				i := r*c.d + j
				mp, vp := float64(p.Mu[i]), math.Exp(float64(p.LogVar[i]))
				m, v := mp, vp
				for e := range c.mu {
					if c.mask[e][r] {
						ve := math.Exp(c.lv[e][i])
						m, v = (m*ve+c.mu[e][i]*v)/(v+ve), v*ve/(v+ve)
					}
				}
				if !closeTo(float64(f.Mu[i]), m, 1e-5, 1e-6) || !closeTo(float64(f.Var[i]), v, 1e-5, 1e-7) {
					t.Errorf("k=%d element %d: fused (%g, %g), want (%g, %g)", k, i, f.Mu[i], f.Var[i], m, v)
				}
				want += 0.5 * (v/vp + (m-mp)*(m-mp)/vp - 1 + math.Log(vp/v))
			}
			if !closeTo(float64(kl[r]), want, 1e-4, 1e-5) {
				t.Errorf("k=%d row %d: KL = %g, want %g", k, r, kl[r], want)
			}
		}
		if kl[0] > 1e-6 {
			t.Errorf("k=%d: KL of the row no expert saw = %g, want 0 (it is the prior)", k, kl[0])
		}
	}
}

// TestFuseGradAccumulates fuses two subsets that share expert 1 and checks
// that Backward adds (to a non-zero starting value) rather than overwrites,
// so the shared expert gets the sum of both terms' gradients.
func TestFuseGradAccumulates(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	c := newPoECase(t, rng, 3, 5, 3, true)
	n := c.b * c.d
	terms := []termObjective{
		{members: []int{0, 1}, w: randNormal(rng, n), eps: randNormal(rng, n), beta: 1},
		{members: []int{1, 2}, w: randNormal(rng, n), eps: randNormal(rng, n), beta: 0.5},
	}
	const offset = 0.25
	grads := newGrads(3, n, offset)
	analytic(c, terms, grads)
	checkGrads(t, c, terms, grads, offset)
}

func TestFuseClamp(t *testing.T) {
	tests := []struct {
		name string
		lv   []float32
	}{
		{"very small", []float32{-1000, -1000}},
		{"very large", []float32{1000, 1000}},
		{"mixed", []float32{-1000, 1000}},
		{"infinite", []float32{float32(math.Inf(-1)), float32(math.Inf(1))}},
	}
	finite := func(s []float32) bool {
		for _, v := range s {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return false
			}
		}
		return true
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Eight experts at the same log-variance: the worst case for the
			// precision sum.
			experts := make([]Expert, 8)
			clamped := make([]Expert, 8)
			for k := range experts {
				experts[k] = Expert{Mu: []float32{2, -3}, LogVar: tt.lv}
				cl := make([]float32, len(tt.lv))
				for i, l := range tt.lv {
					cl[i] = float32(math.Max(-MaxLogVar, math.Min(MaxLogVar, float64(l))))
				}
				clamped[k] = Expert{Mu: []float32{2, -3}, LogVar: cl}
			}
			var f, ref Fused
			f.Fuse(experts, 1, 2)
			ref.Fuse(clamped, 1, 2)
			eps, g := []float32{0.7, -1.2}, []float32{0.3, 0.9}
			z, kl := make([]float32, 2), make([]float32, 1)
			f.Sample(z, eps)
			total := f.KL(kl)
			dmu, dvar := make([]float32, 2), make([]float32, 2)
			f.TermGrad(dmu, dvar, g, eps, 1)
			grads := newGrads(8, 2, 0)
			f.Backward(grads, experts, dmu, dvar)
			for name, s := range map[string][]float32{"Mu": f.Mu, "Var": f.Var, "LogVar": f.LogVar,
				"z": z, "kl": kl, "dmu": dmu, "dvar": dvar, "DMu": grads[0].DMu, "DLogVar": grads[0].DLogVar} {
				if !finite(s) {
					t.Errorf("%s = %v, want finite", name, s)
				}
			}
			if math.IsNaN(total) || math.IsInf(total, 0) {
				t.Errorf("KL total = %g, want finite", total)
			}
			for i := range f.Mu {
				if f.Mu[i] != ref.Mu[i] || f.Var[i] != ref.Var[i] {
					t.Errorf("element %d: (mu, var) = (%g, %g), want clamped (%g, %g)", i, f.Mu[i], f.Var[i], ref.Mu[i], ref.Var[i])
				}
				if f.Var[i] <= 0 {
					t.Errorf("element %d: var = %g, want > 0", i, f.Var[i])
				}
				if grads[0].DLogVar[i] != 0 {
					t.Errorf("element %d: dlogvar = %g for a clamped log-variance, want 0", i, grads[0].DLogVar[i])
				}
			}
		})
	}
}

func TestFusePanics(t *testing.T) {
	ok := Expert{Mu: make([]float32, 6), LogVar: make([]float32, 6)}
	tests := []struct {
		name string
		run  func()
	}{
		{"short Mu", func() {
			var f Fused
			f.Fuse([]Expert{{Mu: make([]float32, 5), LogVar: make([]float32, 6)}}, 2, 3)
		}},
		{"short LogVar", func() {
			var f Fused
			f.Fuse([]Expert{ok, {Mu: make([]float32, 6), LogVar: make([]float32, 7)}}, 2, 3)
		}},
		{"bad Present", func() {
			var f Fused
			f.Fuse([]Expert{{Mu: ok.Mu, LogVar: ok.LogVar, Present: make([]bool, 3)}}, 2, 3)
		}},
		{"negative shape", func() { var f Fused; f.Fuse(nil, -1, 3) }},
		{"Sample eps", func() { var f Fused; f.Fuse(nil, 2, 3); f.Sample(make([]float32, 6), make([]float32, 5)) }},
		{"KL length", func() { var f Fused; f.Fuse(nil, 2, 3); f.KL(make([]float32, 6)) }},
		{"TermGrad g", func() {
			var f Fused
			f.Fuse(nil, 2, 3)
			s := make([]float32, 6)
			f.TermGrad(s, make([]float32, 6), make([]float32, 4), s, 1)
		}},
		{"Backward expert count", func() {
			var f Fused
			f.Fuse([]Expert{ok}, 2, 3)
			f.Backward(nil, nil, make([]float32, 6), make([]float32, 6))
		}},
		{"Backward grads count", func() {
			var f Fused
			f.Fuse([]Expert{ok}, 2, 3)
			f.Backward(nil, []Expert{ok}, make([]float32, 6), make([]float32, 6))
		}},
		{"Backward grad length", func() {
			var f Fused
			f.Fuse([]Expert{ok}, 2, 3)
			f.Backward(newGrads(1, 5, 0), []Expert{ok}, make([]float32, 6), make([]float32, 6))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.HasPrefix(msg, "poe: ") {
					t.Errorf("panic value %#v, want a string prefixed %q", r, "poe: ")
				}
			}()
			tt.run()
		})
	}
}

// fuseStep is one training step's worth of calls on reused buffers.
type fuseStep struct {
	f                        Fused
	c                        *poeCase
	z, eps, g, dmu, dvar, kl []float32
	grads                    []ExpertGrad
}

func newFuseStep(t testing.TB, k, b, d int) *fuseStep {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	n := b * d
	return &fuseStep{
		c:   newPoECase(t, rng, k, b, d, true),
		z:   make([]float32, n),
		eps: randNormal(rng, n), g: randNormal(rng, n),
		dmu: make([]float32, n), dvar: make([]float32, n), kl: make([]float32, b),
		grads: newGrads(k, n, 0),
	}
}

func (s *fuseStep) run() {
	s.f.Fuse(s.c.experts, s.c.b, s.c.d)
	s.f.Sample(s.z, s.eps)
	s.f.KL(s.kl)
	s.f.TermGrad(s.dmu, s.dvar, s.g, s.eps, 1)
	s.f.Backward(s.grads, s.c.experts, s.dmu, s.dvar)
}

func TestFuseAllocs(t *testing.T) {
	s := newFuseStep(t, 3, 16, 8)
	s.run() // size the buffers
	if n := testing.AllocsPerRun(20, s.run); n != 0 {
		t.Errorf("Fuse+Sample+KL+TermGrad+Backward: %g allocations per run, want 0", n)
	}
	// A smaller batch must reuse the larger buffers.
	small := newFuseStep(t, 3, 4, 8)
	small.f = s.f
	if n := testing.AllocsPerRun(20, small.run); n != 0 {
		t.Errorf("after shrinking: %g allocations per run, want 0", n)
	}
}

func BenchmarkFuse(b *testing.B) {
	s := newFuseStep(b, 3, 100, 64)
	s.run()
	b.ReportAllocs()
	for b.Loop() {
		s.run()
	}
}

// TestEvidenceIsTheProductWithoutPrior: the product under any prior is
// the prior times the evidence, and a row no expert saw has none.
func TestEvidenceIsTheProductWithoutPrior(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	c := newPoECase(t, rng, 3, 5, 4, true)
	n := c.b * c.d
	prec, shift := make([]float32, n), make([]float32, n)
	Evidence(prec, shift, c.experts, c.b, c.d)
	p := randomPrior(rng, n)
	var f Fused
	f.FuseWith(p, c.experts, c.b, c.d)
	for i := range n {
		tp := math.Exp(-float64(p.LogVar[i]))
		t1 := tp + float64(prec[i])
		mu := (tp*float64(p.Mu[i]) + float64(shift[i])) / t1
		if !closeTo(float64(f.Mu[i]), mu, 1e-5, 1e-6) || !closeTo(float64(f.Var[i]), 1/t1, 1e-5, 1e-8) {
			t.Errorf("element %d: prior × evidence = (%g, %g), FuseWith = (%g, %g)", i, mu, 1/t1, f.Mu[i], f.Var[i])
		}
	}
	for j := range c.d {
		if prec[j] != 0 || shift[j] != 0 {
			t.Errorf("row 0 (no expert) dim %d: evidence (%g, %g), want none", j, prec[j], shift[j])
		}
	}
}
