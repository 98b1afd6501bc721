package concept

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/serket-go/serket/poe"
)

// Defaults that a zero field of Config stands for; doc.go says why each.
const (
	DefaultK      = 30
	DefaultAlpha0 = 0.01
	DefaultBeta0  = 0.01
	DefaultA0     = 1
	DefaultB0     = 1
	DefaultTau0   = 10
	DefaultKappa  = 0.7
)

// DefaultMinShare is the expected weight from which Used counts a component
// as used: one item in a hundred. Components the data do not need sink to
// E[π_k] ≈ α0/n, orders of magnitude below it, so the count does not hinge
// on the exact threshold.
const DefaultMinShare = 0.01

// Size limits New enforces, so that a config (and hence a checkpoint) of a
// mixture never asks for more than MaxParams numbers per parameter array,
// nor the merge moves' K×K table for more than a million.
const (
	MaxK      = 1024
	MaxD      = 65536
	MaxParams = 1 << 20 // K×D
)

// ErrInvalidConfig is wrapped by every error New returns.
var ErrInvalidConfig = errors.New("concept: invalid config")

// Config is a mixture's shape, prior and step-size schedule. A zero field
// takes its default (the Default… constants; D has none), except M0 and
// Seed, for which zero is a value like any other.
type Config struct {
	K, D int // truncation (components at most) and latent size

	Alpha0 float64 // symmetric Dirichlet concentration of the weights, > 0
	Beta0  float64 // Normal-Gamma: prior precision of a mean, in units of τ, > 0
	A0, B0 float64 // Normal-Gamma: shape and rate of a precision τ's Gamma prior, > 0
	M0     float64 // Normal-Gamma: prior mean of every dimension, finite

	// Tau0 and Kappa give the SVI step size ρ_t = (Tau0 + t)^(−Kappa) of the
	// step taken after t others; Tau0 ≥ 1 keeps ρ ≤ 1, Kappa is in (0.5, 1]
	// (Robbins–Monro). Rho, if not zero, is a constant step size in (0, 1]
	// used instead: 1 with n = b makes Update a step of batch VB, and a
	// constant step keeps tracking a latent space that keeps moving.
	Tau0, Kappa, Rho float64

	Seed uint64 // seeds the component means at the first Update

	// NoMerge turns off the merge moves after each step (doc.go), leaving
	// plain SVI.
	NoMerge bool
}

// withDefaults returns c with zero fields set to their defaults, or an error
// wrapping ErrInvalidConfig that names the first field out of range.
func (c Config) withDefaults() (Config, error) {
	if c.K == 0 {
		c.K = DefaultK
	}
	if c.K < 1 || c.K > MaxK || c.D < 1 || c.D > MaxD || c.K*c.D > MaxParams {
		return c, fmt.Errorf("%w: K = %d, D = %d: want 1 ≤ K ≤ %d, 1 ≤ D ≤ %d, K×D ≤ %d",
			ErrInvalidConfig, c.K, c.D, MaxK, MaxD, MaxParams)
	}
	for _, f := range []struct {
		name string
		p    *float64
		def  float64
	}{{"Alpha0", &c.Alpha0, DefaultAlpha0}, {"Beta0", &c.Beta0, DefaultBeta0},
		{"A0", &c.A0, DefaultA0}, {"B0", &c.B0, DefaultB0}} {
		if *f.p == 0 {
			*f.p = f.def
		}
		if !(*f.p > 0) || math.IsInf(*f.p, 1) {
			return c, fmt.Errorf("%w: %s = %v, want a positive finite number", ErrInvalidConfig, f.name, *f.p)
		}
	}
	if math.IsNaN(c.M0) || math.IsInf(c.M0, 0) {
		return c, fmt.Errorf("%w: M0 = %v, want a finite number", ErrInvalidConfig, c.M0)
	}
	return c.stepDefaults()
}

func (c Config) stepDefaults() (Config, error) {
	if c.Tau0 == 0 {
		c.Tau0 = DefaultTau0
	}
	if c.Kappa == 0 {
		c.Kappa = DefaultKappa
	}
	if !(c.Tau0 >= 1) || math.IsInf(c.Tau0, 1) {
		return c, fmt.Errorf("%w: Tau0 = %v, want a finite number ≥ 1", ErrInvalidConfig, c.Tau0)
	}
	if !(c.Kappa > 0.5 && c.Kappa <= 1) {
		return c, fmt.Errorf("%w: Kappa = %v, want it in (0.5, 1]", ErrInvalidConfig, c.Kappa)
	}
	if !(c.Rho >= 0 && c.Rho <= 1) {
		return c, fmt.Errorf("%w: Rho = %v, want it in (0, 1], or 0 for the schedule", ErrInvalidConfig, c.Rho)
	}
	return c, nil
}

