package poe

import (
	"fmt"
	"math"
)

// MaxLogVar bounds every expert's log-variance: Fuse clamps each l_k to
// [-MaxLogVar, MaxLogVar] before exponentiating it, so that an encoder that
// drifts to extreme log-variances cannot overflow the precision to +Inf (or
// underflow it to 0 and divide by it). exp(20) ≈ 4.9e8, so eight experts at the
// bound still give a precision well inside float32 range. A clamped l_k gets a
// zero dL/dl_k in Backward, which is the true derivative of the clamp.
const MaxLogVar = 20

// Expert is one modality's diagonal Gaussian posterior for a batch of B rows
// and D latent dimensions.
//
// Mu is the mean and LogVar the natural log of the variance (log sigma^2, not
// sigma), both B×D row-major. Present has length B and says which rows this
// expert observed; an absent row contributes nothing to the product (as if the
// expert had infinite variance). A nil Present means every row is present.
type Expert struct {
	Mu, LogVar []float32
	Present    []bool
}

// ExpertGrad is the gradient of the objective with respect to one expert's
// parameters: DMu is dL/dMu and DLogVar is dL/dLogVar (with respect to the
// log-variance, not sigma), both B×D row-major. Backward adds into them, so
// zero them before the first term of a step.
type ExpertGrad struct {
	DMu, DLogVar []float32
}

// Prior is the prior expert of a product: a diagonal Gaussian per row, Mu
// and LogVar B×D row-major, as a prior module (a concept mixture) sends
// it. The zero Prior is N(0, I) in every row. Its log-variance is clamped
// like an expert's.
type Prior struct {
	Mu, LogVar []float32
}

// Standard reports whether p is N(0, I).
func (p Prior) Standard() bool { return p.Mu == nil && p.LogVar == nil }

// Fused is the product of a set of experts and a prior (N(0, I) unless
// FuseWith is given another), for a batch.
//
// Mu, Var and LogVar are the fused mean, variance and log-variance, B×D
// row-major; they are owned by f and overwritten by the next Fuse. A Fused
// keeps what Backward needs (including each expert's precision), so reuse one
// per subset across steps: Fuse grows its buffers only when B×D (or the number
// of experts times B×D) grows, and after that no method allocates.
type Fused struct {
	B, D            int
	Mu, Var, LogVar []float32

	// prec and mu64 are the fused precision T and mean in float64, kept so that
	// Sample, KL, TermGrad and Backward do not lose the accuracy that storing
	// Var (which can be ~1e-10) in float32 would cost.
	prec, mu64 []float64
	// logPrec is log T, shared by LogVar and KL so the log is taken once.
	logPrec []float64
	// tk holds each expert's precision exp(-clamp(l_k)), expert k at
	// [k*B*D, (k+1)*B*D), so that Backward does not pay for the exponentials a
	// second time (they dominate the cost). Entries of absent rows are stale.
	tk []float64
	// nExperts is len(experts) at the last Fuse, to catch a Backward that is
	// handed a different expert list.
	nExperts int
	// pprec and pmu are the prior's precision and mean when it is not
	// N(0, I) (standard), which KL and TermGrad take the divergence from.
	pprec, pmu, plog []float64
	standard         bool
}

// ClampLogVar limits l to [-MaxLogVar, MaxLogVar] and reports whether it was
// inside the range (so that its gradient passes through).
func ClampLogVar(l float64) (float64, bool) {
	switch {
	case l < -MaxLogVar:
		return -MaxLogVar, false
	case l > MaxLogVar:
		return MaxLogVar, false
	}
	return l, true
}

func checkExpert(e Expert, k, b, d int) {
	if len(e.Mu) != b*d {
		panic(fmt.Sprintf("poe: expert %d: len(Mu) = %d, want B×D = %d×%d", k, len(e.Mu), b, d))
	}
	if len(e.LogVar) != b*d {
		panic(fmt.Sprintf("poe: expert %d: len(LogVar) = %d, want B×D = %d×%d", k, len(e.LogVar), b, d))
	}
	if e.Present != nil && len(e.Present) != b {
		panic(fmt.Sprintf("poe: expert %d: len(Present) = %d, want B = %d", k, len(e.Present), b))
	}
}

