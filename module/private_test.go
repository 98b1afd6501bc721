package module

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/serket-go/serket/bus"
)

// TestPrivateGradientsByFiniteDifferences: the gradient a step leaves in
// the private columns of the posterior is the derivative of the module's
// part of the objective with respect to them (the step's noise fixed):
// Σ_terms Σ_rows tw·log p(x | z, w) − Σ_own terms Σ_rows kl·KL(q(w|x) ‖
// N(0, I)), w drawn from the posterior in its own terms and from the prior
// in the others, under a decoder known in closed form.
func TestPrivateGradientsByFiniteDifferences(t *testing.T) {
	const b, d, p, step = 3, 2, 2, 7
	rng := rand.New(rand.NewPCG(1, 2))
	normal := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	w := d + p
	mu, lv := normal(b*w), normal(b*w)
	a, c := []float64{0.5, 1.2, 0.8, 1.5}, []float64{0.3, -1, 0.6, -0.2}
	terms := []struct {
		own    bool
		z      []float32
		tw, kl []float32
	}{
		{true, normal(b * d), []float32{0.5, 0, 0.5}, []float32{0.1, 0, 0.1}},
		{false, normal(b * d), []float32{0.5, 0, 0.5}, nil},
		{true, normal(b * d), []float32{0.2, 0, 0.4}, []float32{0.04, 0, 0.08}}, // a mixture's row weights
	}
	// objective runs the step's terms and returns the module's objective and
	// the gradient it leaves for Learn.
	objective := func() (float64, []float32, []float32) {
		pr := newPrivate(d, p, 3)
		pr.begin(b, step)
		copy(pr.mu, mu)
		copy(pr.lv, lv)
		var obj float64
		dzShared := make([]float32, b*d)
		zs, dzs := make([][]float32, len(terms)), make([][]float32, len(terms))
		for k, term := range terms { // the SDK readies every term, then decodes them all
			zs[k], dzs[k] = pr.termLatent(k, term.z, b, term.own)
		}
		for k, term := range terms {
			z := zs[k]
			for r := range b {
				for j := range w {
					diff := float64(z[r*w+j]) - c[j]
					obj += float64(term.tw[r]) * -0.5 * a[j] * diff * diff
					dzs[k][r*w+j] = float32(float64(term.tw[r]) * -a[j] * diff)
				}
				if term.own {
					for j := d; j < w; j++ {
						m, l := float64(mu[r*w+j]), float64(lv[r*w+j])
						obj -= float64(term.kl[r]) * 0.5 * (m*m + math.Exp(l) - l - 1)
					}
				}
			}
			pr.termBackward(k, dzShared, b, term.own, term.kl)
		}
		gmu, glv := pr.learnGrads(make([]float32, b*d), make([]float32, b*d), b)
		return obj, append([]float32(nil), gmu...), append([]float32(nil), glv...)
	}
	_, gmu, glv := objective()
	const h = 1e-2
	for what, params := range map[string][]float32{"mu": mu, "logvar": lv} {
		got := gmu
		if what == "logvar" {
			got = glv
		}
		for k := range params {
			if k%w < d {
				if got[k] != 0 {
					t.Errorf("the shared column %d of d%s is %v, want the integrator's (0 here)", k, what, got[k])
				}
				continue
			}
			old := params[k]
			params[k] = old + h
			plus, _, _ := objective()
			params[k] = old - h
			minus, _, _ := objective()
			params[k] = old
			want := (plus - minus) / (2 * h)
			if math.Abs(float64(got[k])-want) > 1e-3+1e-2*math.Abs(want) {
				t.Errorf("d objective / d %s[%d] = %.5f, finite differences give %.5f", what, k, got[k], want)
			}
		}
	}
}

