package nn

import (
	"fmt"
	"math"
)

// Log-likelihoods of a batch: objectives to maximise. Each writes ll[i] =
// log p(row i) (b entries, overwritten, NOT weighted: callers report it as
// is), and the gradient of the weighted objective Σ_i w[i]·ll[i] with
// respect to the distribution's parameters into the optional gradient
// outputs (overwritten; nil skips the work).
// A row with w[i] == 0 is not read at all: ll[i] = 0 and its gradient rows
// are 0, so missing data may hold anything, NaN included. A nil w weights
// every row 1. Sums run in float64.

const log2Pi = 1.8378770664093453 // log(2π)

// weight returns w[i], or 1 when w is nil.
func weight(w []float32, i int) float32 {
	if w == nil {
		return 1
	}
	return w[i]
}

func checkLL(op string, ll, w []float32, b int) {
	checkBatch(op, b)
	checkLen(op, "ll", ll, b)
	if w != nil {
		checkLen(op, "w", w, b)
	}
}

// BernoulliLogLik scores x (b×n, each in [0,1], not necessarily binary)
// under independent Bernoulli distributions with the given logits (b×n):
//
//	ll[i] = Σ_j x·log σ(l) + (1−x)·log(1−σ(l)) = Σ_j x·l − softplus(l),
//
// computed without overflow for any finite logit. dlogits, if not nil,
// receives w[i]·(x − σ(l)).
func BernoulliLogLik(ll, dlogits, logits, x, w []float32, b, n int) {
	const op = "BernoulliLogLik"
	checkLL(op, ll, w, b)
	checkLen(op, "logits", logits, b*n)
	checkLen(op, "x", x, b*n)
	if dlogits != nil {
		checkLen(op, "dlogits", dlogits, b*n)
	}
	var e [chunk]float32
	for i := 0; i < b; i++ {
		wi := weight(w, i)
		if wi == 0 {
			ll[i] = 0
			if dlogits != nil {
				clear(dlogits[i*n : (i+1)*n])
			}
			continue
		}
		// Σ x·l − max(l,0) − log(1+e^−|l|). The logs are taken of
		// products of up to chunk factors in (1, 2], which fit a float64
		// with room to spare: one Log per chunk instead of per element.
		var lin, logs float64
		for j0 := 0; j0 < n; j0 += chunk {
			j1 := min(j0+chunk, n)
			lc := logits[i*n+j0 : i*n+j1]
			xc := x[i*n+j0 : i*n+j1]
			xc = xc[:len(lc)]
			ec := e[:len(lc)]
			for j, l := range lc {
				ec[j] = -abs32(l)
			}
			expfSlice(ec, ec)
			prod := 1.0
			if dlogits == nil {
				for j, l := range lc {
					lin += float64(xc[j]*l - pos32(l))
					prod *= 1 + float64(ec[j])
				}
			} else {
				dc := dlogits[i*n+j0 : i*n+j1]
				dc = dc[:len(lc)]
				for j, l := range lc {
					ej := ec[j]
					lin += float64(xc[j]*l - pos32(l))
					prod *= 1 + float64(ej)
					// σ(l) = 1/(1+e) for l ≥ 0, e/(1+e) for l < 0.
					mask := uint32(int32(math.Float32bits(l)) >> 31)
					num := math.Float32frombits(one32 ^ ((one32 ^ math.Float32bits(ej)) & mask))
					dc[j] = wi * (xc[j] - num/(1+ej))
				}
			}
			logs += math.Log(prod)
		}
		ll[i] = float32(lin - logs)
	}
}

// chunk is the length of the stack scratch the likelihoods work through.
const chunk = 256

const one32 = 0x3f800000 // math.Float32bits(1)

// pos32 returns max(x, 0) without a branch (0 for NaN with the sign set).
func pos32(x float32) float32 {
	b := math.Float32bits(x)
	return math.Float32frombits(b &^ uint32(int32(b)>>31))
}

