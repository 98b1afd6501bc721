package aggregate

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/serket-go/serket/poe"
)

// TestMoEPosterior: inference from a mixture draws each latent from one
// expert chosen uniformly, and summarises the mixture by its mean and
// variance; with no expert it is the prior.
func TestMoEPosterior(t *testing.T) {
	const n, d = 4000, 2
	experts := []poe.Expert{
		{Mu: []float32{-10, 1}, LogVar: []float32{float32(math.Log(0.25)), 0}},
		{Mu: []float32{10, 3}, LogVar: []float32{float32(math.Log(0.25)), 0}},
	}
	post := MoE().Posterior(experts, nil, 1, d)
	mu, logvar, z := post.Mean(), post.LogVar(), make([]float32, n*d)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		post.Draw(z[i*d:(i+1)*d], 0, rng)
	}
	// Moments: means 0 and 2; variances 0.25 + 100 and 1 + 1.
	for j, want := range [][2]float64{{0, 100.25}, {2, 2}} {
		if math.Abs(float64(mu[j])-want[0]) > 1e-5 || math.Abs(math.Exp(float64(logvar[j]))-want[1]) > 1e-4 {
			t.Errorf("dimension %d: mean %v, variance %v; want %v", j, mu[j], math.Exp(float64(logvar[j])), want)
		}
	}
	left := 0
	for i := range n {
		x := float64(z[i*d])
		switch {
		case math.Abs(x+10) < 3:
			left++
		case math.Abs(x-10) >= 3:
			t.Fatalf("draw %d at %v, near neither expert", i, x)
		}
	}
	// Binomial(4000, 1/2): 5 standard deviations are about 158.
	if left < n/2-160 || left > n/2+160 {
		t.Errorf("%d of %d draws from the first expert, want about half", left, n)
	}
	prior := MoE().Posterior(nil, nil, 1, d)
	if mu, logvar := prior.Mean(), prior.LogVar(); mu[0] != 0 || mu[1] != 0 || logvar[0] != 0 || logvar[1] != 0 {
		t.Errorf("no experts: mean %v, log-variance %v; want the prior N(0, I)", mu, logvar)
	}
}

// TestDrawDensity: the log q a draw returns is the density of the joint
// posterior at that draw, computed here from its definition: the product's
// Gaussian for PoE, the mean of the present experts' densities for MoE, the
// mean over the non-empty subsets of the present experts of their
// products' densities for MoPoE (a row's absent expert left out, a row
// without experts the prior).
func TestDrawDensity(t *testing.T) {
	const b, d = 3, 2
	rng := rand.New(rand.NewPCG(3, 4))
	experts := []poe.Expert{
		{Mu: []float32{0.5, -1, 2, 0, 1, 1}, LogVar: []float32{-1, 0.5, 0, -0.5, 0.2, 0.1}, Present: []bool{true, true, false}},
		{Mu: []float32{-0.5, 1, 0.3, 0.7, 1, 1}, LogVar: []float32{0, -2, 1, 0.3, 0.2, 0.1}, Present: []bool{true, false, false}},
	}
	gauss := func(z []float32, mu, lv []float64) float64 {
		var s float64
		for j := range z {
			diff := float64(z[j]) - mu[j]
			s += -0.5*diff*diff/math.Exp(lv[j]) - 0.5*math.Log(2*math.Pi) - 0.5*lv[j]
		}
		return s
	}
	row := func(e poe.Expert, r int) (mu, lv []float64) {
		for j := range d {
			mu, lv = append(mu, float64(e.Mu[r*d+j])), append(lv, float64(e.LogVar[r*d+j]))
		}
		return mu, lv
	}
	z := make([]float32, d)
	// product is the prior times the given experts' row r, per dimension.
	product := func(es []poe.Expert, r int) (mu, lv []float64) {
		for j := range d {
			prec, pm := 1.0, 0.0
			for _, e := range es {
				t := math.Exp(-float64(e.LogVar[r*d+j]))
				prec += t
				pm += t * float64(e.Mu[r*d+j])
			}
			mu, lv = append(mu, pm/prec), append(lv, -math.Log(prec))
		}
		return mu, lv
	}
	for _, agg := range []Aggregation{PoE(), MoE(), MoPoE()} {
		post := agg.Posterior(experts, nil, b, d)
		for r := range b {
			for range 5 {
				got := post.Draw(z, r, rng)
				var want float64
				switch agg.Name() {
				case "poe":
					want = gauss(z, toF64(post.Mean()[r*d:(r+1)*d]), toF64(post.LogVar()[r*d:(r+1)*d]))
				case "mopoe": // the subsets of the row's experts: here {0, 1}, {0} or none
					var present []poe.Expert
					for _, e := range experts {
						if e.Present[r] {
							present = append(present, e)
						}
					}
					var dens []float64
					for mask := 1; mask < 1<<len(present); mask++ {
						var sub []poe.Expert
						for k, e := range present {
							if mask&(1<<k) != 0 {
								sub = append(sub, e)
							}
						}
						mu, lv := product(sub, r)
						dens = append(dens, math.Exp(gauss(z, mu, lv)))
					}
					want = gauss(z, []float64{0, 0}, []float64{0, 0})
					if len(dens) > 0 {
						var sum float64
						for _, v := range dens {
							sum += v
						}
						want = math.Log(sum / float64(len(dens)))
					}
				default:
					var dens []float64
					for _, e := range experts {
						if e.Present[r] {
							mu, lv := row(e, r)
							dens = append(dens, math.Exp(gauss(z, mu, lv)))
						}
					}
					if len(dens) == 0 {
						want = gauss(z, []float64{0, 0}, []float64{0, 0})
					} else {
						var sum float64
						for _, v := range dens {
							sum += v
						}
						want = math.Log(sum / float64(len(dens)))
					}
				}
				if math.Abs(got-want) > 1e-4 {
					t.Errorf("%s row %d: Draw gave log q %v at %v, its definition %v", agg.Name(), r, got, z, want)
				}
			}
		}
	}
}

