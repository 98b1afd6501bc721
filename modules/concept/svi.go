package concept

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/mathext"
)

// seedStream is the PCG stream of the seeding generator, so that Seed alone
// picks the seeds.
const seedStream = 0x636f6e63657074 // "concept"

var log2Pi = math.Log(2 * math.Pi)

// UpdateStats describes one Update.
type UpdateStats struct {
	// LogLik is the batch's mean of log Σ_k exp(ℓ_nk) under the global
	// parameters before the step: each item's expected log joint plus the
	// entropy of its q(c), at the optimal responsibilities.
	LogLik float64
	// ELBO is LogLik − KL(q(π, μ, τ) ‖ prior)/n: an unbiased estimate of the
	// evidence lower bound per item of the whole data set, before the step.
	ELBO float64
	// Rho is the step size used.
	Rho float64
	// MeanShift is the root mean square change of the component means m_kd,
	// each component weighted by its new expected weight; WeightShift is the
	// L1 change of the expected weights. Both shrink as the fit settles.
	MeanShift, WeightShift float64
	// Merged is the number of merge moves accepted after the step.
	Merged int
}

// derived holds what the E-steps need of the global parameters, refreshed
// after every change to them so that Assign only reads.
type derived struct {
	lconst []float64 // K: E[log π_k] + Σ_d ½(E[log τ_kd] − log 2π − 1/β_kd)
	etau   []float64 // K×D: E[τ_kd] = a/b
	w      []float64 // K: E[π_k]
	logw   []float64 // K: log E[π_k]
	cumw   []float64 // K: Σ_{j≤k} E[π_j], for sampling
	pvar   []float64 // K×D: predictive variance b(β+1)/(aβ)
	plogv  []float32 // K×D: its log, as Assign hands it out
}

func (d *derived) alloc(K, D int) {
	d.lconst = make([]float64, K)
	d.w, d.logw, d.cumw = make([]float64, K), make([]float64, K), make([]float64, K)
	d.etau, d.pvar, d.plogv = make([]float64, K*D), make([]float64, K*D), make([]float32, K*D)
}

// refresh recomputes m.der from the global parameters.
func (m *Mixture) refresh() {
	K, D, d := m.cfg.K, m.cfg.D, &m.der
	sumA := 0.0
	for _, a := range m.alpha {
		sumA += a
	}
	psiSum, cum := mathext.Digamma(sumA), 0.0
	for k := range K {
		d.w[k] = m.alpha[k] / sumA
		d.logw[k] = math.Log(d.w[k])
		cum += d.w[k]
		d.cumw[k] = cum
		c := mathext.Digamma(m.alpha[k]) - psiSum // E[log π_k]
		for i := k * D; i < (k+1)*D; i++ {
			a, b, beta := m.shape[i], m.rate[i], m.beta[i]
			d.etau[i] = a / b
			c += 0.5 * (mathext.Digamma(a) - math.Log(b) - log2Pi - 1/beta)
			d.pvar[i] = b * (beta + 1) / (a * beta)
			d.plogv[i] = float32(math.Log(d.pvar[i]))
		}
		d.lconst[k] = c
	}
}

// Update takes one SVI step from a minibatch of b items, x and v being b×D
// row-major: item i is q_i(z) = N(x_i, diag v_i), a nil v meaning points
// (v = 0). n ≥ b is the size of the whole data set, which the batch stands
// for n/b times. The first Update seeds the components from its batch
// (k-means++ with Seed) before its step.
//
// It panics if the lengths do not match b and D, if b < 1 or n < b, or if
// an x or v is not finite or a v is negative: the caller checks what comes
// from outside before it gets here.
func (m *Mixture) Update(x, v []float32, b, n int) UpdateStats {
	m.checkBatch(x, v, b, n)
	if m.t == 0 {
		m.seed(x, b, n)
	}
	st := UpdateStats{Rho: m.rho()}
	st.LogLik = m.localStep(x, v, b) / float64(b)
	st.ELBO = st.LogLik - m.kl()/float64(n)
	st.MeanShift, st.WeightShift = m.globalStep(st.Rho, float64(n)/float64(b))
	if !m.cfg.NoMerge {
		st.Merged = m.merge(float64(n) / float64(b))
	}
	m.t++
	m.refresh()
	return st
}

