package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/concept"
)

// newConceptCmd makes `serket module concept`: SERKET's concept formation
// as a prior module (module.RunPrior).
func newConceptCmd() *cobra.Command {
	var (
		mf  module.Flags
		cfg concept.ModuleConfig
	)
	cmd := &cobra.Command{
		Use:   "concept",
		Short: "a prior module: a Bayesian Gaussian mixture over the shared latent whose categories are each item's prior (SERKET's concept formation)",
		Long: `Run the concept module: a Gaussian mixture over the shared latent, its
number of categories found by a sparse Dirichlet prior (at most
--components), learned by stochastic variational inference from the
posteriors of every training step. At each step it places every item in a
category given what the modalities' experts say of it and sends that
category's Gaussian back as the item's prior: the integrator fuses with it
and takes the KL from it instead of N(0, I). serket train --prior concept
starts it.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := resolveFlags(&mf); err != nil {
				return err
			}
			log, err := mf.Logger(os.Stderr)
			if err != nil {
				return err
			}
			cfg.Name, cfg.Mixture.D, cfg.Logger = mf.Name, mf.Latent, log
			m, err := concept.NewModule(cfg)
			if err != nil {
				return fmt.Errorf("%w: module %s: %w", errUsage, mf.Name, err)
			}
			slog.SetDefault(log)
			ctx, cancel := signalContext()
			defer cancel()
			return module.RunPrior(ctx, m, mf.Options(log))
		},
	}
	mf.RegisterProcess(cmd.Flags(), "concept", 64)
	fl := cmd.Flags()
	for _, modality := range []string{"private", "sensor", "sensor-type", "sensor-rate", "say-beliefs"} {
		fl.MarkHidden(modality) // a modality's: a prior module observes none
	}
	fl.IntVar(&cfg.Mixture.K, "components", concept.DefaultK, "categories at most (the mixture's truncation); it uses as many as the data need")
	fl.Float64Var(&cfg.Mixture.Alpha0, "alpha0", concept.DefaultAlpha0, "the weights' symmetric Dirichlet concentration: below 1, categories the data do not need empty")
	fl.Uint64Var(&cfg.Mixture.Seed, "seed", 1, "seeds the first categories")
	fl.IntVar(&cfg.Items, "items", 60000, "items per training epoch (SVI weighs each batch as items/batch copies of itself)")
	fl.BoolVar(&cfg.Unit, "unit-variance", false, "send each item its category's mean with unit variance (SERKET's N(μ, I)) rather than the category's own Gaussian")
	fl.IntVar(&cfg.Warmup, "warmup", 100, "training steps it sits out at first (sending N(0, I)) while the modalities' latent takes shape")
	return cmd
}