func toF64(s []float32) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = float64(v)
	}
	return out
}

// TestGatedPosterior: the gated product is T = 1 + Σ α_m T_m, μ = Σ α_m
// T_m μ_m / T with α_m = exp θ[m][n−1] for a row fusing n experts; at θ =
// 0 it is PoE, and a module the gates do not know weighs 1.
func TestGatedPosterior(t *testing.T) {
	const b, d = 3, 2
	experts := []poe.Expert{
		{Mu: []float32{0.5, -1, 2, 0, 1, 1}, LogVar: []float32{-1, 0.5, 0, -0.5, 0.2, 0.1}, Present: []bool{true, true, false}},
		{Mu: []float32{-0.5, 1, 0.3, 0.7, 1, 1}, LogVar: []float32{0, -2, 1, 0.3, 0.2, 0.1}, Present: []bool{true, false, false}},
		{Mu: []float32{1, 1, 1, 1, -1, 2}, LogVar: []float32{0.3, 0.3, 0.1, 0.2, -1, 1}},
	}
	modules := []string{"a", "b", "stranger"}
	g := Gated()
	g.Bind([]string{"a", "b", "c"}, d)
	same := func(post Posterior, theta func(k, n, j int) float64) {
		t.Helper()
		for r := range b {
			n := 0
			for _, e := range experts {
				if e.Present == nil || e.Present[r] {
					n++
				}
			}
			for j := range d {
				prec, num := 1.0, 0.0
				for k, e := range experts {
					if e.Present != nil && !e.Present[r] {
						continue
					}
					tk := math.Exp(theta(k, n, j)) * math.Exp(-float64(e.LogVar[r*d+j]))
					prec += tk
					num += tk * float64(e.Mu[r*d+j])
				}
				i := r*d + j
				if math.Abs(float64(post.Mean()[i])-num/prec) > 1e-5 || math.Abs(float64(post.LogVar()[i])+math.Log(prec)) > 1e-5 {
					t.Errorf("row %d dim %d: mean %v log-variance %v, want %v %v", r, j, post.Mean()[i], post.LogVar()[i], num/prec, -math.Log(prec))
				}
			}
		}
	}
	zero := func(k, n, j int) float64 { return 0 }
	same(g.Posterior(experts, modules, b, d), zero)
	same(PoE().Posterior(experts, nil, b, d), zero)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range g.Params() {
		for i := range p.W {
			p.W[i] = float32(rng.NormFloat64())
		}
	}
	same(g.Posterior(experts, modules, b, d), func(k, n, j int) float64 {
		if modules[k] == "stranger" {
			return 0
		}
		return float64(g.Params()[k].W[(n-1)*d+j])
	})
}