func (f *Fused) checkLen(name string, s []float32) {
	if len(s) != f.B*f.D {
		panic(fmt.Sprintf("poe: len(%s) = %d, want B×D = %d×%d", name, len(s), f.B, f.D))
	}
}

func grow32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func grow64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// Fuse writes into f the product of the experts and the N(0, I) prior, for b
// rows of d latent dimensions: per element, with T_k = exp(-clamp(l_k)) over
// the experts present in that row,
//
//	T = 1 + sum_k T_k,  Mu = (sum_k T_k mu_k) / T,  Var = 1/T.
//
// experts may be empty, and a row where every expert is absent is exactly the
// prior N(0, 1). f's buffers are reused when large enough; the experts are
// only read. Fuse panics if b or d is negative or if an expert's Mu or LogVar
// length is not b*d or its non-nil Present length is not b.
func (f *Fused) Fuse(experts []Expert, b, d int) { f.FuseWith(Prior{}, experts, b, d) }

// FuseWith is Fuse under prior p instead of N(0, I): with T_p = exp(-clamp(l_p))
// and mu_p the prior's precision and mean,
//
//	T = T_p + sum_k T_k,  Mu = (T_p mu_p + sum_k T_k mu_k) / T,
//
// and KL and TermGrad then measure the divergence from p. The prior gets no
// gradient: it is a constant of the step, learned elsewhere. FuseWith
// panics if p is not standard and its Mu or LogVar length is not b*d.
func (f *Fused) FuseWith(p Prior, experts []Expert, b, d int) {
	if b < 0 || d < 0 {
		panic(fmt.Sprintf("poe: negative batch shape %d×%d", b, d))
	}
	for k, e := range experts {
		checkExpert(e, k, b, d)
	}
	n := b * d
	f.B, f.D, f.nExperts = b, d, len(experts)
	f.Mu = grow32(f.Mu, n)
	f.Var = grow32(f.Var, n)
	f.LogVar = grow32(f.LogVar, n)
	f.prec = grow64(f.prec, n)
	f.mu64 = grow64(f.mu64, n)
	f.logPrec = grow64(f.logPrec, n)
	f.tk = grow64(f.tk, len(experts)*n)

	// Accumulate expert by expert, row by row, so the presence test is paid
	// once per row rather than once per element; mu64 holds sum_k T_k mu_k
	// until the final pass divides it by T.
	f.startPrior(p, n)
	for k, e := range experts {
		for r := range b {
			if e.Present != nil && !e.Present[r] {
				continue
			}
			lo, hi := r*d, (r+1)*d
			mu, lv := e.Mu[lo:hi], e.LogVar[lo:hi]
			prec, num := f.prec[lo:hi], f.mu64[lo:hi]
			tks := f.tk[k*n+lo : k*n+hi]
			for j := range mu {
				l, _ := ClampLogVar(float64(lv[j]))
				tk := math.Exp(-l)
				tks[j] = tk
				prec[j] += tk
				num[j] += tk * float64(mu[j])
			}
		}
	}
	for i := range n {
		t := f.prec[i]
		m := f.mu64[i] / t
		f.mu64[i] = m
		f.Mu[i] = float32(m)
		f.Var[i] = float32(1 / t)
		lt := math.Log(t)
		f.logPrec[i] = lt
		f.LogVar[i] = float32(-lt)
	}
}

// startPrior puts prior p's precision and precision-weighted mean into
// prec and mu64, the sums Fuse adds the experts to.
func (f *Fused) startPrior(p Prior, n int) {
	f.standard = p.Standard()
	if f.standard {
		for i := range n {
			f.prec[i], f.mu64[i] = 1, 0
		}
		return
	}
	if len(p.Mu) != n || len(p.LogVar) != n {
		panic(fmt.Sprintf("poe: prior: len(Mu), len(LogVar) = %d, %d, want B×D = %d×%d", len(p.Mu), len(p.LogVar), f.B, f.D))
	}
	f.pprec, f.pmu, f.plog = grow64(f.pprec, n), grow64(f.pmu, n), grow64(f.plog, n)
	for i := range n {
		l, _ := ClampLogVar(float64(p.LogVar[i]))
		t, m := math.Exp(-l), float64(p.Mu[i])
		f.pprec[i], f.pmu[i], f.plog[i] = t, m, -l
		f.prec[i], f.mu64[i] = t, t*m
	}
}

