package concept_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/gonum/mathext"

	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/modules/concept"
)

// synth is a data set of J diagonal Gaussians in D dimensions with unequal
// weights and spreads, each item carrying a posterior variance v.
type synth struct {
	n, D, J int
	x, v    []float32
	label   []int
	weight  []float64
}

func makeSynth(seed uint64, n, D, J int) *synth {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := &synth{n: n, D: D, J: J, x: make([]float32, n*D), v: make([]float32, n*D), label: make([]int, n)}
	centers, sd := make([]float64, J*D), make([]float64, J*D)
	total := 0.0
	for j := range J {
		s.weight = append(s.weight, float64(j+1))
		total += float64(j + 1)
		spread := 0.15 + 0.25*float64(j%5)/4 // 0.15 … 0.4
		for d := range D {
			centers[j*D+d] = rng.NormFloat64()
			sd[j*D+d] = spread * (0.7 + 0.6*rng.Float64())
		}
	}
	for j := range s.weight {
		s.weight[j] /= total
	}
	for i := range n {
		j := pick(rng, s.weight)
		s.label[i] = j
		for d := range D {
			sigma := sd[j*D+d]
			s.x[i*D+d] = float32(centers[j*D+d] + sigma*rng.NormFloat64())
			s.v[i*D+d] = float32(0.3 * sigma * sigma * rng.Float64())
		}
	}
	return s
}

func pick(rng *rand.Rand, w []float64) int {
	u := rng.Float64()
	for j, wj := range w {
		if u -= wj; u < 0 {
			return j
		}
	}
	return len(w) - 1
}

// train streams epochs of s in shuffled minibatches of b and returns every
// step's statistics.
func train(m *concept.Mixture, s *synth, b, epochs int, seed uint64) []concept.UpdateStats {
	rng := rand.New(rand.NewPCG(seed, 2))
	D := s.D
	x, v := make([]float32, b*D), make([]float32, b*D)
	var stats []concept.UpdateStats
	for range epochs {
		perm := rng.Perm(s.n)
		for start := 0; start+b <= s.n; start += b {
			for r, i := range perm[start : start+b] {
				copy(x[r*D:(r+1)*D], s.x[i*D:(i+1)*D])
				copy(v[r*D:(r+1)*D], s.v[i*D:(i+1)*D])
			}
			stats = append(stats, m.Update(x, v, b, s.n))
		}
	}
	return stats
}

// evidence returns each item of s as natural parameters: prec = 1/v, h = x/v.
func evidence(s *synth) (prec, h []float32) {
	prec, h = make([]float32, len(s.x)), make([]float32, len(s.x))
	for i := range s.x {
		prec[i] = 1 / s.v[i]
		h[i] = s.x[i] / s.v[i]
	}
	return prec, h
}

// accuracy is the share of items whose category is their label's under the
// best one-to-one matching of labels to categories (eval's Hungarian
// accuracy, as serket eval measures the concept module's categories).
func accuracy(label, cat []int, J, K int) float64 {
	return eval.ClusterAccuracy(cat, label, K, J)
}

// fixture is a mixture trained on the synthetic data of the task: 10
// clusters in D = 32, 20,000 items, minibatches of 256, 4 epochs.
type fixture struct {
	s       *synth
	m       *concept.Mixture
	stats   []concept.UpdateStats
	elapsed time.Duration
}

var trained = sync.OnceValue(func() *fixture {
	s := makeSynth(42, 20000, 32, 10)
	m, err := concept.New(concept.Config{D: 32, Seed: 7})
	if err != nil {
		panic(err)
	}
	start := time.Now()
	stats := train(m, s, 256, 4, 3)
	return &fixture{s: s, m: m, stats: stats, elapsed: time.Since(start)}
})

