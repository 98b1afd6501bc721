package integrator_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
	"github.com/serket-go/serket/poe"
)

const latent = 4

// pipeline is an in-process server, integrator and toy modules, each on
// its own connection as separate processes would be.
type pipeline struct {
	t      testing.TB
	srv    *bus.Server
	ig     *integrator.Integrator
	client *client.Client
	stops  map[string]func()
	ckpts  string // where its modules keep their checkpoints, if they do
	mods   map[string]module.Modality
}

func startPipeline(t testing.TB, modules ...string) *pipeline {
	t.Helper()
	return startPipelineWith(t, time.Second, modules...)
}

// startPipelineWith is startPipeline with the integrator's encode deadline.
func startPipelineWith(t testing.TB, deadline time.Duration, modules ...string) *pipeline {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	p := &pipeline{t: t, srv: srv, stops: map[string]func(){}}
	ready := make(chan *integrator.Integrator, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{
			Conn: p.conn("integrator"), Latent: latent, Discovery: 100 * time.Millisecond, Misses: 2, Deadline: deadline,
			Ready: func(ig *integrator.Integrator) { ready <- ig },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("integrator.Run: %v", err)
		}
	})
	select {
	case p.ig = <-ready:
	case err := <-done:
		t.Fatalf("integrator: %v", err)
	}
	p.client, _ = client.New(p.conn("client"), "", "test")
	for _, m := range modules {
		p.startModule(m)
	}
	p.waitLive(modules...)
	return p
}

func (p *pipeline) conn(name string) *nats.Conn {
	p.t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: p.srv.ClientURL(), Name: name})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(nc.Close)
	return nc
}

func (p *pipeline) startModule(name string) {
	p.t.Helper()
	m, err := toy.New(toy.Config{Name: name, Dim: 3, Latent: latent, DataSeed: 1})
	if err != nil {
		p.t.Fatal(err)
	}
	p.runModule(name, m, module.Options{Train: true})
}

// module is the modality of the module last started as name.
func (p *pipeline) module(name string) module.Saver { return p.mods[name].(module.Saver) }

// runModule serves m on its own connection until the test ends or
// p.stops[name] is called.
func (p *pipeline) runModule(name string, m module.Modality, opts module.Options) {
	p.t.Helper()
	if p.mods == nil {
		p.mods = map[string]module.Modality{}
	}
	p.mods[name] = m
	nc := p.conn(name)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts.Conn = nc
	go func() { done <- module.Run(ctx, m, opts) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			p.t.Errorf("module %s: %v", name, err)
		}
	}
	p.stops[name] = stop
	p.t.Cleanup(stop)
}

// waitLive waits for discovery polls until the live set is exactly want.
func (p *pipeline) waitLive(want ...string) {
	p.t.Helper()
	slices.Sort(want)
	deadline := time.After(10 * time.Second)
	for {
		polled := p.ig.Polled()
		if got := p.ig.Live(); slices.Equal(got, want) {
			return
		}
		select {
		case <-polled:
		case <-deadline:
			p.t.Fatalf("live modules %v, want %v", p.ig.Live(), want)
		}
	}
}

func (p *pipeline) infer(req *bus.InferRequest) *bus.InferReply {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := p.client.Infer(ctx, req)
	if err != nil {
		p.t.Fatal(err)
	}
	return rep
}

func obs(s string) bus.Payload { return bus.Payload{Type: "text/plain", Data: []byte(s)} }

