package fusionbench

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
)

// connect is one party's own connection, named as its process would be.
func connect(srv *bus.Server, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: name, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("fusionbench: %s: %w", name, err)
	}
	return nc, nil
}

// conns closes the connections a measurement opened, whatever way it ends.
type conns []*nats.Conn

func (cs *conns) open(srv *bus.Server, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := connect(srv, name, log)
	if err == nil {
		*cs = append(*cs, nc)
	}
	return nc, err
}

// close takes a pointer so that a deferred close sees the connections
// opened after the defer.
func (cs *conns) close() {
	for _, nc := range *cs {
		nc.Close()
	}
}

// startIntegrator runs a real integrator of latent size d, streaming with
// no minimum period between beliefs, on its own connection until the
// returned stop is called.
func startIntegrator(srv *bus.Server, pipeline string, d int, log *slog.Logger) (*integrator.Integrator, func(), error) {
	nc, err := connect(srv, bus.ServiceName(integrator.Name), log)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *integrator.Integrator, 1)
	done := make(chan error, 1)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{
			Pipeline: pipeline, Latent: d, Conn: nc, Logger: slog.New(warnings{log.Handler()}),
			Stream: integrator.StreamConfig{MinPeriod: 0},
			Ready:  func(ig *integrator.Integrator) { ready <- ig },
		})
	}()
	stop := func() { cancel(); <-done; nc.Close() }
	select {
	case ig := <-ready:
		return ig, stop, nil
	case err := <-done:
		nc.Close()
		cancel()
		return nil, nil, fmt.Errorf("fusionbench: the integrator of %s: %w", pipeline, err)
	}
}

// warnings passes on only warnings and errors: a bench starts an
// integrator per cell, and their start-up lines would bury its own.
type warnings struct{ slog.Handler }

func (h warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}
func (h warnings) WithAttrs(as []slog.Attr) slog.Handler { return warnings{h.Handler.WithAttrs(as)} }
func (h warnings) WithGroup(name string) slog.Handler    { return warnings{h.Handler.WithGroup(name)} }
