package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/integrator"
)

// TestTrainAggregations trains the three modules as processes with each
// aggregation other than the default PoE (MMVAE's mixture of experts;
// MoPoE's mixture of the products of subsets; the gated product, whose
// gates the integrator learns), with the plan each trains best by (the
// mixtures' papers' joint plan; a product's cross plan), for an epoch of 10,000
// real items, then measures the run and generates from it: the run keeps
// its aggregation (and gates), evaluation and a served pipeline fuse with
// it, and one modality predicts another well above chance.
func TestTrainAggregations(t *testing.T) {
	if testing.Short() {
		t.Skip("trains four runs, about a minute each")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	elsewhere := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, serketBin, args...)
		cmd.Dir = elsewhere
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// A mistyped aggregation is refused before anything is prepared.
	if out, err := run("train", "--aggregation", "mope", "--epochs", "1"); err == nil || !strings.Contains(out, `unknown aggregation "mope"`) {
		t.Fatalf("serket train --aggregation mope: %v, %s; want a usage error naming it", err, out)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "data")); err == nil {
		t.Fatal("serket train --aggregation mope prepared a dataset before refusing the flag")
	}
	data := tenThousand(t, ctx)
	// After one epoch (2026-12-05, 300 items, whose sampling error is
	// about 0.02 near chance, 0.1): moe vision → language 0.43, language →
	// vision 0.28–0.30; mopoe vision → language 0.48, audio → language 0.30;
	// gpoe (cross plan) vision → language 0.34, vision → audio 0.38 (with
	// OpenBLAS, as CI builds; with gonum's pure Go 0.41 and audio →
	// language 0.24 rather than 0.12: one epoch is short enough for the
	// BLAS's rounding to show); poe with private latents of 8 in vision and
	// audio (cross plan) vision → language 0.34, vision → audio 0.33.
	for _, c := range []struct {
		agg, plan string
		private   string // the private latent of vision and audio (--private), if any
		checks    [][2]string
	}{
		{"moe", "joint", "", [][2]string{{"vision", "language"}, {"language", "vision"}}},
		{"mopoe", "joint", "", [][2]string{{"vision", "language"}, {"audio", "language"}}},
		{"gpoe", "cross", "", [][2]string{{"vision", "language"}, {"vision", "audio"}}},
		// From vision, which keeps a private latent (its shared part is
		// what it publishes). After one epoch the rest are near chance
		// (bench-models measures longer runs).
		{"poe", "cross", "8", [][2]string{{"vision", "language"}, {"vision", "audio"}}},
	} {
		name := c.agg
		if c.private != "" {
			name += "+private"
		}
		t.Run(name, func(t *testing.T) { trainAggregation(t, run, data, c.agg, c.plan, c.private, c.checks) })
	}
}

