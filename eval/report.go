package eval

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // modules may render JPEG
	_ "image/png"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/speech"
	"github.com/serket-go/serket/report"
)

// ReportConfig sets the HTML report of an evaluation.
type ReportConfig struct {
	Title, Subtitle string
	// Metrics is a run's metrics log (metrics.jsonl), drawn as training
	// curves when it is there.
	Metrics string
	// Samples is how many generations a panel shows per source; default 8.
	Samples int
	Seed    uint64
}

// Report draws an evaluation of the pipeline: the figures of res, and
// panels of what each module renders (module.Renderer) from one test item
// given each other module alone, and from the prior. Outputs show as what
// they are: images in grids, text in tables, WAV as audio with its
// spectrogram.
func (p *Pipeline) Report(ctx context.Context, res *Result, cfg ReportConfig) (*report.Report, error) {
	if cfg.Samples <= 0 {
		cfg.Samples = 8
	}
	r := &report.Report{Title: cfg.Title, Subtitle: cfg.Subtitle, Summary: summary(res, p.Names())}
	if c := res.Coherence; c != nil && len(c.Targets) > 0 {
		rows := make([]string, len(c.Subsets))
		for i, s := range c.Subsets {
			rows[i] = SubsetName(s)
		}
		r.Matrices = []report.Matrix{{Title: "Coherence", RowLabel: "given", ColLabel: "generated", Rows: rows, Cols: c.Targets, Values: c.Acc, Format: "%.3f",
			Caption: fmt.Sprintf("Fraction of %d test items whose generated module (one posterior sample) has the item's class, as its judge tells it. Chance is %.2g.", c.Items, 1/float64(len(p.Labels.Classes)))}}
	}
	r.Tables = append(r.Tables, likelihoodTable(res), probeTable(res), judgeTable(res))
	if curves, err := trainingCurves(cfg.Metrics); err == nil {
		r.Curves = curves
	}
	if len(res.LatentClasses) > 1 {
		xy, frac, err := report.PCA2(res.LatentMeans, len(res.LatentClasses), p.Latent)
		if err != nil {
			return nil, err
		}
		r.Scatters = []report.Scatter{{Title: "The shared latent", XY: xy, Labels: res.LatentClasses, Classes: p.Labels.Classes,
			XLabel: fmt.Sprintf("PC 1 (%.0f%% of the variance)", 100*frac[0]), YLabel: fmt.Sprintf("PC 2 (%.0f%%)", 100*frac[1]),
			Caption: "Posterior means of the test items given every module, projected on their first two principal components."}}
	}
	if err := p.panels(ctx, r, cfg); err != nil {
		return nil, err
	}
	if err := p.conceptsSection(ctx, r, res); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	r.Tables = append(r.Tables, report.Table{Title: "Time", Header: []string{"phase", "seconds"}, Rows: secondsRows(res.Seconds)})
	r.Files = map[string][]byte{"eval.json": b}
	return r, nil
}

func summary(res *Result, names []string) []report.KV {
	var kv []report.KV
	if c := res.Coherence; c != nil {
		kv = append(kv, report.KV{Name: "unconditional coherence", Value: fmt.Sprintf("%.3f", c.Unconditional),
			Note: fmt.Sprintf("prior samples whose %d judged generations agree", len(c.Targets))})
	}
	kv = append(kv,
		report.KV{Name: "log p(x)", Value: fmt.Sprintf("%.1f nats", res.LogPX), Note: fmt.Sprintf("IWAE, K = %d, first %d test items", res.IWAEK, res.IWAEItems)},
		report.KV{Name: "linear probe", Value: fmt.Sprintf("%.3f", res.Probe[SubsetName(names)]), Note: "softmax regression on the posterior means given every module"},
		report.KV{Name: "k-means", Value: fmt.Sprintf("accuracy %.3f, ARI %.3f", res.KMeansAcc, res.KMeansARI), Note: "clusters of those means, one per class"})
	kv = append(kv, conceptSummary(res)...)
	for _, name := range slices.Sorted(mapKeys(res.NoJudge)) {
		kv = append(kv, report.KV{Name: "no judge for " + name, Value: "—", Note: res.NoJudge[name]})
	}
	return kv
}

func likelihoodTable(res *Result) report.Table {
	var rows [][]string
	for _, name := range slices.Sorted(mapKeys(res.LogPCond)) {
		rows = append(rows, []string{name, fmt.Sprintf("%.1f", res.LogPCond[name]), fmt.Sprintf("%.1f", res.LogPMarg[name])})
	}
	return report.Table{Title: "Conditional likelihoods", Header: []string{"m", "log p(x_m | others)", "log p(others)"}, Rows: rows,
		Caption: fmt.Sprintf("log p(x) = %.1f nats per item; each conditional is log p(x) − log p(others), both by IWAE.", res.LogPX)}
}

func probeTable(res *Result) report.Table {
	var rows [][]string
	for _, name := range slices.Sorted(mapKeys(res.Probe)) {
		rows = append(rows, []string{name, fmt.Sprintf("%.3f", res.Probe[name])})
	}
	return report.Table{Title: "Linear probe", Header: []string{"posterior given", "test accuracy"}, Rows: rows,
		Caption: fmt.Sprintf("Softmax regression from the posterior means of %d training items.", res.ProbeTrain)}
}

