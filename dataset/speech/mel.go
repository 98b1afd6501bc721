package speech

import "math"

// The Slaney mel scale (Auditory Toolbox; librosa's default): linear,
// 200/3 Hz per mel, below 1 kHz, logarithmic above.
const (
	slaneyFSp     = 200.0 / 3
	slaneyMinLog  = 1000.0
	slaneyMinMel  = slaneyMinLog / slaneyFSp // 15
	slaneyLogStep = 0.06875177742094912      // ln(6.4)/27
)

// hzToMel converts a frequency in Hz to Slaney mels.
func hzToMel(f float64) float64 {
	if f < slaneyMinLog {
		return f / slaneyFSp
	}
	return slaneyMinMel + math.Log(f/slaneyMinLog)/slaneyLogStep
}

// melToHz is the inverse of hzToMel.
func melToHz(m float64) float64 {
	if m < slaneyMinMel {
		return m * slaneyFSp
	}
	return slaneyMinLog * math.Exp(slaneyLogStep*(m-slaneyMinMel))
}

// melFilterBank returns Mels triangles over the NFFT/2+1 power-spectrum bins:
// Mels+2 edges equally spaced in mel from 0 Hz to SampleRate/2; filter m
// rises from edge m to 1 at edge m+1 and falls to 0 at edge m+2. lo and hi
// give each filter's non-zero bins [lo, hi).
func melFilterBank(c Config) (fb [][]float32, lo, hi []int) {
	bins := c.NFFT/2 + 1
	top := hzToMel(float64(c.SampleRate) / 2)
	edges := make([]float64, c.Mels+2)
	for i := range edges {
		edges[i] = melToHz(top * float64(i) / float64(c.Mels+1))
	}
	fb = make([][]float32, c.Mels)
	lo, hi = make([]int, c.Mels), make([]int, c.Mels)
	for m := range fb {
		row := make([]float32, bins)
		l, p, r := edges[m], edges[m+1], edges[m+2]
		lo[m], hi[m] = bins, 0
		for k := range row {
			f := float64(k) * float64(c.SampleRate) / float64(c.NFFT)
			w := math.Min((f-l)/(p-l), (r-f)/(r-p))
			if w > 0 {
				row[k] = float32(w)
				lo[m] = min(lo[m], k)
				hi[m] = k + 1
			}
		}
		if hi[m] == 0 { // narrower than a bin: nothing to sum
			lo[m] = 0
		}
		fb[m] = row
	}
	return fb, lo, hi
}
