package nn_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/nn/nntest"
)

// Naive float64 references.

func softplus(l float64) float64 {
	if l > 0 {
		return l + math.Log1p(math.Exp(-l))
	}
	return math.Log1p(math.Exp(l))
}

func naiveBernoulli(logits, x, w []float32, b, n int) []float64 {
	ll := make([]float64, b)
	for i := 0; i < b; i++ {
		for j := 0; j < n; j++ {
			l, xv := float64(logits[i*n+j]), float64(x[i*n+j])
			// x·log σ(l) + (1−x)·log(1−σ(l)), with log σ(l) = −softplus(−l).
			ll[i] += xv*-softplus(-l) + (1-xv)*-softplus(l)
		}
		if wt(w, i) == 0 {
			ll[i] = 0 // not weighted: ll is log p; only a zero weight zeroes it
		}
	}
	return ll
}

func naiveCategorical(logits []float32, y []int32, w []float32, b, t, v int) []float64 {
	ll := make([]float64, b)
	for i := 0; i < b; i++ {
		for p := 0; p < t; p++ {
			if y[i*t+p] < 0 {
				continue
			}
			lp := logits[(i*t+p)*v : (i*t+p+1)*v]
			var s float64
			for _, l := range lp {
				s += math.Exp(float64(l))
			}
			if math.IsInf(s, 1) || s == 0 { // fall back to shifting for extreme logits
				m := math.Inf(-1)
				for _, l := range lp {
					m = math.Max(m, float64(l))
				}
				s = 0
				for _, l := range lp {
					s += math.Exp(float64(l) - m)
				}
				ll[i] += float64(lp[y[i*t+p]]) - m - math.Log(s)
				continue
			}
			ll[i] += float64(lp[y[i*t+p]]) - math.Log(s)
		}
		if wt(w, i) == 0 {
			ll[i] = 0 // not weighted: ll is log p; only a zero weight zeroes it
		}
	}
	return ll
}

func naiveGaussian(mean, logvar, x, w []float32, b, n int) []float64 {
	ll := make([]float64, b)
	for i := 0; i < b; i++ {
		for j := 0; j < n; j++ {
			d := float64(x[i*n+j]) - float64(mean[i*n+j])
			lv := float64(logvar[i*n+j])
			ll[i] += -0.5 * (d*d/math.Exp(lv) + lv + math.Log(2*math.Pi))
		}
		if wt(w, i) == 0 {
			ll[i] = 0 // not weighted: ll is log p; only a zero weight zeroes it
		}
	}
	return ll
}

func wt(w []float32, i int) float64 {
	if w == nil {
		return 1
	}
	return float64(w[i])
}

// wsum is the weighted objective Σ w_i ll_i whose gradient the
// log-likelihoods write.
func wsum(ll, w []float32) float64 {
	var t float64
	for i, v := range ll {
		t += wt(w, i) * float64(v)
	}
	return t
}

func sum32(s []float32) float64 {
	var t float64
	for _, v := range s {
		t += float64(v)
	}
	return t
}

func checkLL(t *testing.T, name string, got []float32, want []float64) {
	t.Helper()
	for i := range want {
		g := float64(got[i])
		if math.IsNaN(g) || math.IsInf(g, 0) || math.Abs(g-want[i]) > 1e-5*(1+math.Abs(want[i])) {
			t.Errorf("%s: ll[%d] = %g, want %g", name, i, g, want[i])
		}
	}
}

func checkFinite(t *testing.T, name string, s []float32) {
	t.Helper()
	for i, v := range s {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("%s[%d] = %v", name, i, v)
		}
	}
}

// checkZeroRow checks that row i of s (n wide) is all zero.
func checkZeroRow(t *testing.T, name string, s []float32, i, n int) {
	t.Helper()
	for j, v := range s[i*n : (i+1)*n] {
		if v != 0 {
			t.Fatalf("%s: zero-weight row %d has gradient %g at %d", name, i, v, j)
		}
	}
}

