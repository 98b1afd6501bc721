package mixture

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/serket-go/serket/poe"
)

// mixCase is a random batch of components with float64 copies of their
// parameters, so that reference computations do not go through float32.
type mixCase struct {
	b, d   int
	comps  []poe.Expert
	mu, lv [][]float64 // [k][i]
	mask   [][]bool    // [k][row], always non-nil
}

// newMixCase draws k components with mu, logvar uniform in [-3, 3]. With
// masks, row 0 has no component, row 1 only component 0, and the other rows
// keep each component with probability 2/3, so every stratum meets rows
// where it is absent, alone and shared.
func newMixCase(t testing.TB, rng *rand.Rand, k, b, d int, masks bool) *mixCase {
	t.Helper()
	c := &mixCase{b: b, d: d}
	for j := range k {
		e := poe.Expert{Mu: make([]float32, b*d), LogVar: make([]float32, b*d)}
		mu, lv := make([]float64, b*d), make([]float64, b*d)
		for i := range mu {
			e.Mu[i] = float32(rng.Float64()*6 - 3)
			e.LogVar[i] = float32(rng.Float64()*6 - 3)
			mu[i], lv[i] = float64(e.Mu[i]), float64(e.LogVar[i])
		}
		m := make([]bool, b)
		for r := range m {
			switch {
			case !masks:
				m[r] = true
			case r == 0:
			case r == 1:
				m[r] = j == 0
			default:
				m[r] = rng.IntN(3) != 0
			}
		}
		if masks {
			e.Present = m
		}
		c.comps = append(c.comps, e)
		c.mu, c.lv, c.mask = append(c.mu, mu), append(c.lv, lv), append(c.mask, m)
	}
	return c
}

// setLogVar overwrites component k's log-variance at element i in both
// copies.
func (c *mixCase) setLogVar(k, i int, l float32) {
	c.comps[k].LogVar[i] = l
	c.lv[k][i] = float64(l)
}