// trainAggregation trains (with plan, and vision and audio keeping a
// private latent of that size if private is not empty), measures and
// generates from a run of aggregation agg, holding the coherence of each
// check (from, to) to at least 0.2.
func trainAggregation(t *testing.T, run func(...string) (string, error), data, agg, plan, private string, checks [][2]string) {
	ckpt := filepath.Join(t.TempDir(), "run")
	priv := ""
	if private != "" {
		priv = `, --private, "` + private + `"`
	}
	pipeline := writeFile(t, "mix.yaml", `
modules:
  - {name: vision, args: [--lr, "0.003"`+priv+`]}
  - {name: language, args: [--lr, "0.003"]}
  - {name: audio, args: [--lr, "0.003"`+priv+`]}
train: {aggregation: `+agg+`, plan: `+plan+`}
`)
	if out, err := run("train", pipeline, "--data", data, "--epochs", "1", "--lambda", "language=50,audio=0.2", "--checkpoint-dir", ckpt, "--step-deadline", "2m"); err != nil {
		t.Fatalf("serket train: %v\n%s", err, out)
	}
	var state struct{ Aggregation string }
	want := agg
	if agg == "poe" {
		want = "" // PoE's checkpoints are as they were before aggregations
	}
	if b, err := os.ReadFile(filepath.Join(ckpt, "integrator.json")); err != nil || json.Unmarshal(b, &state) != nil || state.Aggregation != want {
		t.Fatalf("integrator.json says aggregation %q (%v): want the run's, %s", state.Aggregation, err, agg)
	}
	if agg == "gpoe" {
		checkGatesLearned(t, ckpt)
	}
	rep := filepath.Join(t.TempDir(), "report")
	out, err := run("eval", "-f", pipeline, "--checkpoint", ckpt, "--data", data, "--out", rep, "--items", "300", "--prior-samples", "100",
		"--iwae-items", "20", "--iwae-k", "20", "--probe-train", "1000")
	if err != nil {
		t.Fatalf("serket eval: %v\n%s", err, out)
	}
	if !strings.Contains(out, "aggregation="+agg) {
		t.Errorf("serket eval did not fuse as the run was trained:\n%s", out)
	}
	table := readCoherence(t, rep)
	for _, from := range []string{"vision", "language", "audio"} {
		for _, to := range table.Targets {
			if from != to {
				t.Logf("%s: %s → %s %.3f", agg, from, to, table.of(from, to))
			}
		}
	}
	for _, c := range checks {
		acc := table.of(c[0], c[1])
		t.Logf("%s: coherence %s → %s: %.3f", agg, c[0], c[1], acc)
		if acc < 0.2 {
			t.Errorf("%s: coherence %s → %s %.3f: want well above chance (0.1), at least 0.2", agg, c[0], c[1], acc)
		}
	}
	gen := filepath.Join(t.TempDir(), "gen")
	out, err = run("generate", "-f", pipeline, "--checkpoint", ckpt, "--data", data, "--from", "language=a sneaker", "--to", "vision", "--out", gen)
	if err != nil {
		t.Fatalf("serket generate --checkpoint: %v\n%s", err, out)
	}
	if !strings.Contains(out, "aggregation="+agg) {
		t.Errorf("the served pipeline's integrator did not fuse as the run was trained:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(gen, "vision.png")); err != nil {
		t.Error(err)
	}
}

// checkGatesLearned: the run in ckpt keeps gates for each of its modules,
// and they have moved from 0 (PoE).
func checkGatesLearned(t *testing.T, ckpt string) {
	t.Helper()
	a, _, err := integrator.RunAggregation(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	ps := a.(aggregate.Learned).Params()
	if len(ps) != 3 {
		t.Fatalf("the run keeps gates for %d modules, want 3", len(ps))
	}
	for _, p := range ps {
		var most float64
		for _, v := range p.W {
			most = max(most, math.Abs(float64(v)))
		}
		t.Logf("%s: largest |θ| %.3f", p.Name, most)
		if most < 1e-3 {
			t.Errorf("%s did not move from 0 in an epoch (largest |θ| %g)", p.Name, most)
		}
	}
}

// coherenceTable is the coherence of a report's eval.json: the accuracy
// of each target generated from each subset.
type coherenceTable struct {
	Subsets [][]string  `json:"subsets"`
	Targets []string    `json:"targets"`
	Acc     [][]float64 `json:"accuracy"`
}

// readCoherence reads the coherence of the report in dir.
func readCoherence(t *testing.T, dir string) coherenceTable {
	t.Helper()
	var res struct {
		Coherence coherenceTable `json:"coherence"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "eval.json")); err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("eval.json: %v", err)
	}
	return res.Coherence
}

// of is the accuracy of target generated from the subset {from} (-1: not
// measured).
func (c coherenceTable) of(from, target string) float64 {
	for i, s := range c.Subsets {
		if len(s) != 1 || s[0] != from {
			continue
		}
		for j, tg := range c.Targets {
			if tg == target {
				return c.Acc[i][j]
			}
		}
	}
	return -1
}
