package integrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/internal/syncbuf"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// toyPipeline starts toy modules that train (a shared data seed, so their
// data are paired), each keeping its checkpoint in p.ckpts, and returns
// the integrator.
func toyPipeline(t testing.TB, missing float64, names ...string) *pipeline {
	t.Helper()
	p := startPipeline(t)
	p.ckpts = t.TempDir()
	for i, name := range names {
		p.runModule(name, newToyModule(t, name, i, missing), module.Options{Train: true, Checkpoint: p.ckpt(name)})
	}
	p.waitLive(names...)
	return p
}

// newToyModule is the i-th module of a toy pipeline.
func newToyModule(t testing.TB, name string, i int, missing float64) *toy.Toy {
	t.Helper()
	m, err := toy.New(toy.Config{Name: name, Dim: 6 + i, Latent: latent, DataSeed: 7, Seed: uint64(i + 1), Items: 3000, Missing: missing, LR: 1e-2})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ckpt is module name's checkpoint file.
func (p *pipeline) ckpt(name string) string { return filepath.Join(p.ckpts, name+".ckpt") }

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
// found gone within a probe — not after the step deadline, which is long —
// and left out of the following steps, which still run. The run does not
// end without it: it waits the module wait for it to come back, then stops
// with an error naming it.
func TestTrainGoesOnWithoutADeadModule(t *testing.T) {
	p := toyPipeline(t, 0, "a", "b")
	steps := 0
	cfg := integrator.TrainConfig{
		Modules: []string{"a", "b"}, IDs: ids(600), Epochs: 1, Batch: 100, Deadline: 20 * time.Second, ModuleWait: time.Second,
		OnStep: func(s integrator.StepStats) {
			steps++
			if steps == 2 {
				p.stops["b"]()
			}
			if steps > 3 && (len(s.Missing) != 1 || s.Missing[0] != "b") {
				t.Errorf("step %d: missing %v, want [b]", s.Step, s.Missing)
			}
		},
	}
	start := time.Now()
	_, err := p.ig.Train(context.Background(), cfg)
	if took := time.Since(start); took > cfg.Deadline {
		t.Errorf("training took %v: a step waited out its deadline for the dead module", took)
	}
	if err == nil || !strings.Contains(err.Error(), "module b has been gone") {
		t.Fatalf("Train: %v; want an error naming b", err)
	}
	if steps != 6 {
		t.Fatalf("%d steps, want 6", steps)
	}
}

// TestTrainRollsBackWhenAModuleRestarts: module a dies after step 3; the
// steps go on without it (it is found gone within a probe, not after the
// step deadline) and no checkpoint is taken while it is gone. When it
// restarts from its checkpoint it does not rejoin with those weights beside
// b's newer ones: the whole run rolls back to that checkpoint and does the
// steps since again — also when a died before the run's first periodic
// checkpoint (the run's checkpoint of step 0 is there). The run ends with
// exactly the weights an uninterrupted run ends with. A module that comes
// back without its checkpoint stops the run with an error naming it.
func TestTrainRollsBackWhenAModuleRestarts(t *testing.T) {
	for _, tt := range []struct {
		name        string
		every       int
		lose        bool     // a's checkpoint files are lost before it restarts
		gated       bool     // the run learns gates (gpoe), which must roll back too
		wantRedone  []uint64 // the steps after the rollback
		wantErrWith string
	}{
		{name: "checkpoint every 2 steps", every: 2, wantRedone: []uint64{3, 4, 5, 6}},
		{name: "gated", every: 2, gated: true, wantRedone: []uint64{3, 4, 5, 6}},
		{name: "before the first periodic checkpoint", every: 0, wantRedone: []uint64{1, 2, 3, 4, 5, 6}},
		{name: "its checkpoint lost", every: 2, lose: true, wantErrWith: "module a (weights of no run) cannot return to run"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := integrator.TrainConfig{Modules: []string{"a", "b"}, IDs: ids(600), Epochs: 1, Batch: 100, Deadline: 20 * time.Second,
				CheckpointDir: t.TempDir(), CheckpointEvery: tt.every}
			ref := toyPipeline(t, 0, "a", "b")
			rc := cfg
			rc.CheckpointDir = t.TempDir()
			if tt.gated {
				rc.Aggregation, cfg.Aggregation = aggregate.Gated(), aggregate.Gated()
			}
			if _, err := ref.ig.Train(context.Background(), rc); err != nil {
				t.Fatal(err)
			}
			p := toyPipeline(t, 0, "a", "b")
			again, steps, took, err := trainKillingA(t, p, cfg, tt.lose)
			if tt.wantErrWith != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrWith) {
					t.Fatalf("Train: %v; want an error saying %q", err, tt.wantErrWith)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if took > cfg.Deadline {
				t.Errorf("the run took %v: a step waited out its deadline for the dead module", took)
			}
			if i := slices.Index(steps, 4); i < 0 || !slices.Equal(steps[:i+1], []uint64{1, 2, 3, 4}) || !slices.Equal(steps[len(steps)-len(tt.wantRedone):], tt.wantRedone) {
				t.Errorf("steps %v: want 1 to 4 (or on), then %v after the rollback", steps, tt.wantRedone)
			}
			for name, m := range map[string]module.Saver{"a": again, "b": p.module("b")} {
				if got, want := saved(t, m), saved(t, ref.module(name)); !bytes.Equal(got, want) {
					t.Errorf("module %s ends with other weights than in the uninterrupted run", name)
				}
			}
			if tt.gated && !sameGates(cfg.Aggregation, rc.Aggregation) {
				t.Error("the run ends with other gates than the uninterrupted run")
			}
		})
	}
}

