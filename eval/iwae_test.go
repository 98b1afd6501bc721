package eval

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// linearGaussian builds two toy modalities (x_m = V_m z + c_m + σ noise)
// whose decoders have orthogonal columns, so each likelihood, as a function
// of z, is a diagonal Gaussian; their encoders are set to exactly that
// expert, so the product of experts with the prior is the true posterior.
// It returns the modalities, a few observations of each, and the exact
// log p(x_1, x_2) and log p(x_1) of every observation.
func linearGaussian(t *testing.T, n, d, items int) (map[string]module.Modality, map[string]module.Batch, []float64, []float64) {
	t.Helper()
	const sigma = 0.5
	rng := rand.New(rand.NewPCG(7, 8))
	mods := map[string]module.Modality{}
	batches := map[string]module.Batch{}
	vs := map[string]*mat.Dense{}
	cs := map[string][]float64{}
	z := make([]float64, items*d)
	for i := range z {
		z[i] = rng.NormFloat64()
	}
	for mi, name := range []string{"a", "b"} {
		m, err := toy.New(toy.Config{Name: name, Dim: n, Latent: d, Noise: sigma, Seed: uint64(mi)})
		if err != nil {
			t.Fatal(err)
		}
		w, b, s, v, c := m.Params()
		// Orthogonal columns: a random orthonormal basis, scaled per column.
		var qr mat.QR
		g := mat.NewDense(n, n, nil)
		for i := range n {
			for j := range n {
				g.Set(i, j, rng.NormFloat64())
			}
		}
		qr.Factorize(g)
		var q mat.Dense
		qr.QTo(&q)
		vm := mat.NewDense(n, d, nil)
		for j := range d {
			scale := 0.5 + rng.Float64()
			for i := range n {
				vm.Set(i, j, q.At(i, j)*scale)
			}
		}
		cm := make([]float64, n)
		for i := range cm {
			cm[i] = rng.NormFloat64()
			c[i] = float32(cm[i])
		}
		for i := range n {
			for j := range d {
				v[i*d+j] = float32(vm.At(i, j))
			}
		}
		// The exact expert: precision_k = |V_k|²/σ², mean = V_kᵀ(x − c)/(σ² precision_k).
		for k := range d {
			var p float64
			for i := range n {
				p += vm.At(i, k) * vm.At(i, k)
			}
			p /= sigma * sigma
			s[k] = float32(-math.Log(p))
			var bk float64
			for i := range n {
				wk := vm.At(i, k) / (sigma * sigma * p)
				w[k*n+i] = float32(wk)
				bk -= wk * cm[i]
			}
			b[k] = float32(bk)
		}
		x := make([]float32, items*n)
		for it := range items {
			for i := range n {
				mean := cm[i]
				for j := range d {
					mean += vm.At(i, j) * z[it*d+j]
				}
				x[it*n+i] = float32(mean + sigma*rng.NormFloat64())
			}
		}
		mods[name], batches[name], vs[name], cs[name] = m, &toy.Obs{N: n, Data: x}, vm, cm
	}
	logN := func(x []float64, mean []float64, cov *mat.SymDense) float64 {
		var ch mat.Cholesky
		if !ch.Factorize(cov) {
			t.Fatal("covariance not positive definite")
		}
		r := mat.NewVecDense(len(x), nil)
		for i := range x {
			r.SetVec(i, x[i]-mean[i])
		}
		var sol mat.VecDense
		if err := ch.SolveVecTo(&sol, r); err != nil {
			t.Fatal(err)
		}
		return -0.5*mat.Dot(r, &sol) - 0.5*ch.LogDet() - 0.5*float64(len(x))*math.Log(2*math.Pi)
	}
	cov := func(v *mat.Dense) *mat.SymDense {
		r, _ := v.Dims()
		c := mat.NewSymDense(r, nil)
		c.SymOuterK(1, v)
		for i := range r {
			c.SetSym(i, i, c.At(i, i)+sigma*sigma)
		}
		return c
	}
	var joint mat.Dense
	joint.Stack(vs["a"], vs["b"])
	exactAB, exactA := make([]float64, items), make([]float64, items)
	for it := range items {
		xa, xb := batches["a"].(*toy.Obs).Data[it*n:(it+1)*n], batches["b"].(*toy.Obs).Data[it*n:(it+1)*n]
		x := make([]float64, 0, 2*n)
		for _, v := range append(append([]float32(nil), xa...), xb...) {
			x = append(x, float64(v))
		}
		exactAB[it] = logN(x, append(append([]float64(nil), cs["a"]...), cs["b"]...), cov(&joint))
		exactA[it] = logN(x[:n], cs["a"], cov(vs["a"]))
	}
	return mods, batches, exactAB, exactA
}