func (c *mixCase) count(row int) int {
	n := 0
	for _, m := range c.mask {
		if m[row] {
			n++
		}
	}
	return n
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

func clamp(l float64) float64 { return math.Max(-poe.MaxLogVar, math.Min(poe.MaxLogVar, l)) }

// logNormal is log N(z; mu, exp(l)) of one dimension, constant included.
func logNormal(z, mu, l float64) float64 {
	return -0.5 * (math.Log(2*math.Pi) + l + (z-mu)*(z-mu)/math.Exp(l))
}

// refPenalty is log q(z|X) - log N(z; 0, I) of one row at the given z, with
// the normalising constants and by log-sum-exp over the present components.
func refPenalty(c *mixCase, z []float64, row int) float64 {
	var logs []float64
	amax := math.Inf(-1)
	for k, m := range c.mask {
		if !m[row] {
			continue
		}
		var a float64
		for j, zj := range z {
			i := row*c.d + j
			a += logNormal(zj, c.mu[k][i], clamp(c.lv[k][i]))
		}
		logs = append(logs, a)
		amax = max(amax, a)
	}
	var s, logp float64
	for _, a := range logs {
		s += math.Exp(a - amax)
	}
	for _, zj := range z {
		logp += logNormal(zj, 0, 0)
	}
	return amax + math.Log(s) - math.Log(float64(len(logs))) - logp
}

// stratum is stratum r's objective with loglik(z) = -a/2 * |z - centre|^2
// per row, so that g = -a*(z - centre) is known exactly.
type stratum struct {
	r       int
	eps     []float32
	centre  []float64
	a, beta float64
}

// eval is sum_rows w*(loglik(z) - beta*pen) from the float64 parameters,
// with z re-drawn from the same eps and q summed naively (another route than
// the package's log-sum-exp over constant-free log-densities).
func (s stratum) eval(c *mixCase, mu, lv [][]float64) float64 {
	var total float64
	z := make([]float64, c.d)
	for row := range c.b {
		if !c.mask[s.r][row] {
			continue
		}
		var ll, logp float64
		for j := range z {
			i := row*c.d + j
			z[j] = mu[s.r][i] + math.Exp(0.5*clamp(lv[s.r][i]))*float64(s.eps[i])
			ll -= 0.5 * s.a * (z[j] - s.centre[i]) * (z[j] - s.centre[i])
			logp += logNormal(z[j], 0, 0)
		}
		var q float64
		for k, m := range c.mask {
			if !m[row] {
				continue
			}
			lq := 0.0
			for j := range z {
				i := row*c.d + j
				lq += logNormal(z[j], mu[k][i], clamp(lv[k][i]))
			}
			q += math.Exp(lq)
		}
		n := float64(c.count(row))
		total += (ll - s.beta*(math.Log(q/n)-logp)) / n
	}
	return total
}

// analytic runs Sample, Penalty and Backward for the stratum, accumulating
// into grads, and returns z.
func analytic(c *mixCase, s stratum, grads []poe.ExpertGrad) []float32 {
	m := Mixture{B: c.b, D: c.d}
	n := c.b * c.d
	z, g, pen := make([]float32, n), make([]float32, n), make([]float32, c.b)
	w := make([]float32, c.b)
	m.Sample(z, s.eps, c.comps, s.r)
	m.Weights(w, c.comps, s.r)
	for i := range g { // the decoders weigh their rows
		g[i] = w[i/c.d] * float32(-s.a*(float64(z[i])-s.centre[i]))
	}
	m.Penalty(pen, z, c.comps, s.r)
	m.Backward(grads, c.comps, z, g, s.eps, float32(s.beta), s.r)
	return z
}

func newGrads(k, n int, fill float32) []poe.ExpertGrad {
	g := make([]poe.ExpertGrad, k)
	for j := range g {
		g[j] = poe.ExpertGrad{DMu: make([]float32, n), DLogVar: make([]float32, n)}
		for i := range n {
			g[j].DMu[i], g[j].DLogVar[i] = fill, fill
		}
	}
	return g
}

// checkGrads compares grads (minus offset, which was there before Backward)
// with central differences of the stratum objective.
func checkGrads(t *testing.T, c *mixCase, s stratum, grads []poe.ExpertGrad, offset float32) {
	t.Helper()
	const h = 1e-4
	// Evaluating the objective rounds it by about an ulp per term; divided
	// by 2h this is noise the comparison must allow when |F| is large (a
	// log-variance at the upper clamp makes F ~ 1e8).
	noise := 16 * math.Abs(s.eval(c, c.mu, c.lv)) * 0x1p-52 / (2 * h)
	fd := func(p []float64, i int) float64 {
		x := p[i]
		p[i] = x + h
		up := s.eval(c, c.mu, c.lv)
		p[i] = x - h
		down := s.eval(c, c.mu, c.lv)
		p[i] = x
		return (up - down) / (2 * h)
	}
	for k := range c.comps {
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
				if !closeTo(got, want, 2e-5, 2e-5+noise) {
					t.Errorf("r=%d beta=%g: component %d element %d: %s = %.7g, finite difference %.7g",
						s.r, s.beta, k, i, p.name, got, want)
				}
			}
		}
	}
}

func newStratum(rng *rand.Rand, c *mixCase, r int, beta float64) stratum {
	s := stratum{r: r, eps: randNormal(rng, c.b*c.d), centre: make([]float64, c.b*c.d), a: 0.7, beta: beta}
	for i := range s.centre {
		s.centre[i] = rng.NormFloat64()
	}
	return s
}

func TestSample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newMixCase(t, rng, 3, 6, 4, true)
	m := Mixture{B: c.b, D: c.d}
	for r := range c.comps {
		eps := randNormal(rng, c.b*c.d)
		z := make([]float32, len(eps))
		m.Sample(z, eps, c.comps, r)
		for i := range z {
			want := float64(eps[i])
			if c.mask[r][i/c.d] {
				want = c.mu[r][i] + math.Exp(0.5*c.lv[r][i])*float64(eps[i])
			}
			if !closeTo(float64(z[i]), want, 1e-6, 1e-6) {
				t.Errorf("r=%d element %d: z = %g, want %g", r, i, z[i], want)
			}
		}
		// In place, z = eps, must give the same bits.
		m.Sample(eps, eps, c.comps, r)
		for i := range z {
			if z[i] != eps[i] {
				t.Errorf("r=%d element %d: in place %g, separate %g", r, i, eps[i], z[i])
			}
		}
	}
}

func TestWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for k := 1; k <= 5; k++ {
		c := newMixCase(t, rng, k, 9, 2, true)
		m := Mixture{B: c.b, D: c.d}
		sum := make([]float64, c.b)
		w := make([]float32, c.b)
		for r := range k {
			m.Weights(w, c.comps, r)
			for row, v := range w {
				want := 0.0
				if c.mask[r][row] {
					want = 1 / float64(c.count(row))
				}
				if float64(v) != float64(float32(want)) {
					t.Errorf("k=%d r=%d row %d: w = %g, want %g", k, r, row, v, want)
				}
				sum[row] += float64(v)
			}
		}
		for row, s := range sum {
			want := 1.0
			if c.count(row) == 0 {
				want = 0
			}
			if !closeTo(s, want, 1e-6, 0) {
				t.Errorf("k=%d row %d: weights sum over strata to %g, want %g", k, row, s, want)
			}
		}
	}
}

func TestPenalty(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for k := 1; k <= 4; k++ {
		c := newMixCase(t, rng, k, 7, 3, true)
		m := Mixture{B: c.b, D: c.d}
		for r := range k {
			eps := randNormal(rng, c.b*c.d)
			z, pen := make([]float32, len(eps)), make([]float32, c.b)
			m.Sample(z, eps, c.comps, r)
			got := m.Penalty(pen, z, c.comps, r)
			var want float64
			for row := range c.b {
				if !c.mask[r][row] {
					if pen[row] != 0 {
						t.Errorf("k=%d r=%d row %d without stratum r: pen = %g, want 0", k, r, row, pen[row])
					}
					continue
				}
				zr := make([]float64, c.d)
				for j := range zr {
					zr[j] = float64(z[row*c.d+j])
				}
				p := refPenalty(c, zr, row)
				if !closeTo(float64(pen[row]), p, 1e-6, 1e-6) {
					t.Errorf("k=%d r=%d row %d: pen = %g, want %g", k, r, row, pen[row], p)
				}
				want += p / float64(c.count(row))
			}
			if !closeTo(got, want, 1e-6, 1e-6) {
				t.Errorf("k=%d r=%d: total = %g, want %g", k, r, got, want)
			}
		}
	}
}

func TestBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tt := range []struct {
		name  string
		k     int
		masks bool
	}{
		{"one component", 1, false},
		{"all present", 3, false},
		{"some absent", 3, true},
		{"five, some absent", 5, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for r := range tt.k {
				for _, beta := range []float64{0, 0.5, 1} {
					c := newMixCase(t, rng, tt.k, 4, 3, tt.masks)
					s := newStratum(rng, c, r, beta)
					// A non-zero start checks that Backward adds.
					const offset = 0.25
					grads := newGrads(tt.k, c.b*c.d, offset)
					analytic(c, s, grads)
					checkGrads(t, c, s, grads, offset)
					checkAbsentZero(t, c, r, grads, offset)
				}
			}
		})
	}
}

// checkAbsentZero checks that rows without stratum r, and components absent
// from a row, are left exactly as they were.
func checkAbsentZero(t *testing.T, c *mixCase, r int, grads []poe.ExpertGrad, offset float32) {
	t.Helper()
	for k, gk := range grads {
		for i := range gk.DMu {
			row := i / c.d
			if c.mask[r][row] && c.mask[k][row] {
				continue
			}
			if gk.DMu[i] != offset || gk.DLogVar[i] != offset {
				t.Errorf("r=%d: component %d element %d (row %d, stratum present %v, component present %v) changed to (%g, %g)",
					r, k, i, row, c.mask[r][row], c.mask[k][row], gk.DMu[i]-offset, gk.DLogVar[i]-offset)
			}
		}
	}
}

// TestBackwardClamp puts log-variances beyond ±MaxLogVar: they get exactly
// zero DLogVar, and everything else still matches finite differences (of an
// objective that clamps, so its derivative there is zero too).
func TestBackwardClamp(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for r := range 3 {
		c := newMixCase(t, rng, 3, 4, 3, true)
		clamped := map[[2]int]bool{}
		for row := range c.b {
			for k, l := range []float32{poe.MaxLogVar + 3, -poe.MaxLogVar - 3, poe.MaxLogVar + 0.5} {
				i := row*c.d + k
				c.setLogVar(k, i, l)
				clamped[[2]int{k, i}] = true
			}
		}
		s := newStratum(rng, c, r, 1)
		grads := newGrads(3, c.b*c.d, 0)
		analytic(c, s, grads)
		checkGrads(t, c, s, grads, 0)
		for ki := range clamped {
			if v := grads[ki[0]].DLogVar[ki[1]]; v != 0 {
				t.Errorf("r=%d: component %d element %d: DLogVar = %g at a clamped log-variance, want 0", r, ki[0], ki[1], v)
			}
		}
	}
}