// TestPrivatePaddingDrawsFromThePrior: a latent to decode in inference
// keeps its shared part and gets a private part from N(0, I).
func TestPrivatePaddingDrawsFromThePrior(t *testing.T) {
	const n, d, p = 2000, 3, 2
	pr := newPrivate(d, p, 1)
	z := make([]float32, n*d)
	for i := range z {
		z[i] = float32(i)
	}
	whole, err := pr.padPrior(z, n)
	if err != nil {
		t.Fatal(err)
	}
	var sum, sq float64
	for r := range n {
		for j := range d {
			if whole[r*(d+p)+j] != z[r*d+j] {
				t.Fatalf("row %d: shared %v, want %v", r, whole[r*(d+p):r*(d+p)+d], z[r*d:(r+1)*d])
			}
		}
		for j := d; j < d+p; j++ {
			v := float64(whole[r*(d+p)+j])
			sum, sq = sum+v, sq+v*v
		}
	}
	mean, variance := sum/(n*p), sq/(n*p)-(sum/(n*p))*(sum/(n*p))
	if math.Abs(mean) > 0.1 || math.Abs(variance-1) > 0.1 {
		t.Errorf("the private draws have mean %.3f and variance %.3f, want 0 and 1", mean, variance)
	}
	if _, err := pr.padPrior(z[:5], n); err == nil {
		t.Error("padding a latent of the wrong size: no error")
	}
}

// recorder is a modality of D = 1 and P = 1 whose posterior's private part
// is exactly 100 (its log-variance far below 0) and whose decoder keeps
// the latents it is given: Decode's last, and DecodeMany's (a
// MultiDecoder) every term's, with the number of DecodeMany calls.
type recorder struct {
	z     [][]float32
	calls int
}

type rows int

func (n rows) Len() int { return int(n) }

func (*recorder) Spec() Spec { return Spec{Name: "me", Latent: 1, Private: 1, Likelihood: "none"} }
func (*recorder) Encode(x Batch, mu, logvar []float32) error {
	for r := range x.Len() {
		mu[2*r], mu[2*r+1], logvar[2*r], logvar[2*r+1] = 0, 100, 0, -40
	}
	return nil
}
func (m *recorder) Decode(z []float32, _ Batch, _, _, _ []float32) error {
	m.z = [][]float32{slices.Clone(z)}
	return nil
}
func (m *recorder) DecodeMany(zs [][]float32, _ Batch, _, _, _ [][]float32) error {
	m.calls++
	m.z = m.z[:0]
	for _, z := range zs {
		m.z = append(m.z, slices.Clone(z))
	}
	return nil
}

// TestPrivateDrawsFollowTheStratum: a term's private part comes from the
// module's posterior when the latent was drawn from it (the term's subset
// has it, or a mixture stratum's From does) and from the prior otherwise;
// a step's terms, each with its own private part, go to the decoder in
// one DecodeMany.
func TestPrivateDrawsFollowTheStratum(t *testing.T) {
	m := &recorder{}
	r := &runner{m: m, spec: m.Spec(), priv: newPrivate(1, 1, 1), x: rows(2), present: []bool{true, true}, beta: 1, mu: make([]float32, 2), logvar: make([]float32, 2)}
	if err := r.encodeStep(rows(2), 1); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		term bus.Term
		own  bool
	}{
		{bus.Term{Subset: []string{"me", "other"}, Targets: []string{"me"}}, true},
		{bus.Term{Subset: []string{"other"}, Targets: []string{"me"}}, false},
		{bus.Term{Subset: []string{"me", "other"}, Targets: []string{"me"}, From: []string{"other"}}, false},
		{bus.Term{Subset: []string{"me", "other"}, Targets: []string{"me"}, From: []string{"me"}}, true},
	}
	lat := &bus.Latent{}
	r.plan, r.w = nil, []float32{1, 1}
	for k, c := range cases {
		r.plan = append(r.plan, c.term)
		lat.Z = append(lat.Z, bus.Matrix(2, 1, []float32{float32(10 * k), float32(10*k + 1)}))
	}
	if err := r.gatherTerms(lat, 2, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.decodeTerms(lat); err != nil {
		t.Fatal(err)
	}
	if m.calls != 1 || len(m.z) != len(cases) {
		t.Fatalf("%d DecodeMany calls with %d terms, want 1 with %d", m.calls, len(m.z), len(cases))
	}
	for k, c := range cases {
		for row := range 2 {
			shared, private := m.z[k][2*row], m.z[k][2*row+1]
			if shared != float32(10*k+row) || (private > 99 && private < 101) != c.own {
				t.Errorf("term %+v row %d: decoded [%v %v], want the shared %d and the private part from the %s", c.term, row, shared, private, 10*k+row,
					map[bool]string{true: "posterior (100)", false: "prior"}[c.own])
			}
		}
	}
}