func (m *Mixture) checkBatch(x, v []float32, b, n int) {
	D := m.cfg.D
	if b < 1 || n < b {
		panic(fmt.Sprintf("concept: Update: batch of b = %d from n = %d items, want 1 ≤ b ≤ n", b, n))
	}
	if len(x) != b*D || (v != nil && len(v) != b*D) {
		panic(fmt.Sprintf("concept: Update: len(x) = %d, len(v) = %d, want b×D = %d×%d (v may be nil)", len(x), len(v), b, D))
	}
	for i, xi := range x {
		if f := float64(xi); math.IsNaN(f) || math.IsInf(f, 0) {
			panic(fmt.Sprintf("concept: Update: x[%d] = %v is not finite", i, xi))
		}
	}
	for i, vi := range v {
		if f := float64(vi); !(f >= 0) || math.IsInf(f, 1) {
			panic(fmt.Sprintf("concept: Update: v[%d] = %v, want a finite variance ≥ 0", i, vi))
		}
	}
}

func (m *Mixture) rho() float64 {
	if m.cfg.Rho != 0 {
		return m.cfg.Rho
	}
	return math.Pow(m.cfg.Tau0+float64(m.t), -m.cfg.Kappa)
}

// localStep computes every item's responsibilities under the current global
// parameters and leaves the batch's sufficient statistics in m.nk, m.s1 and
// m.s2. It returns Σ_i log Σ_k exp(ℓ_ik).
func (m *Mixture) localStep(x, v []float32, b int) float64 {
	D := m.cfg.D
	clear(m.nk)
	clear(m.s1)
	clear(m.s2)
	clear(m.hpair)
	total := 0.0
	for i := range b {
		xi := x[i*D : (i+1)*D]
		var vi []float32
		if v != nil {
			vi = v[i*D : (i+1)*D]
		}
		m.logWeights(m.ell, xi, vi)
		lse := logSumExp(m.ell)
		total += lse
		m.accumulate(xi, vi, lse)
		if !m.cfg.NoMerge {
			m.accumulatePairs()
		}
	}
	return total
}

// logWeights sets dst[k] = ℓ_k = E[log π_k] + E_q[log N(z; μ_k, 1/τ_k)] for
// an item q(z) = N(x, diag v), with E[τ(z−μ)²] = E[τ]((x−m)² + v) + 1/β.
func (m *Mixture) logWeights(dst []float64, x, v []float32) {
	D := m.cfg.D
	for k := range dst {
		m0, et := m.mean[k*D:(k+1)*D], m.der.etau[k*D:(k+1)*D]
		q := 0.0
		for d, xd := range x {
			e := float64(xd) - m0[d]
			e *= e
			if v != nil {
				e += float64(v[d])
			}
			q += et[d] * e
		}
		dst[k] = m.der.lconst[k] - 0.5*q
	}
}

// accumulate adds an item's responsibilities r_k = exp(ℓ_k − lse) times
// its expected sufficient statistics (1, x, x² + v) to the batch's, and
// leaves the responsibilities in m.ell.
func (m *Mixture) accumulate(x, v []float32, lse float64) {
	D := m.cfg.D
	for k, l := range m.ell {
		r := math.Exp(l - lse)
		m.ell[k] = r
		if r == 0 {
			continue
		}
		m.nk[k] += r
		s1, s2 := m.s1[k*D:(k+1)*D], m.s2[k*D:(k+1)*D]
		for d, xd := range x {
			f := float64(xd)
			s1[d] += r * f
			sq := f * f
			if v != nil {
				sq += float64(v[d])
			}
			s2[d] += r * sq
		}
	}
}

func logSumExp(s []float64) float64 {
	mx := math.Inf(-1)
	for _, l := range s {
		mx = max(mx, l)
	}
	sum := 0.0
	for _, l := range s {
		sum += math.Exp(l - mx)
	}
	return mx + math.Log(sum)
}

