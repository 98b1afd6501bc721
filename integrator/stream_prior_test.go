package integrator_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
)

// TestStreamBeliefUnderAPriorModule: with a prior module in the pipeline a
// belief is fused under its prior for what the sources say, and carries
// the module and the category it places the belief in.
func TestStreamBeliefUnderAPriorModule(t *testing.T) {
	r := startStream(t, integrator.StreamConfig{Slop: time.Second})
	nc, err := bus.Connect(bus.ConnConfig{URL: r.url, Name: "concept"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- module.RunPrior(ctx, &fixedPrior{name: "concept", mu: 3, lv: 0}, module.Options{Conn: nc})
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.After(10 * time.Second)
	for r.ig.PriorModule() != "concept" {
		select {
		case <-r.ig.Polled():
		case <-deadline:
			t.Fatal("the integrator did not discover the prior module")
		}
	}
	r.post("a", "a", 2, 0, r.clk.Now()) // precision 1, mean 2; with N(3, 1): mean 2.5, variance ½
	b := r.next()
	if b.Prior != "concept" || b.Concept != 0 {
		t.Fatalf("belief under prior %q, concept %d: want concept's, 0", b.Prior, b.Concept)
	}
	if math.Abs(float64(b.Mu.Data[0])-2.5) > 1e-5 || math.Abs(float64(b.LogVar.Data[0])-math.Log(0.5)) > 1e-5 {
		t.Fatalf("belief mean %v log-variance %v, want 2.5 and ln ½", b.Mu.Data[0], b.LogVar.Data[0])
	}
}
