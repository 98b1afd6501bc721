package speech_test

import (
	"context"
	"math"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

// trainVoice is the voice the tests speak with.
func trainVoice(t *testing.T) speech.Voice {
	t.Helper()
	train, _ := speech.Voices()
	for _, v := range train {
		if v.Name == "en-us+f3" && v.Rate == 170 && v.Pitch == 50 {
			return v
		}
	}
	t.Fatal("no en-us+f3 at 170 words/min, pitch 50 in the train voices")
	return speech.Voice{}
}

// say synthesises word with v at rate Hz.
func say(t testing.TB, word string, v speech.Voice, rate int) []float32 {
	t.Helper()
	x, err := speech.Synthesize(context.Background(), word, v, rate)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// sine returns n samples of amp·sin(2πf t) at rate Hz.
func sine(n int, f, amp float64, rate int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(amp * math.Sin(2*math.Pi*f*float64(i)/float64(rate)))
	}
	return x
}

func finite(x []float32) bool {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}
