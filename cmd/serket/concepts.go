package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
	"github.com/serket-go/serket/report"
)

func newConceptsCmd(g *globals) *cobra.Command {
	var (
		ckpt, data, out, labels string
		latent, hidden, items   int
	)
	cmd := &cobra.Command{
		Use:   "concepts [-f pipeline.yaml] [--checkpoint DIR]",
		Short: "list the categories a run's concept module formed, with what every module makes of each",
		Long: `List the categories of a run trained with a prior module (serket train
--prior concept): this command serves the run's checkpoints as serket eval
does, has the prior module place the first --items test items, given every
modality and given each alone, and prints each category given every
modality: how many items it holds, the class most of them are (the labels,
which training never saw) and that share (purity), and what every module
renders from the category's mean (a caption is printed; images and sounds
are in the report). Then how the categories match the classes: accuracy
once each category is matched to one class, and the adjusted Rand index.
--out (default DIR/concepts) gets index.html with the pictures.`,
		Example: `  serket train --prior concept --epochs 3 --limit 10000
  serket concepts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, at, err := g.evalSetup(cmd, latent, hidden, data, labels)
			if err != nil {
				return err
			}
			at.ckpt = g.checkpointDir(cmd, "checkpoint", ckpt, "runs/latest")
			if at.out = out; at.out == "" {
				at.out = filepath.Join(at.ckpt, "concepts")
			}
			return runConcepts(g, p, at, items)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ckpt, "checkpoint", "runs/latest", "directory of the trained run's checkpoints (serket train --checkpoint-dir)")
	f.StringVar(&out, "out", "", "report directory (default CHECKPOINT/concepts; replaced)")
	f.IntVar(&items, "items", 1000, "test items to place in the categories")
	f.StringVar(&data, "data", dataset.DefaultDir(), "prepared dataset the built-in modules read (default $"+procenv.EnvData+", else the file's data:, else "+procenv.DefaultData+")")
	f.StringVar(&labels, "labels", "", "the items' classes and splits (default: the pipeline file's labels:, else the dataset's manifest)")
	f.IntVar(&latent, "latent", 64, "with no -f: latent size of the checkpoints")
	f.IntVar(&hidden, "hidden", 512, "with no -f: hidden units per layer of the built-in modules")
	return cmd
}

// runConcepts serves the run, measures its concepts, prints them and
// writes their report.
func runConcepts(g *globals, p *launch.Pipeline, at evalPaths, items int) error {
	start := time.Now()
	log := g.logger("concepts")
	ctx, cancel := signalContext()
	defer cancel()
	labels, err := eval.ReadLabels(at.labels)
	if err != nil {
		return err
	}
	agg, _, err := integrator.RunAggregation(at.ckpt)
	if err != nil {
		return err
	}
	if err := withRunPrior(p, at.ckpt); err != nil {
		return err
	}
	if p.Prior == nil {
		return usagef("the run in %s was trained without a prior module (serket train --prior concept): it has no concepts", at.ckpt)
	}
	s, err := serveCheckpoints(ctx, g, p, at.ckpt, at.data, serveUse{}, log)
	if err != nil {
		return err
	}
	defer s.Close()
	pl, err := eval.Connect(ctx, s.nc, p.Name, labels, peerNames(p))
	if err != nil {
		return err
	}
	pl.Aggregation = agg
	c, err := pl.Concepts(ctx, items)
	if err != nil {
		return err
	}
	rendered, err := pl.Render(ctx, c.Categories)
	if err != nil {
		return err
	}
	printConcepts(c, rendered)
	r, err := pl.ConceptReport(ctx, c, "serket concepts", fmt.Sprintf("%s — %s", at.ckpt, time.Now().UTC().Format("2006-01-02 15:04 UTC")))
	if err != nil {
		return err
	}
	if err := report.Write(at.out, r); err != nil {
		return err
	}
	fmt.Printf("report: %s (in %v)\n", filepath.Join(at.out, "index.html"), time.Since(start).Round(time.Second))
	return nil
}

// printConcepts prints each category and what every module says of it in
// words (text outputs; the report shows the rest), then how the
// categories match the classes.
func printConcepts(c *eval.Concepts, rendered map[string][]bus.Payload) {
	fmt.Printf("%s formed %d categories of %d test items (given every modality):\n", c.Module, c.Used, c.Items)
	var says []string
	for _, name := range slices.Sorted(maps.Keys(rendered)) {
		if len(rendered[name]) > 0 && strings.HasPrefix(rendered[name][0].Type, "text/") {
			says = append(says, name)
		}
	}
	for i, k := range c.Categories {
		fmt.Printf("  concept %-3d %5d items  %5.1f%% %-12s", k.ID, k.Size, 100*k.Purity, k.Class)
		for _, name := range says {
			fmt.Printf("  %s says %q", name, strings.TrimSpace(string(rendered[name][i].Data)))
		}
		fmt.Println()
	}
	fmt.Println("against the classes (never seen in training):")
	for _, name := range slices.Sorted(maps.Keys(c.Accuracy)) {
		fmt.Printf("  given %-24s accuracy %.3f, ARI %.3f\n", name, c.Accuracy[name], c.ARI[name])
	}
}
