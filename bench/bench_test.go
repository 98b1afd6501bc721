package bench_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bus"
)

func ms(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

// Percentiles are nearest-rank: the value of rank ⌈q·n⌉, a latency that
// happened.
func TestSummarise(t *testing.T) {
	tests := []struct {
		name string
		lat  []time.Duration
		want bench.Latency
	}{
		{"empty", nil, bench.Latency{}},
		{"one", ms(7), bench.Latency{N: 1, P50: ms(7)[0], P90: ms(7)[0], P99: ms(7)[0], Max: ms(7)[0], Mean: ms(7)[0]}},
		{"two, unsorted", ms(9, 1), bench.Latency{N: 2, P50: ms(1)[0], P90: ms(9)[0], P99: ms(9)[0], Max: ms(9)[0], Mean: ms(5)[0]}},
		{"ten", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), bench.Latency{N: 10, P50: ms(5)[0], P90: ms(9)[0], P99: ms(10)[0], Max: ms(10)[0], Mean: 5500 * time.Microsecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bench.Summarise(tt.lat); got != tt.want {
				t.Errorf("Summarise = %+v, want %+v", got, tt.want)
			}
		})
	}
	// 100 values 1..100 ms: p99 is the 99th, not the largest.
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if l := bench.Summarise(lat); l.P50 != 50*time.Millisecond || l.P90 != 90*time.Millisecond || l.P99 != 99*time.Millisecond || l.Max != 100*time.Millisecond {
		t.Errorf("1..100 ms: %+v", l)
	}
}

// A tally counts every fate, merges, and checks its accounting.
func TestTally(t *testing.T) {
	var a, b bench.Tally
	a.Add(bench.OK, "", 2*time.Millisecond)
	a.Add(bench.Failed, "error reply 500: x", 0)
	b.Add(bench.OK, "", time.Millisecond)
	b.Add(bench.Lost, "timed out", 0)
	b.Add(bench.Lost, "timed out", 0)
	a.Merge(&b)
	if a.Sent != 5 || a.OK != 2 || a.Errors != 1 || a.Lost != 2 || a.ErrorKinds["error reply 500: x"] != 1 || a.LostKinds["timed out"] != 2 {
		t.Errorf("merged %+v", a)
	}
	if l := a.Latency(); l.N != 2 || l.P50 != time.Millisecond || l.Max != 2*time.Millisecond {
		t.Errorf("latency %+v", l)
	}
	err := a.Check("inference")
	if err == nil || !strings.Contains(err.Error(), "inference: 2 of 5 requests lost (2× timed out)") {
		t.Errorf("Check = %v", err)
	}
	a.Sent++
	if err := a.Check("inference"); err == nil || !strings.Contains(err.Error(), "sent 6 ≠ ok 2 + errors 1 + lost 2") {
		t.Errorf("Check = %v", err)
	}
	var clean bench.Tally
	clean.Add(bench.OK, "", time.Millisecond)
	clean.Add(bench.Failed, "refused", 0)
	if err := clean.Check("x"); err != nil {
		t.Errorf("errors are counted, not failures: %v", err)
	}
}

func server(t *testing.T) string {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

func conn(t *testing.T, url, name string) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// The echo answers every caller with its own request, concurrently, on a
// real server; a crossed echo fails, no responder fails at once, and a
// responder that never answers is a loss.
func TestEcho(t *testing.T) {
	url := server(t)
	nc1, nc2 := conn(t, url, "a"), conn(t, url, "b")
	e, err := bench.NewEcho([]*nats.Conn{nc1, nc2}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if e.Size() != 100 {
		t.Errorf("size %d", e.Size())
	}
	var wg sync.WaitGroup
	tallies := make([]bench.Tally, 8)
	for c := range tallies {
		wg.Go(func() {
			caller := e.Caller(c)
			for seq := range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				o, kind := caller.Call(ctx, []*nats.Conn{nc1, nc2}[c%2], seq)
				cancel()
				tallies[c].Add(o, kind, time.Since(start))
			}
		})
	}
	wg.Wait()
	var all bench.Tally
	for i := range tallies {
		all.Merge(&tallies[i])
	}
	if all.Sent != 400 || all.OK != 400 {
		t.Errorf("%d sent, %d ok (%v, %v)", all.Sent, all.OK, all.ErrorKinds, all.LostKinds)
	}
	e.Close()

	// Once closed, nobody answers: the server says so at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if o, kind := e.Caller(1).Call(ctx, nc1, 1); o != bench.Failed || !strings.Contains(kind, "no responders") {
		t.Errorf("after Close: %v %q, want a failure: nobody answers", o, kind)
	}
	// A request whose time is up is lost.
	done, cancel2 := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel2()
	<-done.Done()
	if o, kind := e.Caller(1).Call(done, nc1, 2); o != bench.Lost || kind != "timed out" {
		t.Errorf("out of time: %v %q, want lost, timed out", o, kind)
	}
}

func TestKind(t *testing.T) {
	if got := bench.Kind("a\n  b\tc"); got != "a b c" {
		t.Errorf("%q", got)
	}
	if got := bench.Kind(strings.Repeat("é", 200)); len([]rune(got)) != 120 || !strings.HasSuffix(got, "…") {
		t.Errorf("%d runes", len([]rune(got)))
	}
}
