package fusionbench_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bench/fusionbench"
)

// A short run matches every round trip of both kinds, orders its
// percentiles, takes the ratios from the two measured medians, and runs a
// throughput cell in which every posterior the integrator accepted came
// from a module waiting for it.
func TestBenchFusion(t *testing.T) {
	start := time.Now()
	res, err := fusionbench.Run(context.Background(), fusionbench.Config{
		N: 200, Latent: 16, Block: 50, Duration: 500 * time.Millisecond, Modules: []int{3}, Latents: []int{16},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	rt := res.RoundTrip
	for _, k := range []struct {
		name string
		t    fusionbench.Trips
	}{{"serket", rt.Serket}, {"raw", rt.Raw}} {
		tr, l := k.t, k.t.Latency
		if tr.Sent != 200 || tr.OK != 200 || tr.Lost != 0 || tr.Errors != 0 || len(tr.Latencies()) != 200 || l.N != 200 {
			t.Errorf("%s: sent %d, matched %d, lost %d, wrong %d, %d latencies", k.name, tr.Sent, tr.OK, tr.Lost, tr.Errors, len(tr.Latencies()))
		}
		if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) || l.Mean <= 0 || l.Mean > l.Max {
			t.Errorf("%s: latencies out of order: %+v", k.name, l)
		}
		// Nothing on loopback takes less than a few microseconds, nor, one
		// at a time, a whole second.
		if l.P50 < 5*time.Microsecond || l.Max > time.Second {
			t.Errorf("%s: p50 %v, max %v", k.name, l.P50, l.Max)
		}
	}
	if rt.P50Ratio != float64(rt.Serket.Latency.P50)/float64(rt.Raw.Latency.P50) ||
		rt.P99Ratio != float64(rt.Serket.Latency.P99)/float64(rt.Raw.Latency.P99) || rt.P50Ratio <= 0 {
		t.Errorf("ratios %v and %v from p50s %v/%v and p99s %v/%v", rt.P50Ratio, rt.P99Ratio,
			rt.Serket.Latency.P50, rt.Raw.Latency.P50, rt.Serket.Latency.P99, rt.Raw.Latency.P99)
	}
	if rt.PosteriorBytes < 2*4*16 || rt.BeliefBytes < 2*4*16 {
		t.Errorf("a 1×16 posterior of %d bytes, belief of %d", rt.PosteriorBytes, rt.BeliefBytes)
	}
	if len(res.Throughput) != 1 {
		t.Fatalf("%d throughput cells, want 1", len(res.Throughput))
	}
	c := res.Throughput[0]
	if c.Modules != 3 || c.Latent != 16 || c.Seconds < 0.5 || c.Beliefs == 0 || c.BeliefsPerSec <= 0 {
		t.Errorf("cell %+v", c)
	}
	// Each belief is set off by a posterior, and each posterior joins one.
	if c.Posteriors < c.Beliefs || c.PerBelief < 1 || c.Stalls != 0 || c.Refused != 0 {
		t.Errorf("cell %+v", c)
	}
	if res.Growth != nil {
		t.Errorf("a fit from one cell: %+v", res.Growth)
	}
	if !strings.HasPrefix(res.Server, "nats://127.0.0.1:") || res.CPUs < 1 {
		t.Errorf("server %q, %d CPUs", res.Server, res.CPUs)
	}
	b, err := json.Marshal(res)
	if err != nil || !strings.Contains(string(b), `"p50_ratio"`) {
		t.Errorf("JSON %s (%v)", b, err)
	}
}

// Check fails a run with a round trip not matched or a cell not clean.
func TestCheck(t *testing.T) {
	good := func() *fusionbench.Result {
		r := &fusionbench.Result{RoundTrip: fusionbench.RoundTrip{N: 2}, Throughput: []fusionbench.Cell{{Modules: 3, Latent: 16, Beliefs: 10}}}
		for range 2 {
			r.RoundTrip.Serket.Add(bench.OK, "", time.Millisecond)
			r.RoundTrip.Raw.Add(bench.OK, "", time.Millisecond)
		}
		return r
	}
	tests := []struct {
		name    string
		edit    func(r *fusionbench.Result)
		wantErr string
	}{
		{"clean", func(*fusionbench.Result) {}, ""},
		{"lost", func(r *fusionbench.Result) { r.RoundTrip.N = 3; r.RoundTrip.Serket.Add(bench.Lost, "no belief", 0) }, "fusion round trip: 2 of 3 matched (1 lost"},
		{"wrong echo", func(r *fusionbench.Result) {
			r.RoundTrip.N = 3
			r.RoundTrip.Serket.Add(bench.OK, "", time.Millisecond)
			r.RoundTrip.Raw.Add(bench.Failed, "crossed", 0)
			r.RoundTrip.FirstError = "round trip 7: crossed"
		}, "raw round trip: 2 of 3 matched (0 lost, 1 wrong)"},
		{"stall", func(r *fusionbench.Result) { r.Throughput[0].Stalls = 1 }, "3 modules × latent 16: 10 beliefs, 1 stalls"},
		{"no beliefs", func(r *fusionbench.Result) { r.Throughput[0].Beliefs = 0 }, "0 beliefs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good()
			tt.edit(r)
			err := r.Check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, fusionbench.ErrFusion) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// The growth fit recovers the exponents of a table that follows a power law.
func TestFusionGrowthFit(t *testing.T) {
	var cells []fusionbench.Cell
	for _, m := range []int{3, 8, 16} {
		for _, d := range []int{16, 64, 256} {
			// Time per belief ∝ m^0.5 · d^1, per posterior ∝ m^-1 · d^0.25.
			perBelief := 1e-6 * math.Pow(float64(m), 0.5) * float64(d)
			perPost := 1e-6 * math.Pow(float64(m), -1) * math.Pow(float64(d), 0.25)
			cells = append(cells, fusionbench.Cell{Modules: m, Latent: d, Seconds: 1, Beliefs: uint64(1 / perBelief), Posteriors: uint64(1 / perPost)})
		}
	}
	g := fusionbench.FitGrowth(cells)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"belief/latent", g.BeliefLatentExp, 1}, {"belief/modules", g.BeliefModulesExp, 0.5},
		{"posterior/latent", g.PosteriorLatentExp, 0.25}, {"posterior/modules", g.PosteriorModulesExp, -1},
	} {
		if d := c.got - c.want; d > 0.01 || d < -0.01 {
			t.Errorf("%s exponent %.3f, want %.2f", c.name, c.got, c.want)
		}
	}
}

// A config that cannot run is refused before anything starts.
func TestConfigRefused(t *testing.T) {
	for _, cfg := range []fusionbench.Config{
		{N: 0, Latent: 16}, {N: 1, Latent: 0}, {N: 1, Latent: 16, Latents: []int{5000}},
		{N: 1, Latent: 16, Modules: []int{65}}, {N: 1, Latent: 16, Duration: -time.Second},
	} {
		if _, err := fusionbench.Run(context.Background(), cfg); !errors.Is(err, fusionbench.ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", cfg, err)
		}
	}
}
