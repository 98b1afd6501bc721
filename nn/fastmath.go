package nn

import (
	"math"

	"github.com/serket-go/serket/internal/kernel"
)

// expfSlice sets dst[i] = e^src[i] in float32; dst and src may be the same
// slice. It is the Cephes single-precision kernel (relative error about
// 1e-7), about twice as fast as math.Exp and written out in the loop body,
// since a call per element would keep the compiler from overlapping the
// polynomials of neighbouring elements.
//
// Inputs are clamped to [−87, 88], so the result is never 0 or +Inf:
// 1/(1+e^−x) stays finite and correct to float32 at the extremes.
func expfSlice(dst, src []float32) {
	const (
		log2e = kernel.ExpLog2e
		ln2hi = kernel.ExpLn2Hi
		ln2lo = kernel.ExpLn2Lo
		round = kernel.ExpRound
	)
	dst = dst[:len(src)]
	for i, x := range src {
		if x < -87 {
			x = -87
		}
		if x > 88 {
			x = 88
		}
		n := x*log2e + round
		n -= round
		r := x - n*ln2hi - n*ln2lo
		p := ((((kernel.ExpC0*r+kernel.ExpC1)*r+kernel.ExpC2)*r+kernel.ExpC3)*r+kernel.ExpC4)*r + kernel.ExpC5
		p = p*r*r + r + 1
		dst[i] = p * math.Float32frombits(uint32(int32(n)+127)<<23)
	}
}