func TestInferFusesAndDecodes(t *testing.T) {
	p := startPipeline(t, "left", "right")
	rep := p.infer(&bus.InferRequest{
		Observations: map[string]bus.Payload{"left": obs("1 2 3"), "right": obs("0 0 1")},
		Want:         []string{"left", "right"},
		Samples:      3,
		Seed:         7,
	})
	if !slices.Equal(rep.Contributors, []string{"left", "right"}) {
		t.Fatalf("contributors %v, want [left right]; missing %v", rep.Contributors, rep.Missing)
	}
	if rep.Z.Rows() != 3 || rep.Z.Cols() != latent {
		t.Fatalf("z shape %v, want [3 %d]", rep.Z.Shape, latent)
	}
	for _, m := range []string{"left", "right"} {
		if len(rep.Outputs[m]) != 3 {
			t.Fatalf("%d outputs from %s, want 3", len(rep.Outputs[m]), m)
		}
	}
	// The fused posterior is the product of the two experts and the prior:
	// compute it from the modules' own encodings.
	var experts []poe.Expert
	for _, m := range []string{"left", "right"} {
		tm, _ := toy.New(toy.Config{Name: m, Dim: 3, Latent: latent, DataSeed: 1})
		x, err := tm.Parse([]bus.Payload{map[string]bus.Payload{"left": obs("1 2 3"), "right": obs("0 0 1")}[m]})
		if err != nil {
			t.Fatal(err)
		}
		mu, lv := make([]float32, latent), make([]float32, latent)
		tm.Encode(x, mu, lv)
		experts = append(experts, poe.Expert{Mu: mu, LogVar: lv})
	}
	var f poe.Fused
	f.Fuse(experts, 1, latent)
	if !slices.Equal(rep.Mu.Data, f.Mu) || !slices.Equal(rep.LogVar.Data, f.LogVar) {
		t.Fatalf("fused posterior %v/%v, want %v/%v", rep.Mu.Data, rep.LogVar.Data, f.Mu, f.LogVar)
	}
	// Same seed, same samples.
	again := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3"), "right": obs("0 0 1")}, Samples: 3, Seed: 7})
	if !slices.Equal(again.Z.Data, rep.Z.Data) {
		t.Fatal("the same seed gave different samples")
	}
}

// The samples are draws from the fused posterior: over 1000 of them each
// coordinate's mean and variance are the posterior's, within sampling
// error; another seed draws others.
func TestInferSamplesThePosterior(t *testing.T) {
	p := startPipeline(t, "left", "right")
	req := &bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3"), "right": obs("0 0 1")}, Samples: 1000, Seed: 7}
	rep := p.infer(req)
	n := rep.Z.Rows()
	if n != 1000 {
		t.Fatalf("%d samples, want 1000", n)
	}
	for k := range latent {
		var sum, sq float64
		for i := range n {
			v := float64(rep.Z.Data[i*latent+k])
			sum += v
			sq += v * v
		}
		mean := sum / float64(n)
		variance := sq/float64(n) - mean*mean
		want := math.Exp(float64(rep.LogVar.Data[k]))
		if se := math.Sqrt(want / float64(n)); math.Abs(mean-float64(rep.Mu.Data[k])) > 5*se || math.Abs(variance/want-1) > 0.25 {
			t.Fatalf("coordinate %d: sample mean %.4f and variance %.4f, want the posterior's %.4f and %.4f", k, mean, variance, rep.Mu.Data[k], want)
		}
	}
	req.Seed = 8
	if other := p.infer(req); slices.Equal(other.Z.Data, rep.Z.Data) {
		t.Fatal("seeds 7 and 8 drew the same samples")
	}
}

func TestInferWithoutObservationsIsThePrior(t *testing.T) {
	p := startPipeline(t, "left")
	rep := p.infer(&bus.InferRequest{Want: []string{"left"}})
	for k := 0; k < latent; k++ {
		if rep.Mu.Data[k] != 0 || rep.LogVar.Data[k] != 0 {
			t.Fatalf("with nothing observed the posterior is %v/%v, want the prior N(0, I)", rep.Mu.Data, rep.LogVar.Data)
		}
	}
	if len(rep.Outputs["left"]) != 1 {
		t.Fatalf("want one decoding of the mean, got %d", len(rep.Outputs["left"]))
	}
}

func TestInferReportsMissingAndBadInput(t *testing.T) {
	p := startPipeline(t, "left", "right")
	rep := p.infer(&bus.InferRequest{
		Observations: map[string]bus.Payload{"left": obs("1 2 3"), "right": obs("1, x, 3"), "ghost": obs("1")},
		Want:         []string{"right", "nobody"},
	})
	if !slices.Equal(rep.Contributors, []string{"left"}) {
		t.Fatalf("contributors %v, want [left]", rep.Contributors)
	}
	for name, want := range map[string]string{"right": "want a finite number", "ghost": "no live module", "nobody": "no live module"} {
		if !strings.Contains(rep.Missing[name], want) {
			t.Errorf("missing[%s] = %q, want it to say %q", name, rep.Missing[name], want)
		}
	}
	if len(rep.Outputs["right"]) != 1 {
		t.Errorf("right should still decode: outputs %v", rep.Outputs)
	}
}

