package loadbench

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bus"
)

func phase(ok, failed, lost int) Phase {
	var p Phase
	for range ok {
		p.Add(bench.OK, "", time.Millisecond)
	}
	for range failed {
		p.Add(bench.Failed, "error reply 400: x", 0)
	}
	for range lost {
		p.Add(bench.Lost, "timed out", 0)
	}
	return p
}

// Check fails a run that lost a request or whose counts do not add up.
func TestBenchLoadCheck(t *testing.T) {
	good := func() *Result {
		base := phase(5, 0, 0)
		return &Result{Owned: true, Warmup: phase(3, 0, 0), Inference: phase(8, 2, 0), Baseline: &base, ServerRequests: 13}
	}
	tests := []struct {
		name    string
		edit    func(r *Result)
		wantErr string
	}{
		{"accounted", func(*Result) {}, ""},
		{"lost", func(r *Result) { r.Inference = phase(7, 2, 1) }, "1 of 10 requests lost"},
		{"lost in warm-up", func(r *Result) { r.Warmup = phase(2, 0, 1) }, "warm-up: 1 of 3"},
		{"lost echo", func(r *Result) { b := phase(4, 0, 1); r.Baseline = &b }, "baseline: 1 of 5"},
		{"unaccounted", func(r *Result) { r.Inference.Sent++ }, "sent 11 ≠ ok 8 + errors 2 + lost 0"},
		{"nothing sent", func(r *Result) { r.Inference = Phase{}; r.ServerRequests = 3 }, "no inference request"},
		{"server disagrees", func(r *Result) { r.ServerRequests = 12 }, "the integrator counted 12"},
		{"someone else's pipeline not checked", func(r *Result) { r.Owned = false; r.ServerRequests = 40 }, ""},
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
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrLoad) {
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
		t.Fatalf("first reply of request 0: %s", kind)
	}
	if kind := b.verify(1, reply(-2, nil)); kind != "" {
		t.Fatalf("first reply of request 1: %s", kind)
	}
	tests := []struct {
		name string
		item int
		rep  *bus.InferReply
		want string // "" ok, else a prefix of the kind
	}{
		{"same request again", 0, reply(0.5, nil), ""},
		{"another request's reply", 0, reply(-2, nil), "mismatch: the fused mean"},
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
