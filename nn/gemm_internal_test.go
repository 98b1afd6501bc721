package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

type gemmCase struct {
	tA, tB        blas.Transpose
	m, n, k       int
	lda, ldb, ldc int
	alpha, beta   float32
	a, b, c       []float32
}

func newGemmCase(rng *rand.Rand, tA, tB blas.Transpose, m, n, k, pad int, alpha, beta float32) *gemmCase {
	g := &gemmCase{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	ra, ca := m, k
	if tA != blas.NoTrans {
		ra, ca = k, m
	}
	rb, cb := k, n
	if tB != blas.NoTrans {
		rb, cb = n, k
	}
	g.lda, g.ldb, g.ldc = max(1, ca+pad), max(1, cb+pad), max(1, n+pad)
	fill := func(rows, ld int) []float32 {
		s := make([]float32, rows*ld)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	g.a, g.b, g.c = fill(ra, g.lda), fill(rb, g.ldb), fill(m, g.ldc)
	return g
}

func (g *gemmCase) run(impl interface {
	Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}) []float32 {
	c := append([]float32(nil), g.c...)
	impl.Sgemm(g.tA, g.tB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, c, g.ldc)
	return c
}

func TestGonumSgemmMatchesGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := [][3]int{{1, 1, 1}, {3, 5, 7}, {64, 64, 64}, {65, 130, 200}, {100, 512, 784}, {200, 3, 70}, {7, 300, 0}, {0, 5, 5}, {130, 70, 65}}
	trans := []blas.Transpose{blas.NoTrans, blas.Trans}
	for _, sz := range sizes {
		for _, tA := range trans {
			for _, tB := range trans {
				for _, ab := range [][2]float32{{1, 0}, {-0.5, 1}, {2, 0.3}, {0, 0.5}} {
					pad := rng.IntN(3)
					g := newGemmCase(rng, tA, tB, sz[0], sz[1], sz[2], pad, ab[0], ab[1])
					want := g.run(gonum.Implementation{})
					got := g.run(Gonum{})
					name := fmt.Sprintf("%v%v m=%d n=%d k=%d pad=%d α=%g β=%g", tA, tB, sz[0], sz[1], sz[2], pad, ab[0], ab[1])
					for i := range want {
						if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
							t.Fatalf("%s: c[%d] = %g, gonum %g", name, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

func TestGonumSgemmConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var cases []*gemmCase
	var wants [][]float32
	for range 4 {
		g := newGemmCase(rng, blas.NoTrans, blas.Trans, 150, 200, 100, 0, 1, 0)
		cases = append(cases, g)
		wants = append(wants, g.run(gonum.Implementation{}))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cases))
	for i, g := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				got := g.run(Gonum{})
				for j := range got {
					if math.Abs(float64(got[j]-wants[i][j])) > 1e-4*(1+math.Abs(float64(wants[i][j]))) {
						errs[i] = fmt.Errorf("case %d: c[%d] = %g, want %g", i, j, got[j], wants[i][j])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestGonumSgemmPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"short a", func() {
			Gonum{}.Sgemm(blas.NoTrans, blas.NoTrans, 100, 100, 100, 1, make([]float32, 10), 100, make([]float32, 10000), 100, 0, make([]float32, 10000), 100)
		}},
		{"short c", func() {
			Gonum{}.Sgemm(blas.NoTrans, blas.NoTrans, 100, 100, 100, 1, make([]float32, 10000), 100, make([]float32, 10000), 100, 0, make([]float32, 9999), 100)
		}},
		{"bad lda", func() {
			Gonum{}.Sgemm(blas.Trans, blas.NoTrans, 100, 100, 100, 1, make([]float32, 10000), 99, make([]float32, 10000), 100, 0, make([]float32, 10000), 100)
		}},
		{"bad transpose", func() {
			Gonum{}.Sgemm('x', blas.NoTrans, 100, 100, 100, 1, make([]float32, 10000), 100, make([]float32, 10000), 100, 0, make([]float32, 10000), 100)
		}},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tt.name)
				}
			}()
			tt.f()
		}()
	}
}

func TestGonumSgemmDoesNotAllocate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	g := newGemmCase(rng, blas.NoTrans, blas.Trans, 100, 512, 784, 0, 1, 0)
	c := make([]float32, len(g.c))
	f := func(impl blas.Float32) func() {
		return func() { impl.Sgemm(g.tA, g.tB, g.m, g.n, g.k, 1, g.a, g.lda, g.b, g.ldb, 0, c, g.ldc) }
	}
	if n := testing.AllocsPerRun(5, f(Gonum{})); n != 0 {
		t.Errorf("Gonum.Sgemm: %v allocations, want 0", n)
	}
	// Why Gonum exists; informational, gonum may change.
	t.Logf("gonum.Implementation.Sgemm: %v allocations per call", testing.AllocsPerRun(5, f(gonum.Implementation{})))
}