// globalStep moves every global parameter a step ρ towards the value batch
// VB would give it if the data set were `scale` copies of the batch, in
// natural parameters (doc.go), and returns MeanShift and WeightShift.
func (m *Mixture) globalStep(rho, scale float64) (meanShift, weightShift float64) {
	c, D := &m.cfg, m.cfg.D
	sumA := 0.0
	for k := range m.alpha {
		m.alpha[k] = (1-rho)*m.alpha[k] + rho*(c.Alpha0+scale*m.nk[k])
		sumA += m.alpha[k]
	}
	for k := range m.alpha {
		w := m.alpha[k] / sumA
		weightShift += math.Abs(w - m.der.w[k])
		sq := 0.0
		for i := k * D; i < (k+1)*D; i++ {
			old := m.mean[i]
			m.stepNormalGamma(i, rho, scale*m.nk[k], scale*m.s1[i], scale*m.s2[i])
			sq += (m.mean[i] - old) * (m.mean[i] - old)
		}
		meanShift += w * sq / float64(D)
	}
	return math.Sqrt(meanShift), weightShift
}

// stepNormalGamma steps q(μ_i, τ_i) towards the batch-VB posterior of
// statistics N = Σr, S1 = Σr·x, S2 = Σr·(x²+v). In the natural parameters
// (βm, β, a, 2b+βm²) the step is a convex combination; written in (m, β, a,
// b) its last one becomes the sum of the two rates and a non-negative term
// for the distance between the means, which keeps b > 0 without the
// cancellation of subtracting βm².
func (m *Mixture) stepNormalGamma(i int, rho, N, S1, S2 float64) {
	c := &m.cfg
	bh, mh, ah, rh := c.Beta0+N, c.M0, c.A0+N/2, c.B0
	if N > 0 {
		xbar := S1 / N
		within := max(0, S2-S1*xbar) // Σr(x−x̄)² + Σr·v
		mh = (c.Beta0*c.M0 + S1) / bh
		rh += 0.5 * (within + c.Beta0*N*(xbar-c.M0)*(xbar-c.M0)/bh)
	}
	beta := (1-rho)*m.beta[i] + rho*bh
	dm := m.mean[i] - mh
	m.rate[i] = (1-rho)*m.rate[i] + rho*rh + 0.5*(1-rho)*rho*m.beta[i]*bh*dm*dm/beta
	m.mean[i] = ((1-rho)*m.beta[i]*m.mean[i] + rho*bh*mh) / beta
	m.shape[i] = (1-rho)*m.shape[i] + rho*ah
	m.beta[i] = beta
}

// kl returns KL(q(π, μ, τ) ‖ p(π, μ, τ)) of the global parameters.
func (m *Mixture) kl() float64 {
	c := &m.cfg
	K := float64(c.K)
	sumA := 0.0
	for _, a := range m.alpha {
		sumA += a
	}
	psiSum := mathext.Digamma(sumA)
	kl := lgamma(sumA) - lgamma(K*c.Alpha0) + K*lgamma(c.Alpha0)
	for _, a := range m.alpha {
		kl += (a-c.Alpha0)*(mathext.Digamma(a)-psiSum) - lgamma(a)
	}
	for i, a := range m.shape {
		b, beta, dm := m.rate[i], m.beta[i], m.mean[i]-c.M0
		kl += (a-c.A0)*mathext.Digamma(a) - lgamma(a) + lgamma(c.A0) +
			c.A0*math.Log(b/c.B0) + a*(c.B0-b)/b
		kl += 0.5 * (c.Beta0/beta + c.Beta0*a/b*dm*dm - 1 + math.Log(beta/c.Beta0))
	}
	return kl
}

func lgamma(x float64) float64 {
	l, _ := math.Lgamma(x)
	return l
}

