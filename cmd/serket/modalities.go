package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
)

// netFlags are the flags of the built-in Fashion-MNIST-3 modalities.
type netFlags struct {
	data       string
	hidden     int
	lr         float32
	adamEps    float32
	seed       uint64
	fraction   float64
	pairSeed   uint64
	modalities []string
}

func (f *netFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.data, "data", dataset.DefaultDir(), "prepared dataset directory (serket data prepare)")
	cmd.Flags().IntVar(&f.hidden, "hidden", 512, "units per hidden layer")
	cmd.Flags().Float32Var(&f.lr, "lr", float32(envFloat("SERKET_LR", 1e-3)), "Adam learning rate (default $SERKET_LR, else 0.001)")
	cmd.Flags().Float32Var(&f.adamEps, "adam-eps", 1e-8, "Adam's epsilon")
	cmd.Flags().Uint64Var(&f.seed, "seed", 1, "parameter initialisation seed")
	cmd.Flags().Float64Var(&f.fraction, "paired-fraction", envFloat("SERKET_PAIRED_FRACTION", 1), "fraction of training items with every modality, the rest with one each (default $SERKET_PAIRED_FRACTION, else 1)")
	cmd.Flags().Uint64Var(&f.pairSeed, "pairing-seed", envUint("SERKET_PAIRING_SEED", 1), "seed of the partial-pairing mask, the same in every module (default $SERKET_PAIRING_SEED, else 1)")
	modalities := dataset.Modalities()
	if v := os.Getenv("SERKET_MODALITIES"); v != "" {
		modalities = strings.Split(v, ",")
	}
	cmd.Flags().StringSliceVar(&f.modalities, "modalities", modalities, "the modalities the pairing mask is drawn over, the same in every module (default $SERKET_MODALITIES, which serket train sets to the training modules)")
}

func (f *netFlags) source(modality string) (*mvae.Source, error) {
	src, err := mvae.OpenSource(f.data, modality, mvae.Pairing{Fraction: f.fraction, Seed: f.pairSeed, Modalities: f.modalities})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modality, err)
	}
	return src, nil
}

func (f *netFlags) net(latent int) mvae.Config {
	return mvae.Config{Latent: latent, Hidden: f.hidden, LR: f.lr, AdamEps: f.adamEps, Seed: f.seed}
}

// newModalityCmd makes `serket module KIND` for a built-in modality.
func newModalityCmd(g *globals, kind, short string, build func(mf *moduleFlags, nf *netFlags) (module.Modality, error)) *cobra.Command {
	var (
		mf moduleFlags
		nf netFlags
	)
	cmd := &cobra.Command{
		Use:   kind,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			m, err := build(&mf, &nf)
			if err != nil {
				return fmt.Errorf("module %s: %w", mf.name, err)
			}
			return mf.run(g, m)
		},
	}
	mf.register(cmd, kind, 64)
	nf.register(cmd)
	return cmd
}

func modalityCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newModalityCmd(g, "vision", "Fashion-MNIST images (Bernoulli likelihood)", func(mf *moduleFlags, nf *netFlags) (module.Modality, error) {
			src, err := nf.source(dataset.Vision)
			if err != nil {
				return nil, err
			}
			return vision.New(vision.Config{Name: mf.name, Net: nf.net(mf.latent), Source: src})
		}),
		newModalityCmd(g, "language", "short English captions (categorical likelihood per token)", func(mf *moduleFlags, nf *netFlags) (module.Modality, error) {
			src, err := nf.source(dataset.Language)
			if err != nil {
				return nil, err
			}
			return language.New(language.Config{Name: mf.name, Net: nf.net(mf.latent), Source: src})
		}),
		newModalityCmd(g, "audio", "spoken class names (Gaussian likelihood on log-mel features)", func(mf *moduleFlags, nf *netFlags) (module.Modality, error) {
			src, err := nf.source(dataset.Audio)
			if err != nil {
				return nil, err
			}
			return audio.New(audio.Config{Name: mf.name, Net: nf.net(mf.latent), Source: src})
		}),
	}
}

// envFloat is the number in the environment variable key, or def when it is
// unset or not a number.
func envFloat(key string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil {
		return v
	}
	return def
}

// envUint is the unsigned integer in the environment variable key, or def.
func envUint(key string, def uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv(key), 10, 64); err == nil {
		return v
	}
	return def
}