func judgeTable(res *Result) report.Table {
	var rows [][]string
	for _, name := range slices.Sorted(mapKeys(res.JudgeKinds)) {
		acc := "—"
		if a, ok := res.Judges[name]; ok {
			acc = fmt.Sprintf("%.3f", a)
		}
		rows = append(rows, []string{name, res.JudgeKinds[name], acc})
	}
	for _, name := range slices.Sorted(mapKeys(res.NoJudge)) {
		rows = append(rows, []string{name, "none: " + res.NoJudge[name], "—"})
	}
	return report.Table{Title: "Judges", Header: []string{"module", "judged by", "accuracy on real test items"}, Rows: rows,
		Caption: "What tells the class of each module's generations for coherence."}
}

func secondsRows(s map[string]float64) [][]string {
	var rows [][]string
	for _, k := range slices.Sorted(mapKeys(s)) {
		rows = append(rows, []string{k, fmt.Sprintf("%.1f", s[k])})
	}
	return rows
}

// panels adds, for every module that renders, what it renders from the
// first test items given each other module alone (a row each) and from
// the prior.
func (p *Pipeline) panels(ctx context.Context, r *report.Report, cfg ReportConfig) error {
	ids, _, err := p.Labels.Split("test", cfg.Samples)
	if err != nil {
		return err
	}
	post, err := p.encodeAll(ctx, p.withItems(), ids)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e4e))
	for _, target := range p.Modules {
		var rows []source
		for _, from := range p.withItems() {
			if from != target.Name {
				f, err := p.fuse(ctx, post, []string{from}, len(ids))
				if err != nil {
					return err
				}
				rows = append(rows, source{"from " + from, sampleOne(f, len(ids), p.Latent, rng)})
			}
		}
		prior, err := p.fuse(ctx, nil, nil, len(ids))
		if err != nil {
			return err
		}
		rows = append(rows, source{"from the prior", sampleOne(prior, len(ids), p.Latent, rng)})
		if err := p.panel(ctx, r, target, rows, len(ids)); err != nil {
			return err
		}
	}
	return nil
}

// source is one row of a panel: its label and its latents.
type source struct {
	label string
	z     []float32
}

// panel renders target's generations of each row's latents and adds them
// to the report as their media type shows best. A module that does not
// render is left out.
func (p *Pipeline) panel(ctx context.Context, r *report.Report, target *Module, rows []source, n int) error {
	g := report.Grid{Title: "What " + target.Name + " generates", Caption: fmt.Sprintf("From the first %d test items given each other module alone (one posterior sample), and from the prior.", n)}
	for _, row := range rows {
		outs, err := target.Render(ctx, row.z, n)
		if errors.Is(err, errCannot) {
			return nil // it renders nothing to show
		}
		if err != nil {
			return err
		}
		var cells []report.Cell
		for i, o := range outs {
			cell, clip, err := show(o)
			if err != nil {
				return fmt.Errorf("eval: %s's output %d: %w", target.Name, i, err)
			}
			if clip != nil && i < 2 {
				clip.Title = fmt.Sprintf("%s %s, test item %d", target.Name, row.label, i)
				r.Audio = append(r.Audio, *clip)
			}
			cells = append(cells, cell)
		}
		g.RowLabels = append(g.RowLabels, row.label)
		g.Cells = append(g.Cells, cells)
	}
	r.Grids = append(r.Grids, g)
	return nil
}

// show turns one rendered output into a grid cell, and a WAV also into a
// clip to listen to.
func show(o bus.Payload) (report.Cell, *report.Clip, error) {
	typ := strings.TrimSpace(strings.Split(o.Type, ";")[0])
	switch {
	case strings.HasPrefix(typ, "image/"):
		img, _, err := image.Decode(bytes.NewReader(o.Data))
		return report.Cell{Image: img}, nil, err
	case typ == "audio/wav":
		spec, err := Spectrogram(o.Data)
		if err != nil {
			return report.Cell{}, nil, err
		}
		return report.Cell{Image: spec}, &report.Clip{WAV: o.Data, Spectrogram: spec}, nil
	case strings.HasPrefix(typ, "text/"):
		return report.Cell{Text: string(o.Data)}, nil, nil
	}
	return report.Cell{Text: fmt.Sprintf("(%s, %d bytes)", typ, len(o.Data))}, nil, nil
}

// Spectrogram draws the log-mel spectrogram of a WAV with the dataset's
// default feature settings.
func Spectrogram(wav []byte) (image.Image, error) {
	cfg := speech.DefaultConfig()
	feats := make([]float32, cfg.Size())
	if err := speech.NewExtractor(cfg).FromWAV(feats, bytes.NewReader(wav)); err != nil {
		return nil, err
	}
	return report.SpectrogramImage(feats, cfg.Frames, cfg.Mels)
}

// trainingCurves reads a metrics log (one JSON line per epoch).
func trainingCurves(path string) ([]report.Curve, error) {
	if path == "" {
		return nil, os.ErrNotExist
	}
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
			Caption: "The joint term of the training objective (mean over the epoch's steps) and the plain ELBO of the evaluation items after the epoch.",
			Series:  []report.Series{{Name: "train (joint term)", Y: joint}, {Name: "test", Y: test}}},
		{Title: "Training throughput", XLabel: "epoch", YLabel: "samples/s", Series: []report.Series{{Name: "samples/s", Y: sps}}},
	}, nil
}
