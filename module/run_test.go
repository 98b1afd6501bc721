package module_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

func newToy(t *testing.T) *toy.Toy {
	t.Helper()
	m, err := toy.New(toy.Config{Name: "left", Dim: 3, Latent: 2, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func server(t *testing.T) *bus.Server {
	t.Helper()
	s, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestRunRefusesAnUnusableCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "left.ckpt")
	if err := os.WriteFile(path, []byte("SERKET-TOY\x00 truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := module.Run(context.Background(), newToy(t), module.Options{Checkpoint: path, NATS: bus.ConnConfig{Server: server(t)}})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("Run with a corrupt checkpoint: %v; want an error naming the file", err)
	}
}

func TestRunSavesACheckpointAtExitAndRestoresIt(t *testing.T) {
	srv := server(t)
	path := filepath.Join(t.TempDir(), "sub", "left.ckpt")
	m := newToy(t)
	// Move the parameters away from their initial values.
	x, _, _ := m.LoadBatch([]uint64{1, 2})
	mu, lv := make([]float32, 4), make([]float32, 4)
	m.Encode(x, mu, lv)
	m.Learn([]float32{1, 1, 1, 1}, []float32{1, 1, 1, 1})
	m.Encode(x, mu, lv)

	ctx, cancel := context.WithCancel(context.Background())
	err := module.Run(ctx, m, module.Options{Checkpoint: path, NATS: bus.ConnConfig{Server: srv}, Ready: func(micro.Service) { cancel() }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no checkpoint after Run returned: %v", err)
	}
	if tmp, _ := filepath.Glob(path + ".tmp-*"); len(tmp) > 0 {
		t.Fatalf("temporary files left behind: %v", tmp)
	}
	// A fresh module restored from it at start encodes like the saved one.
	fresh := newToy(t)
	ctx, cancel = context.WithCancel(context.Background())
	if err := module.Run(ctx, fresh, module.Options{Checkpoint: path, NATS: bus.ConnConfig{Server: srv}, Ready: func(micro.Service) { cancel() }}); err != nil {
		t.Fatal(err)
	}
	got, glv := make([]float32, 4), make([]float32, 4)
	fresh.Encode(x, got, glv)
	if !slices.Equal(got, mu) || !slices.Equal(glv, lv) {
		t.Fatalf("restored module encodes %v/%v, want %v/%v", got, glv, mu, lv)
	}
}

func TestRunRefusesABadSpec(t *testing.T) {
	m, _ := toy.New(toy.Config{Name: "ok", Dim: 1, Latent: 1})
	err := module.Run(context.Background(), badSpec{m}, module.Options{})
	if err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Fatalf("Run with an invalid module name: %v", err)
	}
}

type badSpec struct{ *toy.Toy }

func (b badSpec) Spec() module.Spec { s := b.Toy.Spec(); s.Name = "Bad Name"; return s }
