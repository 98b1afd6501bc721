package eval_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/module"
)

// serve runs each modality as a module of the pipeline (module.Run, as a
// module process does, serving only) on an embedded NATS server of the
// test's own, and returns the pipeline as evaluation reaches it. The
// modules stop when the test ends.
func serve(t *testing.T, pipeline string, labels *eval.Labels, mods ...module.Modality) *eval.Pipeline {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(mods))
	t.Cleanup(func() {
		cancel()
		for range mods {
			<-done
		}
	})
	var names []string
	for _, m := range mods {
		ready, failed := make(chan struct{}), make(chan error, 1)
		go func() {
			defer func() { done <- struct{}{} }()
			if err := module.Run(ctx, m, module.Options{Pipeline: pipeline, NATS: bus.ConnConfig{Server: srv},
				Logger: slog.New(slog.DiscardHandler), Ready: func(micro.Service) { close(ready) }}); err != nil {
				failed <- err
			}
		}()
		select {
		case <-ready:
		case err := <-failed:
			t.Fatalf("module %s: %v", m.Spec().Name, err)
		}
		names = append(names, m.Spec().Name)
	}
	nc, err := bus.Connect(bus.ConnConfig{Server: srv, Name: "eval-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return connect(t, nc, pipeline, labels, names)
}

func connect(t *testing.T, nc *nats.Conn, pipeline string, labels *eval.Labels, names []string) *eval.Pipeline {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := eval.Connect(ctx, nc, pipeline, labels, names)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
