package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// A short bench fusion run matches every round trip of both kinds, orders
// its percentiles, takes the ratios from the two measured medians, and
// runs a throughput cell in which every posterior the integrator accepted
// came from a module waiting for it.
func TestBenchFusion(t *testing.T) {
	start := time.Now()
	res, err := runFusion(context.Background(), fusionConfig{
		N: 200, Latent: 16, Block: 50, Duration: 500 * time.Millisecond, Modules: []int{3}, Latents: []int{16},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
	var out strings.Builder
	if err := res.print(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if err := res.check(); err != nil {
		t.Error(err)
	}
	rt := res.RoundTrip
	for _, k := range []struct {
		name string
		l    fusionLatency
	}{{"serket", rt.Serket}, {"raw", rt.Raw}} {
		l := k.l
		if l.Sent != 200 || l.Matched != 200 || l.Lost != 0 || l.Wrong != 0 || len(l.lat) != 200 {
			t.Errorf("%s: sent %d, matched %d, lost %d, wrong %d, %d latencies", k.name, l.Sent, l.Matched, l.Lost, l.Wrong, len(l.lat))
		}
		if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) || l.Mean <= 0 || l.Mean > l.Max {
			t.Errorf("%s: latencies out of order: %+v", k.name, l)
		}
		// Nothing on loopback takes less than a few microseconds, nor, one
		// at a time, a whole second.
		if l.P50 < 5 || l.Max > 1e6 {
			t.Errorf("%s: p50 %.1f µs, max %.1f µs", k.name, l.P50, l.Max)
		}
	}
	if rt.P50Ratio != rt.Serket.P50/rt.Raw.P50 || rt.P99Ratio != rt.Serket.P99/rt.Raw.P99 || rt.P50Ratio <= 0 {
		t.Errorf("ratios %v and %v from p50s %v/%v and p99s %v/%v", rt.P50Ratio, rt.P99Ratio, rt.Serket.P50, rt.Raw.P50, rt.Serket.P99, rt.Raw.P99)
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
	for _, want := range []string{"127.0.0.1", "own connection", "p50 ratio serket/raw", "beliefs/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	b, err := json.Marshal(res)
	if err != nil || !strings.Contains(string(b), `"p50_ratio"`) {
		t.Errorf("JSON %s (%v)", b, err)
	}
}

// The growth fit recovers the exponents of a table that follows a power law.
func TestFusionGrowthFit(t *testing.T) {
	var cells []fusionCell
	for _, m := range []int{3, 8, 16} {
		for _, d := range []int{16, 64, 256} {
			// Time per belief ∝ m^0.5 · d^1, per posterior ∝ m^-1 · d^0.25.
			perBelief := 1e-6 * math.Pow(float64(m), 0.5) * float64(d)
			perPost := 1e-6 * math.Pow(float64(m), -1) * math.Pow(float64(d), 0.25)
			cells = append(cells, fusionCell{Modules: m, Latent: d, Seconds: 1, Beliefs: uint64(1 / perBelief), Posteriors: uint64(1 / perPost)})
		}
	}
	g := fitGrowth(cells)
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
