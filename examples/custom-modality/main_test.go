package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
	"github.com/serket-go/serket/procenv"
)

// The pipeline file is valid and is the default pipeline plus touch.
func TestPipelineFile(t *testing.T) {
	p, err := launch.Load("pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range p.Modules {
		names = append(names, m.Name)
		if m.Name == "touch" && (len(m.Command) != 1 || filepath.Base(m.Command[0]) != "touch") {
			t.Errorf("touch runs %v", m.Command)
		}
	}
	if !slices.Equal(names, []string{"vision", "language", "audio", "touch"}) {
		t.Errorf("modules %v", names)
	}
	if p.Train == nil || p.Train.Lambda["touch"] == 0 {
		t.Errorf("train section %+v", p.Train)
	}
}

// Under serket up and serket train the flags' defaults come from the
// environment the launcher sets (module.Flags, tested in procenv/ and
// module/); flags win, and the touch network's own flags are on the same
// flag set. Without $SERKET_MODALITIES the pairing list is left to touch.
func TestFlagsFromEnvironment(t *testing.T) {
	for k, v := range map[string]string{procenv.EnvModule: "fingertip", procenv.EnvLatent: "32", procenv.EnvData: "/data/x",
		procenv.EnvCheckpointDir: "/runs/y", procenv.EnvModalities: ""} {
		t.Setenv(k, v)
	}
	c, err := parseModuleFlags([]string{"--hidden", "16", "--seed", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "fingertip" || c.Latent != 32 || c.Data != "/data/x" || c.Checkpoint != "/runs/y/fingertip.ckpt" || c.hidden != 16 || c.seed != 3 ||
		c.Modalities != nil {
		t.Errorf("from the environment: %+v", c)
	}
	t.Setenv(procenv.EnvModalities, "vision,fingertip")
	if c, err = parseModuleFlags(nil, io.Discard); err != nil || !slices.Equal(c.Modalities, []string{"vision", "fingertip"}) {
		t.Errorf("pairing list from serket train: %q (%v)", c.Modalities, err)
	}
	c, err = parseModuleFlags([]string{"--name", "touch", "--latent", "8", "--checkpoint", "t.ckpt", "--lr", "0.01"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "touch" || c.Latent != 8 || c.Checkpoint != "t.ckpt" || c.LR != 0.01 {
		t.Errorf("flags did not win: %+v", c)
	}
	if _, err := parseModuleFlags([]string{"prepar"}, io.Discard); err == nil {
		t.Error("a stray argument was accepted")
	}
}

// prepareTouch simulates touch.dat for the small test dataset.
func prepareTouch(t *testing.T) string {
	t.Helper()
	data := datasettest.Dir(t)
	if _, err := touchsim.Prepare(data, 1); err != nil {
		t.Fatal(err)
	}
	return data
}

// The module as the command builds it starts from touch.dat alone: no
// manifest (which holds the labels), no other shard.
func TestModuleNeedsOnlyItsDataFile(t *testing.T) {
	data := prepareTouch(t)
	dir := t.TempDir()
	b, err := os.ReadFile(touch.Path(data))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(touch.Path(dir), b, 0o644)
	c, err := parseModuleFlags([]string{"--data", dir, "--latent", "8", "--hidden", "16"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.modality()
	if err != nil {
		t.Fatal(err)
	}
	man, err := dataset.ReadManifest(data) // the test may look at the ids
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, it := range man.Items {
		ids = append(ids, it.ID)
	}
	if _, present, err := m.LoadBatch(ids); err != nil || slices.Contains(present, false) {
		t.Fatalf("LoadBatch of every item: %v (present %v)", err, present)
	}
	if _, err := (&moduleConfig{Flags: module.Flags{Flags: procenv.Flags{Data: t.TempDir(), Name: "touch", Latent: 8, LR: 1e-3}}, hidden: 8}).modality(); err == nil ||
		!strings.Contains(err.Error(), "touch prepare") {
		t.Errorf("without touch.dat: %v; want a hint to run touch prepare", err)
	}
}

// TestTrainWithVision trains the touch module, run as the command runs it,
// together with the built-in vision module over NATS (an embedded server,
// the modules and the integrator in this process, each with its own
// connection): a few epochs of the small dataset. The objective must rise,
// touch must take part in every step (never missing, and its own count of
// steps learned from equals the integrator's), and afterwards a touch
// reading alone must generate both modalities through the integrator.
func TestTrainWithVision(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for about half a minute")
	}
	start := time.Now()
	data := prepareTouch(t)
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	modules := []string{"touch", "vision"}
	ig := startTouchAndVision(t, ctx, cancel, data, url, modules)

	steps, want := trainTogether(t, ctx, ig, data, modules)

	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	checkTouchLearnedFromEveryStep(t, nc, want, steps[len(steps)-1].Step)
	checkGeneratesFromTouch(t, ctx, nc, modules)
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// The pipeline TestTrainWithVision runs: its name and latent size.
const (
	e2ePipeline = "touch-e2e"
	e2eLatent   = 16
)

// startTouchAndVision starts touch, vision and the integrator over the
// server at url and returns the integrator once it has discovered modules.
// The test's cleanup calls cancel and waits for all three to stop.
func startTouchAndVision(t *testing.T, ctx context.Context, cancel context.CancelFunc, data, url string, modules []string) *integrator.Integrator {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// touch, exactly as `touch --data … --nats …` runs it.
	cfg, err := parseModuleFlags([]string{"--data", data, "--nats", url, "--pipeline", e2ePipeline, "--latent", "16", "--hidden", "64",
		"--lr", "0.003", "--log-level", "error", "--train", "--checkpoint", filepath.Join(t.TempDir(), "touch.ckpt")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- serve(ctx, cfg) }()

	// vision, as `serket module vision` builds it.
	src, err := mvae.OpenSource(data, dataset.Vision, mvae.Pairing{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vision.New(vision.Config{Net: mvae.Config{Latent: e2eLatent, Hidden: 64, LR: 3e-3, Seed: 1}, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- module.Run(ctx, v, module.Options{Pipeline: e2ePipeline, NATS: bus.ConnConfig{URL: url}, Logger: quiet, Train: true})
	}()

	// The integrator.
	ready := make(chan *integrator.Integrator, 1)
	igDone := make(chan error, 1)
	go func() {
		igDone <- integrator.Run(ctx, integrator.Config{Pipeline: e2ePipeline, Latent: e2eLatent, NATS: bus.ConnConfig{URL: url}, Logger: quiet,
			Discovery: 100 * time.Millisecond, Ready: func(ig *integrator.Integrator) { ready <- ig }})
	}()
	var ig *integrator.Integrator
	select {
	case ig = <-ready:
	case err := <-igDone:
		t.Fatal(err)
	}
	stopped := 0 // modules whose end was taken from done already
	t.Cleanup(func() {
		cancel()
		for range 2 - stopped {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
		<-igDone
	})
	for !containsAll(ig.Live(), modules) {
		select {
		case <-ig.Polled():
		case err := <-done:
			stopped++
			t.Fatalf("a module stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("modules not discovered; live: %v", ig.Live())
		}
	}
	return ig
}

// trainTogether trains modules through the integrator for ten epochs of
// the train split and checks that there was every step, that none missed
// a module and that the objective rose. want is how many steps there must
// be.
func trainTogether(t *testing.T, ctx context.Context, ig *integrator.Integrator, data string, modules []string) (steps []integrator.StepStats, want int) {
	t.Helper()
	man, err := dataset.ReadManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, it := range man.InSplit(dataset.Train) {
		ids = append(ids, it.ID)
	}
	tc := integrator.TrainConfig{Modules: modules, IDs: ids, Epochs: 10, Batch: 20, Seed: 1,
		Lambda: map[string]float32{"touch": 10}, KLFrom: 1, KLTo: 1, Deadline: 20 * time.Second,
		OnStep: func(s integrator.StepStats) { steps = append(steps, s.Clone()) }}
	trainStart := time.Now()
	if _, err := ig.Train(ctx, tc); err != nil {
		t.Fatal(err)
	}
	want = tc.Epochs * ((len(ids) + tc.Batch - 1) / tc.Batch)
	if len(steps) != want {
		t.Fatalf("%d steps, want %d", len(steps), want)
	}
	for _, s := range steps {
		if len(s.Missing) > 0 {
			t.Errorf("step %d: missing %v", s.Step, s.Missing)
		}
	}
	checkObjectiveRose(t, steps, tc.Batch, trainStart)
	return steps, want
}

// checkObjectiveRose compares the first sixth of the steps with the last:
// the ELBO and touch's own log-likelihood must both rise.
func checkObjectiveRose(t *testing.T, steps []integrator.StepStats, batch int, trainStart time.Time) {
	t.Helper()
	k := len(steps) / 6
	elbo := func(s integrator.StepStats) float64 { return s.ELBO }
	touchLL := func(s integrator.StepStats) float64 { return s.Terms[0].LogLik["touch"] } // the joint term
	first, last := meanOf(steps[:k], elbo), meanOf(steps[len(steps)-k:], elbo)
	llFirst, llLast := meanOf(steps[:k], touchLL), meanOf(steps[len(steps)-k:], touchLL)
	t.Logf("%d steps of %d items in %v: ELBO %.1f → %.1f, touch log-likelihood (joint term) %.2f → %.2f",
		len(steps), batch, time.Since(trainStart).Round(time.Millisecond), first, last, llFirst, llLast)
	if !(last > first) {
		t.Errorf("the objective did not rise: %.1f → %.1f", first, last)
	}
	if !(llLast > llFirst) {
		t.Errorf("touch's log-likelihood did not rise: %.2f → %.2f", llFirst, llLast)
	}
}

func meanOf(ss []integrator.StepStats, f func(integrator.StepStats) float64) float64 {
	var sum float64
	for _, s := range ss {
		sum += f(s)
	}
	return sum / float64(len(ss))
}

// checkTouchLearnedFromEveryStep asks touch for its own count: it learned
// from every step (want of them, the last lastStep) and rejected none.
func checkTouchLearnedFromEveryStep(t *testing.T, nc *nats.Conn, want int, lastStep uint64) {
	t.Helper()
	subj, _ := bus.NewSubjects(e2ePipeline)
	msg, err := nc.Request(subj.TrainStatus("touch"), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Steps    int    `json:"steps"`
		Step     uint64 `json:"step"`
		Rejected int    `json:"rejected"`
	}
	if err := json.Unmarshal(msg.Data, &status); err != nil {
		t.Fatal(err)
	}
	if status.Steps != want || status.Step != lastStep || status.Rejected != 0 {
		t.Errorf("touch's status %+v: want %d steps learned from, the last %d, none rejected", status, want, lastStep)
	}
}

// checkGeneratesFromTouch generates across: a sneaker's touch alone → an
// image and a reading.
func checkGeneratesFromTouch(t *testing.T, ctx context.Context, nc *nats.Conn, modules []string) {
	t.Helper()
	c, err := client.New(nc, e2ePipeline, "test")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Infer(ctx, &bus.InferRequest{
		Observations: map[string]bus.Payload{"touch": {Type: "text/plain", Data: []byte(touch.Format(touchsim.Reading(7, 5, 1<<62)))}},
		Want:         modules,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outputs["vision"]) != 1 || rep.Outputs["vision"][0].Type != "image/png" || len(rep.Outputs["touch"]) != 1 {
		t.Fatalf("inference from touch: %+v", rep)
	}
	t.Logf("touch of a sneaker → touch: %s", rep.Outputs["touch"][0].Data)
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// With --sensor, every reading published on the subject becomes a
// timestamped posterior on …obs.post.touch (streaming perception).
func TestStreamsFromASensor(t *testing.T) {
	data := prepareTouch(t)
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	cfg, err := parseModuleFlags([]string{"--data", data, "--nats", srv.ClientURL(), "--pipeline", "touch-stream", "--latent", "8",
		"--hidden", "16", "--sensor", "robot.finger", "--log-level", "error"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subj, _ := bus.NewSubjects("touch-stream")
	posts, err := nc.SubscribeSync(subj.ObsPost("touch"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := client.New(nc, "touch-stream", "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(ctx, false, "touch"); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("robot.finger", []byte(touch.Format(touchsim.Reading(9, 3, 1<<62)))); err != nil {
		t.Fatal(err)
	}
	msg, err := posts.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no posterior for the sensor reading: %v", err)
	}
	var p bus.Posterior
	if err := bus.Unmarshal(msg.Data, &p, bus.Expect{Latent: 8}); err != nil {
		t.Fatal(err)
	}
	if p.Mu.Rows() != 1 || p.Time == 0 {
		t.Fatalf("posterior %+v", p)
	}
}
