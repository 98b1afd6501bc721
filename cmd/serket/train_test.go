package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
	"github.com/serket-go/serket/poe"
)

// newModality makes the named built-in modality as `serket module NAME`
// would with the given networks and pairing.
func newModality(t *testing.T, data, name string, net mvae.Config, pairing mvae.Pairing) module.Modality {
	t.Helper()
	m, err := fmnist3.NewModality(data, name, net, pairing)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func restoreFile(m module.Modality, path string) error {
	_, err := module.RestoreFile(m.(module.Saver), path, nil)
	return err
}

// waitFor polls cond until it holds or ctx ends: it waits on another
// process (a file it writes).
func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting on another process")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestShortTrainingRun trains the three modalities for one epoch of 10,000
// real items (100 steps) with `serket train` (module processes, the
// integrator in the CLI's process): the objective must rise within the
// epoch, and an image alone must tell the label (through the captions the
// language module finds likely at the image's latent) well above chance on
// test images. It uses the cross plan and a 3e-3 learning rate: with the
// MVAE plan, whose single-modality terms never ask one modality to explain
// another, image → label stays near chance for the first hundreds of steps
// (measured 0.11 here; 0.44 with these settings).
func TestShortTrainingRun(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for about a minute")
	}
	data := t.TempDir()
	if _, err := dataset.Prepare(context.Background(), dataset.PrepareConfig{Dir: data, Limit: 10000, AudioTrain: 6, AudioTest: 3}); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "run")
	pipeline := writeFile(t, "short.yaml", `
modules:
  - {name: vision, args: [--lr, "0.003"]}
  - {name: language, args: [--lr, "0.003"]}
  - {name: audio, args: [--lr, "0.003"]}
`)
	tctx, tcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer tcancel()
	cmd := exec.CommandContext(tctx, serketBin, "train", pipeline, "--data", data, "--epochs", "1", "--plan", "cross", "--lambda", "language=50,audio=0.2", "--checkpoint-dir", ckpt, "--step-deadline", "2m")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("serket train: %v\n%s", err, out)
	}
	checkEpochStats(t, ckpt)
	acc := imageToLabel(t, data, ckpt, 200)
	t.Logf("image → label accuracy %.3f on 200 test images (chance 0.1)", acc)
	if acc < 0.3 {
		t.Fatalf("image → label accuracy %.3f: want well above chance (0.1), at least 0.3", acc)
	}
	// What a person does next: generation from the run's checkpoints (as
	// modules write them, labelled with the run).
	gen := filepath.Join(t.TempDir(), "gen")
	if out, err := exec.CommandContext(tctx, serketBin, "generate", "--checkpoint", ckpt, "--data", data, "--from", "language=a sneaker", "--to", "vision", "--out", gen).CombinedOutput(); err != nil {
		t.Fatalf("serket generate --checkpoint on the run: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(gen, "vision.png")); err != nil {
		t.Error(err)
	}
}

