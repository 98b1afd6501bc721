package loadbench

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
)

// Endpoint is one endpoint's own counters ($SRV.STATS) over warm-up and
// window.
type Endpoint struct {
	Service  string  `json:"service"`
	Endpoint string  `json:"endpoint"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	MeanMs   float64 `json:"mean_ms"` // mean time in the handler
	Busy     float64 `json:"busy"`    // time in the handler over the wall time (1: always busy)
}

// Integrator reports whether e is the integrator's, whose endpoint only
// decodes a request and hands it to a worker: its time says nothing of the
// inference.
func (e Endpoint) Integrator() bool { return e.Service == bus.ServiceName(integrator.Name) }

func discover(ctx context.Context, nc *nats.Conn, pipeline string) ([]bus.Service, error) {
	return bus.Discover(ctx, nc, bus.DiscoverConfig{Pipeline: pipeline, Window: 200 * time.Millisecond, Stats: true})
}

// serverView reads the pipeline's endpoint counters again and returns what
// changed since before, over wall, and the integrator's inference requests.
// On the run's own pipeline (strict) every request sent must be among them;
// the integrator counts a request once its reply is out, so a reply can
// arrive a moment before its count: it asks again until the counts agree,
// a few times.
func serverView(ctx context.Context, nc *nats.Conn, pipeline string, before []bus.Service, wall time.Duration, sent int, strict bool) ([]Endpoint, int) {
	if before == nil {
		return nil, -1
	}
	var out []Endpoint
	infer := -1
	for range 5 {
		after, err := discover(ctx, nc, pipeline)
		if err != nil {
			return nil, -1
		}
		out, infer = endpointDeltas(before, after, wall)
		if !strict || infer == sent {
			break
		}
	}
	return out, infer
}

// endpointDeltas sums each service's endpoint counters, by service name
// (instances of one module together), less what they were before.
func endpointDeltas(before, after []bus.Service, wall time.Duration) ([]Endpoint, int) {
	type key struct{ id, ep string }
	prev := map[key]*micro.EndpointStats{}
	for _, s := range before {
		if s.Stats == nil {
			continue
		}
		for _, e := range s.Stats.Endpoints {
			prev[key{s.ID, e.Name}] = e
		}
	}
	type agg struct {
		n, errs int
		busy    time.Duration
	}
	sum := map[[2]string]*agg{}
	infer := -1
	for _, s := range after {
		if s.Stats == nil {
			continue
		}
		for _, e := range s.Stats.Endpoints {
			n, errs, busy := e.NumRequests, e.NumErrors, e.ProcessingTime
			if p := prev[key{s.ID, e.Name}]; p != nil {
				n, errs, busy = n-p.NumRequests, errs-p.NumErrors, busy-p.ProcessingTime
			}
			name := e.Name
			if s.Role() == "integrator" && strings.HasPrefix(name, "infer") {
				name = "infer" // one endpoint; older integrators had infer, infer-2, …
			}
			k := [2]string{s.Name, name}
			a := sum[k]
			if a == nil {
				a = &agg{}
				sum[k] = a
			}
			a.n, a.errs, a.busy = a.n+n, a.errs+errs, a.busy+busy
			if s.Role() == "integrator" && name == "infer" {
				infer = max(infer, 0) + n
			}
		}
	}
	var out []Endpoint
	for k, a := range sum {
		if a.n == 0 {
			continue
		}
		out = append(out, Endpoint{
			Service: k[0], Endpoint: k[1], Requests: a.n, Errors: a.errs,
			MeanMs: float64(a.busy) / float64(a.n) / float64(time.Millisecond),
			Busy:   a.busy.Seconds() / wall.Seconds(),
		})
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.Endpoint, b.Endpoint)
	})
	return out, infer
}