func TestRecoversClusters(t *testing.T) {
	f := trained()
	prec, h := evidence(f.s)
	var a concept.Assignment
	m := f.m
	m.Assign(&a, prec, h, f.s.n, nil)
	used := m.Used(concept.DefaultMinShare)
	acc := accuracy(f.s.label, a.Category, f.s.J, m.Config().K)
	merged := 0
	for _, st := range f.stats {
		merged += st.Merged
	}
	t.Logf("%d steps in %v: %d components used of %d, accuracy %.4f, %d merges",
		len(f.stats), f.elapsed, used, m.Config().K, acc, merged)
	t.Logf("weights %.4f", slices.DeleteFunc(m.Weights(), func(w float64) bool { return w < 1e-4 }))
	t.Logf("true    %.4f", f.s.weight)
	if used < f.s.J-1 || used > f.s.J+1 {
		t.Errorf("Used(%v) = %d, want %d ± 1", concept.DefaultMinShare, used, f.s.J)
	}
	if acc < 0.95 {
		t.Errorf("accuracy %.4f, want ≥ 0.95", acc)
	}
	sure := 0
	for _, p := range a.Prob {
		if p > 0.99 {
			sure++
		}
	}
	if float64(sure) < 0.95*float64(f.s.n) {
		t.Errorf("only %d of %d items assigned with probability > 0.99", sure, f.s.n)
	}
}

func TestELBOConverges(t *testing.T) {
	stats := trained().stats
	tenth := len(stats) / 10
	mean := func(i int, get func(concept.UpdateStats) float64) float64 {
		s := 0.0
		for _, st := range stats[i*tenth : (i+1)*tenth] {
			s += get(st)
		}
		return s / float64(tenth)
	}
	elbo := func(st concept.UpdateStats) float64 { return st.ELBO }
	shift := func(st concept.UpdateStats) float64 { return st.MeanShift }
	var means []float64
	for i := range 10 {
		means = append(means, mean(i, elbo))
	}
	t.Logf("ELBO per item, mean of each tenth of %d steps: %.4f", len(stats), means)
	t.Logf("MeanShift first tenth %.3g, last %.3g", mean(0, shift), mean(9, shift))
	rise := means[9] - means[0]
	if !(rise > 0) {
		t.Errorf("ELBO did not rise: first tenth %.4f, last %.4f", means[0], means[9])
	}
	// Settled: the tenths of the second half differ by little beside the
	// rise (what is left is the noise of the minibatches).
	if spread := slices.Max(means[5:]) - slices.Min(means[5:]); !(spread < 0.1*rise) {
		t.Errorf("ELBO still moving: the second half's tenths span %.4f, the rise was %.4f", spread, rise)
	}
	if first, last := mean(0, shift), mean(9, shift); !(last < first/10) {
		t.Errorf("MeanShift did not shrink tenfold: first tenth %.3g, last %.3g", first, last)
	}
}

// batchVB is the closed-form coordinate-ascent VB update of every global
// parameter from p on the data (x, v) repeated scale times, written from the
// model directly, with two-pass (centred) statistics. It returns the new
// posterior and the mean over items of log Σ_k exp ℓ_nk.
func batchVB(p concept.Posterior, c concept.Config, x, v []float32, scale float64) (concept.Posterior, float64) {
	K, D := c.K, c.D
	n := len(x) / D
	r, lse := responsibilities(p, c, x, v)
	q := concept.Posterior{Alpha: make([]float64, K), Mean: make([]float64, K*D),
		Beta: make([]float64, K*D), Shape: make([]float64, K*D), Rate: make([]float64, K*D)}
	for k := range K {
		nk := 0.0
		for i := range n {
			nk += r[i*K+k]
		}
		q.Alpha[k] = c.Alpha0 + scale*nk
		for d := range D {
			xbar := 0.0
			for i := range n {
				xbar += r[i*K+k] * float64(x[i*D+d])
			}
			xbar /= nk
			w := 0.0
			for i := range n {
				e := float64(x[i*D+d]) - xbar
				w += r[i*K+k] * (e*e + float64(v[i*D+d]))
			}
			N, j := scale*nk, k*D+d
			q.Beta[j] = c.Beta0 + N
			q.Mean[j] = (c.Beta0*c.M0 + N*xbar) / q.Beta[j]
			q.Shape[j] = c.A0 + N/2
			q.Rate[j] = c.B0 + 0.5*(scale*w+c.Beta0*N*(xbar-c.M0)*(xbar-c.M0)/(c.Beta0+N))
		}
	}
	return q, lse
}

