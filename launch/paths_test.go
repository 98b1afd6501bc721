package launch_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serket-go/serket/launch"
)

// Every path a pipeline file gives is taken from the file's directory,
// wherever serket runs; an absolute one is kept.
func TestPathsAreRelativeToTheFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "robot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(`
data: ../datasets/shop
labels: labels.json
nats: {port: 4333}
modules: [{name: shelf}]
train: {checkpoint_dir: runs/one}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // not the file's directory
	p, err := launch.Load(filepath.Join("..", filepath.Base(filepath.Dir(dir)), "robot", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"data", p.DataDir(), filepath.Join(filepath.Dir(dir), "datasets", "shop")},
		{"labels", p.LabelsOr("ignored"), filepath.Join(dir, "labels.json")},
		{"checkpoint_dir", p.CheckpointDir(), filepath.Join(dir, "runs", "one")},
		{"an absolute path", p.Path("/srv/x"), "/srv/x"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
	if url, err := p.ClientURL(); err != nil || url != "nats://127.0.0.1:4333" {
		t.Errorf("client URL %q (%v), want the embedded server's port", url, err)
	}
	d := launch.Default()
	if d.DataDir() != "" || d.CheckpointDir() != "" || d.LabelsOr("data/x") != "data/x" {
		t.Errorf("the default pipeline names data %q, checkpoints %q", d.DataDir(), d.CheckpointDir())
	}
	d.NATS.Port = 0
	if _, err := d.ClientURL(); err == nil || !strings.Contains(err.Error(), "--nats") {
		t.Errorf("the client URL of a random port: %v, want an error saying to give --nats", err)
	}
}

// A key the file may not have is named with the section it is in and the
// keys it could be, in the author's words, not Go's.
func TestUnknownKeysAreNamedPlainly(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"modules: [{name: a}]\ntrain: {data: d}\n", `line 2: unknown key "data" in train (known: epochs, batch,`},
		{"modules: [{name: a}]\ntrain: {data: d}\n", "the dataset is a top-level setting (data: DIR)"},
		{"latnet: 8\nmodules: [{name: a}]\n", `line 1: unknown key "latnet" at the top level (known: pipeline, latent,`},
		{"modules: [{name: a, argz: [x]}]\n", `unknown key "argz" in a module or the integrator (known: name, command, args,`},
		{"modules: [{name: a}]\nnats: {prot: 1}\n", `unknown key "prot" in nats`},
		{"latent: many\nmodules: [{name: a}]\n", "line 1: cannot unmarshal a string `many` into a whole number"},
	} {
		_, err := launch.Parse([]byte(c.yaml), "p.yaml")
		if !errors.Is(err, launch.ErrInvalidPipeline) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "launch.") {
			t.Errorf("%q: %v\nwant %q and no Go type", c.yaml, err, c.want)
		}
	}
}
