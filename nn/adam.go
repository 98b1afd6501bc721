package nn

import (
	"math"

	"github.com/serket-go/serket/internal/kernel"
)

// Adam is the Adam optimiser as in PyTorch's torch.optim.Adam (bias-corrected
// moments, no weight decay, no amsgrad). Each Step moves every Param's W
// against its G, or along G when Maximize is set (torch's maximize=True).
// Step reads G and does not zero it.
//
// The hyperparameters may be changed between steps. The moments and the step
// count are the state Save and Load carry.
type Adam struct {
	LR, Beta1, Beta2, Eps float32
	Maximize              bool

	params []*Param
	m, v   [][]float32     // first and second moments, one per param
	t      int             // steps taken
	chunks []adamChunk     // the update split for the pool
	cur    kernel.AdamStep // constants of the step in progress
}

// adamChunk is W[lo:hi] of params[p].
type adamChunk struct{ p, lo, hi int }

// adamChunkLen is the number of scalars per chunk of a parallel step:
// large enough to amortise the hand-off, small enough to balance.
const adamChunkLen = 1 << 15

// NewAdam returns an Adam over ps with learning rate lr and PyTorch's
// defaults Beta1 0.9, Beta2 0.999, Eps 1e-8, minimising.
func NewAdam(ps []*Param, lr float32) *Adam {
	a := &Adam{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, params: append([]*Param(nil), ps...)}
	a.m = make([][]float32, len(ps))
	a.v = make([][]float32, len(ps))
	for i, p := range ps {
		if len(p.G) != len(p.W) {
			panic("nn: NewAdam: param " + p.Name + " has len(G) != len(W)")
		}
		a.m[i] = make([]float32, len(p.W))
		a.v[i] = make([]float32, len(p.W))
		for lo := 0; lo < len(p.W); lo += adamChunkLen {
			a.chunks = append(a.chunks, adamChunk{i, lo, min(lo+adamChunkLen, len(p.W))})
		}
	}
	return a
}

// Steps returns the number of steps taken (torch's per-param "step").
func (a *Adam) Steps() int { return a.t }

// Step applies one update to every param:
//
//	m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,
//	W ← W − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε),
//
// with g = G, or −G when Maximize: one pass over W, G, m and v, shared
// between cores for large models.
func (a *Adam) Step() {
	a.t++
	t := float64(a.t)
	bc1 := 1 - math.Pow(float64(a.Beta1), t)
	bc2 := 1 - math.Pow(float64(a.Beta2), t)
	a.cur = kernel.AdamStep{
		B1: a.Beta1, B2: a.Beta2, C1: 1 - a.Beta1, C2: 1 - a.Beta2, Eps: a.Eps,
		Step: float32(float64(a.LR) / bc1),
		RBC2: float32(1 / math.Sqrt(bc2)),
		Sign: 1,
	}
	if a.Maximize {
		a.cur.Sign = -1
	}
	if len(a.chunks) > 1 && poolAcquire() {
		poolRun(a, len(a.chunks))
		poolRelease()
		return
	}
	for i := range a.chunks {
		a.runChunk(i)
	}
}

// runChunk updates chunk i.
func (a *Adam) runChunk(i int) {
	c := a.chunks[i]
	s := a.cur
	w := a.params[c.p].W[c.lo:c.hi]
	g := a.params[c.p].G[c.lo:c.hi]
	m := a.m[c.p][c.lo:c.hi]
	v := a.v[c.p][c.lo:c.hi]
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	// The vector kernel does the same float32 operations in the same
	// order (no fused multiply-add), so every lane is what the loop below
	// computes, to the bit; the loop does what it leaves.
	done := kernel.Adam(w, g, m, v, &s)
	w, g, m, v = w[done:], g[done:], m[done:], v[done:]
	for j := range w {
		gj := s.Sign * g[j]
		mj := s.B1*m[j] + s.C1*gj
		vj := s.B2*v[j] + s.C2*gj*gj
		m[j], v[j] = mj, vj
		w[j] -= s.Step * mj / (float32(math.Sqrt(float64(vj)))*s.RBC2 + s.Eps)
	}
}
