package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
)

// TestForgedTrainingChangesNothing is the attack of issue 14 against a
// pipeline serving a trained model on the default, open bus: someone
// publishes a whole training step for vision (a step begin, a latent and
// an expert gradient) claiming to be language, the same claiming to be the
// integrator of a made-up session, and asks vision to save and to restore
// its checkpoint. vision's weights (its image for "a sneaker") and its
// checkpoint files are the same afterwards, also after serket up stops.
func TestForgedTrainingChangesNothing(t *testing.T) {
	data := datasettest.Dir(t)
	t.Setenv("SERKET_DATA", data)
	run := trainTwoModules(t, data)
	vision := filepath.Join(run, "vision.ckpt")
	before := fileStates(t, vision, vision+".prev")

	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	serve := writeFile(t, "serve.yaml", `
pipeline: served
latent: 8
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
`)
	t.Setenv("SERKET_CHECKPOINT_DIR", run)
	up, out := startUp(t, "--port", strconv.Itoa(port), serve)
	c := connect(t, url, "served")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitFor(ctx, true, "vision", "language"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sneaker := func() []byte {
		rep, err := c.Infer(ctx, &bus.InferRequest{Observations: map[string]bus.Payload{"language": {Type: "text/plain", Data: []byte("a sneaker")}}, Want: []string{"vision"}})
		if err != nil || len(rep.Outputs["vision"]) != 1 {
			t.Fatalf("inference: %v, %+v", err, rep)
		}
		return rep.Outputs["vision"][0].Data
	}
	want := sneaker()

	forger, err := bus.Connect(bus.ConnConfig{URL: url, Name: "forger"})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	subj, _ := bus.NewSubjects("served")
	for _, h := range []bus.Header{{Sender: "language"}, {Sender: "integrator", Run: bus.NewToken()}} {
		forgeStep(t, forger, subj, "vision", h)
	}
	for _, op := range []string{bus.OpSave, bus.OpRestore} {
		forgeControl(t, forger, subj, "vision", op)
	}

	if got := sneaker(); !bytes.Equal(got, want) {
		t.Error("vision's image for \"a sneaker\" changed after the forged step")
	}
	up.Process.Signal(syscall.SIGTERM)
	waitFor(t, ctx, func() bool { return strings.Contains(out.String(), "pipeline stopped") })
	if after := fileStates(t, vision, vision+".prev"); after != before {
		t.Errorf("vision's checkpoint files changed:\nbefore %s\nafter  %s", before, after)
	}
}

// trainTwoModules trains vision and language (small networks) for one
// epoch of the small dataset and returns the run's checkpoint directory.
func trainTwoModules(t *testing.T, data string) string {
	t.Helper()
	run := filepath.Join(t.TempDir(), "run")
	file := writeFile(t, "two.yaml", `
latent: 8
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
`)
	if out, err := serketOut(t, "train", file, "--data", data, "--checkpoint-dir", run, "--batch", "60", "--eval-items", "0"); err != nil {
		t.Fatalf("serket train: %v\n%s", err, out)
	}
	return run
}

// fileStates describes files as what changes when one is written: its
// inode, size, modification time and a checksum of its bytes.
func fileStates(t *testing.T, paths ...string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var sum uint32
		for _, c := range data {
			sum = sum*31 + uint32(c)
		}
		b.WriteString(filepath.Base(p) + ": inode " + strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10) + " size " + strconv.FormatInt(fi.Size(), 10) +
			" mtime " + fi.ModTime().String() + " sum " + strconv.FormatUint(uint64(sum), 10) + "; ")
	}
	return b.String()
}

// forgeStep publishes a whole training step for module name under header h.
func forgeStep(t *testing.T, nc *nats.Conn, subj bus.Subjects, name string, h bus.Header) {
	t.Helper()
	const b, d = 2, 8
	ones := make([]float32, b*d)
	for i := range ones {
		ones[i] = 1
	}
	m := bus.Matrix(b, d, ones)
	for subject, msg := range map[string]bus.Message{
		subj.Step():       &bus.StepBegin{Header: h, Step: 1, Train: true, IDs: []uint64{1, 2}, Plan: []bus.Term{{Subset: []string{name}, Targets: []string{name}}}},
		subj.Latent():     &bus.Latent{Header: h, Step: 1, Members: []string{name}, Z: []bus.Tensor{m}},
		subj.EGrad(name):  &bus.ExpertGrad{Header: h, Step: 1, DMu: m, DLogVar: m},
		subj.Post("x"):    &bus.Posterior{Header: h, Step: 1, Mu: m, LogVar: m},
		subj.ZGrad("xyz"): &bus.ZGrad{Header: h, Step: 1},
	} {
		data, err := bus.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// forgeControl asks module name, as an integrator of a made-up session and
// run, to save or restore its checkpoint; a serving module has no one to
// answer it.
func forgeControl(t *testing.T, nc *nats.Conn, subj bus.Subjects, name, op string) {
	t.Helper()
	c := &bus.Control{Header: bus.Header{Sender: "integrator", Run: bus.NewToken()}, Op: op, ID: bus.NewToken(), Step: 1}
	data, err := bus.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request(subj.Control(name), data, 2*time.Second); err == nil {
		t.Errorf("a serving %s answered a forged %s", name, op)
	}
}
