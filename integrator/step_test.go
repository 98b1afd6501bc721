package integrator

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
)

// stepCase is one step's messages for StepMath: three modules' posteriors
// and their decoder gradients for every term they are targets of.
type stepCase struct {
	modules []string
	plan    []bus.Term
	posts   map[string]*bus.Posterior
	zgrads  map[string]*bus.ZGrad
	lambda  map[string]float32
}

func newStepCase(seed uint64, b, d int) *stepCase {
	rng := rand.New(rand.NewPCG(seed, 7))
	c := &stepCase{modules: []string{"a", "b", "c"}, posts: map[string]*bus.Posterior{}, zgrads: map[string]*bus.ZGrad{}, lambda: map[string]float32{"b": 2}}
	c.plan = CrossPlan(1)(nil, c.modules, rng)
	for _, m := range c.modules {
		c.posts[m] = &bus.Posterior{Mu: bus.Matrix(b, d, randNormal(rng, b*d)), LogVar: bus.Matrix(b, d, randNormal(rng, b*d))}
		zg := &bus.ZGrad{}
		for i := range c.plan {
			ll := randNormal(rng, b)
			zg.Terms = append(zg.Terms, bus.TermGrad{Term: i, DZ: bus.Matrix(b, d, randNormal(rng, b*d)), LogLik: bus.Vector(ll)})
		}
		c.zgrads[m] = zg
	}
	return c
}

type stepResult struct {
	weights map[string]float32
	members []string
	z       []bus.Tensor
	grads   map[string]bus.ExpertGrad
	stats   []TermStats
}

// run is one step of s over c; its result is copied out of s's storage.
func (c *stepCase) run(t testing.TB, s *StepMath, step uint64, b, d int, copyOut bool) stepResult {
	s.Reset(StepMath{Step: step, Seed: 5, B: b, D: d, Plan: c.plan, Lambda: c.lambda, Beta: 0.5})
	w := s.Weights(c.modules)
	members, z := s.Latents(c.posts)
	grads, stats, err := s.Grads(c.zgrads)
	if err != nil {
		t.Fatal(err)
	}
	if !copyOut {
		return stepResult{}
	}
	r := stepResult{weights: map[string]float32{}, members: append([]string(nil), members...), grads: map[string]bus.ExpertGrad{}}
	for k, v := range w {
		r.weights[k] = v
	}
	for _, x := range z {
		r.z = append(r.z, bus.Tensor{Shape: append([]int(nil), x.Shape...), Data: append([]float32(nil), x.Data...)})
	}
	for m, g := range grads {
		r.grads[m] = bus.ExpertGrad{Step: g.Step, DMu: bus.Matrix(b, d, append([]float32(nil), g.DMu.Data...)), DLogVar: bus.Matrix(b, d, append([]float32(nil), g.DLogVar.Data...))}
	}
	r.stats = (StepStats{Terms: stats}).Clone().Terms
	return r
}

// TestStepMathReuse: a StepMath reused step after step gives what a fresh
// one gives, and in its steady state allocates nothing.
func TestStepMathReuse(t *testing.T) {
	const b, d = 20, 4
	big, small := newStepCase(1, b, d), newStepCase(2, b/2, d)
	var reused StepMath
	for step := uint64(1); step <= 4; step++ {
		c, bb := big, b
		if step%2 == 0 {
			c, bb = small, b/2
		}
		got := c.run(t, &reused, step, bb, d, true)
		want := c.run(t, &StepMath{}, step, bb, d, true)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: a reused StepMath differs from a fresh one", step)
		}
	}
	if n := testing.AllocsPerRun(20, func() { big.run(t, &reused, 9, b, d, false) }); n != 0 {
		t.Errorf("Reset+Weights+Latents+Grads of a reused StepMath: %v allocations per step, want 0", n)
	}
}

func TestStepStatsClone(t *testing.T) {
	s := StepStats{Missing: []string{"a"}, Terms: []TermStats{{Subset: []string{"a"}, Targets: []string{"b"}, LogLik: map[string]float64{"b": -1}}}}
	c := s.Clone()
	s.Missing[0], s.Terms[0].Subset[0], s.Terms[0].Targets[0], s.Terms[0].LogLik["b"] = "x", "x", "x", 0
	if c.Missing[0] != "a" || c.Terms[0].Subset[0] != "a" || c.Terms[0].Targets[0] != "b" || c.Terms[0].LogLik["b"] != -1 {
		t.Errorf("Clone shares storage with the original: %+v", c)
	}
}

func randNormal(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// TestNoise: each term's latent is its draw with the noise Noise returns,
// worked out here from the experts: for PoE the product's mean plus its
// standard deviation times the noise; for MoE, in the rows where the
// expert its Term.From names is present, that expert's mean plus its
// standard deviation times the noise, and the noise itself elsewhere.
func TestNoise(t *testing.T) {
	for _, agg := range []aggregate.Aggregation{aggregate.PoE(), aggregate.MoE()} {
		q := newQuadStep(agg, 3)
		var s StepMath
		s.Reset(StepMath{Step: 3, Seed: 5, B: q.b, D: q.d, Plan: q.plan, Agg: agg})
		_, z := s.Latents(q.posts)
		noise := s.Noise()
		if len(noise) != len(s.Terms()) {
			t.Fatalf("%s: noise for %d terms, want %d", agg.Name(), len(noise), len(s.Terms()))
		}
		for i, term := range s.Terms() {
			for r := range q.b {
				for j := range q.d {
					k := r*q.d + j
					var want float64
					switch agg.Name() {
					case "poe":
						prec, num := 1.0, 0.0
						for _, m := range term.Subset {
							if p := q.posts[m]; present(p.Present, r) {
								tk := math.Exp(-float64(p.LogVar.Data[k]))
								prec += tk
								num += tk * float64(p.Mu.Data[k])
							}
						}
						want = num/prec + float64(noise[i][k])/math.Sqrt(prec)
					default:
						want = float64(noise[i][k])
						if p := q.posts[term.From[0]]; present(p.Present, r) {
							want = float64(p.Mu.Data[k]) + math.Exp(float64(p.LogVar.Data[k])/2)*want
						}
					}
					if math.Abs(float64(z[i].Data[k])-want) > 1e-5*(1+math.Abs(want)) {
						t.Fatalf("%s term %d (%v from %v) row %d: z = %v, want %v from its noise", agg.Name(), i, term.Subset, term.From, r, z[i].Data[k], want)
					}
				}
			}
		}
	}
}