// seed places the component means by k-means++ on the batch and sets the
// other parameters to what a component of n/K items at its seed, with the
// prior's precision, would have, so that the first E-step splits the batch
// among the seeds.
func (m *Mixture) seed(x []float32, b, n int) {
	c, D := &m.cfg, m.cfg.D
	rng := rand.New(rand.NewPCG(c.Seed, seedStream))
	dist := make([]float64, b) // the first Update's only allocation
	for i := range dist {
		dist[i] = math.Inf(1)
	}
	for k := range c.K {
		mk := m.mean[k*D : (k+1)*D]
		if i, ok := pickWeighted(rng, dist); ok {
			for d := range mk {
				mk[d] = float64(x[i*D+d])
			}
		} else {
			m.jitterSeed(mk, rng, x, b)
		}
		for i := range dist {
			dist[i] = min(dist[i], sqDist(x[i*D:(i+1)*D], mk))
		}
	}
	share := float64(n) / float64(c.K)
	for k := range m.alpha {
		m.alpha[k] = c.Alpha0 + share
	}
	for i := range m.beta {
		m.beta[i], m.shape[i] = c.Beta0+share, c.A0+share/2
		m.rate[i] = m.shape[i] * c.B0 / c.A0
	}
	m.refresh()
}

// pickWeighted draws an index with probability proportional to w (+Inf
// everywhere meaning uniform); false when every weight is 0, that is when
// every item of the batch already is a seed.
func pickWeighted(rng *rand.Rand, w []float64) (int, bool) {
	if math.IsInf(w[0], 1) {
		return rng.IntN(len(w)), true
	}
	total := 0.0
	for _, wi := range w {
		total += wi
	}
	if !(total > 0) {
		return 0, false
	}
	u := rng.Float64() * total
	for i, wi := range w {
		if u -= wi; u < 0 && wi > 0 {
			return i, true
		}
	}
	for i := len(w) - 1; ; i-- { // u rounded past the end
		if w[i] > 0 {
			return i, true
		}
	}
}

// jitterSeed draws a mean from a Gaussian with the batch's mean and spread
// (the prior's, where the batch has none), for the seeds a batch smaller
// than K, or of repeated items, cannot give distinct items to.
func (m *Mixture) jitterSeed(dst []float64, rng *rand.Rand, x []float32, b int) {
	D := m.cfg.D
	for d := range dst {
		s, sq := 0.0, 0.0
		for i := range b {
			f := float64(x[i*D+d])
			s += f
			sq += f * f
		}
		mu := s / float64(b)
		sd := math.Sqrt(max(0, sq/float64(b)-mu*mu))
		if sd == 0 {
			sd = math.Sqrt(m.cfg.B0 / m.cfg.A0)
		}
		dst[d] = mu + sd*rng.NormFloat64()
	}
}

func sqDist(x []float32, m []float64) float64 {
	s := 0.0
	for d, xd := range x {
		e := float64(xd) - m[d]
		s += e * e
	}
	return s
}

// sharedFloor is the responsibility from which a row counts as shared by a
// pair of components. A share of r adds about r·log(1/r) to the entropy a
// merge loses, nothing beside the Occam term of a merge (about D/2 times
// log(N/β0) nats), and the floor keeps the pairs to the one or two
// components most rows belong to.
const sharedFloor = 1e-6

// accumulatePairs adds, for each pair of components sharing the row whose
// responsibilities are in m.ell, the entropy a merge of the two would lose:
// (r_k+r_j)·log(r_k+r_j) − r_k·log r_k − r_j·log r_j ≥ 0.
func (m *Mixture) accumulatePairs() {
	K := m.cfg.K
	m.shared = m.shared[:0]
	for k, r := range m.ell {
		if r > sharedFloor {
			m.shared = append(m.shared, k)
		}
	}
	for a, k := range m.shared {
		rk := m.ell[k]
		for _, j := range m.shared[a+1:] {
			rj := m.ell[j]
			m.hpair[k*K+j] += (rk+rj)*math.Log(rk+rj) - rk*math.Log(rk) - rj*math.Log(rj)
		}
	}
}

type mergeCand struct {
	gain float64
	k, j int
}

