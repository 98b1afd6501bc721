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

// trainAndEval trains pipeline on data with the plan cross for three
// epochs, as processes, with the train flags given, then evaluates the run
// on 1,000 test items and decodes its eval.json into res.
func trainAndEval(t *testing.T, ctx context.Context, pipeline, data string, res any, train ...string) {
	t.Helper()
	ckpt, rep := filepath.Join(t.TempDir(), "run"), filepath.Join(t.TempDir(), "report")
	train = append([]string{"train", pipeline, "--data", data, "--plan", "cross", "--epochs", "3", "--checkpoint-dir", ckpt, "--eval-items", "0"}, train...)
	eval := []string{"eval", "-f", pipeline, "--checkpoint", ckpt, "--data", data, "--out", rep, "--items", "1000",
		"--prior-samples", "100", "--iwae-items", "10", "--iwae-k", "2", "--probe-train", "200"}
	for _, args := range [][]string{train, eval} {
		if out, err := exec.CommandContext(ctx, serketBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("serket %v: %v\n%s", args, err, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(rep, "eval.json")); err != nil || json.Unmarshal(b, res) != nil {
		t.Fatalf("eval.json: %v", err)
	}
}

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
	pipeline := writeFile(t, "concept.yaml", `
modules: [{name: vision}, {name: language}, {name: audio}]
prior: {name: concept, args: [--warmup, "100", --items, "10000"]}
`)
	measure := func(prior string) (kmeans float64, used int) {
		var res struct {
			KMeans   float64 `json:"kmeans_accuracy"`
			Concepts *struct {
				Used int `json:"used"`
			} `json:"concepts"`
		}
		trainAndEval(t, ctx, pipeline, data, &res, "--prior", prior, "--lambda", "language=50,audio=0.2")
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
