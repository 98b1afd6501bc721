package integrator

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
)

// Benchmarks of streaming fusion over a real embedded nats-server on
// 127.0.0.1 TCP, each party on its own connection as separate processes
// would be. Profile the integrator's side with
//
//	go test ./integrator -run '^$' -bench StreamRoundTrip -cpuprofile /tmp/cpu.out
//
// BenchmarkStreamRoundTrip is one module's posterior → the integrator →
// the belief naming it, one in flight; BenchmarkNATSRequestReply is a raw
// request-reply of the posterior's size on the same kind of rig, the floor
// it is measured against; BenchmarkStreamPath is the integrator's own work
// per posterior and belief (decode, store, fuse, encode, publish) with the
// network in front of it taken away, for its CPU time and allocations.
// TestStreamFusionIsFuse holds the streamer's own fusion to Fused.Fuse.

var benchLatents = []int{16, 64, 256}

func benchServer(b *testing.B) *bus.Server {
	b.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	return srv
}

func benchConn(b *testing.B, srv *bus.Server, name string) *nats.Conn {
	b.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: name})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// benchIntegrator runs an integrator of latent size d on its own connection.
func benchIntegrator(b *testing.B, srv *bus.Server, d int) *Integrator {
	b.Helper()
	ready := make(chan *Integrator, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Conn: benchConn(b, srv, "integrator"), Latent: d, Logger: slog.New(slog.DiscardHandler),
			Stream: StreamConfig{MinPeriod: 0}, Ready: func(ig *Integrator) { ready <- ig }})
	}()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case ig := <-ready:
		return ig
	case err := <-done:
		b.Fatal(err)
		return nil
	}
}

// benchPosterior encodes module's posterior stamped t, as module/stream.go does.
func benchPosterior(b testing.TB, module string, t int64, mu, lv []float32) []byte {
	post := &bus.Posterior{Time: t, Mu: bus.Matrix(1, len(mu), mu), LogVar: bus.Matrix(1, len(lv), lv)}
	post.SetSender(module)
	data, err := bus.Marshal(post)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// reportLatency reports the p50 and p99 of lat in microseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	us := func(q float64) float64 {
		return float64(lat[min(int(q*float64(len(lat))), len(lat)-1)]) / float64(time.Microsecond)
	}
	b.ReportMetric(us(0.5), "p50-µs")
	b.ReportMetric(us(0.99), "p99-µs")
}

