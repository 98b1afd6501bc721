package speech_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

// fitSine returns the amplitude of the best fit of x to a sine at f Hz
// (rate Hz) and the RMS of what the fit leaves.
func fitSine(x []float32, f float64, rate int) (amp, resid float64) {
	var ss, sc, cc, s2, xs, xc float64
	for i, v := range x {
		w := 2 * math.Pi * f * float64(i) / float64(rate)
		s, c := math.Sin(w), math.Cos(w)
		ss += s * s
		cc += c * c
		sc += s * c
		xs += float64(v) * s
		xc += float64(v) * c
		s2 += float64(v) * float64(v)
	}
	det := ss*cc - sc*sc
	a := (xs*cc - xc*sc) / det
	b := (xc*ss - xs*sc) / det
	var r float64
	for i, v := range x {
		w := 2 * math.Pi * f * float64(i) / float64(rate)
		d := float64(v) - a*math.Sin(w) - b*math.Cos(w)
		r += d * d
	}
	return math.Hypot(a, b), math.Sqrt(r / float64(len(x)))
}

// crossings counts sign changes.
func crossings(x []float32) int {
	n := 0
	for i := 1; i < len(x); i++ {
		if (x[i-1] < 0) != (x[i] < 0) {
			n++
		}
	}
	return n
}

func TestResample(t *testing.T) {
	tests := []struct {
		name     string
		from, to int
		f        float64
	}{
		{"22050 to 16000", 22050, 16000, 440},
		{"8000 to 16000", 8000, 16000, 440},
		{"44100 to 16000", 44100, 16000, 440},
		{"48000 to 16000", 48000, 16000, 3000},
		{"16000 to 22050", 16000, 22050, 5000},
		{"44101 to 16000 (no small polyphase table)", 44101, 16000, 440},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const amp = 0.8
			x := sine(tt.from, tt.f, amp, tt.from) // 1 s
			y := speech.Resample(x, tt.from, tt.to)
			if want := (len(x)*tt.to + tt.from - 1) / tt.from; len(y) != want {
				t.Errorf("%d samples, want %d", len(y), want)
			}
			mid := y[len(y)/10 : len(y)*9/10] // away from the edges
			a, r := fitSine(mid, tt.f, tt.to)
			if math.Abs(a-amp) > 0.01*amp {
				t.Errorf("amplitude %.4f, want %.4f ± 1%%", a, amp)
			}
			if r > 1e-3 {
				t.Errorf("residual RMS %.2e after the %v Hz sine: frequency moved or distortion", r, tt.f)
			}
			dur := float64(len(mid)) / float64(tt.to)
			if got := float64(crossings(mid)) / 2 / dur; math.Abs(got-tt.f) > 0.01*tt.f {
				t.Errorf("zero crossings say %.1f Hz, want %.0f", got, tt.f)
			}
		})
	}
}

// TestResampleRejectsAliases: a tone above the output Nyquist frequency
// must vanish, not fold back into the band.
func TestResampleRejectsAliases(t *testing.T) {
	for _, f := range []float64{8500, 10000, 15000} {
		y := speech.Resample(sine(48000, f, 0.8, 48000), 48000, 16000)
		mid := y[len(y)/10 : len(y)*9/10]
		var s float64
		for _, v := range mid {
			s += float64(v) * float64(v)
		}
		if rms := math.Sqrt(s / float64(len(mid))); rms > 1e-3 {
			t.Errorf("%.0f Hz at 48 kHz leaves RMS %.2e at 16 kHz; want below 1e-3 (-55 dB)", f, rms)
		}
	}
}

func TestResampleSameRate(t *testing.T) {
	x := []float32{0.1, -0.2, 0.3}
	y := speech.Resample(x, 16000, 16000)
	if !slices.Equal(x, y) {
		t.Fatalf("got %v, want %v", y, x)
	}
	y[0] = 9
	if x[0] == 9 {
		t.Error("same-rate Resample returns its input, not a copy")
	}
	if n := len(speech.Resample(nil, 22050, 16000)); n != 0 {
		t.Errorf("%d samples from none", n)
	}
}

func TestAddNoise(t *testing.T) {
	x := sine(16000, 440, 0.5, 16000)
	y := slices.Clone(x)
	speech.AddNoise(y, 20, rand.New(rand.NewPCG(1, 2)))
	var s, n float64
	for i := range x {
		s += float64(x[i]) * float64(x[i])
		d := float64(y[i] - x[i])
		n += d * d
	}
	if snr := 10 * math.Log10(s/n); math.Abs(snr-20) > 0.2 {
		t.Errorf("SNR %.2f dB, want 20", snr)
	}
	z := slices.Clone(x)
	speech.AddNoise(z, 20, rand.New(rand.NewPCG(1, 2)))
	if !slices.Equal(y, z) {
		t.Error("the same seed gave different noise")
	}
	silent := make([]float32, 10)
	speech.AddNoise(silent, 20, rand.New(rand.NewPCG(1, 2)))
	if slices.Max(silent) != 0 || slices.Min(silent) != 0 {
		t.Error("noise added to silence, whose RMS is 0")
	}
}
