package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bench/torchref"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/modules/fmnist3"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure trained models, and compare them with a reference trainer",
		Long: `Benchmarks that are not part of the tests (bench/quality.sh and
bench/speed.sh drive them):

  serket bench quality DIR...   the test-split figures of trained checkpoints
  serket bench export           the dataset as NumPy arrays, for bench/torch_quality.py and torch_mvae.py
  serket bench import           NumPy weights from bench/torch_quality.py as checkpoints`,
	}
	cmd.AddCommand(newBenchQualityCmd(g), newBenchExportCmd(g), newBenchImportCmd(g))
	cmd.AddCommand(newBenchLoadCmd(g))
	cmd.AddCommand(newBenchFusionCmd(g))
	return cmd
}

func newBenchQualityCmd(g *globals) *cobra.Command {
	var (
		data, labels, save string
		latent, hidden     int
		asJSON             bool
		cfg                eval.Config
	)
	cmd := &cobra.Command{
		Use:   "quality [NAME=]DIR...",
		Short: "measure trained runs side by side with serket eval's figures",
		Long: `Evaluate the checkpoints in each DIR exactly as serket eval does (the pipeline
of -f FILE, default vision, language, audio, started to serve them; the same
judges, coherence, likelihoods and probes) and print their headline figures
side by side: log p(x) and each module's given the others, coherence to every
judged module from each other module and from all the others, the linear
probes, k-means and each judge's accuracy on real test items. The training
throughput comes from DIR/metrics.jsonl when there is one. NAME labels a
column (default: the directory's name). bench/quality.sh measures serket and
the PyTorch reference (imported with serket bench import) this way.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, at, err := g.evalSetup(cmd, latent, hidden, data, labels)
			if err != nil {
				return err
			}
			rows, err := measureRuns(g, p, args, at, cfg)
			if err != nil {
				return err
			}
			if save != "" {
				if err := atomicfile.Write(save, func(w io.Writer) error { return jsonLines(w, rows) }); err != nil {
					return err
				}
			}
			if asJSON {
				return jsonLines(os.Stdout, rows)
			}
			return qualityTable(os.Stdout, rows)
		},
	}
	f := cmd.Flags()
	registerEvalFlags(f, &data, &labels, &latent, &hidden, &cfg, 2000)
	f.BoolVar(&asJSON, "json", false, "print one JSON line per run instead of a table")
	f.StringVar(&save, "save", "", "also write the JSON lines to this file")
	return cmd
}

// qualityRow is one run's figures, as bench quality prints and saves them.
type qualityRow struct {
	System        string             `json:"system"`
	Checkpoint    string             `json:"checkpoint"`
	SamplesPerSec float64            `json:"samples_per_sec,omitempty"`
	Figures       map[string]float64 `json:"figures"`
	Result        *eval.Result       `json:"result"`
	order         []eval.Figure
}

// measureRuns evaluates each [NAME=]DIR in turn, a pipeline serving it at
// a time.
func measureRuns(g *globals, p *launch.Pipeline, args []string, at evalPaths, cfg eval.Config) ([]qualityRow, error) {
	log := g.logger("bench")
	ctx, cancel := signalContext()
	defer cancel()
	var rows []qualityRow
	for _, arg := range args {
		name, dir, ok := strings.Cut(arg, "=")
		if !ok {
			name, dir = filepath.Base(arg), arg
		}
		at.ckpt = dir
		c := cfg
		c.Progress = newPhaseBars(log).report
		start := time.Now()
		pc := *p // a run's own prior module joins its copy only
		m, err := measureRun(ctx, g, log, &pc, at, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		m.served.Close()
		log.Info("measured", "checkpoint", dir, "took", time.Since(start).Round(time.Millisecond))
		row := qualityRow{System: name, Checkpoint: dir, Figures: map[string]float64{}, Result: m.result, order: m.result.Figures()}
		for _, f := range row.order {
			row.Figures[f.Name] = f.Value
		}
		row.SamplesPerSec, _ = throughput(filepath.Join(dir, "metrics.jsonl"))
		rows = append(rows, row)
	}
	return rows, nil
}

func jsonLines(w io.Writer, rows []qualityRow) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// throughput is the training samples/s over every epoch of a metrics log
// (items over seconds), if it has any.
func throughput(path string) (float64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var items, secs float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			SamplesPerSec float64 `json:"samples_per_sec"`
			Seconds       float64 `json:"seconds"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Seconds > 0 {
			items += e.SamplesPerSec * e.Seconds
			secs += e.Seconds
		}
	}
	return items / secs, secs > 0
}