func BenchmarkStreamRoundTrip(b *testing.B) {
	for _, d := range benchLatents {
		b.Run(fmt.Sprintf("latent=%d", d), func(b *testing.B) {
			srv := benchServer(b)
			benchIntegrator(b, srv, d)
			nc := benchConn(b, srv, "probe")
			subj, _ := bus.NewSubjects("")
			beliefs := make(chan *nats.Msg, 64)
			if _, err := nc.Subscribe(subj.Belief(), func(m *nats.Msg) { beliefs <- m }); err != nil {
				b.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
			mu, lv := make([]float32, d), make([]float32, d)
			lat := make([]time.Duration, 0, b.N)
			var (
				last int64
				post bus.Posterior // as module/stream.go: reused, posterior after posterior
				bel  bus.Belief
				wire []byte
			)
			post.Mu.SetMatrix(1, d, mu)
			post.LogVar.SetMatrix(1, d, lv)
			post.SetSender("probe")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				t := max(start.UnixNano(), last+1)
				last = t
				post.Time = t
				var err error
				if wire, err = bus.MarshalAppend(wire[:0], &post, bus.DefaultMaxBytes); err != nil {
					b.Fatal(err)
				}
				if err := nc.Publish(subj.ObsPost("probe"), wire); err != nil {
					b.Fatal(err)
				}
				for matched := false; !matched; {
					var m *nats.Msg
					select {
					case m = <-beliefs:
					case <-time.After(5 * time.Second):
						b.Fatal("no belief within 5 s")
					}
					if err := bus.UnmarshalReuse(m.Subject, m.Data, &bel, bus.Expect{Latent: d}); err != nil {
						b.Fatal(err)
					}
					for _, s := range bel.Sources {
						matched = matched || s.Module == "probe" && bel.Time-s.AgeNs == t
					}
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

func BenchmarkNATSRequestReply(b *testing.B) {
	for _, d := range benchLatents {
		b.Run(fmt.Sprintf("latent=%d", d), func(b *testing.B) {
			srv := benchServer(b)
			responder := benchConn(b, srv, "echo")
			if _, err := responder.Subscribe("bench.echo", func(m *nats.Msg) { m.Respond(m.Data) }); err != nil {
				b.Fatal(err)
			}
			if err := responder.Flush(); err != nil {
				b.Fatal(err)
			}
			nc := benchConn(b, srv, "requester")
			payload := benchPosterior(b, "probe", time.Now().UnixNano(), make([]float32, d), make([]float32, d))
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				binary.LittleEndian.PutUint64(payload, uint64(i))
				start := time.Now()
				m, err := nc.Request("bench.echo", payload, 5*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				if !bytes.Equal(m.Data, payload) {
					b.Fatal("a crossed echo")
				}
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

// BenchmarkStreamPath feeds one streamer, connected to a server that
// nobody else listens on, posteriors from several modules in turn: each is
// decoded, stored and fused with the others into a belief that is encoded
// and published. It reports the allocations of that path.
func BenchmarkStreamPath(b *testing.B) {
	for _, modules := range []int{1, 8} {
		for _, d := range benchLatents {
			b.Run(fmt.Sprintf("modules=%d/latent=%d", modules, d), func(b *testing.B) {
				srv := benchServer(b)
				ig, err := New(Config{Latent: d, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				ig.nc = benchConn(b, srv, "integrator")
				now := time.Unix(1e9, 0)
				s := newStreamer(ig, StreamConfig{Slop: time.Hour, Now: func() time.Time { return now }})
				// Each module's encoded posterior, with its time patched in
				// place for every message so that each is newer than the last.
				msgs := make([]*nats.Msg, modules)
				stamps := make([]int, modules)
				t0 := now.Add(-time.Minute).UnixNano()
				var stamp [8]byte
				binary.BigEndian.PutUint64(stamp[:], uint64(t0))
				for k := range msgs {
					name := fmt.Sprintf("m%d", k)
					mu, lv := make([]float32, d), make([]float32, d)
					for i := range mu {
						mu[i], lv[i] = float32(k+i), float32(i%3)-1
					}
					data := benchPosterior(b, name, t0, mu, lv)
					stamps[k] = bytes.Index(data, stamp[:])
					if stamps[k] < 0 {
						b.Fatal("the time is not in the encoded posterior")
					}
					msgs[k] = &nats.Msg{Subject: ig.subj.ObsPost(name), Data: data}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					m := msgs[i%modules]
					binary.BigEndian.PutUint64(m.Data[stamps[i%modules]:], uint64(t0+int64(i)+1))
					s.receive(m) // no subscription, so nothing is queued: it fuses and publishes
				}
				b.StopTimer()
				if st := s.snapshot(); st.Posteriors != uint64(b.N) || st.Beliefs != uint64(b.N) {
					b.Fatalf("%d posteriors, stats %+v", b.N, st)
				}
			})
		}
	}
}

// Streaming fusion sums the experts' precisions, worked out as each
// posterior arrives, rather than calling Fused.Fuse on every belief: its
// beliefs must be Fuse's to the bit, clamped log-variances included.
func TestStreamFusionIsFuse(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: "integrator"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	const d = 7
	ig, err := New(Config{Latent: d, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ig.nc = nc
	now := time.Unix(1e9, 0)
	s := newStreamer(ig, StreamConfig{Slop: time.Hour, Now: func() time.Time { return now }})
	experts := map[string]poe.Expert{}
	for k, name := range []string{"c", "a", "b-2", "b"} { // fused in name order: a, b, b-2, c
		mu, lv := make([]float32, d), make([]float32, d)
		for j := range mu {
			mu[j] = float32(k*d+j)/3 - 4
			lv[j] = []float32{-30, -poe.MaxLogVar, -1.5, 0, 0.7, poe.MaxLogVar, 30}[(j+k)%d]
		}
		s.receive(&nats.Msg{Subject: ig.subj.ObsPost(name), Data: benchPosterior(t, name, now.UnixNano()-int64(k), mu, lv)})
		experts[name] = poe.Expert{Mu: mu, LogVar: lv}
	}
	if st := s.snapshot(); st.Posteriors != 4 || st.Beliefs != 4 || len(st.Rejected) != 0 {
		t.Fatalf("stats %+v", st)
	}
	var f poe.Fused
	f.Fuse([]poe.Expert{experts["a"], experts["b"], experts["b-2"], experts["c"]}, 1, d)
	for j := range d {
		if s.mu32[j] != f.Mu[j] || s.lv32[j] != f.LogVar[j] {
			t.Fatalf("dimension %d: belief mean %v log-variance %v, Fuse gives %v and %v", j, s.mu32[j], s.lv32[j], f.Mu[j], f.LogVar[j])
		}
	}
	if got := []string{s.sources[0].Module, s.sources[1].Module, s.sources[2].Module, s.sources[3].Module}; !slices.Equal(got, []string{"a", "b", "b-2", "c"}) {
		t.Fatalf("sources %v", got)
	}
}