// With the true posterior as the proposal every importance weight is p(x):
// the estimate is exact for any K.
func TestIWAEExactWithTheTruePosterior(t *testing.T) {
	const n, d = 6, 3
	mods, batches, exactAB, exactA := linearGaussian(t, n, d, 5)
	for _, k := range []int{1, 50} {
		got, err := IWAE(mods, []string{"a", "b"}, []string{"a", "b"}, batches, d, IWAEConfig{K: k})
		if err != nil {
			t.Fatal(err)
		}
		gotA, err := IWAE(mods, []string{"a"}, []string{"a"}, batches, d, IWAEConfig{K: k})
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Abs(got[i]-exactAB[i]) > 1e-3 || math.Abs(gotA[i]-exactA[i]) > 1e-3 {
				t.Fatalf("K=%d item %d: log p(a,b) %.5f (exact %.5f), log p(a) %.5f (exact %.5f)", k, i, got[i], exactAB[i], gotA[i], exactA[i])
			}
		}
	}
}

// With a worse proposal (one modality's posterior for both), one sample is
// a loose lower bound and many samples close the gap.
func TestIWAETightensWithK(t *testing.T) {
	const n, d, items = 6, 3, 20
	mods, batches, exactAB, _ := linearGaussian(t, n, d, items)
	gap := func(k int) float64 {
		est, err := IWAE(mods, []string{"a"}, []string{"a", "b"}, batches, d, IWAEConfig{K: k, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		var g float64
		for i := range est {
			g += exactAB[i] - est[i]
		}
		return g / items
	}
	g1, g1000 := gap(1), gap(2000)
	t.Logf("mean gap to the exact log p(a,b): K=1 %.3f nats, K=2000 %.3f nats", g1, g1000)
	if !(g1 > 0.5) || math.Abs(g1000) > 0.1*g1 || math.Abs(g1000) > 0.2 {
		t.Fatalf("gap %.3f at K=1 and %.3f at K=2000: want a clear bound at K=1 and under a tenth of it at K=2000", g1, g1000)
	}
}

// Decoding several items' latents in one pass (small K) gives the estimates
// of one item per pass, and Progress counts the items up to all of them.
func TestIWAEPassSizeChangesNothing(t *testing.T) {
	const n, d, items, k = 6, 3, 23, 10
	mods, batches, _, _ := linearGaussian(t, n, d, items)
	estimate := func(rows int) ([]float64, []int) {
		t.Helper()
		defer func(r int) { iwaeRows = r }(iwaeRows)
		iwaeRows = rows
		var done []int
		est, err := IWAE(mods, []string{"a"}, []string{"a", "b"}, batches, d, IWAEConfig{K: k, Progress: func(i int) { done = append(done, i) }})
		if err != nil {
			t.Fatal(err)
		}
		return est, done
	}
	one, doneOne := estimate(k)
	many, doneMany := estimate(7 * k)
	for i := range one {
		if math.Abs(one[i]-many[i]) > 1e-9*math.Abs(one[i]) {
			t.Fatalf("item %d: %.9f with one item per pass, %.9f with seven", i, one[i], many[i])
		}
	}
	if len(doneOne) != items || doneOne[items-1] != items || len(doneMany) != 4 || doneMany[3] != items || doneMany[0] != 7 {
		t.Fatalf("progress %v with one item per pass and %v with seven, want 1…%d and 7, 14, 21, %d", doneOne, doneMany, items, items)
	}
}
