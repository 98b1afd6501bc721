package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
)

// A load run on the in-process pipeline answers every request, with the
// reply meant for it, and the integrator's own count agrees. (No audio
// here: rendering the WAVs under the race detector takes seconds each;
// TestBenchLoadCommand sends them.)
func TestBenchLoad(t *testing.T) {
	data := datasettest.Dir(t)
	start := time.Now()
	res, err := runLoad(context.Background(), loadConfig{
		Data: data, Latent: 16, Hidden: 64,
		Clients: 16, Conns: 4, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond, Timeout: 5 * time.Second,
		From: []string{dataset.Language, dataset.Vision}, To: []string{dataset.Language}, Items: 6, Baseline: true,
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
	for _, ph := range []struct {
		name string
		p    *loadPhase
	}{{"inference", &res.Inference}, {"baseline", res.Baseline}} {
		p := ph.p
		if p == nil {
			t.Fatalf("%s: not measured", ph.name)
		}
		if p.Sent == 0 || p.Sent != p.OK+p.Errors+p.Lost {
			t.Errorf("%s: sent %d, ok %d + errors %d + lost %d", ph.name, p.Sent, p.OK, p.Errors, p.Lost)
		}
		if p.Lost != 0 || p.Errors != 0 {
			t.Errorf("%s: %d lost (%v), %d errors (%v)", ph.name, p.Lost, p.LostKinds, p.Errors, p.ErrorKinds)
		}
		l := p.Latency
		if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
			t.Errorf("%s: latencies out of order: %+v", ph.name, l)
		}
		if p.PerSec <= 0 || p.Seconds < 2 {
			t.Errorf("%s: %.1f ok/s over %.2f s", ph.name, p.PerSec, p.Seconds)
		}
	}
	if want := res.Warmup.Sent + res.Inference.Sent; res.ServerRequests != want {
		t.Errorf("the integrator counted %d requests, %d were sent", res.ServerRequests, want)
	}
	if res.P50Ratio <= 0 {
		t.Errorf("p50 ratio %v", res.P50Ratio)
	}
	if err := res.check(); err != nil {
		t.Error(err)
	}
}

// The command's flags reach the run, and --json prints what it measured;
// the requests carry all three modalities.
func TestBenchLoadCommand(t *testing.T) {
	data := datasettest.Dir(t)
	msg, err := serketOut(t, "bench", "load", "--data", data, "--latent", "16", "--hidden", "64",
		"--clients", "4", "--conns", "2", "--duration", "500ms", "--warmup", "100ms", "--items", "2",
		"--from", "vision,language,audio", "--to", "vision", "--baseline=false", "--json", "--log-level", "warn")
	if err != nil {
		t.Fatalf("serket bench load: %v\n%s", err, msg)
	}
	var res loadResult
	if err := json.Unmarshal([]byte(msg), &res); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	p := res.Inference
	if res.Clients != 4 || res.Conns != 2 || strings.Join(res.From, ",") != "audio,language,vision" || strings.Join(res.To, ",") != "vision" ||
		res.Baseline != nil || p.Sent == 0 || p.OK != p.Sent || p.Latency.P50 > p.Latency.Max {
		t.Errorf("unexpected result:\n%s", msg)
	}
}

// check fails a run that lost a request or whose counts do not add up.
func TestBenchLoadCheck(t *testing.T) {
	good := func() *loadResult {
		return &loadResult{
			Embedded:       true,
			Warmup:         loadPhase{Sent: 3, OK: 3},
			Inference:      loadPhase{Sent: 10, OK: 8, Errors: 2, ErrorKinds: map[string]int{"error reply 400: x": 2}},
			Baseline:       &loadPhase{Sent: 5, OK: 5},
			ServerRequests: 13,
		}
	}
	tests := []struct {
		name    string
		edit    func(r *loadResult)
		wantErr string
	}{
		{"accounted", func(*loadResult) {}, ""},
		{"lost", func(r *loadResult) { r.Inference.OK--; r.Inference.Lost++ }, "1 of 10 requests lost"},
		{"lost in warm-up", func(r *loadResult) { r.Warmup.OK--; r.Warmup.Lost++ }, "warm-up: 1 of 3"},
		{"lost echo", func(r *loadResult) { r.Baseline.OK--; r.Baseline.Lost++ }, "baseline: 1 of 5"},
		{"unaccounted", func(r *loadResult) { r.Inference.Sent++ }, "sent 11 ≠ ok 8 + errors 2 + lost 0"},
		{"nothing sent", func(r *loadResult) { r.Inference = loadPhase{}; r.ServerRequests = 3 }, "no inference request"},
		{"server disagrees", func(r *loadResult) { r.ServerRequests = 12 }, "the integrator counted 12"},
		{"remote server not checked", func(r *loadResult) { r.Embedded = false; r.ServerRequests = 40 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good()
			tt.edit(r)
			err := r.check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errLoad) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// verify refuses a reply that is not the one its request asked for.
func TestBenchLoadVerify(t *testing.T) {
	b := &inferBench{from: []string{"language", "vision"}, to: []string{"vision"}, ref: map[int][]float32{}}
	reply := func(mu float32, edit func(*bus.InferReply)) *bus.InferReply {
		r := &bus.InferReply{
			Mu: bus.Matrix(1, 2, []float32{mu, 1}), Z: bus.Matrix(1, 2, []float32{mu, 1}),
			Contributors: []string{"language", "vision"},
			Outputs:      map[string][]bus.Payload{"vision": {{Type: "image/png", Data: []byte{1}}}},
		}
		if edit != nil {
			edit(r)
		}
		return r
	}
	if kind := b.verify(0, reply(0.5, nil)); kind != "" {
		t.Fatalf("first reply of item 0: %s", kind)
	}
	if kind := b.verify(1, reply(-2, nil)); kind != "" {
		t.Fatalf("first reply of item 1: %s", kind)
	}
	tests := []struct {
		name string
		item int
		rep  *bus.InferReply
		want string // "" ok, else a prefix of the kind
	}{
		{"same item again", 0, reply(0.5, nil), ""},
		{"another item's reply", 0, reply(-2, nil), "mismatch: the fused mean"},
		{"degraded", 1, reply(-2, func(r *bus.InferReply) {
			r.Contributors = []string{"language"}
			r.Missing = map[string]string{"vision": "no answer within the deadline of 2s"}
		}), "degraded: vision missing: no answer"},
		{"contributors", 1, reply(-2, func(r *bus.InferReply) { r.Contributors = []string{"vision"} }), "mismatch: contributors"},
		{"outputs", 1, reply(-2, func(r *bus.InferReply) { r.Outputs = nil }), "mismatch: outputs"},
		{"samples", 1, reply(-2, func(r *bus.InferReply) { r.Outputs["vision"] = nil }), "mismatch: 0 vision outputs"},
		{"latents", 1, reply(-2, func(r *bus.InferReply) { r.Z = bus.Matrix(2, 2, make([]float32, 4)) }), "mismatch: 2 latents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := b.verify(tt.item, tt.rep)
			if (tt.want == "") != (got == "") || !strings.HasPrefix(got, tt.want) {
				t.Fatalf("verify = %q, want %q", got, tt.want)
			}
		})
	}
}