// qualityTable prints the runs' figures side by side, a row per figure in
// the order the first run that has it lists it.
func qualityTable(w io.Writer, rows []qualityRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	var figures []eval.Figure
	seen := map[string]bool{}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t", r.System)
		for _, f := range r.order {
			if !seen[f.Name] {
				seen[f.Name] = true
				figures = append(figures, f)
			}
		}
	}
	fmt.Fprintln(tw)
	figures = append(figures, eval.Figure{Name: "training samples/s", Digits: 0})
	for _, f := range figures {
		fmt.Fprintf(tw, "%s\t", f.Name)
		for _, r := range rows {
			v, ok := r.Figures[f.Name]
			if f.Name == "training samples/s" {
				v, ok = r.SamplesPerSec, r.SamplesPerSec > 0
			}
			if ok {
				fmt.Fprintf(tw, "%.*f\t", f.Digits, v)
			} else {
				fmt.Fprint(tw, "–\t")
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func newBenchExportCmd(g *globals) *cobra.Command {
	var (
		data, out string
		fractions []float64
		pairSeed  uint64
		limit     int
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "write the dataset as the NumPy arrays bench/torch_quality.py and torch_mvae.py read",
		Long: `Write each modality's encoder inputs, exactly as the modules read them, as
NumPy files in --out: train_vision.npy (float32 pixels in [0, 1]),
train_language.npy (int32 token ids), train_audio.npy (float32 normalised
log-mel), the same for test_, each flattened (meta.json gives the row
sizes), and train_present_<F>.npy (uint8, N×3) the partial-pairing mask of
each --fractions F, as the modules compute it.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			m, err := fmnist3.Open(data, 64, 0)
			if err != nil {
				return err
			}
			return torchref.Export(m, torchref.ExportConfig{Dir: out, Fractions: fractions, PairingSeed: pairSeed, Limit: limit, Log: g.logger("bench")})
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", dataset.DefaultDir(), "prepared dataset")
	f.StringVar(&out, "out", "out/export", "directory for the arrays")
	f.Float64SliceVar(&fractions, "fractions", []float64{0.01, 0.1}, "partial-pairing fractions to write masks for")
	f.Uint64Var(&pairSeed, "pairing-seed", 1, "seed of the partial-pairing masks (as the modules' --pairing-seed)")
	f.IntVar(&limit, "limit", 0, "export the first N training items only (0: all)")
	return cmd
}

func newBenchImportCmd(g *globals) *cobra.Command {
	var (
		data, from, out string
		latent, hid     int
	)
	cmd := &cobra.Command{
		Use:   "import",
		Short: "turn the NumPy weights bench/torch_quality.py wrote into module checkpoints",
		Long: `Read FROM/<modality>/<param>.npy for every parameter of the vision, language and
audio networks (enc.0.W, enc.0.b, …, dec.3.b; weights as (out, in), PyTorch's
layout) and write OUT/<modality>.ckpt (and copy FROM/metrics.jsonl), so that serket bench quality measures
the reference's model with the same code as serket's. Every shape is checked.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			m, err := fmnist3.Open(data, latent, hid)
			if err != nil {
				return err
			}
			if err := torchref.Import(m, from, out); err != nil {
				return err
			}
			fmt.Printf("%s: vision, language and audio checkpoints from %s\n", out, from)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", dataset.DefaultDir(), "prepared dataset")
	f.StringVar(&from, "from", "", "directory of NumPy weights (bench/torch_quality.py --out)")
	f.StringVar(&out, "out", "", "checkpoint directory to write")
	f.IntVar(&latent, "latent", 64, "latent size")
	f.IntVar(&hid, "hidden", 512, "hidden units per layer")
	cmd.MarkFlagRequired("from")
	cmd.MarkFlagRequired("out")
	return cmd
}
