package loadbench_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bench/loadbench"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// toyPipeline serves toy modules of the given observation sizes and an
// integrator, each on its own connection to a real embedded nats-server,
// until the test ends; it returns the server's URL once all are serving.
func toyPipeline(t *testing.T, pipeline string, latent int, dims map[string]int) string {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan struct{}, len(dims)+1)
	failed := make(chan error, len(dims)+1)
	for name, dim := range dims {
		m, err := toy.New(toy.Config{Name: name, Dim: dim, Latent: latent, Seed: 1, DataSeed: 1})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			err := module.Run(ctx, m, module.Options{Pipeline: pipeline, NATS: bus.ConnConfig{URL: url, Name: bus.ServiceName(name)}, Logger: quiet,
				Ready: func(micro.Service) { ready <- struct{}{} }})
			if err != nil {
				failed <- err
			}
		})
	}
	wg.Go(func() {
		err := integrator.Run(ctx, integrator.Config{Pipeline: pipeline, Latent: latent, NATS: bus.ConnConfig{URL: url}, Logger: quiet,
			Discovery: 50 * time.Millisecond, Ready: func(*integrator.Integrator) { ready <- struct{}{} }})
		if err != nil {
			failed <- err
		}
	})
	for range len(dims) + 1 {
		select {
		case <-ready:
		case err := <-failed:
			t.Fatal(err)
		}
	}
	return url
}

func text(s string) bus.Payload {
	return bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(s)}
}

// A run against a pipeline of modules no part of serket knows by name
// (toys called left, right and top) sends requests that observe some
// modules and decode others, answers every one with the reply meant for
// it, and the integrator's own count agrees; the raw echo runs on the same
// connections.
func TestRun(t *testing.T) {
	url := toyPipeline(t, "lb", 4, map[string]int{"left": 3, "right": 2, "top": 5})
	res, err := loadbench.Run(context.Background(), loadbench.Config{
		URL: url, Pipeline: "lb",
		Requests: []map[string]bus.Payload{{"left": text("0.1 0.2 0.3"), "right": text("1 -1")}, {"left": text("3 2 1"), "right": text("0 0")}},
		Want:     []string{"top", "left"},
		Clients:  6, Conns: 2, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Timeout: 5 * time.Second,
		Baseline: true, Owned: true, Setup: "toys in the test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.From, ",") != "left,right" || strings.Join(res.To, ",") != "left,top" || res.Items != 2 || res.Setup != "toys in the test" {
		t.Errorf("from %v to %v, %d items, setup %q", res.From, res.To, res.Items, res.Setup)
	}
	for name, p := range map[string]*loadbench.Phase{"inference": &res.Inference, "baseline": res.Baseline} {
		if p == nil {
			t.Fatalf("%s: not measured", name)
		}
		l := p.Latency
		if p.Sent == 0 || p.OK != p.Sent || l.N != p.OK || !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) || p.PerSec <= 0 {
			t.Errorf("%s: %+v", name, p)
		}
	}
	if want := res.Warmup.Sent + res.Inference.Sent; res.ServerRequests != want {
		t.Errorf("the integrator counted %d, %d were sent", res.ServerRequests, want)
	}
	var top bool
	for _, e := range res.Server {
		top = top || e.Service == bus.ServiceName("top") && e.Requests > 0
	}
	if !top || res.P50Ratio <= 0 {
		t.Errorf("server view %+v, p50 ratio %v: the decoded module top did no work", res.Server, res.P50Ratio)
	}
}

// Requests that name a module the pipeline does not have wait for it, at
// most Config.Wait, and the error names it; a module that refuses its
// input is counted as error replies, not lost, and the run still checks.
func TestRunWrongModules(t *testing.T) {
	url := toyPipeline(t, "lb2", 4, map[string]int{"left": 3})
	_, err := loadbench.Run(context.Background(), loadbench.Config{
		URL: url, Pipeline: "lb2", Requests: []map[string]bus.Payload{{"left": text("1 2 3")}}, Want: []string{"touch"},
		Clients: 1, Conns: 1, Duration: 100 * time.Millisecond, Timeout: time.Second, Wait: 300 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "touch") || !strings.Contains(err.Error(), "lb2") {
		t.Errorf("a missing module: %v", err)
	}
	res, err := loadbench.Run(context.Background(), loadbench.Config{
		URL: url, Pipeline: "lb2", Requests: []map[string]bus.Payload{{"left": text("1 2")}},
		Clients: 2, Conns: 1, Duration: 200 * time.Millisecond, Timeout: 5 * time.Second, Owned: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Inference; p.Sent == 0 || p.Errors != p.Sent || len(p.ErrorKinds) != 1 {
		t.Errorf("refused inputs: %+v", p)
	}
	if err := res.Check(); err != nil {
		t.Errorf("errors are counted, not a failed run: %v", err)
	}
}

// A config that cannot run is refused before anything connects.
func TestConfigRefused(t *testing.T) {
	ok := func() loadbench.Config {
		return loadbench.Config{URL: "nats://127.0.0.1:1", Requests: []map[string]bus.Payload{{"a": text("1")}}, Clients: 1, Conns: 1, Duration: time.Second, Timeout: time.Second}
	}
	for name, edit := range map[string]func(*loadbench.Config){
		"no url":        func(c *loadbench.Config) { c.URL = "" },
		"no clients":    func(c *loadbench.Config) { c.Clients = 0 },
		"no conns":      func(c *loadbench.Config) { c.Conns = 0 },
		"no duration":   func(c *loadbench.Config) { c.Duration = 0 },
		"no requests":   func(c *loadbench.Config) { c.Requests = nil },
		"nothing asked": func(c *loadbench.Config) { c.Requests = []map[string]bus.Payload{{}} },
		"uneven":        func(c *loadbench.Config) { c.Requests = append(c.Requests, map[string]bus.Payload{"b": text("1")}) },
		"bad name":      func(c *loadbench.Config) { c.Want = []string{"a b"} },
		"twice":         func(c *loadbench.Config) { c.Want = []string{"b", "b"} },
	} {
		cfg := ok()
		edit(&cfg)
		if _, err := loadbench.Run(context.Background(), cfg); !errors.Is(err, loadbench.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}