// checkEpochStats checks the run's metrics: the objective rose over the
// epoch's 100 steps with every module, and every module and the integrator
// report their times and memory.
func checkEpochStats(t *testing.T, ckpt string) {
	t.Helper()
	metrics, err := os.ReadFile(filepath.Join(ckpt, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(metrics)), "\n")
	var es integrator.EpochStats
	if err := json.Unmarshal([]byte(lines[0]), &es); err != nil {
		t.Fatalf("metrics %q: %v", metrics, err)
	}
	t.Logf("epoch: ELBO %.1f → %.1f, %.0f samples/s, missed %v", es.ELBOStart, es.ELBOEnd, es.SamplesPerSec, es.Missed)
	if !(es.ELBOEnd > es.ELBOStart) || es.Steps != 100 || len(es.Missed) != 0 {
		t.Fatalf("ELBO from %.1f to %.1f over %d steps, missed %v: want it to rise over 100 steps with every module", es.ELBOStart, es.ELBOEnd, es.Steps, es.Missed)
	}
	// Every module reports where its step time went: inside the step, and
	// none of it empty. (Its steps end a little after the integrator's
	// clock stops: the last one still has to learn.)
	for _, m := range []string{"vision", "language", "audio"} {
		mt, ok := es.Modules[m]
		t.Logf("%s: steps %.1f s, compute %.1f s, messages %.2f s, checkpoints %.2f s, peak RSS %d MiB", m, mt.StepSeconds, mt.ComputeSeconds, mt.CodecSeconds, mt.SaveSeconds, mt.PeakRSSBytes>>20)
		if !ok || !(mt.ComputeSeconds > 0 && mt.CodecSeconds > 0 && mt.ComputeSeconds+mt.CodecSeconds < mt.StepSeconds) || mt.StepSeconds > 1.1*es.Seconds {
			t.Errorf("%s's times %+v in an epoch of %.1f s: want compute and messaging, both inside its steps", m, mt, es.Seconds)
		}
		// A module process holds at least its own parameters, and less
		// than a gigabyte on this small dataset.
		if mt.PeakRSSBytes < 4<<20 || mt.PeakRSSBytes > 1<<30 {
			t.Errorf("%s's peak RSS %d bytes", m, mt.PeakRSSBytes)
		}
	}
	if es.PeakRSSBytes < 4<<20 {
		t.Errorf("the integrator's peak RSS %d bytes", es.PeakRSSBytes)
	}

}

// imageToLabel is how often an image alone tells its label on the first
// test items, from the run's checkpoints: the class whose captions the
// language decoder finds likeliest at the image's latent.
func imageToLabel(t *testing.T, data, ckpt string, items int) float64 {
	t.Helper()
	vis := newTrained(t, data, "vision", filepath.Join(ckpt, "vision.ckpt")).(*vision.Vision)
	lang := newTrained(t, data, "language", filepath.Join(ckpt, "language.ckpt")).(*language.Language)
	man, err := dataset.ReadManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	test := man.InSplit(dataset.Test)[:items]
	ids := make([]uint64, len(test))
	for i, it := range test {
		ids[i] = it.ID
	}
	x, _, err := vis.LoadBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	d := 64
	mu, lv := make([]float32, len(ids)*d), make([]float32, len(ids)*d)
	if err := vis.Encode(x, mu, lv); err != nil {
		t.Fatal(err)
	}
	var f poe.Fused
	f.Fuse([]poe.Expert{{Mu: mu, LogVar: lv}}, len(ids), d)
	// The label is the class whose captions the language decoder finds most
	// likely, on average, at the image's latent. Every class's captions are
	// all its synonyms in every template, so the templates weigh the same
	// for every class. (The decoder's argmax caption mixes the templates'
	// word positions; scoring whole captions does not.)
	var texts []bus.Payload
	var first []int
	for c := range dataset.NumClasses {
		first = append(first, len(texts))
		for _, s := range dataset.ClassCaptions(c) {
			texts = append(texts, bus.Payload{Type: "text/plain", Data: []byte(s)})
		}
	}
	first = append(first, len(texts))
	caps, err := lang.Parse(texts)
	if err != nil {
		t.Fatal(err)
	}
	n := len(texts)
	zs := make([]float32, n*d)
	w := make([]float32, n)
	for i := range w {
		w[i] = 1
	}
	ll, dz := make([]float32, n), make([]float32, n*d)
	right := 0
	for i := range ids {
		for k := 0; k < n; k++ {
			copy(zs[k*d:(k+1)*d], f.Mu[i*d:(i+1)*d])
		}
		if err := lang.Decode(zs, caps, w, ll, dz); err != nil {
			t.Fatal(err)
		}
		best, bestLL := -1, math.Inf(-1)
		for c := range dataset.NumClasses {
			var s float64
			for k := first[c]; k < first[c+1]; k++ {
				s += float64(ll[k])
			}
			if s /= float64(first[c+1] - first[c]); s > bestLL {
				best, bestLL = c, s
			}
		}
		if best == int(test[i].Class) {
			right++
		}
	}
	lang.Discard()
	return float64(right) / float64(len(ids))
}