// responsibilities returns r_nk (n×K) under p and the mean of log Σ_k exp ℓ_nk.
func responsibilities(p concept.Posterior, c concept.Config, x, v []float32) ([]float64, float64) {
	K, D := c.K, c.D
	n := len(x) / D
	sumA := 0.0
	for _, a := range p.Alpha {
		sumA += a
	}
	r := make([]float64, n*K)
	lse := 0.0
	for i := range n {
		row := r[i*K : (i+1)*K]
		for k := range K {
			l := mathext.Digamma(p.Alpha[k]) - mathext.Digamma(sumA)
			for d := range D {
				j := k*D + d
				a, b := p.Shape[j], p.Rate[j]
				e := float64(x[i*D+d]) - p.Mean[j]
				l += 0.5*(mathext.Digamma(a)-math.Log(b)) - 0.5*math.Log(2*math.Pi) -
					0.5*(a/b*(e*e+float64(v[i*D+d]))+1/p.Beta[j])
			}
			row[k] = l
		}
		mx := slices.Max(row)
		z := 0.0
		for _, l := range row {
			z += math.Exp(l - mx)
		}
		for k := range row {
			row[k] = math.Exp(row[k]-mx) / z
		}
		lse += mx + math.Log(z)
	}
	return r, lse / float64(n)
}

// natural returns the natural parameters of the posterior: α, and per
// component and dimension βm, β, a and 2b + βm².
func natural(p concept.Posterior) [][]float64 {
	bm, eta := make([]float64, len(p.Mean)), make([]float64, len(p.Mean))
	for i, m := range p.Mean {
		bm[i] = p.Beta[i] * m
		eta[i] = 2*p.Rate[i] + p.Beta[i]*m*m
	}
	return [][]float64{p.Alpha, bm, p.Beta, p.Shape, eta}
}

