package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
)

// TestCustomModalityThroughTheCommands: the tutorial's touch module, a
// program serket's code knows nothing of, trained with vision and language
// by `serket train`, then measured by `serket eval -f` (a coherence row and
// column for touch, its likelihoods and probe, its panel in the report)
// and used both ways by `serket generate -f --serve`. The pipeline file is
// the handle: the commands run elsewhere and find the dataset and the run
// from the paths the file gives relative to itself.
func TestCustomModalityThroughTheCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("trains three modules and serves them three times")
	}
	data := datasettest.Dir(t)
	if _, err := touchsim.Prepare(data, 1); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "touch")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/custom-modality").CombinedOutput(); err != nil {
		t.Fatalf("building touch: %v\n%s", err, out)
	}
	home := t.TempDir()
	if err := os.Symlink(data, filepath.Join(home, "shop")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(home, "touch.yaml")
	if err := os.WriteFile(file, []byte(`
pipeline: feel
latent: 8
data: shop
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
  - {name: touch, command: [`+bin+`], args: [--hidden, "32"]}
train: {checkpoint_dir: runs/one}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run, elsewhere := filepath.Join(home, "runs", "one"), t.TempDir()
	step := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(serketBin, args...)
		cmd.Dir = elsewhere
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("serket %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	step("train", file, "--epochs", "3", "--batch", "40", "--plan", "cross", "--eval-items", "0", "--lambda", "language=10,touch=10")
	if _, err := os.Stat(filepath.Join(run, "touch.ckpt")); err != nil {
		t.Fatalf("the run is not where the file says, beside it: %v", err)
	}

	rep, c := evalsTheModule(t, step, file, "touch")
	if len(c.Subsets) != 7 {
		t.Errorf("coherence subsets %v: want every non-empty subset of the three others and touch alone", c.Subsets)
	}
	if html, _ := os.ReadFile(filepath.Join(rep, "index.html")); !strings.Contains(string(html), "What touch generates") {
		t.Error("the report has no panel of what touch generates")
	}

	reading := touch.Format(touchsim.Reading(7, 1, 1<<62)) // a sneaker's
	g1 := filepath.Join(t.TempDir(), "g1")
	step("generate", "-f", file, "--serve", "--from", "touch="+reading, "--to", "vision", "--n", "2", "--out", g1)
	if _, err := os.Stat(filepath.Join(g1, "vision.png")); err != nil {
		t.Errorf("touch → vision: %v", err)
	}
	g2 := filepath.Join(t.TempDir(), "g2")
	step("generate", "-f", file, "--checkpoint", run, "--from", "language=a sneaker", "--to", "touch", "--n", "2", "--out", g2)
	if b, err := os.ReadFile(filepath.Join(g2, "touch.txt")); err != nil || strings.Count(string(b), "\n") != 2 {
		t.Errorf("language → touch: %q, %v", b, err)
	}
	conceptsOfTouch(t, step, file, home)
}

// evalsTheModule runs `serket eval -f file` (small settings) by step and
// checks that module has what evaluation gives every module: a row and a
// column of coherence, a likelihood and a probe. It returns the report's
// directory and the coherence table.
func evalsTheModule(t *testing.T, step func(...string) string, file, module string) (string, coherenceTable) {
	t.Helper()
	rep := filepath.Join(t.TempDir(), "report")
	step("eval", "-f", file, "--out", rep,
		"--items", "40", "--prior-samples", "40", "--iwae-items", "10", "--iwae-k", "10", "--probe-train", "240")
	var res struct {
		Coherence coherenceTable     `json:"coherence"`
		LogPCond  map[string]float64 `json:"log_p_cond"`
		Probe     map[string]float64 `json:"probe_accuracy"`
	}
	if b, err := os.ReadFile(filepath.Join(rep, "eval.json")); err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("eval.json: %v", err)
	}
	c := res.Coherence
	if !slices.Contains(c.Targets, module) || !slices.ContainsFunc(c.Subsets, func(s []string) bool { return slices.Equal(s, []string{module}) }) {
		t.Errorf("coherence targets %v and subsets %v: want a row and a column for %s", c.Targets, c.Subsets, module)
	}
	if _, ok := res.LogPCond[module]; !ok || res.Probe[module] == 0 {
		t.Errorf("likelihoods %v, probes %v: want %s's", res.LogPCond, res.Probe, module)
	}
	return rep, c
}

// conceptsOfTouch trains the custom pipeline of file under the concept
// module and lists its concepts: touch, which knows nothing of prior
// modules, is fused under its prior and renders every category's mean.
func conceptsOfTouch(t *testing.T, step func(...string) string, file, home string) {
	withPrior := filepath.Join(home, "concept.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Learning from the first step, over the small dataset's items.
	b = append(b, fmt.Sprintf("prior: {name: concept, args: [--warmup, \"0\", --items, \"%d\"]}\n", datasettest.Items)...)
	if err := os.WriteFile(withPrior, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(home, "runs", "concepts")
	step("train", withPrior, "--checkpoint-dir", run, "--epochs", "3", "--batch", "40", "--plan", "cross", "--eval-items", "0", "--lambda", "language=10,touch=10")
	out := filepath.Join(t.TempDir(), "concepts")
	said := step("concepts", "-f", file, "--checkpoint", run, "--items", "40", "--out", out)
	var c struct {
		Used       int `json:"used"`
		Categories []struct {
			Size int `json:"size"`
		} `json:"categories"`
	}
	if b, err := os.ReadFile(filepath.Join(out, "concepts.json")); err != nil || json.Unmarshal(b, &c) != nil {
		t.Fatalf("concepts.json: %v\n%s", err, said)
	}
	total := 0
	for _, k := range c.Categories {
		total += k.Size
	}
	if c.Used < 1 || total != 40 || !strings.Contains(said, "touch says") {
		t.Errorf("%d categories holding %d of 40 items; want every item in one, and what touch says of each:\n%s", c.Used, total, said)
	}
}
