package integrator_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
)

// fixedPrior is a prior module's model that gives every item N(mu, e^lv)
// and counts what it was asked: enough to see the integrator ask it,
// train under its prior, checkpoint it and survive it failing.
type fixedPrior struct {
	name   string
	mu, lv float32
	fail   error // every Prior call fails with it
	nan    bool  // its priors are NaN (the SDK must refuse to send them)

	mu_      sync.Mutex
	learned  int     // training requests it learned from
	asked    int     // requests of any kind
	noSee    int     // evidence rows with no precision in some term
	lastPrec float32 // the last evidence's first precision
}

func (f *fixedPrior) PriorSpec() module.PriorSpec {
	return module.PriorSpec{Name: f.name, Latent: latent}
}

func (f *fixedPrior) Prior(out []module.PriorOut, ev []module.Evidence, q module.PriorQuery) error {
	f.mu_.Lock()
	defer f.mu_.Unlock()
	f.asked++
	if f.fail != nil {
		return f.fail
	}
	if q.Learn {
		f.learned++
	}
	for t := range out {
		f.lastPrec = ev[t].Prec[0]
		for i := range out[t].Mu {
			out[t].Mu[i], out[t].LogVar[i] = f.mu, f.lv
			if f.nan {
				out[t].Mu[i] = float32(math.NaN())
			}
		}
		for r := range out[t].Concept {
			out[t].Concept[r], out[t].Prob[r] = 0, 1
		}
	}
	return nil
}

// Save and Restore keep the count of steps learned, as a model's state.
func (f *fixedPrior) Save(w io.Writer) error {
	f.mu_.Lock()
	defer f.mu_.Unlock()
	return binary.Write(w, binary.LittleEndian, int64(f.learned))
}

func (f *fixedPrior) Restore(r io.Reader) error {
	var n int64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return err
	}
	f.mu_.Lock()
	f.learned = int(n)
	f.mu_.Unlock()
	return nil
}

func (f *fixedPrior) counts() (asked, learned int) {
	f.mu_.Lock()
	defer f.mu_.Unlock()
	return f.asked, f.learned
}

// runPrior serves m as a prior module of p until the test ends.
func (p *pipeline) runPrior(m module.PriorModel, opts module.Options) {
	p.t.Helper()
	name := m.PriorSpec().Name
	ready := make(chan struct{})
	opts.Conn, opts.Ready = p.conn(name), func(micro.Service) { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- module.RunPrior(ctx, m, opts) }()
	p.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			p.t.Errorf("prior module %s: %v", name, err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		p.t.Fatalf("prior module %s did not start: %v", name, err)
	case <-time.After(10 * time.Second):
		p.t.Fatalf("prior module %s did not start", name)
	}
}

