package nn_test

import (
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/serket-go/serket/nn"
)

// mlpStep returns a training step of a 784→512→512→64 SiLU MLP at b=100.
func mlpStep() (step func(), ps []*nn.Param) {
	rng := newRNG(30)
	const b = 100
	s := nn.NewSequential(
		nn.NewLinear("l0", 784, 512, rng), nn.NewSiLU(512),
		nn.NewLinear("l1", 512, 512, rng), nn.NewSiLU(512),
		nn.NewLinear("l2", 512, 64, rng))
	ps = s.Params()
	opt := nn.NewAdam(ps, 1e-3)
	opt.Maximize = true
	x := make([]float32, b*784)
	for i := range x {
		x[i] = rng.Float32()
	}
	target := randSlice(rng, b*64)
	ll := make([]float32, b)
	dmean := make([]float32, b*64)
	return func() {
		y := s.Forward(x, b)
		nn.GaussianLogLik(ll, dmean, y, target, 0, nil, b, 64)
		s.Backward(dmean, b, true)
		opt.Step()
		nn.ZeroGrad(ps)
	}, ps
}

func TestTrainingStepDoesNotAllocate(t *testing.T) {
	step, _ := mlpStep()
	step() // size the buffers
	if n := testing.AllocsPerRun(5, step); n != 0 {
		t.Errorf("AllocsPerRun = %v, want 0", n)
	}
	// AllocsPerRun runs with GOMAXPROCS=1; count again with the BLAS
	// workers in play. A parked worker needs a runtime sudog, which the
	// runtime allocates now and then until its per-P caches settle (one or
	// two in a window even after warming them up, on a busy machine), so
	// accept a window with fewer allocations than steps: an allocation in
	// the step itself would be one per step at least, in every window.
	procs := max(2, runtime.GOMAXPROCS(0))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	step()
	warmGemmPool()
	const steps = 5
	var counts []uint64
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range steps {
			step()
		}
		runtime.ReadMemStats(&after)
		n := after.Mallocs - before.Mallocs
		if n < steps {
			return
		}
		counts = append(counts, n)
	}
	t.Errorf("allocations in three windows of %d steps with GOMAXPROCS=%d: %v, want a window with fewer than one per step", steps, procs, counts)
}

// warmGemmPool runs many small parallel products.
func warmGemmPool() {
	a := blas32.General{Rows: 128, Cols: 16, Stride: 16, Data: make([]float32, 128*16)}
	c := blas32.General{Rows: 128, Cols: 128, Stride: 128, Data: make([]float32, 128*128)}
	for range 2000 {
		blas32.Gemm(blas.NoTrans, blas.Trans, 1, a, a, 0, c)
	}
}

func TestMVAEStepDoesNotAllocate(t *testing.T) {
	m := newMVAEImage(32, newRNG(31))
	m.step()
	if n := testing.AllocsPerRun(3, func() { m.step() }); n != 0 {
		t.Errorf("AllocsPerRun = %v, want 0", n)
	}
}

// TestMVAELearns checks that the ELBO rises over a few steps on a fixed batch.
func TestMVAELearns(t *testing.T) {
	m := newMVAEImage(16, newRNG(32))
	first := m.step()
	var last float64
	for range 15 {
		last = m.step()
	}
	if !(last > first+10) {
		t.Errorf("ELBO went from %g to %g in 15 steps", first, last)
	}
}
