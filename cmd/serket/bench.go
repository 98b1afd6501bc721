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
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure trained models, and compare them with a reference trainer",
		Long: `Benchmarks that are not part of the tests (bench/quality.sh and
bench/speed.sh drive them):

  serket bench quality DIR...   the test-split figures of trained checkpoints
  serket bench export           the dataset as NumPy arrays, for bench/torch_quality.py
  serket bench import           NumPy weights from bench/torch_quality.py as checkpoints`,
	}
	cmd.AddCommand(newBenchQualityCmd(g), newBenchExportCmd(g), newBenchImportCmd(g))
	cmd.AddCommand(newBenchLoadCmd(g))
	cmd.AddCommand(newBenchFusionCmd(g))
	return cmd
}

func newBenchQualityCmd(g *globals) *cobra.Command {
	var (
		data, clfPath, save string
		latent, hid         int
		asJSON              bool
		s                   eval.Settings
	)
	cmd := &cobra.Command{
		Use:   "quality [NAME=]DIR...",
		Short: "test ELBO and cross-modal coherence of trained checkpoints, side by side",
		Long: `Measure the checkpoints in each DIR (vision.ckpt, language.ckpt, audio.ckpt) on
the test split: the held-out ELBO, image/audio → label through the language
decoder, and language/audio/label → image judged by an image classifier
trained on the real training images (cached in --classifier; its own test
accuracy is reported). The training throughput comes from DIR/metrics.jsonl
when there is one. NAME labels a column (default: the directory's name).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			log := g.logger("bench")
			m, err := eval.Open(data, latent, hid)
			if err != nil {
				return err
			}
			clf, err := judge(m, dataset.Vision, clfPath, log)
			if err != nil {
				return err
			}
			var names []string
			var rows []map[string]any
			for _, arg := range args {
				name, dir, ok := strings.Cut(arg, "=")
				if !ok {
					name, dir = filepath.Base(arg), arg
				}
				if err := m.Restore(dir); err != nil {
					return err
				}
				start := time.Now()
				q, err := m.Measure(clf, s)
				if err != nil {
					return fmt.Errorf("%s: %w", dir, err)
				}
				log.Info("measured", "checkpoint", dir, "took", time.Since(start).Round(time.Millisecond))
				row := map[string]any{}
				b, _ := json.Marshal(q)
				json.Unmarshal(b, &row)
				row["system"], row["checkpoint"] = name, dir
				if sps, ok := throughput(filepath.Join(dir, "metrics.jsonl")); ok {
					row["samples_per_sec"] = sps
				}
				names = append(names, name)
				rows = append(rows, row)
			}
			jsonLines := func(w io.Writer) error {
				enc := json.NewEncoder(w)
				for _, r := range rows {
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
				return nil
			}
			if save != "" {
				if err := atomicfile.Write(save, jsonLines); err != nil {
					return err
				}
			}
			if asJSON {
				return jsonLines(os.Stdout)
			}
			return qualityTable(os.Stdout, names, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", dataset.DefaultDir(), "prepared dataset")
	f.StringVar(&clfPath, "classifier", "", "the image classifier's cache (default DATA/classifier-vision.ckpt; trained when missing or of another dataset)")
	f.IntVar(&latent, "latent", 64, "latent size of the checkpoints")
	f.IntVar(&hid, "hidden", 512, "hidden units per layer of the checkpoints")
	f.IntVar(&s.Items, "items", 2000, "test items for the coherence figures")
	f.IntVar(&s.ELBOItems, "elbo-items", 1000, "test items for the ELBO")
	f.Uint64Var(&s.Seed, "seed", 1, "seed of the latent samples")
	f.BoolVar(&asJSON, "json", false, "print one JSON line per checkpoint instead of a table")
	f.StringVar(&save, "save", "", "also write the JSON lines to this file")
	return cmd
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

func qualityTable(w io.Writer, names []string, rows []map[string]any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintln(tw)
	metric := func(label, key, format string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, r := range rows {
			if v, ok := r[key].(float64); ok {
				fmt.Fprintf(tw, format+"\t", v)
			} else {
				fmt.Fprint(tw, "–\t")
			}
		}
		fmt.Fprintln(tw)
	}
	metric("test ELBO (nats)", "test_elbo", "%.1f")
	metric("  KL", "test_kl", "%.1f")
	metric("image → label", "image_to_label", "%.3f")
	metric("audio → label", "audio_to_label", "%.3f")
	metric("image+audio → label", "image_audio_to_label", "%.3f")
	metric("language → image", "language_to_image", "%.3f")
	metric("audio → image", "audio_to_image", "%.3f")
	metric("label → image", "label_to_image", "%.3f")
	metric("classifier (real test images)", "classifier_accuracy", "%.3f")
	metric("training samples/s", "samples_per_sec", "%.0f")
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
		Short: "write the dataset as the NumPy arrays bench/torch_quality.py reads",
		Long: `Write each modality's encoder inputs, exactly as the modules read them, as
NumPy files in --out: train_vision.npy (float32 pixels in [0, 1]),
train_language.npy (int32 token ids), train_audio.npy (float32 normalised
log-mel), the same for test_, each flattened (meta.json gives the row
sizes), and train_present_<F>.npy (uint8, N×3) the partial-pairing mask of
each --fractions F, as the modules compute it.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			m, err := eval.Open(data, 64, 0)
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
			m, err := eval.Open(data, latent, hid)
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