// TestOneComponentKL: with one component q is Gaussian, so the penalty's
// mean over eps is KL(q || N(0, I)) in closed form.
func TestOneComponentKL(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const b, d = 50000, 3
	c := newMixCase(t, rng, 1, b, d, false)
	m := Mixture{B: b, D: d}
	eps := randNormal(rng, b*d)
	z, pen := make([]float32, b*d), make([]float32, b)
	m.Sample(z, eps, c.comps, 0)
	m.Penalty(pen, z, c.comps, 0)
	var sum, sumSq float64
	for row := range b {
		var kl float64
		for i := row * d; i < (row+1)*d; i++ {
			mu, l := c.mu[0][i], c.lv[0][i]
			kl += 0.5 * (math.Exp(l) + mu*mu - 1 - l)
		}
		diff := float64(pen[row]) - kl
		sum += diff
		sumSq += diff * diff
	}
	mean := sum / b
	se := math.Sqrt((sumSq/b - mean*mean) / b)
	if se > 0.05 {
		t.Fatalf("standard error %g: too few samples to test anything", se)
	}
	if math.Abs(mean) > 4*se {
		t.Errorf("mean(penalty - KL) = %g, want 0 within 4 standard errors (%g)", mean, 4*se)
	}
}

// TestIdenticalComponents: a mixture of two copies of a Gaussian is that
// Gaussian, so its penalty is bit for bit the single component's, and the
// copies' gradients summed over both strata are the single one's.
func TestIdenticalComponents(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	c := newMixCase(t, rng, 1, 5, 3, false)
	one, two := c.comps, []poe.Expert{c.comps[0], c.comps[0]}
	n := c.b * c.d
	eps, g := randNormal(rng, n), randNormal(rng, n)
	z1, z2 := make([]float32, n), make([]float32, n)
	pen1, pen2 := make([]float32, c.b), make([]float32, c.b)
	m1, m2 := Mixture{B: c.b, D: c.d}, Mixture{B: c.b, D: c.d}
	m1.Sample(z1, eps, one, 0)
	m1.Penalty(pen1, z1, one, 0)
	g1 := newGrads(1, n, 0)
	m1.Backward(g1, one, z1, g, eps, 1, 0)
	g2 := newGrads(2, n, 0)
	half := make([]float32, n) // each copy's stratum weighs every row 1/2
	for i, v := range g {
		half[i] = v / 2
	}
	for r := range 2 {
		m2.Sample(z2, eps, two, r)
		m2.Penalty(pen2, z2, two, r)
		for row := range pen1 {
			if pen1[row] != pen2[row] {
				t.Errorf("r=%d row %d: penalty of two copies %g, of one %g", r, row, pen2[row], pen1[row])
			}
		}
		m2.Backward(g2, two, z2, half, eps, 1, r)
	}
	for i := range n {
		dm, dl := float64(g2[0].DMu[i]+g2[1].DMu[i]), float64(g2[0].DLogVar[i]+g2[1].DLogVar[i])
		if !closeTo(dm, float64(g1[0].DMu[i]), 1e-5, 1e-6) || !closeTo(dl, float64(g1[0].DLogVar[i]), 1e-5, 1e-6) {
			t.Errorf("element %d: copies' summed gradient (%g, %g), single (%g, %g)", i, dm, dl, g1[0].DMu[i], g1[0].DLogVar[i])
		}
	}
}

