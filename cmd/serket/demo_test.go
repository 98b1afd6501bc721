package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset/datasettest"
)

// TestDemo runs the tour make demo runs, on the small test dataset: it
// trains the three modules as processes, generates across modalities,
// kills audio and waits for the supervisor to bring it back, and writes
// the report, all with exit status 0 and without a word about a lost
// connection (the demo's client and integrator leave before its server
// stops).
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("trains three module processes and evaluates them")
	}
	data, out := datasettest.Dir(t), t.TempDir()
	cmd := exec.Command(serketBin, "demo", "--data", data, "--out", out, "--items", "200", "--epochs", "1")
	cmd.Dir = t.TempDir()
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("serket demo: %v\n%s", err, got)
	}
	text := string(got)
	for _, want := range []string{
		"trained 1 epochs of 200 items",
		"missing audio", // the inference right after the kill
		"the supervisor restarts audio",
		"audio is back",
		"coherence (", // the evaluation's table
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the tour did not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "disconnected") {
		t.Errorf("the tour reported a lost connection:\n%s", text)
	}
	for _, f := range []string{"run/vision.ckpt", "run/audio.ckpt", "say-sneaker/vision.png", "say-sneaker-again/audio-0.wav", "report/index.html", "report/eval.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("the tour left no %s: %v", f, err)
		}
	}
}
