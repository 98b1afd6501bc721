package loadbench

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bench"
)

// shot sends client c's seq-th request on nc and waits for its answer
// until ctx is done.
type shot func(ctx context.Context, nc *nats.Conn, c, seq int) (bench.Outcome, string)

// runPhase drives shoot from cfg.Clients goroutines, client i on
// conns[i%len(conns)], for cfg.Warmup then cfg.Duration, and waits for every
// request in flight. Once ctx is done no request is sent, but those in
// flight still get their full timeout: stopping early loses no reply.
func runPhase(ctx context.Context, cfg Config, conns []*nats.Conn, shoot shot) (warm, window Phase) {
	begin := time.Now()
	from := begin.Add(cfg.Warmup)
	end := from.Add(cfg.Duration)
	tallies := make([]clientTally, cfg.Clients)
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		wg.Go(func() {
			tallies[i].run(ctx, cfg.Timeout, from, end, func(ctx context.Context, seq int) (bench.Outcome, string) {
				return shoot(ctx, conns[i%len(conns)], i, seq)
			})
		})
	}
	wg.Wait()
	var last time.Time
	for i := range tallies {
		warm.Merge(&tallies[i].warm)
		window.Merge(&tallies[i].window)
		if tallies[i].last.After(last) {
			last = tallies[i].last
		}
	}
	if last.After(from) {
		window.Seconds = last.Sub(from).Seconds()
	}
	warm.Seconds = min(time.Since(begin), cfg.Warmup).Seconds()
	warm.finish()
	window.finish()
	return warm, window
}

// clientTally is one client's share of a phase.
type clientTally struct {
	warm, window bench.Tally
	last         time.Time // the last reply of a request sent in the window
}

// run sends requests one after another until end (or ctx is done),
// counting those sent before from as warm-up. Each request gets its full
// timeout whatever ctx does.
func (t *clientTally) run(ctx context.Context, timeout time.Duration, from, end time.Time, send func(context.Context, int) (bench.Outcome, string)) {
	for seq := 0; ctx.Err() == nil; seq++ {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		o, kind := send(rctx, seq)
		cancel()
		done := time.Now()
		if t0.Before(from) {
			t.warm.Add(o, kind, done.Sub(t0))
			continue
		}
		t.window.Add(o, kind, done.Sub(t0))
		t.last = done
	}
}