// TestTrainUnderAPriorModule: every training step asks the prior module,
// which learns from each, is checkpointed with the run, and whose prior
// the steps take (a prior far from N(0, I) costs the joint KL).
func TestTrainUnderAPriorModule(t *testing.T) {
	p := toyPipeline(t, 0, "a", "b")
	prior := &fixedPrior{name: "concept", mu: 3, lv: -2}
	ckpt := p.ckpt("concept")
	p.runPrior(prior, module.Options{Train: true, Checkpoint: ckpt})
	run := func(prior string) *integrator.EpochStats {
		es, err := p.ig.Train(context.Background(), integrator.TrainConfig{
			Modules: []string{"a", "b"}, Prior: prior, IDs: ids(600), EvalIDs: ids(700)[600:], Batch: 100, Deadline: 10 * time.Second,
			CheckpointDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	plain := run("")
	if asked, _ := prior.counts(); asked != 0 {
		t.Fatalf("a run without a prior module asked it %d times", asked)
	}
	es := run("concept")
	asked, learned := prior.counts()
	if learned != 6 || asked != 7 { // 6 training steps, 1 evaluation step that learns nothing
		t.Errorf("the prior module was asked %d times and learned %d, want 7 and 6", asked, learned)
	}
	if es.PlainPrior != 0 {
		t.Errorf("%d steps fell back to N(0, I)", es.PlainPrior)
	}
	if es.KL < plain.KL+5 {
		t.Errorf("joint KL %.2f under a prior centred on 3, %.2f under N(0, I): the steps did not take the module's prior", es.KL, plain.KL)
	}
	if prior.lastPrec <= 0 {
		t.Errorf("the evidence's precision was %g: the module was not told what the experts say", prior.lastPrec)
	}
	if l, err := module.CheckpointLabel(ckpt); err != nil || l.Step != 6 {
		t.Errorf("the prior module's checkpoint is of %v (%v), want the run's step 6", l, err)
	}
}

// TestTrainGoesOnUnderTheStandardPriorWhenThePriorModuleFails: a prior
// module that errs, or whose prior is NaN, leaves every step under
// N(0, I), counted, and the run ends.
func TestTrainGoesOnUnderTheStandardPriorWhenThePriorModuleFails(t *testing.T) {
	for _, bad := range []*fixedPrior{
		{name: "errs", fail: errors.New("out of concepts")},
		{name: "nan", nan: true},
	} {
		t.Run(bad.name, func(t *testing.T) {
			p := toyPipeline(t, 0, "a", "b")
			p.runPrior(bad, module.Options{Train: true, Checkpoint: p.ckpt(bad.name)})
			es, err := p.ig.Train(context.Background(), integrator.TrainConfig{
				Modules: []string{"a", "b"}, Prior: bad.name, IDs: ids(300), Batch: 100, Deadline: 10 * time.Second, CheckpointDir: t.TempDir(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if es.PlainPrior != 3 {
				t.Errorf("%d of 3 steps fell back to N(0, I)", es.PlainPrior)
			}
			if _, learned := bad.counts(); bad.nan && learned != 3 {
				t.Errorf("learned %d times, want 3 (its prior was refused on the way out, not its learning)", learned)
			}
		})
	}
}

// TestTrainRefusesAPriorModuleItCannotUse: a mixture cannot fuse under
// a prior, and a prior module cannot also be a modality.
func TestTrainRefusesAPriorModuleItCannotUse(t *testing.T) {
	p := toyPipeline(t, 0, "a")
	for _, cfg := range []integrator.TrainConfig{
		{Modules: []string{"a"}, Prior: "concept", Aggregation: aggregate.MoE(), IDs: ids(10)},
		{Modules: []string{"a"}, Prior: "a", IDs: ids(10)},
	} {
		if _, err := p.ig.Train(context.Background(), cfg); err == nil {
			t.Errorf("Train(prior %s, %v) = nil error", cfg.Prior, cfg.Aggregation)
		} else {
			t.Log(err)
		}
	}
}

// waitPrior waits until the integrator has discovered the prior module.
func (p *pipeline) waitPrior(name string) {
	p.t.Helper()
	deadline := time.After(10 * time.Second)
	for p.ig.PriorModule() != name {
		select {
		case <-p.ig.Polled():
		case <-deadline:
			p.t.Fatalf("the integrator did not discover prior module %s (it has %q)", name, p.ig.PriorModule())
		}
	}
}

// TestInferUnderAPriorModule: inference fuses under the prior module's
// prior and says so; with nothing observed its draws are the module's
// prior's (generation samples it, not N(0, I)); a module that fails is
// named in Missing and the inference fuses under N(0, I).
func TestInferUnderAPriorModule(t *testing.T) {
	p := startPipeline(t, "left")
	plain := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3")}})
	prior := &fixedPrior{name: "concept", mu: 3, lv: -2}
	p.runPrior(prior, module.Options{})
	p.waitPrior("concept")
	rep := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3")}})
	if rep.Prior != "concept" || len(rep.Concept) != 1 || rep.Concept[0] != 0 {
		t.Fatalf("reply's prior %q and concepts %v, want concept and [0]", rep.Prior, rep.Concept)
	}
	for k := range latent {
		if rep.Mu.Data[k] <= plain.Mu.Data[k] {
			t.Errorf("coordinate %d: mean %.3f under a prior centred on 3, %.3f under N(0, I)", k, rep.Mu.Data[k], plain.Mu.Data[k])
		}
	}
	gen := p.infer(&bus.InferRequest{Samples: 400, Seed: 3})
	if len(gen.Concept) != 400 {
		t.Fatalf("%d categories for 400 draws", len(gen.Concept))
	}
	var sum float64
	for _, v := range gen.Z.Data {
		sum += float64(v)
	}
	if mean := sum / float64(len(gen.Z.Data)); math.Abs(mean-3) > 0.05 {
		t.Errorf("draws with nothing observed have mean %.3f, want the prior module's 3", mean)
	}
}

func TestInferFallsBackWhenThePriorModuleFails(t *testing.T) {
	p := startPipeline(t, "left")
	p.runPrior(&fixedPrior{name: "concept", fail: errors.New("no concepts yet")}, module.Options{})
	p.waitPrior("concept")
	rep := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{"left": obs("1 2 3")}})
	if rep.Prior != "" || !strings.Contains(rep.Missing["concept"], "no concepts yet") {
		t.Fatalf("reply's prior %q, missing %q: want none, and the module's error", rep.Prior, rep.Missing["concept"])
	}
}
