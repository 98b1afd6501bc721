package integrator_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// streamPath marks the functions of a streamed posterior's way: a module
// hearing its sensor, handing the reading to its actor, encoding and
// publishing the posterior; the integrator decoding it, fusing and
// publishing the belief.
var streamPath = []string{
	"module.(*runner).startStreaming", "module.(*streamCall)", "module.(*actorCall)", "module.newActorCall", "module.(*runner).streamPosterior",
	"integrator.(*streamer).receive", "integrator.(*streamer).publish",
}

// TestStreamAllocatesNothingOfItsOwn streams sensor readings through two
// toy modules into the integrator, one reading in flight at a time, with
// every allocation profiled, and requires that in the steady state no
// allocation of serket's own happens on a posterior's way from a sensor
// to the belief: not in the modules, not in the integrator (the NATS
// client's, and the modality's own parsing and encoding, are theirs).
func TestStreamAllocatesNothingOfItsOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("profiles every allocation of a stream")
	}
	profileEveryAllocation(t)

	p := startPipeline(t)
	for _, name := range []string{"left", "right"} {
		m, err := toy.New(toy.Config{Name: name, Dim: 3, Latent: latent, DataSeed: 1})
		if err != nil {
			t.Fatal(err)
		}
		p.runModule(name, m, module.Options{SensorType: "text/plain", Sensors: []string{"robot." + name}})
	}
	p.waitLive("left", "right")
	nc := p.conn("sensors")
	subj, _ := bus.NewSubjects("")
	beliefs := make(chan struct{}, 1)
	if _, err := nc.Subscribe(subj.Belief(), func(*nats.Msg) {
		select {
		case beliefs <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	send := func(i int) { // a reading, then the belief it makes
		if err := nc.Publish([]string{"robot.left", "robot.right"}[i%2], fmt.Appendf(nil, "%d 0.5 -1", i%7)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-beliefs:
		case <-time.After(10 * time.Second):
			t.Fatalf("reading %d made no belief within 10 s", i)
		}
	}
	for i := range 50 { // the steady state: every buffer grown
		send(i)
	}
	before := allocsByStack()
	const n = 400
	for i := range n {
		send(i)
	}
	after := allocsByStack()
	sites, total := ourAllocs(before, after, streamPath)
	// Fewer than one per ten readings: a one-off growth of some buffer
	// passes, anything that allocates every time fails.
	if total*10 >= n {
		var b strings.Builder
		for _, s := range sites[:min(len(sites), 12)] {
			fmt.Fprintf(&b, "\n%d allocations at\n%s", s.n, s.stack)
		}
		t.Errorf("%d allocations of serket's own on the way of %d streamed posteriors:%s", total, n, b.String())
	} else {
		t.Logf("%d allocations of serket's own on the way of %d streamed posteriors", total, n)
	}
}
