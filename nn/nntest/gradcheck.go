package nntest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/serket-go/serket/nn"
)

const (
	// Step is the finite-difference step.
	Step = 1e-2
	// Tol is the largest relative error a check accepts.
	Tol = 1e-2
	// MaxCoords is how many coordinates of each tensor are sampled.
	MaxCoords = 64
)

// GradCheck checks l's Backward against central finite differences of a
// random linear functional f(x, θ) = Σ r ⊙ Forward(x) on b rows of random
// input (each |x| in [0.1, 1.1), random sign). It checks dx and every
// Param's G, that Backward adds to G rather than overwriting it, that dx is
// overwritten, and that Backward with a nil dx gives the same parameter
// gradients. It reports one error naming the worst relative error. Every
// Param's W and G are restored afterwards.
func GradCheck(t testing.TB, l nn.Layer, b int, rng *rand.Rand) {
	t.Helper()
	if b < 1 {
		t.Fatalf("nntest.GradCheck: batch %d, want ≥ 1", b)
		return
	}
	in, out := l.InSize(), l.OutSize()
	x := make([]float32, b*in)
	for i := range x {
		v := 0.1 + rng.Float32()
		if rng.IntN(2) == 0 {
			v = -v
		}
		x[i] = v
	}
	r := make([]float32, b*out)
	for i := range r {
		r[i] = float32(rng.NormFloat64())
	}
	y := make([]float32, b*out)
	f := func() float64 {
		l.Forward(y, x, b)
		var s float64
		for i, v := range y {
			s += float64(v) * float64(r[i])
		}
		return s
	}

	params := l.Params()
	saved := make([][]float32, len(params))
	for i, p := range params {
		saved[i] = append([]float32(nil), p.G...)
	}
	defer func() {
		for i, p := range params {
			copy(p.G, saved[i])
		}
	}()

	// Analytic gradients, starting G from random values to catch a
	// Backward that overwrites instead of adding, and dx from garbage to
	// catch one that adds instead of overwriting.
	g0 := make([][]float32, len(params))
	for i, p := range params {
		g0[i] = make([]float32, len(p.G))
		for j := range g0[i] {
			g0[i][j] = float32(rng.NormFloat64())
		}
		copy(p.G, g0[i])
	}
	dx := make([]float32, b*in)
	for i := range dx {
		dx[i] = 7
	}
	l.Forward(y, x, b)
	l.Backward(dx, r, b)
	an := make([][]float32, len(params))
	for i, p := range params {
		an[i] = make([]float32, len(p.G))
		for j, g := range p.G {
			an[i][j] = g - g0[i][j]
		}
	}

	var fails []string
	worst, worstName := 0.0, ""
	record := func(name string, e float64) {
		if e > worst || worstName == "" {
			worst, worstName = e, name
		}
		if e > Tol {
			fails = append(fails, fmt.Sprintf("%s %.3g", name, e))
		}
	}

	// Backward without dx must give the same parameter gradients.
	for _, p := range params {
		clear(p.G)
	}
	l.Forward(y, x, b)
	l.Backward(nil, r, b)
	for i, p := range params {
		record(p.Name+" (Backward with nil dx vs with dx)", vecRelErr(p.G, an[i]))
	}

	record("dx", fdRelErr(f, x, dx, rng))
	for i, p := range params {
		record(p.Name, fdRelErr(f, p.W, an[i], rng))
	}
	if len(fails) == 0 {
		t.Logf("nntest.GradCheck(%T, b=%d): worst relative error %.3g in %s", l, b, worst, worstName)
		return
	}
	{
		t.Errorf("nntest.GradCheck(%T, b=%d): worst relative error %.3g in %s (tolerance %g); failing: %s",
			l, b, worst, worstName, Tol, strings.Join(fails, ", "))
	}
}

// CheckGrad checks grad, the claimed gradient of the scalar function f with
// respect to v, against central finite differences of f over at most 64
// sampled coordinates of v, which are restored afterwards. f must read v.
// It reports an error through t, labelled name, when the relative error
// exceeds Tol, and returns the relative error.
func CheckGrad(t testing.TB, name string, f func() float64, v, grad []float32, rng *rand.Rand) float64 {
	t.Helper()
	if len(v) != len(grad) {
		t.Fatalf("nntest.CheckGrad(%s): len(v) = %d, len(grad) = %d", name, len(v), len(grad))
		return math.Inf(1)
	}
	e := fdRelErr(f, v, grad, rng)
	if e > Tol {
		t.Errorf("nntest.CheckGrad(%s): relative error %.3g (tolerance %g)", name, e, Tol)
	}
	return e
}

// fdRelErr returns the relative error between an and the central
// differences of f with respect to v over a sample of coordinates.
func fdRelErr(f func() float64, v, an []float32, rng *rand.Rand) float64 {
	idx := rng.Perm(len(v))
	if len(idx) > MaxCoords {
		idx = idx[:MaxCoords]
	}
	var diff, nfd, nan float64
	for _, j := range idx {
		old := v[j]
		v[j] = old + Step
		fp := f()
		v[j] = old - Step
		fm := f()
		v[j] = old
		// The step actually taken in float32.
		h := float64(old+Step) - float64(old-Step)
		fd := (fp - fm) / h
		a := float64(an[j])
		diff += (fd - a) * (fd - a)
		nfd += fd * fd
		nan += a * a
	}
	return relErr(diff, nfd, nan)
}

func vecRelErr(a, b []float32) float64 {
	var diff, na, nb float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		diff += d * d
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return relErr(diff, na, nb)
}

// relErr returns √diff / max(√na, √nb) from squared norms, 0 when both
// vectors are (numerically) zero, and +Inf when anything is NaN.
func relErr(diff, na, nb float64) float64 {
	if math.IsNaN(diff) || math.IsNaN(na) || math.IsNaN(nb) {
		return math.Inf(1)
	}
	den := math.Sqrt(max(na, nb))
	if den < 1e-12 {
		return 0
	}
	return math.Sqrt(diff) / den
}