// TestFarApart puts components 2000 apart with log-variances at and beyond
// the clamp, in D = 100 dimensions so that each row's log-densities (about
// +1000 for the narrow components, -1000 for the broad one) overflow or
// underflow a plain exp: values must stay finite, the penalty must match the
// reference, and a component with no responsibility gets exactly nothing.
func TestFarApart(t *testing.T) {
	const b, d = 3, 100
	full := func(v float32) []float32 {
		s := make([]float32, b*d)
		for i := range s {
			s[i] = v
		}
		return s
	}
	comps := []poe.Expert{
		{Mu: full(1e3), LogVar: full(-poe.MaxLogVar)},
		{Mu: full(-1e3), LogVar: full(poe.MaxLogVar)},
		{Mu: full(0), LogVar: full(-30)},
	}
	c := &mixCase{b: b, d: d, comps: comps}
	for _, e := range comps {
		mu, lv := make([]float64, b*d), make([]float64, b*d)
		for i := range mu {
			mu[i], lv[i] = float64(e.Mu[i]), float64(e.LogVar[i])
		}
		c.mu, c.lv, c.mask = append(c.mu, mu), append(c.lv, lv), append(c.mask, []bool{true, true, true})
	}
	rng := rand.New(rand.NewPCG(17, 18))
	m := Mixture{B: b, D: d}
	z, pen, g := make([]float32, b*d), make([]float32, b), randNormal(rng, b*d)
	for r := range comps {
		eps := randNormal(rng, b*d)
		grads := newGrads(3, b*d, 0)
		m.Sample(z, eps, comps, r)
		total := m.Penalty(pen, z, comps, r)
		m.Backward(grads, comps, z, g, eps, 1, r)
		if !finite64(total) || !finite(z) || !finite(pen) {
			t.Fatalf("r=%d: total %g, z %v, pen %v, want finite", r, total, z, pen)
		}
		for row := range b {
			zr := make([]float64, d)
			for j := range zr {
				zr[j] = float64(z[row*d+j])
			}
			if want := refPenalty(c, zr, row); !closeTo(float64(pen[row]), want, 1e-6, 1e-4) {
				t.Errorf("r=%d row %d: pen = %g, want %g", r, row, pen[row], want)
			}
		}
		for k, gk := range grads {
			if !finite(gk.DMu) || !finite(gk.DLogVar) {
				t.Errorf("r=%d: component %d gradient (%v, %v), want finite", r, k, gk.DMu, gk.DLogVar)
			}
			if k == 2 && slicesNonZero(gk.DLogVar) {
				t.Errorf("r=%d: component 2 (log-variance -30, clamped) DLogVar = %v, want 0", r, gk.DLogVar)
			}
		}
		// From the broad component, z is nowhere near the narrow ones.
		if r == 1 && (slicesNonZero(grads[0].DMu) || slicesNonZero(grads[2].DMu)) {
			t.Errorf("r=1: narrow components got DMu %v, %v, want 0 (no responsibility)", grads[0].DMu, grads[2].DMu)
		}
	}
}

