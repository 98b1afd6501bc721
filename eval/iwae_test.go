package eval_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// linearGaussian builds two toy modalities (x_m = V_m z + c_m + σ noise)
// whose decoders have orthogonal columns, so each likelihood, as a function
// of z, is a diagonal Gaussian; their encoders are set to exactly that
// expert, so the product of experts with the prior is the true posterior
// (unless spoil, added to the second one's log-variance and mean, is not 0).
// It serves them as modules of a pipeline whose items (ids 0 to items−1)
// are a few observations of each, and returns it with the exact
// log p(x_1, x_2) and log p(x_1) of every item.
func linearGaussian(t *testing.T, n, d, items int, spoil float32) (*eval.Pipeline, []uint64, []float64, []float64) {
	t.Helper()
	const sigma = 0.5
	rng := rand.New(rand.NewPCG(7, 8))
	mods := map[string]*toy.Toy{}
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
		if name == "b" { // a worse proposal: b's expert wider and off by spoil
			for k := range d {
				s[k] += spoil
				b[k] += spoil
			}
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
	var joint mat.Dense
	joint.Stack(vs["a"], vs["b"])
	exactAB, exactA := make([]float64, items), make([]float64, items)
	for it := range items {
		xa, xb := batches["a"].(*toy.Obs).Data[it*n:(it+1)*n], batches["b"].(*toy.Obs).Data[it*n:(it+1)*n]
		x := make([]float64, 0, 2*n)
		for _, v := range append(append([]float32(nil), xa...), xb...) {
			x = append(x, float64(v))
		}
		exactAB[it] = logNormal(t, x, append(append([]float64(nil), cs["a"]...), cs["b"]...), noisyCov(&joint, sigma))
		exactA[it] = logNormal(t, x[:n], cs["a"], noisyCov(vs["a"], sigma))
	}
	ids := make([]uint64, items)
	for i := range ids {
		ids[i] = uint64(i)
	}
	return serve(t, "gauss", nil, fixed{mods["a"], batches["a"].(*toy.Obs)}, fixed{mods["b"], batches["b"].(*toy.Obs)}), ids, exactAB, exactA
}

// logNormal is log N(x; mean, cov).
func logNormal(t *testing.T, x, mean []float64, cov *mat.SymDense) float64 {
	t.Helper()
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

// noisyCov is V Vᵀ + σ² I: the covariance of x = V z + c + σ noise with
// z ~ N(0, I).
func noisyCov(v *mat.Dense, sigma float64) *mat.SymDense {
	r, _ := v.Dims()
	c := mat.NewSymDense(r, nil)
	c.SymOuterK(1, v)
	for i := range r {
		c.SetSym(i, i, c.At(i, i)+sigma*sigma)
	}
	return c
}

// fixed is a toy module whose items are the given observations: item i is
// row i.
type fixed struct {
	*toy.Toy
	obs *toy.Obs
}

func (f fixed) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	rows := make([]int, len(ids))
	for i, id := range ids {
		if id >= uint64(f.obs.Len()) {
			return nil, nil, fmt.Errorf("no item %d", id)
		}
		rows[i] = int(id)
	}
	return f.obs.Pick(rows), slices.Repeat([]bool{true}, len(ids)), nil
}

// With the true posterior as the proposal every importance weight is p(x):
// the estimate is exact for any K.
func TestIWAEExactWithTheTruePosterior(t *testing.T) {
	const n, d = 6, 3
	p, ids, exactAB, exactA := linearGaussian(t, n, d, 5, 0)
	ctx := context.Background()
	for _, k := range []int{1, 50} {
		got, err := p.IWAE(ctx, []string{"a", "b"}, ids, k, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		gotA, err := p.IWAE(ctx, []string{"a"}, ids, k, 1, nil)
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

// With a worse proposal (one expert wider and off), one sample is a loose
// lower bound and many samples close the gap.
func TestIWAETightensWithK(t *testing.T) {
	const n, d, items = 6, 3, 20
	p, ids, exactAB, _ := linearGaussian(t, n, d, items, 1.5)
	g1, g2000 := meanGap(t, p, ids, exactAB, 1), meanGap(t, p, ids, exactAB, 2000)
	t.Logf("mean gap to the exact log p(a,b): K=1 %.3f nats, K=2000 %.3f nats", g1, g2000)
	if !(g1 > 0.5) || math.Abs(g2000) > 0.1*g1 || math.Abs(g2000) > 0.2 {
		t.Fatalf("gap %.3f at K=1 and %.3f at K=2000: want a clear bound at K=1 and under a tenth of it at K=2000", g1, g2000)
	}
}

// Scoring several items' latents in one request (small K) gives the
// estimates of one item per request, and progress counts the items up to
// all of them.
func TestIWAEPassSizeChangesNothing(t *testing.T) {
	const n, d, items, k = 6, 3, 23, 10
	p, ids, _, _ := linearGaussian(t, n, d, items, 1.5)
	estimate := func(latents int) ([]float64, []int) {
		t.Helper()
		defer eval.SetIWAELatents(latents)()
		var done []int
		est, err := p.IWAE(context.Background(), []string{"a", "b"}, ids, k, 1, func(i int) { done = append(done, i) })
		if err != nil {
			t.Fatal(err)
		}
		return est, done
	}
	one, doneOne := estimate(k)
	many, doneMany := estimate(7 * k)
	for i := range one {
		if math.Abs(one[i]-many[i]) > 1e-9*math.Abs(one[i]) {
			t.Fatalf("item %d: %.9f with one item per request, %.9f with seven", i, one[i], many[i])
		}
	}
	if len(doneOne) != items || doneOne[items-1] != items || len(doneMany) != 4 || doneMany[3] != items || doneMany[0] != 7 {
		t.Fatalf("progress %v with one item per request and %v with seven, want 1…%d and 7, 14, 21, %d", doneOne, doneMany, items, items)
	}
}

// TestIWAEWithAMixtureProposal: under a run trained as a mixture of experts
// the proposal is the mixture of the modules' posteriors, not their
// product; the estimate is still a bound that K tightens to the exact
// log p(a, b), since Draw returns the mixture's own density.
func TestIWAEWithAMixtureProposal(t *testing.T) {
	const n, d, items = 6, 3, 20
	p, ids, exactAB, _ := linearGaussian(t, n, d, items, 0)
	p.Aggregation = aggregate.MoE()
	g1, g2000 := meanGap(t, p, ids, exactAB, 1), meanGap(t, p, ids, exactAB, 2000)
	t.Logf("mean gap to the exact log p(a,b) with a mixture proposal: K=1 %.3f nats, K=2000 %.3f nats", g1, g2000)
	if !(g1 > 0.1) || math.Abs(g2000) > 0.2*g1 || math.Abs(g2000) > 0.2 {
		t.Fatalf("gap %.3f at K=1 and %.3f at K=2000: want a bound at K=1 and a fifth of it at most at K=2000", g1, g2000)
	}
}

// meanGap is the mean over the items of exact log p(a, b) − its IWAE
// estimate with k samples.
func meanGap(t *testing.T, p *eval.Pipeline, ids []uint64, exact []float64, k int) float64 {
	t.Helper()
	est, err := p.IWAE(context.Background(), []string{"a", "b"}, ids, k, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	var g float64
	for i := range est {
		g += exact[i] - est[i]
	}
	return g / float64(len(est))
}
