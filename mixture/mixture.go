package mixture

import (
	"fmt"
	"math"

	"github.com/serket-go/serket/poe"
)

// Mixture computes the terms of one stratum at a time of the stratified
// ELBO, for a batch of B rows and D latent dimensions. Set B and D before the
// first call (Mixture{B: b, D: d} is ready to use); they may change between
// steps.
//
// Per stratum r, call Sample, run the decoders on z, then Penalty and
// Backward with the same r, components and z; Weights may come at any time.
// Penalty keeps what Backward needs (each component's precision and each
// row's responsibilities), so Backward must follow the Penalty of its own
// stratum, and panics when the stratum, the number of components or B×D
// differ. Buffers grow when B×D or the number of components grows; after
// that no method allocates. A Mixture is not safe for concurrent use.
type Mixture struct {
	B, D int

	// tk holds component k's precisions exp(-clamp(l_k)) at
	// [k*B*D, (k+1)*B*D), so that Backward does not pay for the exponentials
	// (the bulk of the cost) a second time. Entries of absent rows are stale.
	tk []float64
	// resp is each row's responsibilities, B×K row-major: exactly 0 for a
	// component absent from the row, so that Backward can skip on it.
	resp []float64
	// w is each row's weight in the last Penalty's stratum.
	w []float64
	// dz is Backward's scratch row, length D.
	dz []float64
	// last is the stratum and shape of the last Penalty, so that a Backward
	// for another one panics instead of using stale responsibilities.
	last struct {
		ok              bool
		r, nComps, b, d int
	}
}

func present(c poe.Expert, row int) bool {
	return c.Present == nil || c.Present[row]
}

// weight is 1/M for a row where component r is present among M, else 0.
func weight(comps []poe.Expert, r, row int) float64 {
	if !present(comps[r], row) {
		return 0
	}
	n := 0
	for _, c := range comps {
		if present(c, row) {
			n++
		}
	}
	return 1 / float64(n)
}

// check panics unless the shape is valid, r names a component and every
// component is B×D.
func (m *Mixture) check(comps []poe.Expert, r int) {
	b, d := m.B, m.D
	if b < 0 || d < 0 {
		panic(fmt.Sprintf("mixture: negative batch shape %d×%d", b, d))
	}
	if r < 0 || r >= len(comps) {
		panic(fmt.Sprintf("mixture: stratum r = %d, want 0 <= r < %d components", r, len(comps)))
	}
	for k, c := range comps {
		if len(c.Mu) != b*d {
			panic(fmt.Sprintf("mixture: component %d: len(Mu) = %d, want B×D = %d×%d", k, len(c.Mu), b, d))
		}
		if len(c.LogVar) != b*d {
			panic(fmt.Sprintf("mixture: component %d: len(LogVar) = %d, want B×D = %d×%d", k, len(c.LogVar), b, d))
		}
		if c.Present != nil && len(c.Present) != b {
			panic(fmt.Sprintf("mixture: component %d: len(Present) = %d, want B = %d", k, len(c.Present), b))
		}
	}
}

func (m *Mixture) checkLen(name string, s []float32) {
	if len(s) != m.B*m.D {
		panic(fmt.Sprintf("mixture: len(%s) = %d, want B×D = %d×%d", name, len(s), m.B, m.D))
	}
}

func (m *Mixture) checkRows(name string, s []float32) {
	if len(s) != m.B {
		panic(fmt.Sprintf("mixture: len(%s) = %d, want B = %d", name, len(s), m.B))
	}
}

func grow64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// Sample writes stratum r's latent into z: z = Mu_r + exp(clamp(l_r)/2)*eps
// in rows where component r is present, and z = eps in the others, a prior
// draw for a row that has no stratum r (its weight is 0, so nothing it
// decodes counts). eps is standard normal noise from the caller; keep it for
// Backward. z and eps are B×D; z may be eps itself but must not otherwise
// overlap it. Sample panics on a length mismatch or an r out of range.
func (m *Mixture) Sample(z, eps []float32, comps []poe.Expert, r int) {
	m.check(comps, r)
	m.checkLen("z", z)
	m.checkLen("eps", eps)
	c, d := comps[r], m.D
	for row := range m.B {
		lo, hi := row*d, (row+1)*d
		if !present(c, row) {
			copy(z[lo:hi], eps[lo:hi])
			continue
		}
		for i := lo; i < hi; i++ {
			l, _ := poe.ClampLogVar(float64(c.LogVar[i]))
			z[i] = float32(float64(c.Mu[i]) + math.Exp(0.5*l)*float64(eps[i]))
		}
	}
}

