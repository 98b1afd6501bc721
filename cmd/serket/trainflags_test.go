package main

import (
	"testing"

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