// Mixture is a Bayesian Gaussian mixture with diagonal covariances and its
// variational posterior, learned by stochastic variational inference.
//
// Update and Restore change it; Assign and the inspectors only read it, so any
// number of Assigns (each with its own Assignment and rng) may run at once,
// but not while an Update or Restore runs.
type Mixture struct {
	cfg Config
	t   uint64 // steps taken

	// The global variational parameters: q(π) = Dir(alpha), and for
	// component k, dimension d (index k*D+d) q(μ, τ) = NG(mean, beta, shape,
	// rate).
	alpha                   []float64
	mean, beta, shape, rate []float64

	der derived

	// Scratch of Update: a row's log-weights (then responsibilities), the
	// batch's sufficient statistics Σr, Σr·x, Σr·(x²+v), and for the merge
	// moves the entropy a merge of k < j would lose, at k*K+j, with the
	// components a row shares and the candidate merges.
	ell, nk, s1, s2, hpair []float64
	shared                 []int
	cands                  []mergeCand
}

// New returns a mixture of cfg.K components, every one at the prior until
// the first Update seeds them; the error wraps ErrInvalidConfig.
func New(cfg Config) (*Mixture, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	K, KD := cfg.K, cfg.K*cfg.D
	m := &Mixture{cfg: cfg, alpha: make([]float64, K),
		mean: make([]float64, KD), beta: make([]float64, KD),
		shape: make([]float64, KD), rate: make([]float64, KD),
		ell: make([]float64, K), nk: make([]float64, K),
		s1: make([]float64, KD), s2: make([]float64, KD),
		hpair: make([]float64, K*K), shared: make([]int, 0, K),
		cands: make([]mergeCand, 0, K*(K-1)/2)}
	m.der.alloc(K, cfg.D)
	for k := range K {
		m.alpha[k] = cfg.Alpha0
	}
	for i := range KD {
		m.mean[i], m.beta[i], m.shape[i], m.rate[i] = cfg.M0, cfg.Beta0, cfg.A0, cfg.B0
	}
	m.refresh()
	return m, nil
}

// Config returns the mixture's config with its defaults filled in.
func (m *Mixture) Config() Config { return m.cfg }

// Steps returns the number of Updates taken (restored by Restore).
func (m *Mixture) Steps() int { return int(m.t) }

// Weights returns the expected weights E[π_k] = α_k / Σα, K numbers.
func (m *Mixture) Weights() []float64 {
	return append([]float64(nil), m.der.w...)
}

// Means returns the components' posterior means m_kd, K×D row-major.
func (m *Mixture) Means() []float64 {
	return append([]float64(nil), m.mean...)
}

// Variances returns the components' predictive variances σ²_kd =
// b(β+1)/(aβ), K×D row-major: the variance Assign gives (as a log).
func (m *Mixture) Variances() []float64 {
	return append([]float64(nil), m.der.pvar...)
}

// Used returns the number of components whose expected weight is at least
// minShare (DefaultMinShare is the usual choice).
func (m *Mixture) Used(minShare float64) int {
	n := 0
	for _, w := range m.der.w {
		if w >= minShare {
			n++
		}
	}
	return n
}

// Posterior is a copy of the global variational parameters: q(π) =
// Dirichlet(Alpha), K numbers, and for component k and dimension d, at
// k*D+d, q(μ_kd, τ_kd) = NormalGamma(Mean, Beta, Shape, Rate), that is
// τ ~ Gamma(Shape, Rate) (rate, not scale) and μ | τ ~ N(Mean, 1/(Beta·τ)).
type Posterior struct {
	Alpha                   []float64
	Mean, Beta, Shape, Rate []float64
}

// Posterior returns a copy of the variational parameters.
func (m *Mixture) Posterior() Posterior {
	c := func(s []float64) []float64 { return append([]float64(nil), s...) }
	return Posterior{Alpha: c(m.alpha), Mean: c(m.mean), Beta: c(m.beta), Shape: c(m.shape), Rate: c(m.rate)}
}

// Assignment is what Assign gives for a batch of B rows: Category and Prob
// have B entries, Mu and LogVar are B×D row-major (the log of the variance,
// not σ). Assign grows them to the batch and reuses them afterwards, so
// that once grown it allocates nothing.
type Assignment struct {
	Category []int     // the chosen component
	Prob     []float32 // its posterior probability given the row's evidence
	Mu       []float32 // its mean m_k
	LogVar   []float32 // its predictive log-variance log σ²_k

	logp []float64 // scratch: a row's unnormalised log-posterior, K entries
}

func (a *Assignment) grow(b, K, D int) {
	a.Category = growTo(a.Category, b)
	a.Prob = growTo(a.Prob, b)
	a.Mu = growTo(a.Mu, b*D)
	a.LogVar = growTo(a.LogVar, b*D)
	a.logp = growTo(a.logp, K)
}

