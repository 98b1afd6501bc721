package integrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// resumeLatent is the latent size of the rig.
const resumeLatent = 4

// resumeRig is an in-process server, integrator and one toy module "a",
// kept for the whole fuzz run: the training checkpoint is only read by
// Train, which needs them.
func resumeRig(t testing.TB) *integrator.Integrator {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conn := func(name string) *nats.Conn {
		nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	quiet := slog.New(slog.DiscardHandler) // a line per resumed run otherwise
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *integrator.Integrator, 1)
	done := make(chan error, 2)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{
			Conn: conn("integrator"), Logger: quiet, Latent: resumeLatent, Discovery: 50 * time.Millisecond, Misses: 2, Deadline: time.Second,
			Ready: func(ig *integrator.Integrator) { ready <- ig },
		})
	}()
	m, err := toy.New(toy.Config{Name: "a", Dim: 3, Latent: resumeLatent, DataSeed: 1, Items: 100})
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "a.ckpt")
	go func() {
		done <- module.Run(ctx, m, module.Options{Conn: conn("a"), Logger: quiet, Train: true, Checkpoint: ckpt})
	}()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("rig: %v", err)
			}
		}
	})
	var ig *integrator.Integrator
	select {
	case ig = <-ready:
	case err := <-done:
		t.Fatalf("integrator: %v", err)
	}
	for deadline := time.After(10 * time.Second); !slices.Equal(ig.Live(), []string{"a"}); {
		select {
		case <-ig.Polled():
		case <-deadline:
			t.Fatalf("live modules %v, want [a]", ig.Live())
		}
	}
	return ig
}

// resumeConfig is the run every fuzzed checkpoint is resumed into: one
// epoch of two steps.
func resumeConfig(dir string) integrator.TrainConfig {
	return integrator.TrainConfig{
		Modules: []string{"a"}, IDs: []uint64{0, 1, 2, 3, 4, 5, 6, 7}, Epochs: 1, Batch: 4,
		CheckpointDir: dir, CheckpointEvery: 1, Deadline: time.Second,
	}
}

// resumeTimeout bounds one resumed run; a run of resumeConfig takes
// milliseconds.
const resumeTimeout = 5 * time.Second

// FuzzResume: Train with Resume reads CheckpointDir/integrator.json, a file
// a crash, a full disk or a person may have damaged. Whatever it holds,
// Train neither panics nor runs on (a checkpoint cannot make it train more
// than the epochs asked for); it either refuses the file with an error
// naming it, or trains the rest of the run, leaving a checkpoint of an
// epoch in 0..Epochs at a position ≥ 0 if it trained any step.
func FuzzResume(f *testing.F) {
	ig := resumeRig(f)
	// Real checkpoints: after the first step, and at the end.
	dir := f.TempDir()
	cfg := resumeConfig(dir)
	var saved [][]byte
	cfg.OnStep = func(integrator.StepStats) {
		if b, err := os.ReadFile(filepath.Join(dir, "integrator.json")); err == nil {
			saved = append(saved, b)
		}
	}
	if _, err := ig.Train(context.Background(), cfg); err != nil {
		f.Fatal(err)
	}
	final, err := os.ReadFile(filepath.Join(dir, "integrator.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range append(saved, final) {
		f.Add(b)
		// The same without its checksum, as files from before it were:
		// unchecked, so mutations of it are not all refused as damaged.
		var st map[string]any
		if err := json.Unmarshal(b, &st); err != nil {
			f.Fatal(err)
		}
		delete(st, "crc32c")
		legacy, err := json.Marshal(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(legacy)
		// And as the first format had it: four fields, short enough for
		// byte mutations to reach each number.
		first, err := json.Marshal(map[string]any{"step": st["step"], "epoch": st["epoch"], "position": st["position"], "config": st["config"]})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(first)
	}
	f.Add([]byte(`{"step": 1, "epoch": 0, "position": 4, "config": "modules=a"}`))
	f.Add([]byte(`{"step": 1, "epoch": 0, "position": 4}`))
	// What the fuzzer found: a negative position, an epoch far in the
	// past (10⁸ epochs to run), partial statistics without objectives.
	f.Add([]byte(`{"step":1,"epoch":0,"position":-4,"config":"modules=a items=8 batch=4 seed=1"}`))
	f.Add([]byte(`{"step":1,"epoch":-100000000,"position":0,"config":"modules=a items=8 batch=4 seed=1"}`))
	f.Add([]byte(`{"step":2,"epoch":0,"position":8,"config":"modules=a items=8 batch=4 seed=1","partial":{"epoch":0,"steps":2}}`))
	f.Add([]byte("{"))
	f.Add([]byte("null"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "integrator.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), resumeTimeout)
		defer cancel()
		cfg := resumeConfig(dir)
		cfg.Resume = true
		_, err := ig.Train(ctx, cfg)
		if ctx.Err() != nil {
			t.Fatalf("resuming from %q ran past %v (%v)", data, resumeTimeout, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "integrator.json") {
				t.Fatalf("error %q does not name the checkpoint", err)
			}
			return
		}
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("no checkpoint after a resumed run: %v", err)
		}
		if bytes.Equal(after, data) {
			return // nothing was left to train: no step, no save
		}
		var st struct {
			Epoch    *int `json:"epoch"`
			Position *int `json:"position"`
		}
		if err := json.Unmarshal(after, &st); err != nil || st.Epoch == nil || st.Position == nil {
			t.Fatalf("the checkpoint after a resumed run is %q (%v)", after, err)
		}
		if *st.Epoch < 0 || *st.Epoch > cfg.Epochs || *st.Position < 0 {
			t.Fatalf("resuming from %q left the checkpoint %s", data, after)
		}
	})
}
