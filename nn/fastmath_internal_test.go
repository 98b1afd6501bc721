package nn

import (
	"math"
	"testing"
)

func TestExpfSlice(t *testing.T) {
	var src []float32
	for x := -80.0; x <= 80; x += 0.001 {
		src = append(src, float32(x))
	}
	dst := make([]float32, len(src))
	expfSlice(dst, src)
	worst := 0.0
	for i, x := range src {
		want := math.Exp(float64(x))
		worst = max(worst, math.Abs(float64(dst[i])-want)/want)
	}
	if worst > 3e-7 {
		t.Errorf("worst relative error %.3g, want < 3e-7", worst)
	}
	// In place, and clamped at the extremes.
	ext := []float32{-1000, -88, 89, 1000, float32(math.Inf(-1)), float32(math.Inf(1))}
	expfSlice(ext, ext)
	for i, y := range ext {
		if y <= 0 || math.IsInf(float64(y), 0) || math.IsNaN(float64(y)) {
			t.Errorf("extreme input %d: e^x = %v, want finite and positive", i, y)
		}
	}
}

func BenchmarkExpf(b *testing.B) {
	src := make([]float32, 4096)
	for i := range src {
		src[i] = float32(i%200-100) * 0.05
	}
	dst := make([]float32, len(src))
	b.Run("expfSlice", func(b *testing.B) {
		for b.Loop() {
			expfSlice(dst, src)
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for i, x := range src {
				dst[i] = float32(math.Exp(float64(x)))
			}
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
}