// An SVI step is the convex combination (1−ρ)λ + ρλ̂ of the natural
// parameters, λ̂ being batch VB on the minibatch repeated n/b times; with
// ρ = 1 and n = b it is batch VB itself.
func TestStepIsClosedFormVB(t *testing.T) {
	s := makeSynth(5, 400, 4, 3)
	for _, c := range []struct {
		name string
		rho  float64
		n    int
	}{{"batch VB", 1, s.n}, {"SVI step", 0.3, 5 * s.n}} {
		t.Run(c.name, func(t *testing.T) {
			m, err := concept.New(concept.Config{K: 5, D: 4, Rho: c.rho, NoMerge: true, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			m.Update(s.x, s.v, s.n, c.n)
			p0 := m.Posterior()
			hat, wantLSE := batchVB(p0, m.Config(), s.x, s.v, float64(c.n)/float64(s.n))
			st := m.Update(s.x, s.v, s.n, c.n)
			got := m.Posterior()
			if st.Rho != c.rho || !close(st.LogLik, wantLSE, 1e-10) {
				t.Errorf("Rho = %v, LogLik = %.15g; want %v, %.15g", st.Rho, st.LogLik, c.rho, wantLSE)
			}
			names := []string{"alpha", "beta·m", "beta", "a", "2b+beta·m²"}
			g, old, h := natural(got), natural(p0), natural(hat)
			for v := range g {
				for i := range g[v] {
					if want := (1-c.rho)*old[v][i] + c.rho*h[v][i]; !close(g[v][i], want, 1e-9) {
						t.Errorf("%s[%d] = %.15g, closed form %.15g", names[v], i, g[v][i], want)
					}
				}
			}
			if slices.Equal(p0.Mean, got.Mean) {
				t.Error("the step did not change the means")
			}
		})
	}
}

// close reports whether a and b agree to a relative tolerance tol (absolute
// near zero).
func close(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*max(1, math.Abs(a), math.Abs(b))
}

// Batch VB is coordinate ascent on the ELBO, so the ELBO that Update
// reports (before each step) must never fall: this checks the KL terms and
// the updates against each other.
func TestBatchVBELBONeverFalls(t *testing.T) {
	s := makeSynth(6, 600, 6, 4)
	m, err := concept.New(concept.Config{K: 8, D: 6, Rho: 1, NoMerge: true, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	prev := math.Inf(-1)
	for i := range 40 {
		st := m.Update(s.x, s.v, s.n, s.n)
		if st.ELBO < prev-1e-9*math.Abs(prev) {
			t.Errorf("step %d: ELBO fell from %.12g to %.12g", i, prev, st.ELBO)
		}
		prev = st.ELBO
	}
	t.Logf("final ELBO per item %.6f, %d components used", prev, m.Used(concept.DefaultMinShare))
}

func TestAssignNoEvidenceSamplesWeights(t *testing.T) {
	m := trained().m
	D, K, B := 32, m.Config().K, 50000
	var a concept.Assignment
	m.Assign(&a, make([]float32, B*D), make([]float32, B*D), B, rand.New(rand.NewPCG(1, 2)))
	w, means, vars := m.Weights(), m.Means(), m.Variances()
	count := make([]int, K)
	for i, k := range a.Category {
		count[k]++
		if a.Prob[i] != float32(w[k]) {
			t.Fatalf("row %d: Prob %v, want E[π_%d] = %v", i, a.Prob[i], k, w[k])
		}
		for d := range D {
			if a.Mu[i*D+d] != float32(means[k*D+d]) || a.LogVar[i*D+d] != float32(math.Log(vars[k*D+d])) {
				t.Fatalf("row %d: Mu, LogVar are not component %d's", i, k)
			}
		}
	}
	for k, c := range count {
		got, sd := float64(c)/float64(B), math.Sqrt(w[k]*(1-w[k])/float64(B))
		if math.Abs(got-w[k]) > 4*sd+1e-4 {
			t.Errorf("component %d drawn %.4f of the time, E[π] = %.4f (sd %.4f)", k, got, w[k], sd)
		}
	}
}

func TestAssignIgnoresZeroPrecision(t *testing.T) {
	f := trained()
	D, B := 32, 2000
	prec, h := evidence(f.s)
	prec, h = prec[:B*D], h[:B*D]
	var full concept.Assignment
	f.m.Assign(&full, prec, h, B, nil)
	// Every other dimension unobserved: its h must not matter.
	half, zeroH, junkH := slices.Clone(prec), slices.Clone(h), slices.Clone(h)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range half {
		if i%2 == 1 {
			half[i], zeroH[i], junkH[i] = 0, 0, float32(100*rng.NormFloat64())
		}
	}
	var a, b concept.Assignment
	f.m.Assign(&a, half, zeroH, B, nil)
	f.m.Assign(&b, half, junkH, B, nil)
	if !slices.Equal(a.Category, b.Category) || !slices.Equal(a.Prob, b.Prob) ||
		!slices.Equal(a.Mu, b.Mu) || !slices.Equal(a.LogVar, b.LogVar) {
		t.Error("h changed the assignment in dimensions of zero precision")
	}
	same := 0
	for i := range B {
		if a.Category[i] == full.Category[i] {
			same++
		}
	}
	if same < B*99/100 {
		t.Errorf("half the dimensions agree with all of them on %d of %d rows", same, B)
	}
}

func TestFuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 1000
	mu, lv, prec, h := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range n {
		mu[i], lv[i] = float32(rng.NormFloat64()), float32(3*rng.NormFloat64())
		if i%4 != 0 { // a quarter without evidence
			prec[i] = float32(math.Exp(4 * rng.NormFloat64()))
			h[i] = prec[i] * float32(rng.NormFloat64())
		}
	}
	gotMu, gotVar := make([]float32, n), make([]float32, n)
	concept.Fuse(gotMu, gotVar, mu, lv, prec, h)
	for i := range n {
		// Moment form: the prior's mean pulled towards the evidence's by the
		// gain s²/(s² + 1/prec).
		s2 := math.Exp(float64(lv[i]))
		wantMu, wantVar := float64(mu[i]), s2
		if p := float64(prec[i]); p > 0 {
			e, ve := float64(h[i])/p, 1/p
			wantMu += s2 / (s2 + ve) * (e - wantMu)
			wantVar = s2 * ve / (s2 + ve)
		}
		if !close(float64(gotMu[i]), wantMu, 1e-5) || !close(float64(gotVar[i]), wantVar, 1e-5) {
			t.Errorf("%d: Fuse gives N(%v, %v), want N(%v, %v)", i, gotMu[i], gotVar[i], wantMu, wantVar)
		}
	}
	// In place: the results may overwrite the prior.
	concept.Fuse(mu, lv, mu, lv, prec, h)
	if !slices.Equal(mu, gotMu) || !slices.Equal(lv, gotVar) {
		t.Error("Fuse in place differs from Fuse into other slices")
	}
}

// small is a mixture of 6 components in 8 dimensions after a few steps.
func small(t *testing.T, cfg concept.Config) (*concept.Mixture, *synth) {
	t.Helper()
	s := makeSynth(9, 2000, 8, 4)
	cfg.K, cfg.D = 6, 8
	m, err := concept.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	train(m, s, 200, 1, 1)
	return m, s
}

func save(t testing.TB, m *concept.Mixture) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheckpointRoundTrip(t *testing.T) {
	m1, s := small(t, concept.Config{Seed: 3, Alpha0: 0.05})
	ckpt := save(t, m1)
	m2, err := concept.New(concept.Config{K: 6, D: 8, Seed: 99, Rho: 0.5, NoMerge: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Restore(bytes.NewReader(ckpt)); err != nil {
		t.Fatal(err)
	}
	if m2.Config() != m1.Config() || m2.Steps() != m1.Steps() {
		t.Errorf("restored config %+v at step %d, saved %+v at step %d", m2.Config(), m2.Steps(), m1.Config(), m1.Steps())
	}
	if !bytes.Equal(save(t, m2), ckpt) {
		t.Fatal("the restored mixture saves different bytes")
	}
	train(m1, s, 200, 1, 8)
	train(m2, s, 200, 1, 8)
	if !bytes.Equal(save(t, m1), save(t, m2)) {
		t.Error("the original and the restored mixture differ after the same Updates")
	}
}

// zeros is an endless stream of zero bytes, like /dev/zero.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// refusal is an input Restore must refuse, with the error it must give.
type refusal struct {
	name        string
	in          []byte
	endless     bool // read from an endless stream of zeros instead
	want        string
	wantCorrupt bool
}

// refusals returns damaged and mismatched variants of good, the checkpoint
// of a mixture with K = 6 and D = 8.
func refusals(t *testing.T, good []byte) []refusal {
	K, D := 6, 8
	const hdr = 28
	alphaAt := hdr + 8*11
	meanAt, rateAt := alphaAt+8*K, alphaAt+8*K+3*8*K*D
	// patch returns good with f applied and the checksum made right again.
	patch := func(f func(b []byte)) []byte {
		b := slices.Clone(good)
		f(b)
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli)))
		return b
	}
	setFloat := func(at int, v float64) []byte {
		return patch(func(b []byte) { binary.LittleEndian.PutUint64(b[at:], math.Float64bits(v)) })
	}
	other := func(k, d int) []byte {
		o, err := concept.New(concept.Config{K: k, D: d})
		if err != nil {
			t.Fatal(err)
		}
		return save(t, o)
	}
	flipped := slices.Clone(good)
	flipped[meanAt+3] ^= 0x10
	return []refusal{
		{name: "empty", in: nil, want: "empty", wantCorrupt: true},
		{name: "zeros", in: bytes.Repeat([]byte{0}, 1<<20), want: "magic", wantCorrupt: true},
		{name: "dev zero", endless: true, want: "magic", wantCorrupt: true},
		{name: "truncated header", in: good[:hdr-1], want: "truncated", wantCorrupt: true},
		{name: "truncated payload", in: good[:len(good)/2], want: "truncated", wantCorrupt: true},
		{name: "no checksum", in: good[:len(good)-4], want: "truncated", wantCorrupt: true},
		{name: "flipped bit", in: flipped, want: "checksum", wantCorrupt: true},
		{name: "payload length", in: patch(func(b []byte) { binary.LittleEndian.PutUint64(b[20:], 1<<62) }), want: "payload length", wantCorrupt: true},
		{name: "other K", in: other(7, D), want: "K = 7"},
		{name: "other D", in: other(K, 9), want: "D = 9"},
		{name: "version", in: patch(func(b []byte) { b[8] = 2 }), want: "version 2"},
		{name: "NaN mean", in: setFloat(meanAt+8*5, math.NaN()), want: "m[5]", wantCorrupt: true},
		{name: "Inf alpha", in: setFloat(alphaAt, math.Inf(1)), want: "alpha[0]", wantCorrupt: true},
		{name: "negative rate", in: setFloat(rateAt+8, -1), want: "b[1]", wantCorrupt: true},
		{name: "zero rate", in: setFloat(rateAt, 0), want: "b[0]", wantCorrupt: true},
		{name: "bad Kappa", in: setFloat(hdr+8*6, 2), want: "config", wantCorrupt: true},
		{name: "unknown flag", in: patch(func(b []byte) { b[hdr+8*9] |= 4 }), want: "flags", wantCorrupt: true},
	}
}

func TestRestoreRefuses(t *testing.T) {
	m, _ := small(t, concept.Config{Seed: 3})
	good := save(t, m)
	for _, tt := range refusals(t, good) {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tt.in)
			if tt.endless {
				r = zeros{}
			}
			err := m.Restore(r)
			if err == nil {
				t.Fatal("Restore accepted it")
			}
			if !errors.Is(err, concept.ErrBadCheckpoint) || errors.Is(err, concept.ErrCorruptCheckpoint) != tt.wantCorrupt {
				t.Errorf("error %q: bad %v, corrupt %v, want corrupt %v", err, errors.Is(err, concept.ErrBadCheckpoint),
					errors.Is(err, concept.ErrCorruptCheckpoint), tt.wantCorrupt)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "concept: restore: ") {
				t.Errorf("error %q does not start with concept: restore: or say %q", err, tt.want)
			}
			if !bytes.Equal(save(t, m), good) {
				t.Error("a refused Restore changed the mixture")
			}
		})
	}
}

