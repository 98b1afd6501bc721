package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
)

// netFlags are the built-in Fashion-MNIST-3 modalities' own flags, beside
// the module-process contract's (module.Flags).
type netFlags struct {
	hidden  int
	adamEps float32
	seed    uint64
}

func (f *netFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.hidden, "hidden", 512, "units per hidden layer")
	fs.Float32Var(&f.adamEps, "adam-eps", 1e-8, "Adam's epsilon")
	fs.Uint64Var(&f.seed, "seed", 1, "parameter initialisation seed")
}

func (f *netFlags) net(mf *module.Flags) mvae.Config {
	return mvae.Config{Latent: mf.Latent, Private: mf.Private, Hidden: f.hidden, LR: float32(mf.LR), AdamEps: f.adamEps, Seed: f.seed}
}

// openSource reads the modality's shard from --data, with the contract's
// partial pairing. Without a pairing list from --modalities or the
// launcher, the mask is drawn over the built-in modalities.
func openSource(mf *module.Flags, modality string) (*mvae.Source, error) {
	modalities := mf.Modalities
	if modalities == nil {
		modalities = dataset.Modalities()
	}
	src, err := mvae.OpenSource(mf.Data, modality, mvae.Pairing{Fraction: mf.PairedFraction, Seed: mf.PairingSeed, Modalities: modalities})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modality, err)
	}
	return src, nil
}

// newModalityCmd makes `serket module KIND` for a built-in modality.
func newModalityCmd(kind, short string, build func(mf *module.Flags, nf *netFlags) (module.Modality, error)) *cobra.Command {
	var (
		mf module.Flags
		nf netFlags
	)
	cmd := &cobra.Command{
		Use:   kind,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := resolveFlags(&mf); err != nil {
				return err
			}
			m, err := build(&mf, &nf)
			if err != nil {
				return fmt.Errorf("module %s: %w", mf.Name, err)
			}
			return runModule(&mf, m)
		},
	}
	mf.Register(cmd.Flags(), kind, 64)
	nf.register(cmd.Flags())
	return cmd
}

func modalityCmds() []*cobra.Command {
	return []*cobra.Command{
		newModalityCmd("vision", "Fashion-MNIST images (Bernoulli likelihood)", func(mf *module.Flags, nf *netFlags) (module.Modality, error) {
			src, err := openSource(mf, dataset.Vision)
			if err != nil {
				return nil, err
			}
			return vision.New(vision.Config{Name: mf.Name, Net: nf.net(mf), Source: src})
		}),
		newModalityCmd("language", "short English captions (categorical likelihood per token)", func(mf *module.Flags, nf *netFlags) (module.Modality, error) {
			src, err := openSource(mf, dataset.Language)
			if err != nil {
				return nil, err
			}
			return language.New(language.Config{Name: mf.Name, Net: nf.net(mf), Source: src})
		}),
		newModalityCmd("audio", "spoken class names (Gaussian likelihood on log-mel features)", func(mf *module.Flags, nf *netFlags) (module.Modality, error) {
			src, err := openSource(mf, dataset.Audio)
			if err != nil {
				return nil, err
			}
			return audio.New(audio.Config{Name: mf.Name, Net: nf.net(mf), Source: src})
		}),
	}
}
