package nn

import "math"

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
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
		round = 12582912 // 1.5·2²³: adding and subtracting it rounds to an integer
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
		p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
		p = p*r*r + r + 1
		dst[i] = p * math.Float32frombits(uint32(int32(n)+127)<<23)
	}
}