func FuzzRestore(f *testing.F) {
	m, err := concept.New(concept.Config{K: 3, D: 2, Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	m.Update([]float32{0, 0, 1, 1, 5, 5, 6, 6}, nil, 4, 40)
	good := save(f, m)
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		before := save(t, m)
		if err := m.Restore(bytes.NewReader(data)); err != nil {
			if !bytes.Equal(save(t, m), before) {
				t.Fatal("a refused Restore changed the mixture")
			}
			return
		}
		if after := save(t, m); !bytes.Equal(after, data[:len(after)]) {
			t.Fatal("an accepted checkpoint does not save back to itself")
		}
	})
}

func TestDeterministic(t *testing.T) {
	a, _ := small(t, concept.Config{Seed: 11})
	b, _ := small(t, concept.Config{Seed: 11})
	c, _ := small(t, concept.Config{Seed: 12})
	if !bytes.Equal(save(t, a), save(t, b)) {
		t.Error("two mixtures with the same seed and inputs differ")
	}
	if bytes.Equal(save(t, a), save(t, c)) {
		t.Error("the seed made no difference")
	}
}

// blobs is n items of J isotropic Gaussians of spread sd in D dimensions,
// centred at ±sep/2 in every dimension (J ≤ 2), equally weighted.
func blobs(seed uint64, n, D, J int, sep, sd float64) *synth {
	rng := rand.New(rand.NewPCG(seed, 3))
	s := &synth{n: n, D: D, J: J, label: make([]int, n)}
	for i := range n {
		j := rng.IntN(J)
		s.label[i] = j
		centre := 0.0
		if J == 2 {
			centre = sep * (float64(j) - 0.5)
		}
		for range D {
			s.x = append(s.x, float32(centre+sd*rng.NormFloat64()))
			s.v = append(s.v, float32(0.05*sd*sd))
		}
	}
	return s
}