func growTo[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Assign infers each row's component without learning. Row i's evidence
// about z is a diagonal Gaussian in natural parameters: precision prec and
// shift h = prec·mean (b×D, row-major), where a precision of 0 means no
// evidence in that dimension and its h is ignored. The posterior is
//
//	p(c = k | evidence) ∝ E[π_k] · Π_{d: prec_d > 0} N(h_d/prec_d; m_kd, σ²_kd + 1/prec_d),
//
// and Assign picks its argmax. A row with no evidence at all gets a
// component drawn from E[π] with rng (so that generating from nothing
// samples the mixture) and Prob = E[π_k]; rng may be nil if every row has
// some evidence. dst gets each row's component, its probability and its
// Gaussian N(m_k, σ²_k), the prior the VAE puts on z.
//
// It panics on mismatched lengths, a negative or non-finite prec, a
// non-finite h, or a row without evidence and a nil rng.
func (m *Mixture) Assign(dst *Assignment, prec, h []float32, b int, rng *rand.Rand) {
	D := m.cfg.D
	m.checkEvidence(prec, h, b)
	dst.grow(b, m.cfg.K, D)
	for i := range b {
		k, p, ok := m.classify(dst.logp, prec[i*D:(i+1)*D], h[i*D:(i+1)*D])
		if !ok {
			if rng == nil {
				panic(fmt.Sprintf("concept: Assign: row %d has no evidence and rng is nil", i))
			}
			k = m.sample(rng)
			p = m.der.w[k]
		}
		dst.Category[i], dst.Prob[i] = k, float32(p)
		mu := dst.Mu[i*D : (i+1)*D]
		for d := range mu {
			mu[d] = float32(m.mean[k*D+d])
		}
		copy(dst.LogVar[i*D:(i+1)*D], m.der.plogv[k*D:(k+1)*D])
	}
}

func (m *Mixture) checkEvidence(prec, h []float32, b int) {
	D := m.cfg.D
	if b < 0 || len(prec) != b*D || len(h) != b*D {
		panic(fmt.Sprintf("concept: Assign: len(prec) = %d, len(h) = %d, want b×D = %d×%d", len(prec), len(h), b, D))
	}
	for i, p := range prec {
		if f := float64(p); !(f >= 0) || math.IsInf(f, 1) {
			panic(fmt.Sprintf("concept: Assign: prec[%d] = %v, want a finite precision ≥ 0", i, p))
		}
		if f := float64(h[i]); math.IsNaN(f) || math.IsInf(f, 0) {
			panic(fmt.Sprintf("concept: Assign: h[%d] = %v is not finite", i, h[i]))
		}
	}
}

// classify returns the argmax of a row's posterior over the components and
// its probability, or false if the row has no evidence. logp is scratch.
func (m *Mixture) classify(logp []float64, prec, h []float32) (int, float64, bool) {
	D := m.cfg.D
	copy(logp, m.der.logw)
	seen := false
	for d, pf := range prec {
		if pf == 0 {
			continue
		}
		seen = true
		p := float64(pf)
		mean, extra := float64(h[d])/p, 1/p
		for k := range logp {
			s := m.der.pvar[k*D+d] + extra
			e := mean - m.mean[k*D+d]
			logp[k] -= 0.5 * (math.Log(s) + e*e/s)
		}
	}
	if !seen {
		return 0, 0, false
	}
	best := 0
	for k, l := range logp {
		if l > logp[best] {
			best = k
		}
	}
	return best, math.Exp(logp[best] - logSumExp(logp)), true
}

// sample draws a component from E[π].
func (m *Mixture) sample(rng *rand.Rand) int {
	cum := m.der.cumw
	u := rng.Float64() * cum[len(cum)-1]
	for k, c := range cum {
		if u < c {
			return k
		}
	}
	return len(cum) - 1
}

// Fuse writes the product of a diagonal Gaussian prior (mean priorMu,
// log-variance priorLogVar) and evidence in natural parameters (precision
// prec ≥ 0, shift h = prec·mean) into dstMean and dstVar, the posterior's
// mean and variance (not log):
//
//	1/var = exp(−priorLogVar) + prec,  mean = var·(priorMu·exp(−priorLogVar) + h).
//
// A wrapper learns from these, the q_n = prior × evidence of an item. The
// prior's log-variance is clamped to ±poe.MaxLogVar, as poe clamps an
// expert's. All slices have one length (any, such as B×D); the dst slices
// may alias the inputs element for element. It panics on mismatched
// lengths or a negative or non-finite prec.
func Fuse(dstMean, dstVar, priorMu, priorLogVar, prec, h []float32) {
	n := len(priorMu)
	if len(dstMean) != n || len(dstVar) != n || len(priorLogVar) != n || len(prec) != n || len(h) != n {
		panic(fmt.Sprintf("concept: Fuse: lengths dstMean %d, dstVar %d, priorMu %d, priorLogVar %d, prec %d, h %d differ",
			len(dstMean), len(dstVar), n, len(priorLogVar), len(prec), len(h)))
	}
	for i := range n {
		p := float64(prec[i])
		if !(p >= 0) || math.IsInf(p, 1) {
			panic(fmt.Sprintf("concept: Fuse: prec[%d] = %v, want a finite precision ≥ 0", i, prec[i]))
		}
		lv, _ := poe.ClampLogVar(float64(priorLogVar[i]))
		pp := math.Exp(-lv)
		t := pp + p
		mean := (pp*float64(priorMu[i]) + float64(h[i])) / t
		dstMean[i], dstVar[i] = float32(mean), float32(1/t)
	}
}