// priorAt is the prior's precision, mean and log-precision at element i.
func (f *Fused) priorAt(i int) (prec, mu, logPrec float64) {
	if f.standard {
		return 1, 0, 0
	}
	return f.pprec[i], f.pmu[i], f.plog[i]
}

// Sample writes the reparameterised draw z = Mu + sqrt(Var)*eps into z, where
// eps is standard normal noise supplied by the caller; z and eps are B×D
// row-major. Keep eps: TermGrad needs the same noise. z may be eps itself
// (each element is read before it is written) but must not otherwise overlap
// it. Sample panics if len(z) or len(eps) is not B*D.
func (f *Fused) Sample(z, eps []float32) {
	f.checkLen("z", z)
	f.checkLen("eps", eps)
	for i, t := range f.prec {
		z[i] = float32(f.mu64[i] + float64(eps[i])/math.Sqrt(t))
	}
}

// SampleRow is Sample for one row: z = Mu + sqrt(Var)*eps of row r, z and
// eps of length D. It panics if r is out of range or a length is not D.
func (f *Fused) SampleRow(z, eps []float32, r int) {
	if r < 0 || r >= f.B || len(z) != f.D || len(eps) != f.D {
		panic(fmt.Sprintf("poe: SampleRow(row %d) with len(z), len(eps) = %d, %d; want a row of %d×%d", r, len(z), len(eps), f.B, f.D))
	}
	for j := range z {
		i := r*f.D + j
		z[j] = float32(f.mu64[i] + float64(eps[j])/math.Sqrt(f.prec[i]))
	}
}

// KL writes KL(N(Mu, Var) || p) in nats, p being the prior of the last Fuse
// (N(0, I) unless FuseWith gave another), summed over the D dimensions, for
// each row into kl (length B), and returns the sum over the batch in
// float64 so that large batches do not lose precision. KL panics if len(kl)
// is not B.
func (f *Fused) KL(kl []float32) float64 {
	if len(kl) != f.B {
		panic(fmt.Sprintf("poe: len(kl) = %d, want B = %d", len(kl), f.B))
	}
	var total float64
	for r := range f.B {
		var s float64
		for i := r * f.D; i < (r+1)*f.D; i++ {
			t, m := f.prec[i], f.mu64[i]
			// With var = 1/T, "- log var" is "+ log T"; working from T keeps
			// the prior (T = T_p) exactly at zero.
			tp, mp, lp := f.priorAt(i)
			dm := m - mp
			s += 0.5 * (tp/t + tp*dm*dm - 1 + f.logPrec[i] - lp)
		}
		kl[r] = float32(s)
		total += s
	}
	return total
}

// TermGrad gives the gradient of one ELBO term L = loglik - beta*KL with
// respect to the fused posterior's mean and variance (variance, not
// log-variance), overwriting dmu and dvar:
//
//	dmu  = g - beta*T_p*(Mu - mu_p)
//	dvar = g*eps / (2*sqrt(Var)) - beta/2*(T_p - 1/Var)
//
// (T_p = 1 and mu_p = 0 under N(0, I)).
// g is dL/dz summed over the term's decoders and eps is the noise passed to
// Sample; all four slices are B×D row-major. dmu and dvar must be distinct,
// but either may be g or eps itself (each element is read before it is
// written). TermGrad panics if any length is not B*D.
func (f *Fused) TermGrad(dmu, dvar, g, eps []float32, beta float32) {
	f.checkLen("dmu", dmu)
	f.checkLen("dvar", dvar)
	f.checkLen("g", g)
	f.checkLen("eps", eps)
	bt := float64(beta)
	for i, t := range f.prec {
		gi, ei := float64(g[i]), float64(eps[i])
		// dz/dvar = eps/(2 sqrt var) = eps*sqrt(T)/2, and dKL/dvar = (T_p - T)/2.
		tp, mp, _ := f.priorAt(i)
		dm := gi - bt*tp*(f.mu64[i]-mp)
		dv := 0.5*gi*ei*math.Sqrt(t) - 0.5*bt*(tp-t)
		dmu[i] = float32(dm)
		dvar[i] = float32(dv)
	}
}

