package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestConceptPriorClustersTheLatent trains the demo's pipeline (plan
// cross, three epochs of 10,000 real items) with and without the concept
// module, as processes, and measures both: under the concept prior the
// joint latent clusters the classes better (k-means on it; bench-concepts,
// two seeds: 0.397–0.426 against 0.263–0.332), and the module found a
// handful of categories without being told how many.
func TestConceptPriorClustersTheLatent(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two runs of three epochs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	data := tenThousand(t, ctx)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, serketBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("serket %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	pipeline := writeFile(t, "concept.yaml", `
modules: [{name: vision}, {name: language}, {name: audio}]
prior: {name: concept, args: [--warmup, "100", --items, "10000"]}
`)
	measure := func(prior string) (kmeans float64, used int) {
		ckpt := filepath.Join(t.TempDir(), "run")
		run("train", pipeline, "--prior", prior, "--data", data, "--plan", "cross", "--lambda", "language=50,audio=0.2",
			"--epochs", "3", "--checkpoint-dir", ckpt, "--eval-items", "0")
		rep := filepath.Join(t.TempDir(), "report")
		run("eval", "-f", pipeline, "--checkpoint", ckpt, "--data", data, "--out", rep, "--items", "1000", "--prior-samples", "100",
			"--iwae-items", "10", "--iwae-k", "2", "--probe-train", "200")
		var res struct {
			KMeans   float64 `json:"kmeans_accuracy"`
			Concepts *struct {
				Used int `json:"used"`
			} `json:"concepts"`
		}
		if b, err := os.ReadFile(filepath.Join(rep, "eval.json")); err != nil || json.Unmarshal(b, &res) != nil {
			t.Fatalf("eval.json: %v", err)
		}
		if (res.Concepts != nil) != (prior != "") {
			t.Fatalf("a run with prior module %q measured with concepts %v", prior, res.Concepts)
		}
		if res.Concepts != nil {
			used = res.Concepts.Used
		}
		return res.KMeans, used
	}
	plain, _ := measure("")
	clustered, used := measure("concept")
	t.Logf("k-means on the joint latent: %.3f with the concept module (%d categories), %.3f without", clustered, used, plain)
	if clustered < plain+0.05 {
		t.Errorf("k-means on the joint latent %.3f with the concept module, %.3f without: want at least 0.05 better", clustered, plain)
	}
	if used < 5 || used > 20 {
		t.Errorf("the concept module uses %d categories for 10 classes: want 5 to 20", used)
	}
}
