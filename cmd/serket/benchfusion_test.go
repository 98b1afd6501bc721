package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/serket-go/serket/bench/fusionbench"
)

// The command's flags reach the run, its table says what it measured, and
// --json prints the result. (The measurement is tested in bench/fusionbench.)
func TestBenchFusionCommand(t *testing.T) {
	msg, err := serketOut(t, "bench", "fusion", "--n", "60", "--latent", "8", "--duration", "200ms", "--modules", "2", "--latents", "8", "--log-level", "warn")
	if err != nil {
		t.Fatalf("serket bench fusion: %v\n%s", err, msg)
	}
	for _, want := range []string{"127.0.0.1", "own connection", "60/60", "latency p50 (µs)", "p50 ratio serket/raw", "beliefs/s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the output does not say %q:\n%s", want, msg)
		}
	}
	out, log, err := serketStdout(t, "bench", "fusion", "--n", "30", "--latent", "4", "--duration", "0", "--json", "--log-level", "warn")
	if err != nil {
		t.Fatalf("serket bench fusion --json: %v", err)
	}
	var res fusionbench.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rt := res.RoundTrip; rt.N != 30 || rt.Latent != 4 || rt.Serket.OK != 30 || rt.Raw.OK != 30 || rt.Serket.Latency.P50 <= 0 || len(res.Throughput) != 0 {
		t.Errorf("unexpected result:\n%s", out)
	}
	// A clean run has nothing to warn of: a connection left open until the
	// server stops would say it was disconnected.
	if log != "" {
		t.Errorf("warnings:\n%s", log)
	}
}