// merge replaces pairs of components by one where that raises the ELBO,
// greedily by gain, each component in at most one merge; it returns the
// number of merges. Only pairs that shared a row of the batch are
// candidates: components apart would fit their union badly anyway.
func (m *Mixture) merge(scale float64) int {
	K := m.cfg.K
	m.cands = m.cands[:0]
	for k := range K {
		for j := k + 1; j < K; j++ {
			if h := m.hpair[k*K+j]; h > 0 {
				if g := m.mergeGain(k, j) - scale*h; g > 0 {
					m.cands = append(m.cands, mergeCand{g, k, j})
				}
			}
		}
	}
	slices.SortFunc(m.cands, func(a, b mergeCand) int {
		return cmp.Or(cmp.Compare(b.gain, a.gain), cmp.Compare(a.k, b.k), cmp.Compare(a.j, b.j))
	})
	taken := m.nk // the batch's counts are spent: mark merged components with -1
	merged := 0
	for _, c := range m.cands {
		if taken[c.k] < 0 || taken[c.j] < 0 {
			continue
		}
		m.mergePair(c.k, c.j)
		taken[c.k], taken[c.j] = -1, -1
		merged++
	}
	return merged
}

// mergeGain is the change of the ELBO's global terms if component j's
// effective statistics (its natural parameters less the prior's) moved to
// k, the responsibilities moving with them. With q(π, μ, τ) optimal for
// given statistics these terms are log-normalisers: Σ log Γ(α_k) for the
// Dirichlet (Σα does not change), and per dimension log Z(β, a, b) =
// log Γ(a) − a·log b − ½·log β (less the prior's) for the Normal-Gamma.
// The caller subtracts the entropy of the responsibilities the merge loses.
func (m *Mixture) mergeGain(k, j int) float64 {
	c, D := &m.cfg, m.cfg.D
	g := lgamma(m.alpha[k]+m.alpha[j]-c.Alpha0) + lgamma(c.Alpha0) - lgamma(m.alpha[k]) - lgamma(m.alpha[j])
	z0 := logZ(c.Beta0, c.A0, c.B0)
	for d := range D {
		ik, ij := k*D+d, j*D+d
		beta, _, a, b := m.mergedNG(ik, ij)
		if !(b > 0) {
			return math.Inf(-1)
		}
		g += logZ(beta, a, b) + z0 - logZ(m.beta[ik], m.shape[ik], m.rate[ik]) - logZ(m.beta[ij], m.shape[ij], m.rate[ij])
	}
	return g
}

func logZ(beta, a, b float64) float64 {
	return lgamma(a) - a*math.Log(b) - 0.5*math.Log(beta)
}

// mergedNG returns the Normal-Gamma whose natural parameters are those of
// i and j less the prior's: the posterior of both their statistics.
func (m *Mixture) mergedNG(i, j int) (beta, mean, a, b float64) {
	c := &m.cfg
	bi, bj := m.beta[i], m.beta[j]
	ui, uj := m.mean[i]-c.M0, m.mean[j]-c.M0
	beta = bi + bj - c.Beta0
	mean = c.M0 + (bi*ui+bj*uj)/beta
	a = m.shape[i] + m.shape[j] - c.A0
	// Σ βu² − (Σ βu)²/β over i, j and the prior (weight −β0, u = 0).
	spread := (bi*bj*(ui-uj)*(ui-uj) - c.Beta0*(bi*ui*ui+bj*uj*uj)) / beta
	b = m.rate[i] + m.rate[j] - c.B0 + 0.5*spread
	return beta, mean, a, b
}

// mergePair moves component j into k and returns j to the prior.
func (m *Mixture) mergePair(k, j int) {
	c, D := &m.cfg, m.cfg.D
	m.alpha[k] += m.alpha[j] - c.Alpha0
	m.alpha[j] = c.Alpha0
	for d := range D {
		ik, ij := k*D+d, j*D+d
		m.beta[ik], m.mean[ik], m.shape[ik], m.rate[ik] = m.mergedNG(ik, ij)
		m.beta[ij], m.mean[ij], m.shape[ij], m.rate[ij] = c.Beta0, c.M0, c.A0, c.B0
	}
}