func newTrained(t *testing.T, data, name, path string) module.Modality {
	t.Helper()
	m := newModality(t, data, name, mvae.Config{Latent: 64}, mvae.Pairing{})
	if err := restoreFile(m, path); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// TestUpWithATrainingIntegrator: training through `serket up` and a
// pipeline file whose integrator trains (args [--train]) with the file's
// train section; every module's checkpoint and the metrics log appear.
func TestUpWithATrainingIntegrator(t *testing.T) {
	data := datasettest.Dir(t)
	ckpt := filepath.Join(t.TempDir(), "run")
	file := writeFile(t, "train.yaml", `
latent: 8
integrator:
  args: [--train]
  restart: {policy: on-failure}
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
train:
  epochs: 2
  batch: 60
  plan: cross
  lambda: {language: 10}
  checkpoint_dir: `+ckpt+`
`)
	t.Setenv("SERKET_DATA", data)
	_, out := startUp(t, "--port", "0", file)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(t, ctx, func() bool { return strings.Contains(out.String(), "training done") })
	metrics, err := os.ReadFile(filepath.Join(ckpt, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(metrics), "\n"); n != 2 {
		t.Fatalf("%d epochs in the metrics log, want 2:\n%s", n, metrics)
	}
	for _, name := range []string{"vision", "language"} {
		if _, err := os.Stat(filepath.Join(ckpt, name+".ckpt")); err != nil {
			t.Errorf("no checkpoint of %s: %v", name, err)
		}
	}
	waitFor(t, ctx, func() bool { return strings.Contains(out.String(), "not restarting") })
}

// A file's lambda adds to the default weights, and --lambda overrides a
// module's weight without dropping the file's others.
func TestMergeLambda(t *testing.T) {
	def := []string{"language=50"}
	tests := []struct {
		name  string
		file  map[string]float64
		flag  []string
		given bool
		want  []string
	}{
		{"file adds to the default", map[string]float64{"touch": 10}, def, false, []string{"language=50", "touch=10"}},
		{"file overrides the default", map[string]float64{"language": 0, "touch": 10}, def, false, []string{"language=0", "touch=10"}},
		{"flag overrides the file", map[string]float64{"language": 20, "touch": 10}, []string{"touch=3"}, true, []string{"touch=3", "language=20"}},
		{"flag and file apart", map[string]float64{"touch": 10}, []string{"vision=2"}, true, []string{"vision=2", "touch=10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeLambda(tt.file, tt.flag, tt.given); !slices.Equal(got, tt.want) {
				t.Errorf("mergeLambda = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTrainResumeNeedsARun: --resume with nothing to resume, or with
// module checkpoints but no run state, is an error that says what it
// found; neither starts a run nor touches the directory (the metrics log
// is not rewritten).
func TestTrainResumeNeedsARun(t *testing.T) {
	data := datasettest.Dir(t)
	empty := t.TempDir()
	orphans := t.TempDir()
	for _, f := range []string{"vision.ckpt", "metrics.jsonl"} {
		if err := os.WriteFile(filepath.Join(orphans, f), []byte("keep me\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		dir  string
		want string
	}{
		{empty, "nothing to resume in " + empty + " (no integrator.json); drop --resume to start a run"},
		{orphans, orphans + " holds module checkpoints (vision.ckpt) but no integrator.json"},
	} {
		out, err := serketOut(t, "train", "--resume", "--data", data, "--checkpoint-dir", tt.dir, "--limit", "40")
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("serket train --resume in %s: %v, want an error saying %q:\n%s", tt.dir, err, tt.want, out)
		}
	}
	if entries, _ := os.ReadDir(empty); len(entries) > 0 {
		t.Errorf("the empty directory has %v after a refused resume", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(orphans, "metrics.jsonl")); string(b) != "keep me\n" {
		t.Errorf("the metrics log was rewritten: %q", b)
	}
}
