package main

import (
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/integrator"
)

func newIntegratorCmd(g *globals) *cobra.Command {
	var cfg integrator.Config
	latent, _ := strconv.Atoi(os.Getenv("SERKET_LATENT"))
	if latent == 0 {
		latent = 16
	}
	cmd := &cobra.Command{
		Use:   "integrator",
		Short: "run the pipeline's integrator process (product-of-experts fusion, inference)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			log := g.logger(integrator.Name)
			ctx, cancel := signalContext()
			defer cancel()
			cfg.Pipeline, cfg.Logger = g.pipeline, log
			cfg.NATS = g.conn("serket-integrator", log)
			return integrator.Run(ctx, cfg)
		},
	}
	cmd.Flags().IntVar(&cfg.Latent, "latent", latent, "latent size (default $SERKET_LATENT, else 16)")
	cmd.Flags().DurationVar(&cfg.Deadline, "deadline", 2*time.Second, "how long an inference waits for each phase (encode, decode)")
	cmd.Flags().DurationVar(&cfg.Discovery, "discovery", time.Second, "how often to look for modules")
	cmd.Flags().IntVar(&cfg.Misses, "misses", 3, "discovery polls a module may miss before it is dropped")
	return cmd
}
