package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/serket-go/serket/bus"
)

// addService adds a micro service with one endpoint and stops it when the
// test ends.
func addService(t *testing.T, s *bus.Server, name string, meta map[string]string) micro.Service {
	t.Helper()
	nc := connect(t, bus.ConnConfig{Server: s, Name: name})
	svc, err := micro.AddService(nc, micro.Config{
		Name:     name,
		Version:  "0.1.0",
		Metadata: meta,
		Endpoint: &micro.EndpointConfig{
			Subject: "test.discover." + name,
			Handler: micro.HandlerFunc(func(r micro.Request) { r.Respond(nil) }),
		},
	})
	if err != nil {
		t.Fatalf("AddService(%s): %v", name, err)
	}
	t.Cleanup(func() { svc.Stop() })
	// AddService does not wait for its subscriptions to reach the server;
	// the round trip of Flush does.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return svc
}

func serketMeta(pipeline, module, wire string) map[string]string {
	return map[string]string{
		bus.MetaPipeline: pipeline,
		bus.MetaWire:     wire,
		bus.MetaModule:   module,
		bus.MetaRole:     "module",
	}
}

func TestDiscover(t *testing.T) {
	s := startServer(t, bus.ServerConfig{})
	// Added out of order: Discover sorts.
	b := addService(t, s, "serket-b", serketMeta("default", "b", "2"))
	a := addService(t, s, "serket-a", serketMeta("default", "a", "2"))
	c := addService(t, s, "serket-c", serketMeta("other", "c", "2"))
	addService(t, s, "serket-d", serketMeta("default", "d", "1")) // another wire version
	addService(t, s, "weather", serketMeta("default", "w", "2"))  // not serket's

	nc := connect(t, bus.ConnConfig{Server: s, Name: "serket-ps"})
	tests := []struct {
		name      string
		cfg       bus.DiscoverConfig
		wantIDs   []string
		wantNames []string
		wantMods  []string
	}{
		{name: "default pipeline", cfg: bus.DiscoverConfig{}, wantIDs: []string{a.Info().ID, b.Info().ID}, wantNames: []string{"serket-a", "serket-b"}, wantMods: []string{"a", "b"}},
		{name: "default pipeline with stats", cfg: bus.DiscoverConfig{Pipeline: "default", Stats: true}, wantIDs: []string{a.Info().ID, b.Info().ID}, wantNames: []string{"serket-a", "serket-b"}, wantMods: []string{"a", "b"}},
		{name: "other pipeline", cfg: bus.DiscoverConfig{Pipeline: "other", Stats: true, Window: 200 * time.Millisecond}, wantIDs: []string{c.Info().ID}, wantNames: []string{"serket-c"}, wantMods: []string{"c"}},
		{name: "empty pipeline", cfg: bus.DiscoverConfig{Pipeline: "nobody", Window: 100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := bus.Discover(ctx, nc, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.wantNames) {
				t.Fatalf("found %d services %+v, want %v", len(got), got, tt.wantNames)
			}
			for i, svc := range got {
				if svc.Name != tt.wantNames[i] || svc.ID != tt.wantIDs[i] {
					t.Errorf("service %d is %s/%s, want %s/%s", i, svc.Name, svc.ID, tt.wantNames[i], tt.wantIDs[i])
				}
				if svc.Module() != tt.wantMods[i] || svc.Role() != "module" {
					t.Errorf("service %s: module %q role %q, want %q module", svc.Name, svc.Module(), svc.Role(), tt.wantMods[i])
				}
				if svc.RTT <= 0 {
					t.Errorf("service %s: RTT %v", svc.Name, svc.RTT)
				}
				if len(svc.Endpoints) != 1 || svc.Endpoints[0].Subject != "test.discover."+svc.Name {
					t.Errorf("service %s: endpoints %+v", svc.Name, svc.Endpoints)
				}
				if !tt.cfg.Stats {
					if svc.Stats != nil {
						t.Errorf("service %s: stats %+v without asking", svc.Name, svc.Stats)
					}
					continue
				}
				if svc.Stats == nil {
					t.Errorf("service %s: no stats", svc.Name)
					continue
				}
				if svc.Stats.ID != svc.ID || svc.Stats.Name != svc.Name || len(svc.Stats.Endpoints) != 1 {
					t.Errorf("service %s: stats of %s/%s with %d endpoints", svc.Name, svc.Stats.Name, svc.Stats.ID, len(svc.Stats.Endpoints))
				}
			}
		})
	}
}

// TestDiscoverWaitsTheWindow: Discover returns after its window, not before
// and not much after, and a cancelled context ends it early.
func TestDiscoverWindow(t *testing.T) {
	s := startServer(t, bus.ServerConfig{})
	nc := connect(t, bus.ConnConfig{Server: s})

	start := time.Now()
	if _, err := bus.Discover(context.Background(), nc, bus.DiscoverConfig{Window: 150 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("Discover with a 150ms window took %v", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if _, err := bus.Discover(ctx, nc, bus.DiscoverConfig{Window: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Discover with a cancelled context took %v", took)
	}

	nc.Close()
	if _, err := bus.Discover(context.Background(), nc, bus.DiscoverConfig{Window: 50 * time.Millisecond}); err == nil {
		t.Errorf("Discover on a closed connection succeeded")
	}
}
