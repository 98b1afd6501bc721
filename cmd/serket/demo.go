package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/modules/toy"
)

func newDemoCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "start the default pipeline, run inferences, survive a killed module, stop",
		Long: `A tour of a pipeline on the embedded defaults, in about ten seconds:
start an embedded NATS server (random port), the integrator and three toy
modules as separate processes; list them; observe one module and decode the
others; SIGKILL a module, show that inference goes on without it and that it
is restarted and rejoins; stop everything.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runDemo(g, timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "give up if the pipeline is not up by then")
	return cmd
}

func runDemo(g *globals, timeout time.Duration) error {
	if g.logLevel == "info" {
		g.logLevel = "warn" // the tour's own lines tell the story
	}
	log := g.logger("demo")
	p := launch.Default()
	p.NATS.Port = 0 // random: never clash with a server already on 4222
	g.natsURL = ""
	say := func(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

	ctx, cancel := signalContext()
	defer cancel()
	restarted := make(chan string, 8)
	run, err := launchPipeline(ctx, g, p, log, 3*time.Second, func(ev launch.Event) {
		if ev.Kind == launch.Restarting {
			restarted <- ev.Name
		}
	})
	if err != nil {
		return err
	}
	defer func() { cancel(); run.wait() }()

	nc, err := bus.Connect(bus.ConnConfig{URL: run.URL, Name: "serket-demo", Logger: log})
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := client.New(nc, p.Name, "demo")
	if err != nil {
		return err
	}
	names := make([]string, len(p.Modules))
	for i, m := range p.Modules {
		names[i] = m.Name
	}
	say("starting pipeline %q: NATS at %s, the integrator and modules %s, each its own process", p.Name, run.URL, strings.Join(names, ", "))
	wctx, wcancel := context.WithTimeout(ctx, timeout)
	defer wcancel()
	if _, err := c.WaitFor(wctx, true, names...); err != nil {
		return err
	}
	svcs, err := c.Services(ctx, 300*time.Millisecond)
	if err != nil {
		return err
	}
	say("serket ls")
	printServices(os.Stdout, svcs)

	// An observation of item 0 as module "left" sees it (the toy data are
	// synthetic and shared: every toy module sees the same latent per item).
	left, err := toy.New(toy.Config{Name: "left", Dim: 8, Latent: p.Latent, DataSeed: 1})
	if err != nil {
		return err
	}
	x, _, err := left.LoadBatch([]uint64{0})
	if err != nil {
		return err
	}
	text := floats(x.(*toy.Obs).Data)
	text = strings.Trim(text, "[]")
	req := &bus.InferRequest{Observations: map[string]bus.Payload{"left": {Type: "text/plain", Data: []byte(text)}}, Want: []string{"right", "top"}, Samples: 2, Seed: 1}

	infer := func() error {
		ictx, icancel := context.WithTimeout(ctx, 10*time.Second)
		defer icancel()
		start := time.Now()
		rep, err := c.Infer(ictx, req)
		if err != nil {
			return err
		}
		fmt.Printf("(answered in %v)\n", time.Since(start).Round(100*time.Microsecond))
		return printReply(os.Stdout, rep, "out/demo")
	}
	say("serket infer --from left=%q --to right,top --n 2   (untrained modules: the numbers are not meaningful yet)", text)
	if err := infer(); err != nil {
		return err
	}

	pid := run.sup.PIDs()["top"]
	say("kill -9 %d   (module top)", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill module top (pid %d): %w", pid, err)
	}
	say("the next inference still answers, without top")
	if err := infer(); err != nil {
		return err
	}
	select {
	case name := <-restarted:
		say("the supervisor restarts %s; waiting for it to rejoin", name)
	case <-wctx.Done():
		return fmt.Errorf("module top was not restarted within %v", timeout)
	}
	for {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		rep, err := c.Infer(rctx, &bus.InferRequest{Want: []string{"top"}})
		rcancel()
		if err == nil && len(rep.Outputs["top"]) == 1 {
			break
		}
		if wctx.Err() != nil {
			return fmt.Errorf("module top did not rejoin within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond) // the restarted process is still starting
	}
	say("top is back")
	if err := infer(); err != nil {
		return err
	}
	say("stopping: SIGTERM to every process, SIGKILL after a grace period")
	return nil
}
