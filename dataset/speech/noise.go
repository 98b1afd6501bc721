package speech

import (
	"math"
	"math/rand/v2"
)

// AddNoise adds white Gaussian noise to x in place, snrDB decibels below
// the RMS of x (all of it, silences included). Silent x is left as is.
func AddNoise(x []float32, snrDB float64, rng *rand.Rand) {
	addNoise(x, rms(x)*math.Pow(10, -snrDB/20), rng)
}

// addNoise adds zero-mean Gaussian noise of standard deviation sigma.
func addNoise(x []float32, sigma float64, rng *rand.Rand) {
	if !(sigma > 0) || math.IsInf(sigma, 1) {
		return
	}
	for i := range x {
		x[i] += float32(sigma * rng.NormFloat64())
	}
}

func rms(x []float32) float64 {
	if len(x) == 0 {
		return 0
	}
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}
