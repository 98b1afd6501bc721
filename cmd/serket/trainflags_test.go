package main

import (
	"testing"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/launch"
	"github.com/spf13/cobra"
)

// TestTrainFlagsTakeTheFilesPriorModule: a pipeline file's prior section
// makes the run's prior module, with or without a train section, unless
// --prior says otherwise.
func TestTrainFlagsTakeTheFilesPriorModule(t *testing.T) {
	for _, c := range []struct {
		name, file string
		flag       []string // --prior's value, if given
		want       string
	}{
		{"no train section", "modules: [{name: vision}]\nprior: {name: concept}\n", nil, "concept"},
		{"a train section", "modules: [{name: vision}]\nprior: {name: concept}\ntrain: {epochs: 2}\n", nil, "concept"},
		{"--prior empty", "modules: [{name: vision}]\nprior: {name: concept}\n", []string{""}, ""},
		{"no prior section", "modules: [{name: vision}]\n", nil, ""},
		{"--prior on a file without", "modules: [{name: vision}]\n", []string{"concept"}, "concept"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := launch.Load(writeFile(t, "p.yaml", c.file))
			if err != nil {
				t.Fatal(err)
			}
			var tf trainFlags
			cmd := &cobra.Command{Use: "train"}
			tf.register(cmd)
			for _, v := range c.flag {
				if err := cmd.Flags().Set("prior", v); err != nil {
					t.Fatal(err)
				}
			}
			tf.fromFile(p, cmd)
			if tf.prior != c.want {
				t.Errorf("the run's prior module is %q, want %q", tf.prior, c.want)
			}
		})
	}
}

// TestTrainFlagsPairing: the file's pairing settings reach the run unless
// a flag says otherwise, and the run knows the modules' mask: which items
// are paired, and no share at all when every item is.
func TestTrainFlagsPairing(t *testing.T) {
	p, err := launch.Load(writeFile(t, "p.yaml", "modules: [{name: vision}]\ntrain: {paired_fraction: 0.1, pairing_seed: 4, paired_share: 0.25, seen_only: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var tf trainFlags
	cmd := &cobra.Command{Use: "train"}
	tf.register(cmd)
	if err := cmd.Flags().Set("paired-share", "0.5"); err != nil {
		t.Fatal(err)
	}
	tf.fromFile(p, cmd)
	pr := tf.pairing()
	if pr.Share != 0.5 || !pr.SeenOnly || pr.Paired == nil {
		t.Fatalf("pairing %+v, want the flag's share 0.5, the file's seen-only and a mask", pr)
	}
	paired := 0
	for id := range uint64(2000) {
		if pr.Paired(id) != dataset.Paired(id, dataset.Train, 0.1, 4) {
			t.Fatalf("item %d: the run's mask differs from the modules' (fraction 0.1, seed 4)", id)
		}
		if pr.Paired(id) {
			paired++
		}
	}
	if paired < 140 || paired > 260 {
		t.Errorf("%d of 2000 items paired at a fraction of 0.1", paired)
	}
	tf.paired = 1
	if pr := tf.pairing(); pr.Share != 0 || pr.Paired != nil {
		t.Errorf("fully paired: pairing %+v, want no share and no mask", pr)
	}
}