// sameGates reports whether two learned aggregations' weights are equal,
// and have moved from where they start.
func sameGates(a, b aggregate.Aggregation) bool {
	pa, pb := a.(aggregate.Learned).Params(), b.(aggregate.Learned).Params()
	moved := false
	for i := range pa {
		if !slices.Equal(pa[i].W, pb[i].W) {
			return false
		}
		moved = moved || slices.ContainsFunc(pa[i].W, func(v float32) bool { return v != 0 })
	}
	return len(pa) > 0 && moved
}

// TestTrainResumesItsGates: a gpoe run resumed from its checkpoint goes on
// with the gates (and their optimiser) it saved, ending where an
// uninterrupted run ends; a checkpoint that says gpoe but holds no gates
// (an edited one, say) is refused before any step, naming it.
func TestTrainResumesItsGates(t *testing.T) {
	cfg := integrator.TrainConfig{Modules: []string{"a", "b"}, IDs: ids(400), Epochs: 2, Batch: 100, Aggregation: aggregate.Gated()}
	ref := toyPipeline(t, 0, "a", "b")
	if _, err := ref.ig.Train(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	p := toyPipeline(t, 0, "a", "b")
	dir := t.TempDir()
	first := cfg
	first.Epochs, first.CheckpointDir, first.Aggregation = 1, dir, aggregate.Gated()
	if _, err := p.ig.Train(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	second := first
	second.Epochs, second.Resume, second.Aggregation = 2, true, aggregate.Gated()
	if _, err := p.ig.Train(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	if !sameGates(second.Aggregation, cfg.Aggregation) {
		t.Error("the resumed run ends with other gates than the uninterrupted one")
	}
	// The checkpoint without its gates (and its checksum, which would
	// otherwise catch the edit).
	path := filepath.Join(dir, "integrator.json")
	var st map[string]any
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatal(err)
	}
	delete(st, "gates")
	delete(st, "crc32c")
	b, _ := json.Marshal(st)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	third := second
	third.Epochs, third.Aggregation = 3, aggregate.Gated()
	third.OnStep = func(integrator.StepStats) { t.Error("a step ran") }
	if _, err := p.ig.Train(context.Background(), third); err == nil || !strings.Contains(err.Error(), "holds no gpoe gate weights") || !strings.Contains(err.Error(), "integrator.json") {
		t.Fatalf("resuming a gpoe run whose checkpoint has no gates: %v; want a refusal naming the file and the gates", err)
	}
}

// trainKillingA trains cfg on p, stopping module a after step 3 and
// starting its next process (which restores a's checkpoint, unless lose
// removed it) once the integrator finds it gone. It returns that process's
// modality, the steps run, the time Train took and its error.
func trainKillingA(t *testing.T, p *pipeline, cfg integrator.TrainConfig, lose bool) (*toy.Toy, []uint64, time.Duration, error) {
	gone := make(chan struct{}, 1)
	ig := loggedIntegrator(t, p, writerFunc(func(line []byte) {
		if os.Getenv("DEBUGLOG") != "" {
			os.Stderr.Write(line)
		}
		if bytes.Contains(line, []byte("module is gone")) {
			select {
			case gone <- struct{}{}:
			default:
			}
		}
	}))
	again := newToyModule(t, "a", 0, 0)
	nc := p.conn("a-again")
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		select {
		case <-gone:
			if lose {
				os.Remove(p.ckpt("a"))
				os.Remove(p.ckpt("a") + ".prev")
			}
			ran <- module.Run(ctx, again, module.Options{Conn: nc, Train: true, Checkpoint: p.ckpt("a"), Logger: slog.New(slog.DiscardHandler)})
		case <-ctx.Done():
			ran <- nil
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("module a, again: %v", err)
		}
	})
	var steps []uint64
	cfg.OnStep = func(s integrator.StepStats) {
		steps = append(steps, s.Step)
		if s.Step == 3 && len(steps) == 3 {
			p.stops["a"]()
		}
	}
	start := time.Now()
	_, err := ig.Train(context.Background(), cfg)
	return again, steps, time.Since(start), err
}

