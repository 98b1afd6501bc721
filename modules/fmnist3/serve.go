package fmnist3

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
)

// Serve runs the model as a pipeline in this process, on the NATS server
// at url: every modality as a module (module.Run, each on its own
// connection, with the options opts gives its name) and, unless icfg is
// nil, an integrator. It returns once every one of them is serving; stop
// ends them and waits. Generation from checkpoints and the robot example
// use it, so a model from checkpoints takes the same path as a running
// pipeline.
func (m *Model) Serve(ctx context.Context, url string, opts map[string]module.Options, icfg *integrator.Config) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	quiet := slog.New(slog.DiscardHandler)
	n := len(m.Names())
	if icfg != nil {
		n++
	}
	ready := make(chan struct{}, n)
	failed := make(chan error, n)
	for _, name := range m.Names() {
		o := opts[name]
		o.NATS = bus.ConnConfig{URL: url, Name: bus.ServiceName(name)}
		if o.Logger == nil {
			o.Logger = quiet
		}
		o.Ready = func(micro.Service) { ready <- struct{}{} }
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := module.Run(ctx, m.Modality(name), o); err != nil {
				failed <- err
			}
		}()
	}
	if icfg != nil {
		c := *icfg
		c.NATS = bus.ConnConfig{URL: url, Name: bus.ServiceName(integrator.Name)}
		c.Latent = m.Latent
		if c.Logger == nil {
			c.Logger = quiet
		}
		if c.Discovery == 0 {
			c.Discovery = 50 * time.Millisecond
		}
		c.Ready = func(*integrator.Integrator) { ready <- struct{}{} }
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := integrator.Run(ctx, c); err != nil {
				failed <- err
			}
		}()
	}
	for range n {
		select {
		case <-ready:
		case err := <-failed:
			stop()
			return nil, err
		case <-ctx.Done():
			stop()
			return nil, errors.New("fmnist3: the in-process pipeline did not come up")
		}
	}
	return stop, nil
}