// Weights writes into w (length B) each row's factor in stratum r: 1/M
// where component r is present among the row's M components, 0 where it is
// absent. Summed over the strata it is 1 in every row with a component.
// Callers scale stratum r's decoder losses by it; Penalty and Backward apply
// it themselves. Weights panics on a length mismatch or an r out of range.
func (m *Mixture) Weights(w []float32, comps []poe.Expert, r int) {
	m.check(comps, r)
	m.checkRows("w", w)
	for row := range m.B {
		w[row] = float32(weight(comps, r, row))
	}
}

// Penalty writes into pen (length B) the one-sample estimate of stratum r's
// KL term, log q(z|X) - log N(z; 0, I) in nats, for each row with stratum r
// (0 elsewhere), and returns sum_rows w*pen in float64, w as in Weights. One
// sample of a KL can be negative. z is the B×D latent Sample wrote for r,
// taken as it is in float32, the latent the decoders see: where sigma_r is
// below the float32 spacing of Mu_r (a log-variance near -MaxLogVar with
// |Mu| in the hundreds), that rounding dominates z - Mu_r. Penalty keeps the
// responsibilities for Backward. It panics on a length mismatch or an r out
// of range.
func (m *Mixture) Penalty(pen, z []float32, comps []poe.Expert, r int) float64 {
	m.check(comps, r)
	m.checkRows("pen", pen)
	m.checkLen("z", z)
	b, nc := m.B, len(comps)
	m.tk = grow64(m.tk, nc*b*m.D)
	m.resp = grow64(m.resp, nc*b)
	m.w = grow64(m.w, b)
	m.dz = grow64(m.dz, m.D)
	m.last.ok, m.last.r, m.last.nComps, m.last.b, m.last.d = true, r, nc, b, m.D
	var total float64
	for row := range b {
		w := weight(comps, r, row)
		m.w[row] = w
		if w == 0 {
			pen[row] = 0
			clear(m.resp[row*nc : (row+1)*nc])
			continue
		}
		p := m.penaltyRow(z, comps, row)
		pen[row] = float32(p)
		total += w * p
	}
	return total
}

// penaltyRow returns one row's log q(z|X) - log N(z; 0, I), leaving the
// row's responsibilities in m.resp and its components' precisions in m.tk.
// The -D/2 log 2π of the two densities cancel, so neither is computed.
func (m *Mixture) penaltyRow(z []float32, comps []poe.Expert, row int) float64 {
	d, n, nc := m.D, m.B*m.D, len(comps)
	lo, hi := row*d, (row+1)*d
	resp := m.resp[row*nc : (row+1)*nc]
	// resp holds log q_k(z) + D/2 log 2π until the softmax; absent
	// components are -Inf, which the softmax turns into exactly 0.
	amax, count := math.Inf(-1), 0
	for k, c := range comps {
		if !present(c, row) {
			resp[k] = math.Inf(-1)
			continue
		}
		count++
		mu, lv, tks := c.Mu[lo:hi], c.LogVar[lo:hi], m.tk[k*n+lo:k*n+hi]
		var a float64
		for j, zj := range z[lo:hi] {
			l, _ := poe.ClampLogVar(float64(lv[j]))
			t := math.Exp(-l)
			tks[j] = t
			dz := float64(zj) - float64(mu[j])
			a -= 0.5 * (l + dz*dz*t)
		}
		resp[k] = a
		amax = max(amax, a)
	}
	var sum float64
	for k, a := range resp {
		e := math.Exp(a - amax)
		resp[k] = e
		sum += e
	}
	for k := range resp {
		resp[k] /= sum
	}
	var zz float64
	for _, zj := range z[lo:hi] {
		zz += float64(zj) * float64(zj)
	}
	// log(sum/M) rather than log(sum) - log(M): identical components then
	// give sum/M = 1 and exactly one component's density.
	return amax + math.Log(sum/float64(count)) + 0.5*zz
}