// saved is m's checkpoint, as bytes.
func saved(t *testing.T, m module.Saver) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestTrainStopsWhenEveryModuleIsGoneTooLong: with the bus up and the only
// module gone for good, training waits for it for the module wait, then
// stops with an error naming it and the run's last checkpoint; it does not
// hang, and does not step without modules.
func TestTrainStopsWhenEveryModuleIsGoneTooLong(t *testing.T) {
	p := toyPipeline(t, 0, "a")
	var steps []uint64
	_, err := p.ig.Train(context.Background(), integrator.TrainConfig{
		Modules: []string{"a"}, IDs: ids(300), Epochs: 1, Batch: 100, Deadline: 5 * time.Second, ModuleWait: time.Second,
		CheckpointDir: t.TempDir(),
		OnStep: func(s integrator.StepStats) {
			steps = append(steps, s.Step)
			if s.Step == 2 {
				p.stops["a"]()
			}
		},
	})
	if err == nil || !strings.Contains(err.Error(), "module a has been gone") || !strings.Contains(err.Error(), "last checkpoint is of step 0") {
		t.Fatalf("Train: %v; want an error naming a and the last checkpoint", err)
	}
	if !slices.Equal(steps, []uint64{1, 2}) && !slices.Equal(steps, []uint64{1, 2, 3}) {
		t.Fatalf("steps %v, want 1, 2 (and 3 without the module, if it began before a was found gone)", steps)
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

// TestTrainResumeLogsEachEpochOnce: a run that stops after logging an
// epoch but before the next checkpoint, resumed, cuts the metrics log back
// to the checkpoint and logs that epoch again, once, over all of its
// steps; and a finished run resumed for more epochs logs its last epoch
// once, whole, though its checkpoint was written before the line.
func TestTrainResumeLogsEachEpochOnce(t *testing.T) {
	dir := t.TempDir()
	p := toyPipeline(t, 0, "a")
	metrics, err := os.OpenFile(filepath.Join(dir, "metrics.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Close()
	// 5 steps an epoch, checkpoints at steps 3, 6, 9, ...: stopping after
	// step 11 leaves epoch 1 logged (at step 10) but the checkpoint at 9.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := integrator.TrainConfig{Modules: []string{"a"}, IDs: ids(500), Epochs: 3, Batch: 100, CheckpointDir: dir, CheckpointEvery: 3, Metrics: metrics}
	cfg.OnStep = func(s integrator.StepStats) {
		if s.Step == 11 {
			cancel()
		}
	}
	if _, err := p.ig.Train(ctx, cfg); err != context.Canceled {
		t.Fatalf("stopped run: %v, want context.Canceled", err)
	}
	if got := epochLines(t, metrics.Name()); len(got) != 2 {
		t.Fatalf("the stopped run logged epochs %v, want 0 and 1", got)
	}
	// Resumed (the file opened for appending, as serket does).
	metrics.Close()
	if metrics, err = os.OpenFile(metrics.Name(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		t.Fatal(err)
	}
	var steps []uint64
	cfg.Metrics, cfg.Resume = metrics, true
	cfg.OnStep = func(s integrator.StepStats) { steps = append(steps, s.Step) }
	if _, err := p.ig.Train(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if steps[0] != 10 || steps[len(steps)-1] != 15 {
		t.Fatalf("resumed run took steps %v, want 10 to 15", steps)
	}
	checkEpochs(t, epochLines(t, metrics.Name()), 3, 5)

	// The run is done; resumed for a fourth epoch, the third is logged
	// once (its checkpoint, after its last step, came before its line).
	cfg.Epochs = 4
	if _, err := p.ig.Train(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	checkEpochs(t, epochLines(t, metrics.Name()), 4, 5)
}

type epochLine struct {
	Epoch    int     `json:"epoch"`
	Steps    int     `json:"steps"`
	LastStep uint64  `json:"last_step"`
	ELBO     float64 `json:"elbo"`
}

func epochLines(t *testing.T, path string) []epochLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []epochLine
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		var l epochLine
		if err := json.Unmarshal([]byte(line), &l); err != nil || !strings.HasSuffix(line, "\n") {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// checkEpochs wants epochs 0..n-1 in order, each of stepsPer steps.
func checkEpochs(t *testing.T, got []epochLine, n, stepsPer int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d metrics lines, want %d: %+v", len(got), n, got)
	}
	for i, l := range got {
		if l.Epoch != i || l.Steps != stepsPer || l.LastStep != uint64((i+1)*stepsPer) || l.ELBO == 0 || math.IsNaN(l.ELBO) {
			t.Fatalf("metrics line %d is %+v: want epoch %d, %d steps, the last %d, an ELBO", i, l, i, stepsPer, (i+1)*stepsPer)
		}
	}
}

// TestTrainResumeFallsBackToThePreviousCheckpoint: each checkpoint keeps
// the one it replaces; a damaged one (truncated, a flipped byte that still
// parses) is logged and the previous one resumed from; both damaged is an
// error naming both; one of another run is an error though the previous
// one is of this run.
func TestTrainResumeFallsBackToThePreviousCheckpoint(t *testing.T) {
	p := toyPipeline(t, 0, "a")
	tests := []struct {
		name      string
		damage    func(t *testing.T, path string)
		wantFirst uint64 // the first step resumed; 0: an error
		wantErr   []string
		wantLog   []string
	}{
		{"whole", func(*testing.T, string) {}, 6, nil, nil},
		{"truncated", func(t *testing.T, path string) { cut(t, path, 20) }, 5, nil,
			[]string{"training checkpoint is damaged", "does not parse", "used=PATH.prev"}},
		{"flipped byte", func(t *testing.T, path string) { edit(t, path, `"step": 5`, `"step": 7`) }, 5, nil,
			[]string{"training checkpoint is damaged", "PATH: damaged file: checksum mismatch", "used=PATH.prev"}},
		{"both damaged", func(t *testing.T, path string) { cut(t, path, 20); edit(t, path+".prev", `"step": 4`, `"step": 3`) }, 0,
			[]string{"PATH: damaged file: it does not parse", "PATH.prev: damaged file: checksum mismatch"}, nil},
		{"another run", func(t *testing.T, path string) {
			// A one-save run of another batch size over this one's.
			other := integrator.TrainConfig{Modules: []string{"a"}, IDs: ids(500), Epochs: 1, Batch: 250, CheckpointDir: filepath.Dir(path)}
			if _, err := p.ig.Train(context.Background(), other); err != nil {
				t.Fatal(err)
			}
		}, 0, []string{"PATH is of another run"}, nil},
		{"only the previous one", func(t *testing.T, path string) { os.Remove(path) }, 0, []string{"nothing to resume in", "no integrator.json"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log syncBuffer
			ig := loggedIntegrator(t, p, &log)
			dir := t.TempDir()
			path := filepath.Join(dir, "integrator.json")
			fill := func(s string) string { return strings.ReplaceAll(s, "PATH", path) }
			// Checkpoints after steps 2, 4 and 5 (the end).
			cfg := integrator.TrainConfig{Modules: []string{"a"}, IDs: ids(500), Epochs: 1, Batch: 100, CheckpointDir: dir, CheckpointEvery: 2}
			if _, err := ig.Train(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, path)
			var first uint64
			cfg.Epochs, cfg.Resume = 2, true
			cfg.OnStep = func(s integrator.StepStats) {
				if first == 0 {
					first = s.Step
				}
			}
			_, err := ig.Train(context.Background(), cfg)
			if tt.wantFirst == 0 {
				if err == nil {
					t.Fatalf("resumed at step %d", first)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), fill(want)) {
						t.Errorf("error %q does not say %q", err, fill(want))
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if first != tt.wantFirst {
				t.Errorf("resumed at step %d, want %d", first, tt.wantFirst)
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(log.String(), fill(want)) {
					t.Errorf("log does not say %q:\n%s", fill(want), log.String())
				}
			}
		})
	}
}

// loggedIntegrator starts another integrator on p's pipeline, logging to log.
func loggedIntegrator(t *testing.T, p *pipeline, log io.Writer) *integrator.Integrator {
	t.Helper()
	ready := make(chan *integrator.Integrator, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{Conn: p.conn("integrator-logged"), Latent: latent,
			Logger: slog.New(slog.NewTextHandler(log, nil)), Ready: func(ig *integrator.Integrator) { ready <- ig }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case ig := <-ready:
		return ig
	case err := <-done:
		t.Fatal(err)
	}
	return nil
}

// syncBuffer collects a process's or a logger's output while it runs.
type syncBuffer = syncbuf.Buffer

// cut shortens the file at path by n bytes.
func cut(t *testing.T, path string, n int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-n); err != nil {
		t.Fatal(err)
	}
}

// edit replaces old, which must be there, with new in the file at path.
func edit(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not hold %q:\n%s", path, old, b)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
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

// TestTrainCheckpointsByTime: with no step count, a checkpoint is taken
// whenever the interval has passed since the last (every step, for an
// interval shorter than a step), and only at the start for a long one.
func TestTrainCheckpointsByTime(t *testing.T) {
	p := toyPipeline(t, 0, "a")
	for _, tt := range []struct {
		interval time.Duration
		want     []uint64 // the run's checkpoint as each step ends
	}{
		{time.Nanosecond, []uint64{0, 1, 2, 3, 4}},
		{time.Hour, []uint64{0, 0, 0, 0, 0}},
	} {
		dir := t.TempDir()
		var got []uint64
		cfg := integrator.TrainConfig{Modules: []string{"a"}, IDs: ids(500), Epochs: 1, Batch: 100, CheckpointDir: dir, CheckpointInterval: tt.interval,
			OnStep: func(integrator.StepStats) {
				var st struct{ Step uint64 }
				b, err := os.ReadFile(filepath.Join(dir, "integrator.json"))
				if err == nil && json.Unmarshal(b, &st) == nil {
					got = append(got, st.Step)
				}
			}}
		if _, err := p.ig.Train(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("interval %v: checkpoints of steps %v as the steps ended, want %v", tt.interval, got, tt.want)
		}
	}
}

// TestTrainCoordinatedLeavesTheFrozenAlone: a module added to a trained
// pipeline trains alone against it (TrainConfig.Frozen): the frozen
// modules' checkpoint files are byte for byte as they were, the new one
// learns (the run's objective rises and it saves its checkpoint), and a
// frozen module with no trained weights, or a run where nothing learns, is
// refused before any step, naming it.
func TestTrainCoordinatedLeavesTheFrozenAlone(t *testing.T) {
	first := toyPipeline(t, 0, "a", "b")
	cfg := integrator.TrainConfig{Modules: []string{"a", "b"}, IDs: ids(600), Epochs: 1, Batch: 100, CheckpointDir: t.TempDir()}
	if _, err := first.ig.Train(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, m := range []string{"a", "b"} {
		b, err := os.ReadFile(first.ckpt(m))
		if err != nil {
			t.Fatal(err)
		}
		before[m] = b
	}
	p := startPipeline(t)
	p.ckpts = first.ckpts
	for i, name := range []string{"a", "b", "c"} {
		p.runModule(name, newToyModule(t, name, i, 0), module.Options{Train: true, Checkpoint: p.ckpt(name)})
	}
	p.waitLive("a", "b", "c")
	weights := map[string][]byte{"a": saved(t, p.module("a")), "b": saved(t, p.module("b"))}
	coord := integrator.TrainConfig{Modules: []string{"a", "b", "c"}, Frozen: []string{"a", "b"}, IDs: ids(600), Epochs: 3, Batch: 100,
		CheckpointDir: t.TempDir(), Plan: integrator.CrossPlan(1)}
	var elbos []float64
	coord.OnStep = func(s integrator.StepStats) {
		for _, term := range s.Terms { // a term without c in its subset teaches c's decoder alone
			if !slices.Contains(term.Subset, "c") && !slices.Equal(term.Targets, []string{"c"}) {
				t.Errorf("step %d has a term %v → %v that teaches the frozen", s.Step, term.Subset, term.Targets)
			}
		}
		elbos = append(elbos, s.Terms[0].ELBO)
	}
	if _, err := p.ig.Train(context.Background(), coord); err != nil {
		t.Fatal(err)
	}
	for m, b := range before {
		if after, err := os.ReadFile(p.ckpt(m)); err != nil || !bytes.Equal(after, b) {
			t.Errorf("frozen module %s's checkpoint changed (%v)", m, err)
		}
	}
	for m, w := range weights {
		if !bytes.Equal(saved(t, p.module(m)), w) {
			t.Errorf("frozen module %s's weights changed", m)
		}
	}
	if _, err := os.Stat(p.ckpt("c")); err != nil {
		t.Errorf("the new module saved no checkpoint: %v", err)
	}
	if n := len(elbos); n < 10 || mean(elbos[n-6:]) <= mean(elbos[:6]) {
		t.Errorf("the joint term's objective did not rise over the coordinated run: %v", elbos)
	}
	// A module with fresh weights cannot be frozen; nor can everything.
	fresh := toyPipeline(t, 0, "d", "e")
	for _, c := range []struct {
		frozen []string
		want   string
	}{{[]string{"d"}, "d: asked to take part in run"}, {[]string{"d", "e"}, "every module is frozen"}} {
		bad := integrator.TrainConfig{Modules: []string{"d", "e"}, Frozen: c.frozen, IDs: ids(200), Batch: 100, CheckpointDir: t.TempDir()}
		bad.OnStep = func(integrator.StepStats) { t.Error("a step ran") }
		if _, err := fresh.ig.Train(context.Background(), bad); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("freezing %v: %v; want an error saying %q", c.frozen, err, c.want)
		}
	}
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