// Backward adds into grads[k].DMu and grads[k].DLogVar the gradient of the
// objective with respect to expert k's mean and log-variance, given dmu and
// dvar (B×D, from TermGrad) for this fused posterior:
//
//	dL/dmu_k = dmu * T_k/T
//	dL/dl_k  = -T_k * (dmu*(mu_k - Mu)/T - dvar/T^2)
//
// It accumulates because an expert that belongs to several subsets gets the
// sum of their gradients. Absent rows get nothing added, and an l_k outside
// [-MaxLogVar, MaxLogVar] gets no dL/dl_k (the clamp's derivative is zero).
// experts must be the slice, in the same order and unmodified, given to the
// last Fuse (the expert precisions are taken from that Fuse), and grads must
// have one entry per expert with B×D DMu and DLogVar that do not overlap the
// experts, dmu or dvar. Backward panics if the number of experts
// differs from the last Fuse, len(grads) != len(experts), or a length is
// wrong.
func (f *Fused) Backward(grads []ExpertGrad, experts []Expert, dmu, dvar []float32) {
	if len(experts) != f.nExperts {
		panic(fmt.Sprintf("poe: Backward got %d experts, last Fuse had %d", len(experts), f.nExperts))
	}
	if len(grads) != len(experts) {
		panic(fmt.Sprintf("poe: len(grads) = %d, want len(experts) = %d", len(grads), len(experts)))
	}
	f.checkLen("dmu", dmu)
	f.checkLen("dvar", dvar)
	b, d := f.B, f.D
	n := b * d
	for k, e := range experts {
		checkExpert(e, k, b, d)
		gk := grads[k]
		if len(gk.DMu) != b*d || len(gk.DLogVar) != b*d {
			panic(fmt.Sprintf("poe: grads[%d]: len(DMu), len(DLogVar) = %d, %d, want B×D = %d×%d",
				k, len(gk.DMu), len(gk.DLogVar), b, d))
		}
		for r := range b {
			if e.Present != nil && !e.Present[r] {
				continue
			}
			for i := r * d; i < (r+1)*d; i++ {
				t, tk := f.prec[i], f.tk[k*n+i]
				_, inside := ClampLogVar(float64(e.LogVar[i]))
				dm, dv := float64(dmu[i]), float64(dvar[i])
				gk.DMu[i] = float32(float64(gk.DMu[i]) + dm*tk/t)
				if inside {
					// dT/dl_k = -T_k; dMu/dT_k = (mu_k - Mu)/T; dVar/dT_k = -1/T^2.
					dl := -tk * (dm*(float64(e.Mu[i])-f.mu64[i])/t - dv/(t*t))
					gk.DLogVar[i] = float32(float64(gk.DLogVar[i]) + dl)
				}
			}
		}
	}
}

// Evidence writes into prec and shift what the experts say of each element
// without any prior, in natural parameters: prec = sum_k T_k (0 where no
// expert is present) and shift = sum_k T_k mu_k, b×d each. A prior module
// gets it to place each item; the product under prior p is then
// T = T_p + prec, Mu = (T_p mu_p + shift) / T. Evidence panics if a length
// is wrong.
func Evidence(prec, shift []float32, experts []Expert, b, d int) {
	n := b * d
	if len(prec) != n || len(shift) != n {
		panic(fmt.Sprintf("poe: Evidence: len(prec), len(shift) = %d, %d, want B×D = %d×%d", len(prec), len(shift), b, d))
	}
	for k, e := range experts {
		checkExpert(e, k, b, d)
	}
	for i := range n {
		var t, h float64
		for _, e := range experts {
			if e.Present != nil && !e.Present[i/d] {
				continue
			}
			l, _ := ClampLogVar(float64(e.LogVar[i]))
			tk := math.Exp(-l)
			t += tk
			h += tk * float64(e.Mu[i])
		}
		prec[i], shift[i] = float32(t), float32(h)
	}
}