func abs32(x float32) float32 {
	return math.Float32frombits(math.Float32bits(x) &^ (1 << 31))
}

// CategoricalLogLik scores class ids y (b×t, each in [0, v)) under t
// independent categorical distributions per row, given by logits (b×(t·v),
// position-major: the v logits of position 0, then position 1, …):
//
//	ll[i] = Σ_t log softmax(l_t)[y_t],
//
// with a max-shifted log-sum-exp. A negative id marks padding: that position
// adds nothing and gets a zero gradient. dlogits, if not nil, receives
// w[i]·(onehot(y_t) − softmax(l_t)). It panics on an id ≥ v.
func CategoricalLogLik(ll, dlogits, logits []float32, y []int32, w []float32, b, t, v int) {
	const op = "CategoricalLogLik"
	checkLL(op, ll, w, b)
	if v <= 0 || t < 0 {
		panic(fmt.Sprintf("nn: %s: t = %d, v = %d", op, t, v))
	}
	checkLen(op, "logits", logits, b*t*v)
	if len(y) != b*t {
		panic(fmt.Sprintf("nn: %s: len(y) = %d, want %d", op, len(y), b*t))
	}
	if dlogits != nil {
		checkLen(op, "dlogits", dlogits, b*t*v)
	}
	var e [chunk]float32
	for i := 0; i < b; i++ {
		wi := weight(w, i)
		if wi == 0 {
			ll[i] = 0
			if dlogits != nil {
				clear(dlogits[i*t*v : (i+1)*t*v])
			}
			continue
		}
		var sum float64
		for p := 0; p < t; p++ {
			off := (i*t + p) * v
			lp := logits[off : off+v]
			c := int(y[i*t+p])
			if c < 0 {
				if dlogits != nil {
					clear(dlogits[off : off+v])
				}
				continue
			}
			if c >= v {
				panic(fmt.Sprintf("nn: %s: class id y[%d] = %d, want < %d", op, i*t+p, c, v))
			}
			m := lp[0]
			for _, l := range lp[1:] {
				m = max(m, l)
			}
			var s float64
			if dlogits == nil {
				for j0 := 0; j0 < v; j0 += chunk {
					lc := lp[j0:min(j0+chunk, v)]
					ec := e[:len(lc)]
					for j, l := range lc {
						ec[j] = l - m
					}
					expfSlice(ec, ec)
					for _, ej := range ec {
						s += float64(ej)
					}
				}
			} else {
				dp := dlogits[off : off+v]
				dp = dp[:len(lp)]
				for j, l := range lp {
					dp[j] = l - m
				}
				expfSlice(dp, dp)
				for _, ej := range dp {
					s += float64(ej)
				}
				k := float32(-float64(wi) / s)
				for j := range dp {
					dp[j] *= k
				}
				dp[c] += wi
			}
			sum += float64(lp[c]-m) - math.Log(s)
		}
		ll[i] = float32(sum)
	}
}

// GaussianLogLik scores x (b×n) under independent normal distributions with
// the given means (b×n) and one fixed log-variance for every element:
//
//	ll[i] = Σ_j −½((x−m)²·e^−logvar + logvar + log 2π).
//
// dmean, if not nil, receives w[i]·(x−m)·e^−logvar.
func GaussianLogLik(ll, dmean, mean, x []float32, logvar float32, w []float32, b, n int) {
	const op = "GaussianLogLik"
	checkLL(op, ll, w, b)
	checkLen(op, "mean", mean, b*n)
	checkLen(op, "x", x, b*n)
	if dmean != nil {
		checkLen(op, "dmean", dmean, b*n)
	}
	prec := float32(math.Exp(-float64(logvar)))
	konst := -0.5 * float64(n) * (float64(logvar) + log2Pi)
	for i := 0; i < b; i++ {
		wi := weight(w, i)
		if wi == 0 {
			ll[i] = 0
			if dmean != nil {
				clear(dmean[i*n : (i+1)*n])
			}
			continue
		}
		mi := mean[i*n : (i+1)*n]
		xi := x[i*n : (i+1)*n]
		xi = xi[:len(mi)]
		var sq float64
		if dmean == nil {
			for j, m := range mi {
				d := xi[j] - m
				sq += float64(d * d)
			}
		} else {
			di := dmean[i*n : (i+1)*n]
			di = di[:len(mi)]
			k := wi * prec
			for j, m := range mi {
				d := xi[j] - m
				sq += float64(d * d)
				di[j] = k * d
			}
		}
		ll[i] = float32(-0.5*sq*float64(prec) + konst)
	}
}

