package integrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/serket-go/serket/integrator"
)

// BenchmarkTrainStep is one training step (batch 100, mvae plan) of three
// toy modules over an embedded server, everything in this process: its
// allocations per op are the whole pipeline's per step (integrator,
// modules, NATS client and server), and its time mostly messaging, since
// toy modules compute little.
func BenchmarkTrainStep(b *testing.B) {
	p := toyPipeline(b, 0, "a", "b", "c")
	const batch, items = 100, 3000
	steps := items / batch
	b.ReportAllocs()
	for b.Loop() { // an epoch of 30 steps per loop; reported per step below
		if _, err := p.ig.Train(context.Background(), integrator.TrainConfig{
			Modules: []string{"a", "b", "c"}, IDs: ids(items), Epochs: 1, Batch: batch, Subsets: 1, Deadline: 10 * time.Second,
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*steps), "µs/step")
}
