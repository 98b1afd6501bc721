package main

import (
	"context"
	"testing"
	"time"
)

// TestPairedShareLearnsAcrossModalitiesFromFewPairs: with 2% of the items
// paired, three epochs of the modules as processes tie the modalities
// together when a fifth of every batch comes from the pairs (the default,
// --paired-share 0.2), and do not when batches are drawn uniformly
// (--paired-share 0), in the same steps: the mean coherence of one
// modality generating another (six directions; chance is 0.1).
func TestPairedShareLearnsAcrossModalitiesFromFewPairs(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two runs of three epochs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	data := tenThousand(t, ctx)
	pipeline := writeFile(t, "pairing.yaml", "modules: [{name: vision}, {name: language}, {name: audio}]\n")
	measure := func(extra ...string) float64 {
		t.Helper()
		var res struct {
			Coherence struct {
				Subsets [][]string  `json:"subsets"`
				Targets []string    `json:"targets"`
				Acc     [][]float64 `json:"accuracy"`
			} `json:"coherence"`
		}
		trainAndEval(t, ctx, pipeline, data, &res, append([]string{"--paired-fraction", "0.02"}, extra...)...)
		var sum float64
		var n int
		c := res.Coherence
		for i, s := range c.Subsets {
			for j, target := range c.Targets {
				if len(s) == 1 && s[0] != target {
					sum += c.Acc[i][j]
					n++
				}
			}
		}
		if n != 6 {
			t.Fatalf("eval.json has %d one-to-another coherences, want 6: %+v", n, c)
		}
		return sum / float64(n)
	}
	uniform := measure("--paired-share", "0")
	shared := measure()
	t.Logf("2%% paired, one modality generating another (mean of 6): %.3f with a fifth of every batch paired, %.3f with batches drawn uniformly", shared, uniform)
	// Measured (OpenBLAS, seed 1): 0.362 against 0.112; a half of every
	// batch paired gave 0.476.
	if shared < 0.25 || shared < uniform+0.15 {
		t.Errorf("one modality generating another: %.3f with --paired-share 0.2, %.3f with 0: want at least 0.25, and 0.15 above", shared, uniform)
	}
}
