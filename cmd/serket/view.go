package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/web"
)

const webHelp = `serve the live view on this address (host:port, e.g. localhost:8080); with --secure, ":8080" binds to localhost and the page needs the token printed at start`

func newViewCmd(g *globals) *cobra.Command {
	var (
		addr    string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "view [pipeline.yaml] --web ADDR",
		Short: "serve a live web view of a running pipeline: its processes, training curves, beliefs, the latent, and an inference form",
		Long: `Serve a page that shows a running pipeline live: its processes as a graph
with their health, rates, restarts and refused messages; the training run's
curves (if its integrator trains); the streaming beliefs and what each
module renders of them; a 2-D projection of recent posteriors; and a form
that asks for an inference as serket infer does. Every asset is in the
binary; the page is pushed updates by Server-Sent Events.

serket view attaches to any running pipeline (the file, --nats and
--pipeline say which). serket up --web and serket train --web serve the
same page from the process that runs the pipeline. On a pipeline started
with --secure, give the admin key (--nkey DIR/admin.nk): the view can do
no more than that key lets it. See docs/web.md.`,
		Example:     `  serket view examples/robot/pipeline.yaml --web localhost:8080`,
		Args:        cobra.MaximumNArgs(1),
		Annotations: map[string]string{annFileArg: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			log := g.logger("view")
			// Without a file, the view knows only the pipeline's name: it
			// shows whatever answers, of any latent size.
			p := &launch.Pipeline{Name: g.pipeline}
			if g.file != nil {
				var err error
				if p, err = g.loadPipeline(cmd); err != nil {
					return err
				}
			}
			cc, err := g.clientConn("serket-web", log)
			if err != nil {
				return err
			}
			cc.Wait = timeout
			ctx, cancel := signalContext()
			defer cancel()
			v, err := startView(ctx, cc, viewOptions{addr: addr, secure: g.nkey != "", p: p}, log)
			if err != nil {
				return err
			}
			<-ctx.Done()
			return v.Close()
		},
	}
	cmd.Flags().StringVar(&addr, "web", "localhost:8080", webHelp)
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to keep trying to reach NATS")
	return cmd
}

// viewOptions is what a command's --web asks for.
type viewOptions struct {
	addr   string
	secure bool
	p      *launch.Pipeline
}

// startView connects to the pipeline as cc says (under --secure, with the
// admin key) and serves the live view until ctx is done or its Close. It
// prints the URL to open.
func startView(ctx context.Context, cc bus.ConnConfig, o viewOptions, log *slog.Logger) (*view, error) {
	nc, err := bus.Connect(cc)
	if err != nil {
		return nil, err
	}
	v, err := web.Start(ctx, web.Config{Addr: o.addr, Secure: o.secure, Logger: log,
		Hub: web.HubConfig{NC: nc, Pipeline: o.p.Name, Latent: o.p.Latent, Expect: processesOf(o.p)}})
	if err != nil {
		nc.Close()
		return nil, err
	}
	fmt.Printf("live view: %s\n", v.URL)
	return &view{View: v, nc: nc}, nil
}

// view is a live view and the connection it owns.
type view struct {
	*web.View
	nc *nats.Conn
}

func (v *view) Close() error {
	err := v.View.Close()
	v.nc.Close()
	return err
}

// processesOf lists p's processes for the view's graph.
func processesOf(p *launch.Pipeline) []web.Process {
	out := []web.Process{{Name: "integrator", Role: web.RoleIntegrator}}
	for _, m := range p.Modules {
		out = append(out, web.Process{Name: m.Name, Role: web.RoleModule})
	}
	if p.Prior != nil {
		out = append(out, web.Process{Name: p.Prior.Name, Role: web.RolePrior})
	}
	return out
}

// startView serves the live view of a pipeline this process launched,
// signed in with adminKey when the pipeline is secured. The view closes
// as soon as ctx is done, before the server it listens to stops.
func (r *running) startView(ctx context.Context, g *globals, p *launch.Pipeline, addr, adminKey string, log *slog.Logger) (*view, error) {
	cc := g.conn("serket-web", log)
	cc.URL = r.URL
	if adminKey != "" {
		cc.NKeyFile = adminKey
	}
	v, err := startView(ctx, cc, viewOptions{addr: addr, secure: adminKey != "", p: p}, log)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { v.Close() })
	return v, nil
}

// viewEvents forwards the supervisor's events to a view started after
// the supervisor: up and train start the view once NATS is up.
type viewEvents struct{ hub atomic.Pointer[web.Hub] }

func (e *viewEvents) on(ev launch.Event) {
	h := e.hub.Load()
	if h == nil {
		return
	}
	switch ev.Kind {
	case launch.Started:
		h.ProcessEvent(ev.Name, true)
	case launch.Exited, launch.GaveUp:
		h.ProcessEvent(ev.Name, false)
	}
}
