package integrator_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// toyPipeline starts toy modules that train (a shared data seed, so their
// data are paired) and returns the integrator.
func toyPipeline(t *testing.T, missing float64, names ...string) *pipeline {
	t.Helper()
	p := startPipeline(t)
	for i, name := range names {
		m, err := toy.New(toy.Config{Name: name, Dim: 6 + i, Latent: latent, DataSeed: 7, Seed: uint64(i + 1), Items: 3000, Missing: missing, LR: 1e-2})
		if err != nil {
			t.Fatal(err)
		}
		p.runModule(name, m, module.Options{})
	}
	p.waitLive(names...)
	return p
}

func ids(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i)
	}
	return out
}

// TestTrainRaisesTheELBO trains three toy modules by message passing: the
// ELBO must rise epoch over epoch and every step must have every module.
func TestTrainRaisesTheELBO(t *testing.T) {
	p := toyPipeline(t, 0, "a", "b", "c")
	var elbos, tests []float64
	var missed int
	_, err := p.ig.Train(context.Background(), integrator.TrainConfig{
		Modules: []string{"a", "b", "c"}, IDs: ids(2000), Epochs: 15, Batch: 100, Subsets: 1,
		EvalIDs:  ids(3000)[2000:2300],
		Deadline: 10 * time.Second,
		OnStep: func(s integrator.StepStats) {
			missed += len(s.Missing)
			if len(s.Terms) != 5 { // joint, three singles, one subset
				t.Errorf("step %d has %d terms, want 5", s.Step, len(s.Terms))
			}
		},
		Metrics: writerFunc(func(line []byte) {
			var es struct {
				ELBO     float64
				TestELBO float64 `json:"test_elbo"`
			}
			if err := jsonUnmarshal(line, &es); err != nil {
				t.Error(err)
			}
			elbos = append(elbos, es.ELBO)
			tests = append(tests, es.TestELBO)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if missed != 0 {
		t.Errorf("%d module-steps missed with no fault injected", missed)
	}
	if len(elbos) != 15 {
		t.Fatalf("%d metric lines, want 15", len(elbos))
	}
	for i := 1; i < 5; i++ { // it rises steadily at first, then wanders near its top
		if !(elbos[i] > elbos[i-1]) {
			t.Fatalf("ELBO by epoch %v: want it to rise", elbos)
		}
	}
	if !(elbos[14] > elbos[4]) {
		t.Fatalf("ELBO by epoch %v: want the last above the fifth", elbos)
	}
	// The held-out ELBO (plain joint ELBO on items never trained on) rises too.
	if !(tests[14] > tests[0]) || tests[0] == 0 || math.IsNaN(tests[14]) {
		t.Fatalf("test ELBO by epoch %v: want it finite and rising", tests)
	}
	// The shared latent must carry across: predict b from a on items never
	// trained on, against the best guess that ignores a (b's mean).
	got, base := crossModalError(t, p, "a", 6, "b", 7)
	t.Logf("predicting b from a: mean squared error %.4f, guessing its mean %.4f", got, base)
	if got > 0.5*base {
		t.Fatalf("predicting b from a: mean squared error %.4f, guessing b's mean %.4f; want under half", got, base)
	}
}

// crossModalError infers module to from module from's observation of items
// 2000..2199 and returns the mean squared error of the decoded mean, and
// that of always guessing to's mean observation.
func crossModalError(t *testing.T, p *pipeline, from string, fromDim int, to string, toDim int) (mse, base float64) {
	t.Helper()
	src, _ := toy.New(toy.Config{Name: from, Dim: fromDim, Latent: latent, DataSeed: 7, Items: 3000})
	dst, _ := toy.New(toy.Config{Name: to, Dim: toDim, Latent: latent, DataSeed: 7, Items: 3000})
	test := make([]uint64, 200)
	for i := range test {
		test[i] = uint64(2000 + i)
	}
	xs, _, _ := src.LoadBatch(test)
	xd, _, _ := dst.LoadBatch(test)
	a, b := xs.(*toy.Obs).Data, xd.(*toy.Obs).Data
	mean := make([]float64, toDim)
	for i, v := range b {
		mean[i%toDim] += float64(v) / float64(len(test))
	}
	for i := range test {
		var text strings.Builder
		for _, v := range a[i*fromDim : (i+1)*fromDim] {
			text.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32) + " ")
		}
		rep := p.infer(&bus.InferRequest{Observations: map[string]bus.Payload{from: obs(text.String())}, Want: []string{to}})
		fields := strings.Split(string(rep.Outputs[to][0].Data), ", ")
		for j, f := range fields {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatal(err)
			}
			want := float64(b[i*toDim+j])
			mse += (v - want) * (v - want)
			base += (mean[j] - want) * (mean[j] - want)
		}
	}
	return mse / float64(len(b)), base / float64(len(b))
}

// TestTrainWithPartialPairing: items missing a modality are absent experts
// and absent targets; training still works.
func TestTrainWithPartialPairing(t *testing.T) {
	p := toyPipeline(t, 0.5, "a", "b")
	last, err := p.ig.Train(context.Background(), integrator.TrainConfig{Modules: []string{"a", "b"}, IDs: ids(1000), Epochs: 2, Batch: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b"} {
		if ll, ok := last.LogLik[m]; !ok || math.IsNaN(ll) {
			t.Fatalf("log-likelihood of %s: %v (%v)", m, ll, ok)
		}
	}
}

// TestTrainGoesOnWithoutADeadModule: a module that stops mid-training is
// absent from the following steps, which still run.
func TestTrainGoesOnWithoutADeadModule(t *testing.T) {
	p := toyPipeline(t, 0, "a", "b")
	steps := 0
	_, err := p.ig.Train(context.Background(), integrator.TrainConfig{
		Modules: []string{"a", "b"}, IDs: ids(600), Epochs: 1, Batch: 100, Deadline: 300 * time.Millisecond,
		OnStep: func(s integrator.StepStats) {
			steps++
			if steps == 2 {
				p.stops["b"]()
			}
			if steps > 3 && (len(s.Missing) != 1 || s.Missing[0] != "b") {
				t.Errorf("step %d: missing %v, want [b]", s.Step, s.Missing)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if steps != 6 {
		t.Fatalf("%d steps, want 6", steps)
	}
}

func TestTrainCheckpointAndResume(t *testing.T) {
	dir := t.TempDir()
	p := toyPipeline(t, 0, "a")
	cfg := integrator.TrainConfig{Modules: []string{"a"}, IDs: ids(500), Epochs: 1, Batch: 100, CheckpointDir: dir, CheckpointEvery: 2}
	if _, err := p.ig.Train(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile(filepath.Join(dir, "integrator.json"))
	if err != nil || !strings.Contains(string(state), `"step": 5`) {
		t.Fatalf("integrator checkpoint %q, %v: want step 5", state, err)
	}
	// Two more epochs, resumed: the steps continue from 6.
	cfg.Epochs, cfg.Resume = 3, true
	var first uint64
	cfg.OnStep = func(s integrator.StepStats) {
		if first == 0 {
			first = s.Step
		}
	}
	if _, err := p.ig.Train(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if first != 6 {
		t.Fatalf("resumed at step %d, want 6", first)
	}
	// A checkpoint of another run is refused.
	cfg.Batch = 50
	if _, err := p.ig.Train(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "another run") {
		t.Fatalf("resuming with another batch size: %v", err)
	}
}

func TestTrainRefusesBadConfig(t *testing.T) {
	p := toyPipeline(t, 0, "a")
	for _, cfg := range []integrator.TrainConfig{
		{IDs: ids(10)},
		{Modules: []string{"a"}},
		{Modules: []string{"Bad"}, IDs: ids(10)},
		{Modules: []string{"a"}, IDs: ids(10), Batch: -1},
	} {
		if _, err := p.ig.Train(context.Background(), cfg); err == nil {
			t.Errorf("Train(%+v) succeeded", cfg)
		}
	}
}

// writerFunc is an io.Writer that hands each line it is given to f.
type writerFunc func(line []byte)

func (f writerFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
