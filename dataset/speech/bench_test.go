package speech_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

// classes are the Fashion-MNIST class names.
var classes = []string{"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"}

func BenchmarkLogMel(b *testing.B) {
	cfg := speech.DefaultConfig()
	train, _ := speech.Voices()
	x := say(b, "ankle boot", train[0], cfg.SampleRate)
	e := speech.NewExtractor(cfg)
	dst := make([]float32, cfg.Size())
	b.ReportAllocs()
	for b.Loop() {
		e.LogMel(dst, x)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "utterances/s")
}

func BenchmarkResample(b *testing.B) {
	for _, r := range [][2]int{{22050, 16000}, {44100, 16000}, {44101, 16000}} {
		b.Run(fmt.Sprintf("%d-%d", r[0], r[1]), func(b *testing.B) {
			x := sine(r[0], 440, 0.5, r[0])
			for b.Loop() {
				speech.Resample(x, r[0], r[1])
			}
			b.ReportMetric(float64(b.N*len(x))/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

func BenchmarkSynthesize(b *testing.B) {
	train, _ := speech.Voices()
	for b.Loop() {
		say(b, "ankle boot", train[0], 16000)
	}
}

// BenchmarkBuildPool renders the ten class names 4 times each on all
// cores.
func BenchmarkBuildPool(b *testing.B) {
	pc := speech.PoolConfig{Words: classes, PerWordTrain: 3, PerWordTest: 1}
	for b.Loop() {
		if _, err := speech.BuildPool(context.Background(), pc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(classes)*4)/b.Elapsed().Seconds(), "utterances/s")
}
