package main

import (
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bench/fusionbench"
)

func newBenchFusionCmd(g *globals) *cobra.Command {
	cfg := fusionbench.Config{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "fusion",
		Short: "streaming fusion's round trip next to a raw NATS request-reply, and its throughput",
		Long: `Measure streaming fusion (DESIGN.md section 5) on an embedded nats-server on
127.0.0.1 (TCP, a random port), with the integrator, every module and the two
parties of the raw echo each on their own connection, as separate processes
would be (they share this process and its CPUs, which the output states).
It always runs its own server: --nats is not used.

Round trip: a module publishes a timestamped 1×--latent posterior on its
obs.post subject, as module/stream.go does; the integrator (integrator.Run,
MinPeriod 0) fuses it and publishes a belief; the module decodes beliefs
until one names its posterior (belief time − source age = posterior time)
and carries its fusion with the prior. --n round trips, one in flight at a
time, timed from before the posterior is encoded to after the belief is
decoded. Next to it, in the same run and on the same server, --n raw NATS
request-replies of the posterior's size to a plain echo responder on
another connection. The two are interleaved in blocks of 200 (after a
block of each that is not counted), so that noise on the machine hits both
alike; the p50 and p99 ratios serket/raw are printed.

Throughput: for every --modules × --latents cell, a fresh integrator and
that many synthetic modules, each on its own connection and each in a
closed loop: publish a posterior, wait until a belief includes it, publish
the next. Rates are the integrator's own counters over --duration per cell,
measured in slices of at most 0.5 s taken round-robin over the cells, so
that a change in the machine's load falls on every cell alike. A
least-squares fit of the time per belief and per posterior against the
number of modules and the latent size says how the cost grows per doubling
of each. (The package doc of bench/fusionbench says why each choice.)`,
		Example: `  serket bench fusion
  serket bench fusion --n 5000 --latent 128 --modules 3,16 --latents 64,256 --duration 5s
  serket bench fusion --json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg.Log = g.logger("bench-fusion")
			ctx, cancel := signalContext()
			defer cancel()
			res, err := fusionbench.Run(ctx, cfg)
			if err != nil {
				return err
			}
			return reportBench(os.Stdout, res, asJSON, func(w io.Writer) error { return printFusion(w, res) }, res.Check)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.N, "n", 2000, "round trips of each kind (serket fusion and raw echo)")
	f.IntVar(&cfg.Latent, "latent", 64, "latent size of the round trip")
	f.DurationVar(&cfg.Duration, "duration", 2*time.Second, "measured time per throughput cell (0: no throughput table)")
	f.IntSliceVar(&cfg.Modules, "modules", []int{3, 8, 16}, "module counts of the throughput table")
	f.IntSliceVar(&cfg.Latents, "latents", []int{16, 64, 128, 256}, "latent sizes of the throughput table")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
