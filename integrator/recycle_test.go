package integrator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// recycling is a toy module that holds the SDK to module.Recycler's
// contract: each batch it hands back is one LoadBatch returned and not yet
// handed back, and its step is over (learned from or discarded).
type recycling struct {
	*toy.Toy
	mu       sync.Mutex
	out      map[module.Batch]bool // loaded and not handed back
	done     bool                  // the current step has learned or discarded
	recycled int
	errs     []string
}

func (r *recycling) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	x, present, err := r.Toy.LoadBatch(ids)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out[x], r.done = true, false
	return x, present, err
}

func (r *recycling) Learn(dmu, dlv []float32) error {
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
	return r.Toy.Learn(dmu, dlv)
}

func (r *recycling) Discard() {
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
	r.Toy.Discard()
}

func (r *recycling) Recycle(x module.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.out[x]:
		r.errs = append(r.errs, fmt.Sprintf("handed back a batch LoadBatch did not return, or twice (%p)", x))
	case !r.done:
		r.errs = append(r.errs, "handed back the batch of a step that has not learned or discarded yet")
	}
	delete(r.out, x)
	r.recycled++
}

// TestSDKHandsBackEachStepsBatch trains three recycling toy modules: each
// step's batch comes back once, after its step, and training is as it is
// without recycling (the steps all have every module).
func TestSDKHandsBackEachStepsBatch(t *testing.T) {
	p := startPipeline(t)
	p.ckpts = t.TempDir()
	names := []string{"a", "b", "c"}
	mods := map[string]*recycling{}
	for i, name := range names {
		m := &recycling{Toy: newToyModule(t, name, i, 0), out: map[module.Batch]bool{}}
		mods[name] = m
		p.runModule(name, m, module.Options{Train: true, Checkpoint: p.ckpt(name)})
	}
	p.waitLive(names...)
	const steps = 6
	var full int
	_, err := p.ig.Train(context.Background(), integrator.TrainConfig{
		Modules: names, IDs: ids(steps * 50), Epochs: 1, Batch: 50, Subsets: 1, Deadline: 20 * time.Second,
		OnStep: func(s integrator.StepStats) {
			if len(s.Missing) == 0 {
				full++
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if full != steps {
		t.Errorf("%d of %d steps had every module", full, steps)
	}
	for name, m := range mods {
		m.mu.Lock()
		// Train returns once the last expert gradients are sent: that
		// step's Learn, and so its hand-back, may still be under way.
		if m.recycled < steps-1 || m.recycled > steps || len(m.errs) > 0 {
			t.Errorf("%s: %d batches handed back over %d steps; %v", name, m.recycled, steps, m.errs)
		}
		m.mu.Unlock()
	}
}