// Backward adds into grads[k].DMu and grads[k].DLogVar the gradient, with
// respect to every component's mean and log-variance, of stratum r's terms
//
//	sum_rows w * (loglik(z) - beta*pen),
//
// given g = d(w*loglik)/dz: the decoders' gradient with each row already
// weighed by w (B×D; decoders weigh their rows by Weights, which is what
// Latent.W carries to modules), z the latent Sample wrote and eps its noise. Both dependencies count: z on
// Mu_r and l_r (dz/dMu_r = 1, dz/dl_r = eps*sigma_r/2), and the density log q
// on every present component's Mu_k and l_k (see the package doc). Rows
// without stratum r and components absent from a row get nothing, and an l_k
// outside ±poe.MaxLogVar gets no DLogVar.
//
// Backward must follow the Penalty of the same stratum, with the same
// components (in the same order, unmodified) and z. grads has one entry per
// component, with B×D DMu and DLogVar that overlap none of the inputs; it
// accumulates, so a component gets the sum over strata. Backward panics if
// the last Penalty had another r, number of components or shape, or on a
// length mismatch.
func (m *Mixture) Backward(grads []poe.ExpertGrad, comps []poe.Expert, z, g, eps []float32, beta float32, r int) {
	l := m.last
	if !l.ok {
		panic("mixture: Backward before Penalty")
	}
	if r != l.r || len(comps) != l.nComps || m.B != l.b || m.D != l.d {
		panic(fmt.Sprintf("mixture: Backward for stratum %d of %d components, %d×%d; last Penalty was stratum %d of %d, %d×%d",
			r, len(comps), m.B, m.D, l.r, l.nComps, l.b, l.d))
	}
	m.check(comps, r)
	m.checkLen("z", z)
	m.checkLen("g", g)
	m.checkLen("eps", eps)
	if len(grads) != len(comps) {
		panic(fmt.Sprintf("mixture: len(grads) = %d, want len(comps) = %d", len(grads), len(comps)))
	}
	for k, gk := range grads {
		if len(gk.DMu) != m.B*m.D || len(gk.DLogVar) != m.B*m.D {
			panic(fmt.Sprintf("mixture: grads[%d]: len(DMu), len(DLogVar) = %d, %d, want B×D = %d×%d",
				k, len(gk.DMu), len(gk.DLogVar), m.B, m.D))
		}
	}
	for row := range m.B {
		if m.w[row] != 0 {
			m.backwardRow(grads, comps, z, g, eps, float64(beta), r, row)
		}
	}
}

// backwardRow is Backward for one row with stratum r. Component r's two
// paths are summed in float64 before one write: they nearly cancel when
// sigma_r is small, and adding each to a float32 would keep the rounding.
func (m *Mixture) backwardRow(grads []poe.ExpertGrad, comps []poe.Expert, z, g, eps []float32, beta float64, r, row int) {
	d, n, nc := m.D, m.B*m.D, len(comps)
	lo, hi := row*d, (row+1)*d
	w := m.w[row]
	bw := beta * w
	resp := m.resp[row*nc : (row+1)*nc]
	zr, gr, er := z[lo:hi], g[lo:hi], eps[lo:hi]
	// dz is first dlog q/dz = -sum_k rho_k (z - mu_k) t_k, then the whole
	// derivative of the row's terms with respect to z (dlog N(z; 0, I)/dz = -z).
	dz := m.dz[:d]
	clear(dz)
	for k, rho := range resp {
		if rho == 0 {
			continue
		}
		mu, tk := comps[k].Mu[lo:hi], m.tk[k*n+lo:k*n+hi]
		for j, zj := range zr {
			dz[j] -= rho * (float64(zj) - float64(mu[j])) * tk[j]
		}
	}
	for j, zj := range zr {
		dz[j] = float64(gr[j]) - bw*(dz[j]+float64(zj))
	}
	for k, rho := range resp {
		if rho == 0 && k != r {
			continue
		}
		c, gk := comps[k], grads[k]
		mu, lv, tk := c.Mu[lo:hi], c.LogVar[lo:hi], m.tk[k*n+lo:k*n+hi]
		dmu, dlv := gk.DMu[lo:hi], gk.DLogVar[lo:hi]
		for j, zj := range zr {
			diff := float64(zj) - float64(mu[j])
			u := diff * tk[j]
			gm := -bw * rho * u
			gl := -bw * rho * 0.5 * (diff*u - 1)
			if k == r {
				gm += dz[j]
				gl += dz[j] * float64(er[j]) / (2 * math.Sqrt(tk[j])) // sigma_r = 1/sqrt(t_r)
			}
			dmu[j] = float32(float64(dmu[j]) + gm)
			if _, inside := poe.ClampLogVar(float64(lv[j])); inside {
				dlv[j] = float32(float64(dlv[j]) + gl)
			}
		}
	}
}