func finite64(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func finite(s []float32) bool {
	for _, v := range s {
		if !finite64(float64(v)) {
			return false
		}
	}
	return true
}

func slicesNonZero(s []float32) bool {
	for _, v := range s {
		if v != 0 {
			return true
		}
	}
	return false
}

func TestPanics(t *testing.T) {
	ok := poe.Expert{Mu: make([]float32, 6), LogVar: make([]float32, 6)}
	comps := []poe.Expert{ok, ok}
	s6, s2 := make([]float32, 6), make([]float32, 2)
	ready := func() *Mixture {
		m := &Mixture{B: 2, D: 3}
		m.Penalty(s2, s6, comps, 1)
		return m
	}
	tests := []struct {
		name string
		run  func()
	}{
		{"negative shape", func() { m := Mixture{B: -1, D: 3}; m.Weights(nil, comps, 0) }},
		{"r negative", func() { m := Mixture{B: 2, D: 3}; m.Weights(s2, comps, -1) }},
		{"r too large", func() { m := Mixture{B: 2, D: 3}; m.Weights(s2, comps, 2) }},
		{"no components", func() { m := Mixture{B: 2, D: 3}; m.Weights(s2, nil, 0) }},
		{"short Mu", func() {
			m := Mixture{B: 2, D: 3}
			m.Sample(s6, s6, []poe.Expert{ok, {Mu: make([]float32, 5), LogVar: ok.LogVar}}, 0)
		}},
		{"long LogVar", func() {
			m := Mixture{B: 2, D: 3}
			m.Sample(s6, s6, []poe.Expert{{Mu: ok.Mu, LogVar: make([]float32, 7)}}, 0)
		}},
		{"bad Present", func() {
			m := Mixture{B: 2, D: 3}
			m.Weights(s2, []poe.Expert{{Mu: ok.Mu, LogVar: ok.LogVar, Present: make([]bool, 3)}}, 0)
		}},
		{"Sample z", func() { m := Mixture{B: 2, D: 3}; m.Sample(s2, s6, comps, 0) }},
		{"Sample eps", func() { m := Mixture{B: 2, D: 3}; m.Sample(s6, s2, comps, 0) }},
		{"Weights w", func() { m := Mixture{B: 2, D: 3}; m.Weights(s6, comps, 0) }},
		{"Penalty pen", func() { m := Mixture{B: 2, D: 3}; m.Penalty(s6, s6, comps, 0) }},
		{"Penalty z", func() { m := Mixture{B: 2, D: 3}; m.Penalty(s2, s2, comps, 0) }},
		{"Backward before Penalty", func() {
			m := Mixture{B: 2, D: 3}
			m.Backward(newGrads(2, 6, 0), comps, s6, s6, s6, 1, 0)
		}},
		{"Backward other stratum", func() { ready().Backward(newGrads(2, 6, 0), comps, s6, s6, s6, 1, 0) }},
		{"Backward other components", func() { ready().Backward(newGrads(3, 6, 0), append(comps, ok), s6, s6, s6, 1, 1) }},
		{"Backward other shape", func() {
			m := ready()
			m.B, m.D = 3, 2
			m.Backward(newGrads(2, 6, 0), comps, s6, s6, s6, 1, 1)
		}},
		{"Backward g", func() { ready().Backward(newGrads(2, 6, 0), comps, s6, s2, s6, 1, 1) }},
		{"Backward grads count", func() { ready().Backward(newGrads(1, 6, 0), comps, s6, s6, s6, 1, 1) }},
		{"Backward grad length", func() { ready().Backward(newGrads(2, 5, 0), comps, s6, s6, s6, 1, 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.HasPrefix(msg, "mixture: ") {
					t.Errorf("panic value %#v, want a string prefixed %q", r, "mixture: ")
				}
			}()
			tt.run()
		})
	}
}

// step is one training step's worth of calls, every stratum, on reused
// buffers.
type step struct {
	m                 Mixture
	c                 *mixCase
	z, eps, g, w, pen []float32
	grads             []poe.ExpertGrad
}

func newStep(t testing.TB, k, b, d int, masks bool) *step {
	t.Helper()
	rng := rand.New(rand.NewPCG(19, 20))
	n := b * d
	return &step{
		m:     Mixture{B: b, D: d},
		c:     newMixCase(t, rng, k, b, d, masks),
		z:     make([]float32, n),
		eps:   randNormal(rng, n),
		g:     randNormal(rng, n),
		w:     make([]float32, b),
		pen:   make([]float32, b),
		grads: newGrads(k, n, 0),
	}
}

func (s *step) run() {
	for r := range s.c.comps {
		s.m.Sample(s.z, s.eps, s.c.comps, r)
		s.m.Weights(s.w, s.c.comps, r)
		s.m.Penalty(s.pen, s.z, s.c.comps, r)
		s.m.Backward(s.grads, s.c.comps, s.z, s.g, s.eps, 1, r)
	}
}

func TestAllocs(t *testing.T) {
	s := newStep(t, 3, 16, 8, true)
	s.run() // size the buffers
	if n := testing.AllocsPerRun(20, s.run); n != 0 {
		t.Errorf("Sample+Weights+Penalty+Backward: %g allocations per run, want 0", n)
	}
	// A smaller batch must reuse the larger buffers.
	small := newStep(t, 3, 4, 8, true)
	small.m = s.m
	small.m.B, small.m.D = 4, 8
	if n := testing.AllocsPerRun(20, small.run); n != 0 {
		t.Errorf("after shrinking: %g allocations per run, want 0", n)
	}
}

// BenchmarkStep runs every stratum of a 3-component mixture for B=100,
// D=64, every component present in every row.
func BenchmarkStep(b *testing.B) {
	const k = 3
	s := newStep(b, k, 100, 64, false)
	s.run()
	b.ReportAllocs()
	for b.Loop() {
		s.run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/stratum")
}
