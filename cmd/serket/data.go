package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/procenv"
)

func newDataCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "build and inspect the Fashion-MNIST-3 dataset",
		Long: `Fashion-MNIST-3 is Fashion-MNIST seen three ways: the image (vision), a short
caption of its class (language) and its class name spoken by espeak-ng (audio),
one shard per modality so that each module reads only its own.

It is built offline from the Debian packages dataset-fashion-mnist and
espeak-ng; nothing is downloaded.`,
	}
	cmd.AddCommand(newDataPrepareCmd(g), newDataInfoCmd(g))
	return cmd
}

func newDataPrepareCmd(g *globals) *cobra.Command {
	cfg := dataset.PrepareConfig{}
	cmd := &cobra.Command{
		Use:   "prepare",
		Short: "build the dataset's manifest and shards (skipped when they are up to date)",
		Long: `Build Fashion-MNIST-3 in --dir: manifest.json, vision.shard, language.shard and
audio.shard. The same seed gives byte-identical shards. When --dir already
holds this very dataset (same inputs and settings) and every shard reads back
valid, nothing is done unless --force.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			g.logger("data")
			ctx, cancel := signalContext()
			defer cancel()
			cfg.Progress = os.Stderr
			start := time.Now()
			m, err := dataset.Prepare(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Printf("%s: %d train and %d test items (seed %d, config %.12s) ready in %v\n",
				cfg.Dir, m.Counts[dataset.Train], m.Counts[dataset.Test], m.Seed, m.Config, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", dataset.DefaultDir(), "where to write the dataset (default $"+procenv.EnvData+", else "+procenv.DefaultData+")")
	f.StringVar(&cfg.FashionMNIST, "fashion-mnist", dataset.FashionMNISTDir, "directory of Fashion-MNIST's IDX files (Debian package dataset-fashion-mnist)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of the captions, the utterances and their assignment")
	f.BoolVar(&cfg.Force, "force", false, "rebuild even if the dataset is up to date")
	f.IntVar(&cfg.Limit, "limit", 0, "only the first N train items and N/6 test items (0: all), for quick runs")
	f.IntVar(&cfg.AudioTrain, "audio-train", 150, "spoken utterances per class in the train pool")
	f.IntVar(&cfg.AudioTest, "audio-test", 40, "spoken utterances per class in the test pool (voices training never hears)")
	f.IntVar(&cfg.Workers, "workers", runtime.NumCPU(), "parallel espeak-ng and feature workers")
	return cmd
}

func newDataInfoCmd(g *globals) *cobra.Command {
	var (
		dir string
		n   int
	)
	cmd := &cobra.Command{
		Use:   "info",
		Short: "show a prepared dataset: counts, vocabulary, example captions, audio settings",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			g.logger("data")
			return dataInfo(os.Stdout, dir, n)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", dataset.DefaultDir(), "the prepared dataset (default $"+procenv.EnvData+", else "+procenv.DefaultData+")")
	cmd.Flags().IntVarP(&n, "n", "n", 5, "example captions to show")
	return cmd
}

// dataInfo reads the manifest and every shard back, checks that they list
// the same items, and describes them.
func dataInfo(w io.Writer, dir string, n int) error {
	m, err := dataset.ReadManifest(dir)
	if err != nil {
		return err
	}
	shards := map[string]*dataset.Shard{}
	for _, mod := range dataset.Modalities() {
		s, err := dataset.ReadShard(dataset.ShardPath(dir, mod), mod)
		if err != nil {
			return err
		}
		if err := sameItems(m, s); err != nil {
			return fmt.Errorf("%s: %w: run `serket data prepare --force --dir %s`", dataset.ShardPath(dir, mod), err, dir)
		}
		shards[mod] = s
	}

	fmt.Fprintf(w, "dataset %s: version %d, seed %d, config %.12s, prepared %s\n",
		dir, m.Version, m.Seed, m.Config, m.Created.Local().Format(time.DateTime))
	if m.Limit > 0 {
		fmt.Fprintf(w, "limited to the first %d train items\n", m.Limit)
	}
	var counts [dataset.NumClasses][2]int
	for _, it := range m.Items {
		s := 0
		if it.Split == dataset.Test {
			s = 1
		}
		counts[it.Class][s]++
	}
	fmt.Fprintf(w, "\n%-15s %6s %6s\n", "CLASS", "TRAIN", "TEST")
	for c, row := range counts {
		fmt.Fprintf(w, "%-15s %6d %6d\n", fmt.Sprintf("%d %s", c, dataset.ClassNames[c]), row[0], row[1])
	}
	fmt.Fprintf(w, "%-15s %6d %6d\n", "all", m.Counts[dataset.Train], m.Counts[dataset.Test])

	vis, lang, aud := shards[dataset.Vision], shards[dataset.Language], shards[dataset.Audio]
	fmt.Fprintf(w, "\nvision:   %d images of %s×%s pixels\n", vis.Len(), vis.Meta["rows"], vis.Meta["cols"])
	vocab := dataset.NewVocab(strings.Split(lang.Meta["vocab"], "\n"))
	fmt.Fprintf(w, "language: %d captions of up to %s tokens; vocabulary of %d ids (%d words + <pad> <unk> <eos>)\n",
		lang.Len(), lang.Meta["max_tokens"], vocab.Len(), vocab.Len()-3)
	fmt.Fprintf(w, "audio:    %s train and %s test utterances of %s frames × %s mels (%s Hz, nfft %s, window %s, hop %s, floor %s)\n",
		aud.Meta["train_pool"], aud.Meta["test_pool"], aud.Meta["frames"], aud.Meta["mels"],
		aud.Meta["sample_rate"], aud.Meta["nfft"], aud.Meta["win"], aud.Meta["hop"], aud.Meta["floor"])

	trainPool, _ := strconv.Atoi(aud.Meta["train_pool"])
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nID\tSPLIT\tCLASS\tCAPTION (language.shard)\tUTTERANCE (audio.shard)")
	for _, it := range examples(m, n) {
		rec, _ := lang.Record(it.ID)
		ids := make([]int32, len(rec)/4)
		for i := range ids {
			ids[i] = int32(binary.LittleEndian.Uint32(rec[4*i:]))
		}
		arec, _ := aud.Record(it.ID)
		row := int(binary.LittleEndian.Uint32(arec))
		pool := "train"
		if row >= trainPool {
			pool, row = "test", row-trainPool
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%q\t%s pool #%d\n", it.ID, it.Split, dataset.ClassNames[it.Class], vocab.Decode(ids), pool, row)
	}
	return tw.Flush()
}

// sameItems checks that a shard holds exactly the manifest's items.
func sameItems(m *dataset.Manifest, s *dataset.Shard) error {
	if s.Len() != len(m.Items) {
		return fmt.Errorf("%d records, the manifest lists %d items", s.Len(), len(m.Items))
	}
	for i, it := range m.Items {
		if s.IDs[i] != it.ID {
			return fmt.Errorf("record %d is item %d, the manifest says %d", i, s.IDs[i], it.ID)
		}
	}
	if s.Meta["config"] != m.Config {
		return fmt.Errorf("prepared with config %.12s, the manifest's is %.12s", s.Meta["config"], m.Config)
	}
	return nil
}

// examples picks n items spread over the train split then the test split.
func examples(m *dataset.Manifest, n int) []dataset.Item {
	var out []dataset.Item
	train, test := m.InSplit(dataset.Train), m.InSplit(dataset.Test)
	for _, part := range []struct {
		items []dataset.Item
		k     int
	}{{train, n - n/2}, {test, n / 2}} {
		k := min(part.k, len(part.items))
		for i := range k {
			out = append(out, part.items[i*len(part.items)/k])
		}
	}
	return out
}
