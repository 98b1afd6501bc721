package moduletest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/serket-go/serket/module"
)

// testMultiDecoder: DecodeMany must do what one Decode per term does: the
// same likelihoods and latent gradients, and, for a Learner, the same
// decoder gradients, seen as the same decoder after two Learn steps of
// each way (two, so that an optimizer that normalises its first step, as
// Adam does, still tells gradients of other sizes apart).
func (s *suite) testMultiDecoder(t *testing.T) {
	many, each := s.fresh(t), s.fresh(t)
	x, present := s.data(t, many)
	xe, _ := s.data(t, each) // the same rows: a foreign module's batch is its child's alone
	b, d := x.Len(), width(many.Spec())
	r := rand.New(rand.NewPCG(11, 12))
	zero := make([]float32, b*d)
	for step := range 2 {
		zs, ws := termInputs(r, b, d, present)
		s.encode(t, many, x)
		s.encode(t, each, xe)
		lls, dzs := make([][]float32, len(zs)), make([][]float32, len(zs))
		for k := range zs {
			lls[k], dzs[k] = filled(b, 42), filled(b*d, 42) // must be overwritten
		}
		md, _ := module.As[module.MultiDecoder](many)
		if err := md.DecodeMany(zs, x, ws, lls, dzs); err != nil {
			t.Fatalf("DecodeMany: %v", err)
		}
		for k := range zs {
			ll, dz := s.decode(t, each, zs[k], xe, ws[k])
			if e := relDiff(lls[k], ll); e > 1e-4 {
				t.Fatalf("step %d, term %d: DecodeMany's log-likelihoods differ from Decode's by %.3g (relative)", step, k, e)
			}
			if e := relDiff(dzs[k], dz); e > 1e-4 {
				t.Fatalf("step %d, term %d: DecodeMany's latent gradients differ from Decode's by %.3g (relative)", step, k, e)
			}
		}
		lm, ok := module.As[module.Learner](many)
		if !ok {
			return
		}
		if err := lm.Learn(zero, zero); err != nil {
			t.Fatalf("Learn after DecodeMany: %v", err)
		}
		if err := each.(module.Learner).Learn(zero, zero); err != nil {
			t.Fatalf("Learn after Decode: %v", err)
		}
	}
	z, w := randn(r, b*d), ones(b, present)
	got, _ := s.decode(t, many, z, x, w)
	want, _ := s.decode(t, each, z, xe, w)
	many.(module.Learner).Discard()
	each.(module.Learner).Discard()
	if e := relDiff(got, want); e > 1e-3 {
		t.Fatalf("after learning from DecodeMany and from one Decode per term, the decoders differ: log-likelihoods %.3g apart (relative); DecodeMany does not accumulate every term's decoder gradient as Decode does", e)
	}
}

// termInputs are three terms' latents and rows' weights, each term's
// weights its own, a zero one among them.
func termInputs(r *rand.Rand, b, d int, present []bool) (zs, ws [][]float32) {
	for k := range 3 {
		w := ones(b, present)
		for i := range w {
			w[i] *= float32(k+1) / 2
		}
		zs, ws = append(zs, randn(r, b*d)), append(ws, w)
	}
	ws[1][0] = 0
	return zs, ws
}

func filled(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// relDiff is ‖a − b‖ / max(‖b‖, 1e-12).
func relDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		e := float64(a[i]) - float64(b[i])
		num += e * e
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num) / math.Max(math.Sqrt(den), 1e-12)
}