// TestModulesJoinAndLeave: a module started later joins the running
// pipeline and one that stops is dropped; inference goes on without it.
func TestModulesJoinAndLeave(t *testing.T) {
	p := startPipeline(t, "left")
	p.startModule("late")
	p.waitLive("late", "left")
	rep := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3"), "late": obs("3 2 1")}})
	if !slices.Equal(rep.Contributors, []string{"late", "left"}) {
		t.Fatalf("contributors %v, want [late left]", rep.Contributors)
	}
	p.stops["late"]()
	rep = p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3"), "late": obs("3 2 1")}})
	if !slices.Equal(rep.Contributors, []string{"left"}) || rep.Missing["late"] == "" {
		t.Fatalf("after late stopped: contributors %v, missing %v", rep.Contributors, rep.Missing)
	}
	p.waitLive("left")
}

func TestModuleWithAnotherLatentSizeIsLeftOut(t *testing.T) {
	p := startPipeline(t, "left")
	m, _ := toy.New(toy.Config{Name: "wide", Dim: 3, Latent: latent + 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- module.Run(ctx, m, module.Options{Conn: p.conn("wide"), Train: true}) }()
	defer func() { cancel(); <-done }()
	// Wait for a poll that sees it; it must not become live.
	deadline := time.After(10 * time.Second)
	for {
		polled := p.ig.Polled()
		rep := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"wide": obs("1 2 3")}})
		if strings.Contains(rep.Missing["wide"], "latent size 5") {
			break
		}
		select {
		case <-polled:
		case <-deadline:
			t.Fatalf("a module of latent size %d was not refused: %v", latent+1, rep.Missing)
		}
	}
	if slices.Contains(p.ig.Live(), "wide") {
		t.Fatal("a module with the wrong latent size is live")
	}
}

func TestBadRequestIsRefusedAndCounted(t *testing.T) {
	p := startPipeline(t, "left")
	nc := p.conn("raw")
	msg, err := nc.Request(p.client.Subjects().Infer(), []byte{0xc1, 0x00}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if desc := msg.Header.Get("Nats-Service-Error"); !strings.Contains(desc, "malformed") {
		t.Fatalf("error header %q, want it to say the message is malformed", desc)
	}
	// the integrator still answers
	p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3")}})
	svcs, err := p.client.Services(context.Background(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.Role() == "integrator" {
			for _, e := range s.Stats.Endpoints { // the workers infer, infer-2, …
				if strings.HasPrefix(e.Name, "infer") && e.NumErrors >= 1 && strings.Contains(e.LastError, "malformed") {
					return
				}
			}
			t.Fatalf("the integrator's stats do not count the bad request: %+v", s.Stats.Endpoints)
		}
	}
	t.Fatal("no integrator in the service list")
}

// gated is a toy modality whose Encode first calls gate.
type gated struct {
	*toy.Toy
	gate func()
}

func (g *gated) Encode(x module.Batch, mu, logvar []float32) error {
	g.gate()
	return g.Toy.Encode(x, mu, logvar)
}

// Inferences run side by side: one waiting on a slow module does not hold
// up another. Module a's encoder waits until module b has been asked to
// encode; one inference at a time would leave a's request waiting past the
// deadline, since b's inference could only start after it.
func TestInferencesRunConcurrently(t *testing.T) {
	// The deadline is long enough for a loaded machine to start the second
	// inference, and shorter than a's wait: one at a time, a would miss it.
	p := startPipelineWith(t, 5*time.Second)
	aEntered, bAsked := make(chan struct{}), make(chan struct{})
	var aOnce, bOnce sync.Once
	for name, gate := range map[string]func(){
		"a": func() {
			aOnce.Do(func() { close(aEntered) })
			select {
			case <-bAsked:
			case <-time.After(8 * time.Second): // beyond the integrator's deadline
			}
		},
		"b": func() { bOnce.Do(func() { close(bAsked) }) },
	} {
		m, err := toy.New(toy.Config{Name: name, Dim: 3, Latent: latent, DataSeed: 1})
		if err != nil {
			t.Fatal(err)
		}
		p.runModule(name, &gated{Toy: m, gate: gate}, module.Options{Train: true})
	}
	p.waitLive("a", "b")
	first := make(chan *bus.InferReply, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := p.client.Infer(ctx, &bus.InferRequest{Observations: map[string]bus.Payload{"a": obs("1 2 3")}})
		if err != nil {
			t.Error(err)
		}
		first <- rep
	}()
	<-aEntered // the first inference is waiting on a
	second := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"b": obs("1 2 3")}})
	rep := <-first
	if rep == nil || !slices.Equal(rep.Contributors, []string{"a"}) || !slices.Equal(second.Contributors, []string{"b"}) {
		t.Fatalf("contributors %v (missing %v) and %v (missing %v); want a and b", rep.Contributors, rep.Missing, second.Contributors, second.Missing)
	}
}