// GaussianLogLikVar scores x (b×n) under independent normal distributions
// with per-element means and log-variances (both b×n):
//
//	ll[i] = Σ_j −½((x−m)²·e^−logvar + logvar + log 2π).
//
// dmean and dlogvar, each optional, receive w[i]·(x−m)·e^−logvar and
// w[i]·½((x−m)²·e^−logvar − 1).
func GaussianLogLikVar(ll, dmean, dlogvar, mean, logvar, x, w []float32, b, n int) {
	const op = "GaussianLogLikVar"
	checkLL(op, ll, w, b)
	checkLen(op, "mean", mean, b*n)
	checkLen(op, "logvar", logvar, b*n)
	checkLen(op, "x", x, b*n)
	if dmean != nil {
		checkLen(op, "dmean", dmean, b*n)
	}
	if dlogvar != nil {
		checkLen(op, "dlogvar", dlogvar, b*n)
	}
	var e [chunk]float32
	for i := 0; i < b; i++ {
		wi := weight(w, i)
		if wi == 0 {
			ll[i] = 0
			if dmean != nil {
				clear(dmean[i*n : (i+1)*n])
			}
			if dlogvar != nil {
				clear(dlogvar[i*n : (i+1)*n])
			}
			continue
		}
		var sum float64
		half := 0.5 * wi
		for j0 := 0; j0 < n; j0 += chunk {
			j1 := min(j0+chunk, n)
			mc := mean[i*n+j0 : i*n+j1]
			lc := logvar[i*n+j0 : i*n+j1]
			xc := x[i*n+j0 : i*n+j1]
			lc, xc = lc[:len(mc)], xc[:len(mc)]
			pc := e[:len(mc)] // e^−logvar
			for j, l := range lc {
				pc[j] = -l
			}
			expfSlice(pc, pc)
			switch {
			case dmean == nil && dlogvar == nil:
				for j, m := range mc {
					d := xc[j] - m
					sum += float64(d*d*pc[j] + lc[j])
				}
			case dlogvar == nil:
				dm := dmean[i*n+j0 : i*n+j1]
				dm = dm[:len(mc)]
				for j, m := range mc {
					d := xc[j] - m
					sum += float64(d*d*pc[j] + lc[j])
					dm[j] = wi * d * pc[j]
				}
			case dmean == nil:
				dl := dlogvar[i*n+j0 : i*n+j1]
				dl = dl[:len(mc)]
				for j, m := range mc {
					d := xc[j] - m
					q := d * d * pc[j]
					sum += float64(q + lc[j])
					dl[j] = half * (q - 1)
				}
			default:
				dm := dmean[i*n+j0 : i*n+j1]
				dl := dlogvar[i*n+j0 : i*n+j1]
				dm, dl = dm[:len(mc)], dl[:len(mc)]
				for j, m := range mc {
					d := xc[j] - m
					q := d * d * pc[j]
					sum += float64(q + lc[j])
					dl[j] = half * (q - 1)
					dm[j] = wi * d * pc[j]
				}
			}
		}
		ll[i] = float32(-0.5*sum - 0.5*float64(n)*log2Pi)
	}
}