func TestBernoulliLogLik(t *testing.T) {
	rng := newRNG(20)
	const b, n = 4, 30
	logits := make([]float32, b*n)
	x := make([]float32, b*n)
	for i := range logits {
		logits[i] = float32(3 * rng.NormFloat64())
		x[i] = rng.Float32()
		if i%3 == 0 {
			x[i] = float32(rng.IntN(2))
		}
	}
	// Extreme logits in row 2, including confidently wrong ones.
	for j := 0; j < n; j++ {
		logits[2*n+j] = []float32{50, -50, 88, -88, 1e4, -1e4}[j%6]
		x[2*n+j] = float32(j % 2)
	}
	w := []float32{1, 0.5, 2, 0}
	// Row 3 has weight 0 and garbage that must not leak.
	logits[3*n] = float32(math.NaN())
	x[3*n+1] = float32(math.Inf(1))

	ll := make([]float32, b)
	dl := make([]float32, b*n)
	for i := range dl {
		dl[i] = 99 // must be overwritten
	}
	nn.BernoulliLogLik(ll, dl, logits, x, w, b, n)
	checkLL(t, "Bernoulli", ll[:3], naiveBernoulli(logits[:3*n], x[:3*n], w[:3], 3, n))
	if ll[3] != 0 {
		t.Errorf("zero-weight row: ll = %g, want 0", ll[3])
	}
	checkFinite(t, "dlogits", dl)
	checkZeroRow(t, "Bernoulli", dl, 3, n)
	// Gradient values against the closed form, including saturated logits.
	for i := 0; i < 3; i++ {
		for j := 0; j < n; j++ {
			l := float64(logits[i*n+j])
			want := float64(w[i]) * (float64(x[i*n+j]) - 1/(1+math.Exp(-l)))
			if math.Abs(float64(dl[i*n+j])-want) > 1e-6*(1+math.Abs(want)) {
				t.Fatalf("dlogits[%d,%d] = %g, want %g (logit %g)", i, j, dl[i*n+j], want, l)
			}
		}
	}
	// nil gradient gives the same ll.
	ll2 := make([]float32, b)
	nn.BernoulliLogLik(ll2, nil, logits, x, w, b, n)
	for i := range ll {
		if ll[i] != ll2[i] {
			t.Errorf("ll[%d] with gradient %g, without %g", i, ll[i], ll2[i])
		}
	}
	// Finite differences on moderate logits (rows 0, 1).
	f := func() float64 {
		nn.BernoulliLogLik(ll2[:2], nil, logits[:2*n], x[:2*n], w[:2], 2, n)
		return wsum(ll2[:2], w[:2])
	}
	nntest.CheckGrad(t, "Bernoulli", f, logits[:2*n], dl[:2*n], rng)
}

func TestCategoricalLogLik(t *testing.T) {
	rng := newRNG(21)
	const b, T, V = 4, 5, 7
	logits := make([]float32, b*T*V)
	for i := range logits {
		logits[i] = float32(2 * rng.NormFloat64())
	}
	y := make([]int32, b*T)
	for i := range y {
		y[i] = int32(rng.IntN(V))
	}
	y[1*T+4] = -1 // padding
	for j := 0; j < T*V; j++ {
		logits[2*T*V+j] = []float32{50, -50, 0, 88, -88}[j%5]
	}
	w := []float32{1, 0.3, 1.5, 0}
	logits[3*T*V+2] = float32(math.NaN())
	ll := make([]float32, b)
	dl := make([]float32, b*T*V)
	for i := range dl {
		dl[i] = 99
	}
	nn.CategoricalLogLik(ll, dl, logits, y, w, b, T, V)
	checkLL(t, "Categorical", ll[:3], naiveCategorical(logits[:3*T*V], y[:3*T], w[:3], 3, T, V))
	if ll[3] != 0 {
		t.Errorf("zero-weight row: ll = %g", ll[3])
	}
	checkFinite(t, "dlogits", dl)
	checkZeroRow(t, "Categorical", dl, 3, T*V)
	for j := 0; j < V; j++ {
		if dl[(1*T+4)*V+j] != 0 {
			t.Fatalf("padding position has gradient %g", dl[(1*T+4)*V+j])
		}
	}
	// Each position's gradient sums to zero (softmax sums to one).
	for p := 0; p < 3*T; p++ {
		var s float64
		for _, g := range dl[p*V : (p+1)*V] {
			s += float64(g)
		}
		if math.Abs(s) > 1e-6 {
			t.Errorf("position %d: gradient sums to %g", p, s)
		}
	}
	ll2 := make([]float32, b)
	nn.CategoricalLogLik(ll2, nil, logits, y, w, b, T, V)
	for i := range ll {
		if ll[i] != ll2[i] {
			t.Errorf("ll[%d] with gradient %g, without %g", i, ll[i], ll2[i])
		}
	}
	f := func() float64 {
		nn.CategoricalLogLik(ll2[:2], nil, logits[:2*T*V], y[:2*T], w[:2], 2, T, V)
		return wsum(ll2[:2], w[:2])
	}
	nntest.CheckGrad(t, "Categorical", f, logits[:2*T*V], dl[:2*T*V], rng)
}

