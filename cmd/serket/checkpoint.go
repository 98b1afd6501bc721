package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// serveUse says what a served pipeline is for. Inference (serket
// generate) needs the integrator; evaluation asks the modules directly and
// fuses in its own process, so it goes without one, which also spares an
// idle process that would poll the modules while evaluation keeps them and
// the server busy.
type serveUse struct{ integrator bool }

// served is a pipeline that a command started to serve a run's
// checkpoints (see serveCheckpoints), and a connection to it.
type served struct {
	run    *running
	nc     *nats.Conn
	client *client.Client
	stop   context.CancelFunc
}

// Close stops the pipeline's processes and its server.
func (s *served) Close() {
	s.nc.Close()
	s.stop()
	s.run.wait()
}

// serveCheckpoints starts pipeline p as serket up would, serving the
// checkpoints in dir: every module of the file, built in or not, as its own
// process (serving only: nothing can change the checkpoints), the
// integrator if use.integrator, and an embedded NATS server on a random
// loopback port of its own. It returns once all of them are live, or a
// module failed to start. data is the dataset the built-in modules read.
// `serket generate` and `serket eval` with --checkpoint take this path, so
// a run's checkpoints are used exactly as a running pipeline uses them.
func serveCheckpoints(ctx context.Context, g *globals, p *launch.Pipeline, dir, data string, use serveUse, log *slog.Logger) (*served, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := withRunPrior(p, abs); err != nil {
		return nil, err
	}
	// A module without its checkpoint would serve fresh weights, and be
	// measured or asked as if it were the run's.
	var missing []string
	for _, name := range peerNames(p) {
		if _, err := os.Stat(filepath.Join(abs, name+".ckpt")); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no checkpoint of %s in %s (want <module>.ckpt for every module of the pipeline %q)", strings.Join(missing, ", "), dir, p.Name)
	}
	local := *g
	local.natsURL = ""
	p.NATS = launch.NATSConfig{}
	rctx, cancel := context.WithCancel(ctx)
	run, err := launchPipeline(rctx, &local, p, log, launchOptions{grace: 5 * time.Second, noIntegrator: !use.integrator,
		env: []string{procenv.EnvCheckpointDir + "=" + abs, procenv.EnvData + "=" + data}})
	if err != nil {
		cancel()
		return nil, err
	}
	s := &served{run: run, stop: cancel}
	wctx, failed := run.watch(ctx)
	if err := s.connect(wctx, &local, p, use.integrator, log); err != nil {
		cancel()
		run.wait()
		return nil, failed(err)
	}
	return s, nil
}

// connect connects to the served pipeline and waits for its processes.
func (s *served) connect(ctx context.Context, g *globals, p *launch.Pipeline, integrator bool, log *slog.Logger) error {
	cc := g.conn("serket-cli", log)
	cc.URL = s.run.URL
	nc, err := bus.Connect(cc)
	if err != nil {
		return err
	}
	c, err := client.New(nc, p.Name, "cli")
	if err != nil {
		nc.Close()
		return err
	}
	if _, err := c.WaitFor(ctx, integrator, peerNames(p)...); err != nil {
		nc.Close()
		return fmt.Errorf("the pipeline serving the checkpoints did not come up: %w", err)
	}
	s.nc, s.client = nc, c
	return nil
}

// withNetwork has the built-in modules of p (serket module KIND) use
// hidden units per layer, when hidden is set, and p the latent size, when
// latent is: what a run trained with `serket train --hidden`, for a
// pipeline given by no file.
func withNetwork(p *launch.Pipeline, latent, hidden int) {
	if latent > 0 {
		p.Latent = latent
	}
	if hidden <= 0 {
		return
	}
	for i := range p.Modules {
		m := &p.Modules[i]
		if len(m.Command) == 3 && m.Command[0] == "serket" && m.Command[1] == "module" && !slices.Contains(m.Args, "--hidden") {
			m.Args = append(m.Args, "--hidden", strconv.Itoa(hidden))
		}
	}
}

// withRunPrior gives p the prior module the run in dir was trained with
// (the file's, if it names that one) and none if the run had none:
// serving the run without it would fuse under N(0, I) what was trained
// under its prior, and with one it never learned with would do the
// opposite.
func withRunPrior(p *launch.Pipeline, dir string) error {
	name, err := integrator.RunPrior(dir)
	switch {
	case err != nil:
		return err
	case name == "":
		p.Prior = nil
	case p.Prior == nil || p.Prior.Name != name:
		p.Prior = &launch.Process{Name: name}
	}
	return nil
}

// peerNames are p's modules' names, in the file's order, and its prior
// module's.
func peerNames(p *launch.Pipeline) []string {
	out := moduleNames(p)
	if p.Prior != nil {
		out = append(out, p.Prior.Name)
	}
	return out
}

// moduleNames are p's modules' names, in the file's order.
func moduleNames(p *launch.Pipeline) []string {
	var out []string
	for _, m := range p.Modules {
		out = append(out, m.Name)
	}
	return out
}

// optional is a command's optional pipeline file as loadPipeline takes it.
func optional(file string) []string {
	if file == "" {
		return nil
	}
	return []string{file}
}

// flagInt is the value of an int flag if the command line set it, else 0
// (the pipeline's own).
func flagInt(cmd *cobra.Command, name string, v int) int {
	if cmd.Flags().Changed(name) {
		return v
	}
	return 0
}
