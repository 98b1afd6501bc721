package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
	"github.com/serket-go/serket/report"
)

func newEvalCmd(g *globals) *cobra.Command {
	var (
		ckpt, data, out, labels string
		latent, hidden          int
		cfg                     eval.Config
	)
	cmd := &cobra.Command{
		Use:   "eval [-f pipeline.yaml] [--checkpoint DIR]",
		Short: "measure a trained run on the test split and write a report with pictures",
		Long: `Measure a trained run on the test split: --checkpoint DIR, else
$SERKET_CHECKPOINT_DIR, the file's train.checkpoint_dir, runs/latest. This
command starts the pipeline (-f FILE, else the default one: vision,
language, audio) as serket up would, every module its own process serving
DIR's <module>.ckpt on a server of its own, and measures it over the bus,
any module alike:

  coherence    every module a judge can tell the class of, generated from
               every non-empty subset of the modules, and unconditional
               coherence from the prior. A module that shows its features
               (module.Featurer) is judged by a classifier of them trained
               on the labelled training items (cached beside the labels), a
               categorical one by ranking classes' items; the report says
               which module has no judge, and why.
  likelihoods  log p(x) by importance sampling (K samples from the joint
               posterior, the modules scoring their own items) and
               log p(x_m | the others)
  latent       a linear probe and k-means on the posterior means

The labels (which the modules never see) come from --labels, else the
pipeline file's labels:, else the dataset's manifest. --out (default
DIR/report) gets index.html (the coherence heat map, what each module
generates, training curves from DIR/metrics.jsonl, the latent in 2-D) and
eval.json with every figure, replaced whole or not at all.

A bar per phase shows how far it has got (a log line when a phase starts
and ends without a terminal). The defaults take under a minute for a model
of Fashion-MNIST-3's size on two cores (the first run on a dataset also
trains the judges, about a minute, once); --thorough uses the sizes to
publish (K = 1000 on 1000 items, a probe on 5000) and takes several minutes.
A size flag overrides either.`,
		Example: `  serket eval                                  # runs/latest, as serket train left it
  serket eval --checkpoint runs/seed2 --thorough
  serket eval -f examples/custom-modality/pipeline.yaml   # the file's modules and checkpoints`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, at, err := g.evalSetup(cmd, latent, hidden, data, labels)
			if err != nil {
				return err
			}
			at.ckpt = g.checkpointDir(cmd, "checkpoint", ckpt, "runs/latest")
			at.out = out
			if at.out == "" {
				at.out = filepath.Join(at.ckpt, "report")
			}
			return runEval(g, g.logger("eval"), p, at, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ckpt, "checkpoint", "runs/latest", "directory of the trained run's checkpoints (serket train --checkpoint-dir)")
	f.StringVar(&out, "out", "", "report directory (default CHECKPOINT/report; replaced)")
	registerEvalFlags(f, &data, &labels, &latent, &hidden, &cfg, 0)
	return cmd
}

// registerEvalFlags declares what serket eval and bench quality both take:
// where the dataset and labels are, the default pipeline's sizes, and the
// evaluation's sizes (items: the default of --items, 0 for the preset's).
func registerEvalFlags(f *pflag.FlagSet, data, labels *string, latent, hidden *int, cfg *eval.Config, items int) {
	f.StringVar(data, "data", dataset.DefaultDir(), "prepared dataset the built-in modules read (default $"+procenv.EnvData+", else the file's data:, else "+procenv.DefaultData+")")
	f.StringVar(labels, "labels", "", "the items' classes and splits (default: the pipeline file's labels:, else the dataset's manifest)")
	f.IntVar(latent, "latent", 64, "with no -f: latent size of the checkpoints")
	f.IntVar(hidden, "hidden", 512, "with no -f: hidden units per layer of the built-in modules")
	f.BoolVar(&cfg.Thorough, "thorough", false, "the sizes to publish: K = 1000 on 1000 items, a probe on 5000 (minutes, not seconds)")
	usage := "test items for coherence and the latent figures"
	if items == 0 {
		usage += " (default 1000)"
	}
	f.IntVar(&cfg.Items, "items", items, usage)
	f.IntVar(&cfg.Prior, "prior-samples", 0, "prior samples for the unconditional coherence (default 1000)")
	f.IntVar(&cfg.IWAEItems, "iwae-items", 0, "test items for the likelihoods (default 500; 1000 with --thorough)")
	f.IntVar(&cfg.IWAEK, "iwae-k", 0, "importance samples per item (default 100; 1000 with --thorough)")
	f.IntVar(&cfg.ProbeTrain, "probe-train", 0, "training items for the linear probe (default 2000; 5000 with --thorough)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of every sample")
}

// evalPaths are where an evaluation reads and writes.
type evalPaths struct{ ckpt, data, out, labels string }

// evalSetup is the pipeline that serves a run to be measured (the file's,
// else the default with the latent and hidden sizes the command line
// gives), and where its dataset and labels are.
func (g *globals) evalSetup(cmd *cobra.Command, latent, hidden int, data, labels string) (*launch.Pipeline, evalPaths, error) {
	p, err := g.loadPipeline(cmd)
	if err != nil {
		return nil, evalPaths{}, err
	}
	withNetwork(p, flagInt(cmd, "latent", latent), flagInt(cmd, "hidden", hidden))
	at := evalPaths{data: g.dataDir(cmd, data), labels: labels}
	if at.labels == "" {
		at.labels = p.LabelsOr(at.data)
	}
	return p, at, nil
}

// runEval serves the run's checkpoints, measures them, prints the figures
// and writes the report.
func runEval(g *globals, log *slog.Logger, p *launch.Pipeline, at evalPaths, cfg eval.Config) error {
	start := time.Now()
	ctx, cancel := signalContext()
	defer cancel()
	bars := newPhaseBars(log)
	cfg.Progress = bars.report
	m, err := measureRun(ctx, g, log, p, at, cfg)
	if err != nil {
		return err
	}
	defer m.served.Close()
	pl, res, labels := m.pipeline, m.result, m.pipeline.Labels
	drawn := eval.Progress{Phase: phaseReport, Detail: at.out, Unit: "steps", Total: 2}
	bars.report(drawn)
	r, err := pl.Report(ctx, res, eval.ReportConfig{Title: "serket evaluation", Metrics: filepath.Join(at.ckpt, "metrics.jsonl"),
		Subtitle: fmt.Sprintf("%s — %s", at.ckpt, time.Now().UTC().Format("2006-01-02 15:04 UTC"))})
	if err != nil {
		return err
	}
	drawn.Done++
	bars.report(drawn)
	if err := report.Write(at.out, r); err != nil {
		return err
	}
	drawn.Done++
	bars.report(drawn)
	printEval(res, labels)
	fmt.Printf("report: %s (in %v)\n", filepath.Join(at.out, "index.html"), time.Since(start).Round(time.Second))
	return nil
}

// measured is a run evaluated, with the pipeline still serving it.
type measured struct {
	served   *served
	pipeline *eval.Pipeline
	result   *eval.Result
}

// measureRun serves the run's checkpoints (see serveCheckpoints) and
// evaluates them; the caller closes what it returns.
func measureRun(ctx context.Context, g *globals, log *slog.Logger, p *launch.Pipeline, at evalPaths, cfg eval.Config) (*measured, error) {
	labels, err := eval.ReadLabels(at.labels)
	if err != nil {
		return nil, err
	}
	// The run's joint posterior is the one it was trained with.
	agg, found, err := integrator.RunAggregation(at.ckpt)
	if err != nil {
		return nil, err
	}
	if found {
		log.Info("fusing as the run was trained", "aggregation", agg.Name())
	}
	s, err := serveCheckpoints(ctx, g, p, at.ckpt, at.data, serveUse{}, log)
	if err != nil {
		return nil, err
	}
	pl, err := eval.Connect(ctx, s.nc, p.Name, labels, peerNames(p))
	if err == nil {
		pl.Aggregation = agg
		cfg.Judges.Cache = filepath.Dir(labels.Path)
		var res *eval.Result
		if res, err = pl.Evaluate(ctx, cfg); err == nil {
			return &measured{served: s, pipeline: pl, result: res}, nil
		}
	}
	s.Close()
	return nil, err
}

func printEval(r *eval.Result, labels *eval.Labels) {
	if c := r.Coherence; c != nil && len(c.Targets) > 0 {
		fmt.Printf("coherence (%d test items; chance %.2g):\n", c.Items, 1/float64(len(labels.Classes)))
		w := len("given \\ generated")
		for _, s := range c.Subsets {
			w = max(w, len(eval.SubsetName(s)))
		}
		fmt.Printf("  %-*s", w, "given \\ generated")
		for _, t := range c.Targets {
			fmt.Printf(" %9s", t)
		}
		fmt.Println()
		for i, s := range c.Subsets {
			fmt.Printf("  %-*s", w, eval.SubsetName(s))
			for k := range c.Targets {
				fmt.Printf(" %9.3f", c.Acc[i][k])
			}
			fmt.Println()
		}
		fmt.Printf("  unconditional (prior, all agree): %.3f\n", c.Unconditional)
		if c.UnconditionalPlain != nil {
			fmt.Printf("  unconditional from N(0, I) instead of the prior module: %.3f\n", *c.UnconditionalPlain)
		}
	}
	for _, name := range sortedKeys(r.NoJudge) {
		fmt.Printf("  no judge for %s: %s\n", name, r.NoJudge[name])
	}
	fmt.Printf("log p(x) = %.1f nats (IWAE, K = %d, %d items)\n", r.LogPX, r.IWAEK, r.IWAEItems)
	for _, m := range sortedKeys(r.LogPCond) {
		fmt.Printf("  log p(%s | the others) = %.1f\n", m, r.LogPCond[m])
	}
	fmt.Print("latent: linear probe")
	for _, name := range sortedKeys(r.Probe) {
		fmt.Printf(" %s %.3f;", name, r.Probe[name])
	}
	fmt.Printf(" k-means accuracy %.3f, ARI %.3f\n", r.KMeansAcc, r.KMeansARI)
	if c := r.Concepts; c != nil {
		fmt.Printf("concepts of %s: %d categories of %d test items; against the classes:\n", c.Module, c.Used, c.Items)
		for _, name := range sortedKeys(c.Accuracy) {
			fmt.Printf("  given %-24s accuracy %.3f, ARI %.3f\n", name, c.Accuracy[name], c.ARI[name])
		}
	}
}