func gaussianData(rng *rand.Rand, b, n int) (mean, logvar, x []float32) {
	mean, logvar, x = make([]float32, b*n), make([]float32, b*n), make([]float32, b*n)
	for i := range mean {
		mean[i] = float32(rng.NormFloat64())
		logvar[i] = float32(rng.NormFloat64())
		x[i] = mean[i] + float32(rng.NormFloat64())
	}
	return mean, logvar, x
}

func TestGaussianLogLik(t *testing.T) {
	rng := newRNG(22)
	const b, n = 3, 20
	const logvar = -0.7
	mean, _, x := gaussianData(rng, b, n)
	w := []float32{1, 0, 0.25}
	x[1*n] = float32(math.NaN())
	lv := make([]float32, b*n)
	for i := range lv {
		lv[i] = logvar
	}
	ll := make([]float32, b)
	dm := make([]float32, b*n)
	nn.GaussianLogLik(ll, dm, mean, x, logvar, w, b, n)
	want := naiveGaussian(mean, lv, x, w, b, n)
	want[1] = 0
	checkLL(t, "Gaussian", ll, want)
	checkZeroRow(t, "Gaussian", dm, 1, n)
	f := func() float64 {
		ll2 := make([]float32, b)
		nn.GaussianLogLik(ll2, nil, mean, x, logvar, w, b, n)
		return wsum(ll2, w)
	}
	nntest.CheckGrad(t, "Gaussian mean", f, mean, dm, rng)
	// Extreme values stay finite.
	nn.GaussianLogLik(ll[:1], dm[:2], []float32{1e4, -1e4}, []float32{-1e4, 1e4}, -20, nil, 1, 2)
	checkFinite(t, "ll", ll[:1])
	checkFinite(t, "dmean", dm[:2])
}

func TestGaussianLogLikVar(t *testing.T) {
	rng := newRNG(23)
	const b, n = 3, 20
	mean, lv, x := gaussianData(rng, b, n)
	w := []float32{0.5, 1, 0}
	lv[2*n+3] = float32(math.Inf(1))
	ll := make([]float32, b)
	dm := make([]float32, b*n)
	dlv := make([]float32, b*n)
	nn.GaussianLogLikVar(ll, dm, dlv, mean, lv, x, w, b, n)
	checkLL(t, "GaussianVar", ll[:2], naiveGaussian(mean[:2*n], lv[:2*n], x[:2*n], w[:2], 2, n))
	if ll[2] != 0 {
		t.Errorf("zero-weight row: ll = %g", ll[2])
	}
	checkZeroRow(t, "GaussianVar dmean", dm, 2, n)
	checkZeroRow(t, "GaussianVar dlogvar", dlv, 2, n)
	ll2 := make([]float32, b)
	f := func() float64 {
		nn.GaussianLogLikVar(ll2[:2], nil, nil, mean[:2*n], lv[:2*n], x[:2*n], w[:2], 2, n)
		return wsum(ll2[:2], w[:2])
	}
	nntest.CheckGrad(t, "GaussianVar mean", f, mean[:2*n], dm[:2*n], rng)
	nntest.CheckGrad(t, "GaussianVar logvar", f, lv[:2*n], dlv[:2*n], rng)
	// Each optional output alone gives the same values as both together.
	dm2, dlv2 := make([]float32, b*n), make([]float32, b*n)
	nn.GaussianLogLikVar(ll2, dm2, nil, mean, lv, x, w, b, n)
	nn.GaussianLogLikVar(ll2, nil, dlv2, mean, lv, x, w, b, n)
	for i := range dm {
		if dm[i] != dm2[i] || dlv[i] != dlv2[i] {
			t.Fatalf("gradients differ at %d when computed alone", i)
		}
	}
	for i := range ll {
		if ll[i] != ll2[i] {
			t.Errorf("ll[%d] = %g with both gradients, %g with one", i, ll[i], ll2[i])
		}
	}
}

func TestLogLikNilWeight(t *testing.T) {
	rng := newRNG(24)
	logits := randSlice(rng, 2*5)
	x := make([]float32, 2*5)
	for i := range x {
		x[i] = rng.Float32()
	}
	a, b := make([]float32, 2), make([]float32, 2)
	nn.BernoulliLogLik(a, nil, logits, x, nil, 2, 5)
	nn.BernoulliLogLik(b, nil, logits, x, []float32{1, 1}, 2, 5)
	if a[0] != b[0] || a[1] != b[1] {
		t.Errorf("nil weights %v, unit weights %v", a, b)
	}
}
