package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/vision"
	"github.com/serket-go/serket/report"
)

func newEvalCmd(g *globals) *cobra.Command {
	var (
		ckpt, data, out string
		latent, hidden  int
		cfg             eval.Config
	)
	cmd := &cobra.Command{
		Use:   "eval --checkpoint DIR",
		Short: "measure a trained model on the test split and write a report with pictures",
		Long: `Measure the model in --checkpoint (vision.ckpt, language.ckpt, audio.ckpt) on
the test split:

  coherence    every modality generated from every non-empty subset of the
               others, judged by its class (images and speech by classifiers
               trained here on real data and cached beside the dataset, each
               reporting its own accuracy; captions by the language
               decoder), and unconditional coherence from the prior
  likelihoods  log p(x) by importance sampling (K samples from the joint
               posterior) and log p(x_m | the others)
  latent       a linear probe and k-means on the posterior means

and write --out (default DIR/report): index.html with the coherence heat map,
generation grids, training curves (from DIR/metrics.jsonl) and the latent
projected to 2-D, and eval.json with every figure. The report is replaced
whole or not at all.

A bar per phase shows how far it has got (a log line when a phase starts
and ends without a terminal). The defaults take under a minute for a model
of Fashion-MNIST-3's size on two cores (the first run on a dataset also
trains the two judges, about a minute, once); --thorough uses the sizes to
publish (K = 1000 on 1000 items, a probe on 5000) and takes several minutes.
A size flag overrides either.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if ckpt == "" {
				return usagef("give the model with --checkpoint DIR")
			}
			if out == "" {
				out = filepath.Join(ckpt, "report")
			}
			return runEval(g.logger("eval"), ckpt, data, out, latent, hidden, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ckpt, "checkpoint", "", "directory of the trained model's checkpoints (serket train --checkpoint-dir)")
	f.StringVar(&data, "data", dataset.DefaultDir(), "prepared dataset")
	f.StringVar(&out, "out", "", "report directory (default CHECKPOINT/report; replaced)")
	f.IntVar(&latent, "latent", 64, "latent size of the checkpoints")
	f.IntVar(&hidden, "hidden", 512, "hidden units per layer of the checkpoints")
	f.BoolVar(&cfg.Thorough, "thorough", false, "the sizes to publish: K = 1000 on 1000 items, a probe on 5000 (minutes, not seconds)")
	f.IntVar(&cfg.Items, "items", 0, "test items for coherence and the latent figures (default 1000)")
	f.IntVar(&cfg.Prior, "prior-samples", 0, "prior samples for the unconditional coherence (default 1000)")
	f.IntVar(&cfg.IWAEItems, "iwae-items", 0, "test items for the likelihoods (default 500; 1000 with --thorough)")
	f.IntVar(&cfg.IWAEK, "iwae-k", 0, "importance samples per item (default 100; 1000 with --thorough)")
	f.IntVar(&cfg.ProbeTrain, "probe-train", 0, "training items for the linear probe (default 2000; 5000 with --thorough)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of every sample")
	return cmd
}

// runEval measures the model in ckpt, prints the figures and writes the
// report into out.
func runEval(log *slog.Logger, ckpt, data, out string, latent, hidden int, cfg eval.Config) error {
	start := time.Now()
	m, err := eval.Open(data, latent, hidden)
	if err != nil {
		return err
	}
	if err := m.Restore(ckpt); err != nil {
		return err
	}
	var j eval.Judges
	if j.Vision, err = judge(m, dataset.Vision, "", log); err != nil {
		return err
	}
	if j.Audio, err = judge(m, dataset.Audio, "", log); err != nil {
		return err
	}
	bars := newPhaseBars(log)
	cfg.Progress = bars.report
	res, err := m.Evaluate(j, cfg)
	if err != nil {
		return err
	}
	drawn := eval.Progress{Phase: phaseReport, Detail: out, Unit: "steps", Total: 2}
	bars.report(drawn)
	r, err := buildReport(m, ckpt, res)
	if err != nil {
		return err
	}
	drawn.Done++
	bars.report(drawn)
	if err := report.Write(out, r); err != nil {
		return err
	}
	drawn.Done++
	bars.report(drawn)
	printEval(res)
	fmt.Printf("report: %s (in %v)\n", filepath.Join(out, "index.html"), time.Since(start).Round(time.Second))
	return nil
}

// judge loads the modality's classifier cached in path (default: beside
// the dataset) when it was trained on this very dataset, else trains one
// and caches it.
func judge(m *eval.Model, modality, path string, log *slog.Logger) (*eval.Classifier, error) {
	if path == "" {
		path = filepath.Join(m.Data, "classifier-"+modality+".ckpt")
	}
	clf, err := eval.LoadClassifier(path, modality, m.FeatureSize(modality), m.Manifest.Config)
	if err == nil {
		return clf, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		log.Info("training the classifier again", "modality", modality, "cache", path, "why", err)
	}
	clf, err = m.TrainClassifier(modality, eval.ClassifierConfig{Progress: newPhaseBars(log).report})
	if err != nil {
		return nil, err
	}
	log.Info("classifier trained", "modality", modality, "test_accuracy", fmt.Sprintf("%.4f", clf.Accuracy))
	if err := clf.Save(path, m.Manifest.Config); err != nil {
		log.Warn("cannot cache the classifier", "err", err)
	}
	return clf, nil
}

func printEval(r *eval.Result) {
	c := r.Coherence
	fmt.Printf("coherence (%d test items; chance 0.1):\n", c.Items)
	fmt.Printf("  %-24s", "given \\ generated")
	for _, t := range c.Targets {
		fmt.Printf(" %9s", t)
	}
	fmt.Println()
	for i, s := range c.Subsets {
		fmt.Printf("  %-24s", eval.SubsetName(s))
		for k := range c.Targets {
			fmt.Printf(" %9.3f", c.Acc[i][k])
		}
		fmt.Println()
	}
	fmt.Printf("  unconditional (prior, all agree): %.3f (chance 0.01)\n", c.Unconditional)
	fmt.Printf("log p(x) = %.1f nats (IWAE, K = %d, %d items)\n", r.LogPX, r.IWAEK, r.IWAEItems)
	for _, m := range sortedKeys(r.LogPCond) {
		fmt.Printf("  log p(%s | the others) = %.1f\n", m, r.LogPCond[m])
	}
	fmt.Printf("latent: linear probe %.3f (joint)", r.Probe[eval.SubsetName(dataset.Modalities())])
	for _, m := range dataset.Modalities() {
		fmt.Printf(", %s %.3f", m, r.Probe[m])
	}
	fmt.Printf("; k-means accuracy %.3f, ARI %.3f\n", r.KMeansAcc, r.KMeansARI)
}

func buildReport(m *eval.Model, ckpt string, res *eval.Result) (*report.Report, error) {
	c := res.Coherence
	r := &report.Report{
		Title:    "serket evaluation",
		Subtitle: fmt.Sprintf("%s — %s", ckpt, time.Now().UTC().Format("2006-01-02 15:04 UTC")),
	}
	all := eval.SubsetName(m.Names())
	r.Summary = []report.KV{
		{Name: "image → label", Value: fmt.Sprintf("%.3f", c.Acc[indexOf(c, "vision")][1]), Note: "caption class generated from the image alone (chance 0.1)"},
		{Name: "label → image", Value: fmt.Sprintf("%.3f", c.Acc[indexOf(c, "language")][0]), Note: "image class generated from the caption alone"},
		{Name: "audio → image", Value: fmt.Sprintf("%.3f", c.Acc[indexOf(c, "audio")][0]), Note: "image class generated from the speech alone"},
		{Name: "unconditional coherence", Value: fmt.Sprintf("%.3f", c.Unconditional), Note: "prior samples whose three generations agree (chance 0.01)"},
		{Name: "log p(x)", Value: fmt.Sprintf("%.1f nats", res.LogPX), Note: fmt.Sprintf("IWAE, K = %d, first %d test items", res.IWAEK, res.IWAEItems)},
		{Name: "linear probe", Value: fmt.Sprintf("%.3f", res.Probe[all]), Note: "softmax regression on the joint posterior means"},
		{Name: "k-means", Value: fmt.Sprintf("accuracy %.3f, ARI %.3f", res.KMeansAcc, res.KMeansARI), Note: "10 clusters of the joint posterior means"},
		{Name: "judges", Value: fmt.Sprintf("vision %.3f, audio %.3f", res.Judges["vision"], res.Judges["audio"]), Note: "the classifiers' accuracy on real test data: the ceiling of coherence"},
	}
	rows := make([]string, len(c.Subsets))
	for i, s := range c.Subsets {
		rows[i] = eval.SubsetName(s)
	}
	r.Matrices = []report.Matrix{{
		Title: "Coherence", RowLabel: "given", ColLabel: "generated", Rows: rows, Cols: c.Targets, Values: c.Acc, Format: "%.3f",
		Caption: fmt.Sprintf("Fraction of %d test items whose generated modality (one posterior sample) has the item's class. Chance is 0.1.", c.Items),
	}}
	var tbl [][]string
	for _, name := range sortedKeys(res.LogPCond) {
		tbl = append(tbl, []string{name, fmt.Sprintf("%.1f", res.LogPCond[name]), fmt.Sprintf("%.1f", res.LogPMarg[name])})
	}
	r.Tables = append(r.Tables, report.Table{Title: "Conditional likelihoods", Header: []string{"m", "log p(x_m | others)", "log p(others)"}, Rows: tbl,
		Caption: fmt.Sprintf("log p(x) = %.1f nats per item; each conditional is log p(x) − log p(others), both by IWAE.", res.LogPX)})
	var probe [][]string
	for _, name := range append([]string{all}, m.Names()...) {
		probe = append(probe, []string{name, fmt.Sprintf("%.3f", res.Probe[name])})
	}
	r.Tables = append(r.Tables, report.Table{Title: "Linear probe", Header: []string{"posterior given", "test accuracy"}, Rows: probe})

	if curves, err := trainingCurves(filepath.Join(ckpt, "metrics.jsonl")); err == nil {
		r.Curves = curves
	}
	xy, frac, err := report.PCA2(res.LatentMeans, len(res.LatentClasses), m.Latent)
	if err != nil {
		return nil, err
	}
	r.Scatters = []report.Scatter{{Title: "The shared latent", XY: xy, Labels: res.LatentClasses, Classes: dataset.ClassNames[:],
		XLabel: fmt.Sprintf("PC 1 (%.0f%% of the variance)", 100*frac[0]), YLabel: fmt.Sprintf("PC 2 (%.0f%%)", 100*frac[1]),
		Caption: "Posterior means given all three modalities of the test items, projected on their first two principal components."}}
	grids, clips, err := generationGrids(m)
	if err != nil {
		return nil, err
	}
	r.Grids, r.Audio = grids, clips
	b, _ := json.MarshalIndent(res, "", "  ")
	r.Tables = append(r.Tables, report.Table{Title: "Time", Header: []string{"phase", "seconds"}, Rows: secondsRows(res.Seconds)})
	r.Files = map[string][]byte{"eval.json": b}
	return r, nil
}

func indexOf(c *eval.Coherence, subset string) int {
	for i, s := range c.Subsets {
		if eval.SubsetName(s) == subset {
			return i
		}
	}
	return 0
}

func secondsRows(s map[string]float64) [][]string {
	var rows [][]string
	for _, k := range sortedKeys(s) {
		rows = append(rows, []string{k, fmt.Sprintf("%.1f", s[k])})
	}
	return rows
}

// trainingCurves reads a metrics log (one JSON line per epoch).
func trainingCurves(path string) ([]report.Curve, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var train, joint, test, sps []float64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		num := func(k string) float64 {
			if v, ok := e[k].(float64); ok {
				return v
			}
			return math.NaN()
		}
		train, joint, test, sps = append(train, num("elbo")), append(joint, num("joint_elbo")), append(test, num("test_elbo")), append(sps, num("samples_per_sec"))
	}
	if len(train) == 0 {
		return nil, fmt.Errorf("%s: no epochs", path)
	}
	return []report.Curve{
		{Title: "ELBO per epoch", XLabel: "epoch", YLabel: "nats per item",
			Caption: "The joint term of the training objective (mean over the epoch's steps) and the plain ELBO of 1000 test items after the epoch.",
			Series:  []report.Series{{Name: "train (joint term)", Y: joint}, {Name: "test", Y: test}}},
		{Title: "Training throughput", XLabel: "epoch", YLabel: "samples/s", Series: []report.Series{{Name: "samples/s", Y: sps}}},
	}, nil
}

// generationGrids draws what the model generates from one test item of
// each class (rows), given each modality alone.
func generationGrids(m *eval.Model) ([]report.Grid, []report.Clip, error) {
	items := map[int]uint64{}
	for _, it := range m.Manifest.InSplit(dataset.Test) {
		if _, ok := items[int(it.Class)]; !ok {
			items[int(it.Class)] = it.ID
		}
	}
	const n = 8
	frames, mels := m.Audio.FrameSize()
	grids := []report.Grid{
		{Title: "Caption → image", Caption: "Images generated from a test item's caption alone (8 posterior samples per row)."},
		{Title: "Speech → image", Caption: "Images generated from a test item's utterance alone; its spectrogram first."},
		{Title: "Image → caption", Caption: "Captions generated from a test item's image alone (the most likely known caption at each of 4 samples)."},
		{Title: "Prior → image", Caption: "Images generated from latents drawn from the prior."},
	}
	var clips []report.Clip
	for c := range dataset.NumClasses {
		id, ok := items[c]
		if !ok {
			continue
		}
		b := map[string]module.Batch{}
		for _, name := range m.Names() {
			x, _, err := m.Modality(name).(module.Loader).LoadBatch([]uint64{id})
			if err != nil {
				return nil, nil, err
			}
			b[name] = x
		}
		caption := captionOf(m, b[dataset.Language])
		imgs, _, _, err := m.Generate(map[string]module.Batch{dataset.Language: b[dataset.Language]}, n, uint64(c)+1)
		if err != nil {
			return nil, nil, err
		}
		grids[0].RowLabels = append(grids[0].RowLabels, caption)
		grids[0].Cells = append(grids[0].Cells, report.Images(grayImages(imgs)...))

		imgs, _, _, err = m.Generate(map[string]module.Batch{dataset.Audio: b[dataset.Audio]}, n, uint64(c)+1)
		if err != nil {
			return nil, nil, err
		}
		spec, err := report.SpectrogramImage(m.Audio.Denormalise(nil, b[dataset.Audio].(*audio.Features).X), frames, mels)
		if err != nil {
			return nil, nil, err
		}
		grids[1].RowLabels = append(grids[1].RowLabels, "“"+dataset.SpokenNames[c]+"”")
		grids[1].Cells = append(grids[1].Cells, append([]report.Cell{{Image: spec}}, report.Images(grayImages(imgs)...)...))

		_, caps, _, err := m.Generate(map[string]module.Batch{dataset.Vision: b[dataset.Vision]}, 4, uint64(c)+1)
		if err != nil {
			return nil, nil, err
		}
		input, _ := report.GrayImage(b[dataset.Vision].(*vision.Images).Pix, 28, 28)
		grids[2].RowLabels = append(grids[2].RowLabels, dataset.ClassNames[c])
		grids[2].Cells = append(grids[2].Cells, append([]report.Cell{{Image: input}}, report.Texts(caps...)...))

		if c < 3 { // speech generated from a caption, to listen to
			_, _, mel, err := m.Generate(map[string]module.Batch{dataset.Language: b[dataset.Language]}, 1, uint64(c)+1)
			if err != nil {
				return nil, nil, err
			}
			clip, err := speechClip(m, mel[0], fmt.Sprintf("“%s” → speech", caption))
			if err != nil {
				return nil, nil, err
			}
			clips = append(clips, clip)
		}
	}
	imgs, _, _, err := m.Generate(nil, 2*n, 99)
	if err != nil {
		return nil, nil, err
	}
	g := grayImages(imgs)
	grids[3].Cells = [][]report.Cell{report.Images(g[:n]...), report.Images(g[n:]...)}
	return grids, clips, nil
}

func grayImages(pix [][]float32) []image.Image {
	out := make([]image.Image, len(pix))
	for i, p := range pix {
		out[i], _ = report.GrayImage(p, 28, 28)
	}
	return out
}

func captionOf(m *eval.Model, b module.Batch) string {
	return m.Language.Vocab().Decode(b.(*language.Captions).IDs)
}

func speechClip(m *eval.Model, logmel []float32, title string) (report.Clip, error) {
	frames, mels := m.Audio.FrameSize()
	spec, err := report.SpectrogramImage(logmel, frames, mels)
	if err != nil {
		return report.Clip{}, err
	}
	wav, err := m.Audio.SpeechWAV(logmel)
	if err != nil {
		return report.Clip{}, err
	}
	return report.Clip{Title: title, WAV: wav, Spectrogram: spec, Caption: "Griffin-Lim from the decoded log-mel features."}, nil
}