// Merges join the components that split one cluster, and do not join two
// clusters that overlap in every single dimension (2.4 spreads apart) but
// not as a whole.
func TestMerges(t *testing.T) {
	for _, c := range []struct {
		name string
		s    *synth
	}{{"one cluster", blobs(7, 4000, 8, 1, 0, 0.5)}, {"two close clusters", blobs(8, 4000, 8, 2, 1.2, 0.5)}} {
		t.Run(c.name, func(t *testing.T) {
			m, err := concept.New(concept.Config{K: 8, D: 8, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			merged := 0
			for _, st := range train(m, c.s, 100, 2, 2) {
				merged += st.Merged
			}
			prec, h := evidence(c.s)
			var a concept.Assignment
			m.Assign(&a, prec, h, c.s.n, nil)
			used, acc := m.Used(concept.DefaultMinShare), accuracy(c.s.label, a.Category, c.s.J, 8)
			t.Logf("%d components used after %d merges, accuracy %.4f", used, merged, acc)
			if used != c.s.J || merged == 0 || acc < 0.95 {
				t.Errorf("%d components used after %d merges, accuracy %.4f; want %d, some merges, ≥ 0.95", used, merged, acc, c.s.J)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	m, err := concept.New(concept.Config{D: 16})
	if err != nil {
		t.Fatal(err)
	}
	want := concept.Config{K: concept.DefaultK, D: 16, Alpha0: concept.DefaultAlpha0, Beta0: concept.DefaultBeta0,
		A0: concept.DefaultA0, B0: concept.DefaultB0, Tau0: concept.DefaultTau0, Kappa: concept.DefaultKappa}
	if got := m.Config(); got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	nan := math.NaN()
	tests := []struct {
		name string
		cfg  concept.Config
		want string
	}{
		{"no D", concept.Config{}, "D = 0"},
		{"negative K", concept.Config{K: -1, D: 4}, "K = -1"},
		{"huge K", concept.Config{K: concept.MaxK + 1, D: 4}, fmt.Sprintf("K = %d", concept.MaxK+1)},
		{"huge K×D", concept.Config{K: 2048, D: 1024}, "K×D"},
		{"negative Alpha0", concept.Config{D: 4, Alpha0: -1}, "Alpha0"},
		{"NaN Beta0", concept.Config{D: 4, Beta0: nan}, "Beta0"},
		{"Inf A0", concept.Config{D: 4, A0: math.Inf(1)}, "A0"},
		{"negative B0", concept.Config{D: 4, B0: -2}, "B0"},
		{"NaN M0", concept.Config{D: 4, M0: nan}, "M0"},
		{"small Tau0", concept.Config{D: 4, Tau0: 0.5}, "Tau0"},
		{"small Kappa", concept.Config{D: 4, Kappa: 0.5}, "Kappa"},
		{"large Kappa", concept.Config{D: 4, Kappa: 1.5}, "Kappa"},
		{"large Rho", concept.Config{D: 4, Rho: 2}, "Rho"},
		{"negative Rho", concept.Config{D: 4, Rho: -0.1}, "Rho"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := concept.New(tt.cfg)
			if !errors.Is(err, concept.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%+v) = %v, want an ErrInvalidConfig naming %s", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestMisusePanics(t *testing.T) {
	m, _ := small(t, concept.Config{})
	x := make([]float32, 2*8)
	var a concept.Assignment
	tests := []struct {
		name string
		f    func()
	}{
		{"Update short x", func() { m.Update(x[:15], nil, 2, 10) }},
		{"Update b > n", func() { m.Update(x, nil, 2, 1) }},
		{"Update NaN x", func() { y := slices.Clone(x); y[3] = float32(math.NaN()); m.Update(y, nil, 2, 10) }},
		{"Update Inf x", func() { y := slices.Clone(x); y[3] = float32(math.Inf(1)); m.Update(y, nil, 2, 10) }},
		{"Update negative v", func() { v := make([]float32, 16); v[0] = -1; m.Update(x, v, 2, 10) }},
		{"Assign short h", func() { m.Assign(&a, x, x[:8], 2, nil) }},
		{"Assign negative prec", func() { p := slices.Clone(x); p[1] = -1; m.Assign(&a, p, x, 2, nil) }},
		{"Assign NaN h", func() {
			p, h := slices.Clone(x), slices.Clone(x)
			p[1], h[1] = 1, float32(math.NaN())
			m.Assign(&a, p, h, 2, nil)
		}},
		{"Assign no evidence, no rng", func() { m.Assign(&a, x, x, 2, nil) }},
		{"Fuse lengths", func() { concept.Fuse(x, x, x, x, x, x[:3]) }},
		{"Fuse negative prec", func() { p := slices.Clone(x); p[0] = -1; concept.Fuse(x, x, x, x, p, x) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, ok := r.(string); !ok || !strings.HasPrefix(msg, "concept: ") {
					t.Errorf("recovered %v, want a panic with a message that starts concept:", r)
				}
			}()
			tt.f()
		})
	}
}

func TestNoAllocations(t *testing.T) {
	m, s := small(t, concept.Config{})
	b, D := 200, 8
	x, v := s.x[:b*D], s.v[:b*D]
	prec, h := evidence(s)
	prec, h = prec[:b*D], h[:b*D]
	clear(prec[:D]) // a row without evidence, to sample
	var a concept.Assignment
	rng := rand.New(rand.NewPCG(1, 1))
	m.Assign(&a, prec, h, b, rng)
	if n := testing.AllocsPerRun(10, func() { m.Update(x, v, b, s.n) }); n != 0 {
		t.Errorf("Update allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(10, func() { m.Assign(&a, prec, h, b, rng) }); n != 0 {
		t.Errorf("Assign allocates %v times per call", n)
	}
}

func BenchmarkUpdate(b *testing.B) {
	s := makeSynth(1, 20000, 32, 10)
	m, err := concept.New(concept.Config{D: 32})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 256
	m.Update(s.x[:batch*32], s.v[:batch*32], batch, s.n)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at := (i % (s.n / batch)) * batch * 32
		m.Update(s.x[at:at+batch*32], s.v[at:at+batch*32], batch, s.n)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "items/s")
}

// Example shows a stream of points from three clusters, the concepts the
// mixture finds in it, and generation from nothing.
func Example() {
	rng := rand.New(rand.NewPCG(1, 2))
	centres := [][2]float64{{-4, 0}, {4, 0}, {0, 5}}
	const n, b = 3000, 100
	m, err := concept.New(concept.Config{K: 10, D: 2, Seed: 1})
	if err != nil {
		panic(err)
	}
	x := make([]float32, b*2)
	for range 3 * n / b {
		for i := range b {
			c := centres[rng.IntN(3)]
			x[2*i], x[2*i+1] = float32(c[0]+0.5*rng.NormFloat64()), float32(c[1]+0.5*rng.NormFloat64())
		}
		m.Update(x, nil, b, n)
	}
	fmt.Println("concepts:", m.Used(concept.DefaultMinShare))

	var a concept.Assignment
	m.Assign(&a, []float32{1, 1}, []float32{3.9, 0.2}, 1, nil) // evidence: z ≈ (3.9, 0.2)
	fmt.Printf("(3.9, 0.2) is near (%.0f, %.0f)\n", a.Mu[0], a.Mu[1])
	// Output:
	// concepts: 3
	// (3.9, 0.2) is near (4, 0)
}
