package integrator_test

import (
	"bytes"
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
)

// clock is a settable clock for the integrator's streaming fusion.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type streamRig struct {
	t       *testing.T
	ig      *integrator.Integrator
	pub     *nats.Conn
	subj    bus.Subjects
	beliefs chan *bus.Belief
	clk     *clock
	url     string // the server's
}

func startStream(t *testing.T, cfg integrator.StreamConfig) *streamRig {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conn := func(name string) *nats.Conn {
		nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	r := &streamRig{t: t, pub: conn("sensors"), beliefs: make(chan *bus.Belief, 100000), clk: &clock{t: time.Unix(1000, 0)}}
	r.subj, _ = bus.NewSubjects("")
	r.url = srv.ClientURL()
	sub, err := conn("listener").Subscribe(r.subj.Belief(), func(m *nats.Msg) {
		var b bus.Belief
		if err := bus.UnmarshalFrom(m.Subject, m.Data, &b, bus.Expect{Latent: latent}); err != nil {
			t.Errorf("belief: %v", err)
			return
		}
		r.beliefs <- &b
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	cfg.Now = r.clk.Now
	ready := make(chan *integrator.Integrator, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{Conn: conn("integrator"), Latent: latent, Stream: cfg, Ready: func(ig *integrator.Integrator) { ready <- ig }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	r.ig = <-ready
	return r
}

// post publishes module's posterior (mean mu in every dimension, log-variance
// lv) stamped at t, as sender.
func (r *streamRig) post(module, sender string, mu, lv float32, t time.Time) {
	r.t.Helper()
	m, l := make([]float32, latent), make([]float32, latent)
	for i := range m {
		m[i], l[i] = mu, lv
	}
	p := &bus.Posterior{Time: t.UnixNano(), Mu: bus.Matrix(1, latent, m), LogVar: bus.Matrix(1, latent, l)}
	p.SetSender(sender)
	b, err := bus.Marshal(p)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.pub.Publish(r.subj.ObsPost(module), b); err != nil {
		r.t.Fatal(err)
	}
}

// postNaN publishes a posterior whose mean is NaN (which Marshal itself
// refuses to write, so the bytes are patched), as a broken module would.
func (r *streamRig) postNaN(module string, t time.Time) {
	r.t.Helper()
	m := make([]float32, latent)
	for i := range m {
		m[i] = 7.25 // 0x40e80000: a pattern to find
	}
	p := &bus.Posterior{Time: t.UnixNano(), Mu: bus.Matrix(1, latent, m), LogVar: bus.Matrix(1, latent, make([]float32, latent))}
	p.SetSender(module)
	b, err := bus.Marshal(p)
	if err != nil {
		r.t.Fatal(err)
	}
	i := bytes.Index(b, []byte{0x00, 0x00, 0xe8, 0x40})
	if i < 0 {
		r.t.Fatal("no 7.25 in the encoded posterior")
	}
	copy(b[i:], []byte{0x00, 0x00, 0xc0, 0x7f}) // NaN
	r.pub.Publish(r.subj.ObsPost(module), b)
}

func (r *streamRig) next() *bus.Belief {
	r.t.Helper()
	r.pub.Flush()
	select {
	case b := <-r.beliefs:
		return b
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no belief within 10 s; stats %+v", r.ig.StreamStats())
		return nil
	}
}

// waitStats polls the integrator's counters until cond holds.
func (r *streamRig) waitStats(what string, cond func(integrator.StreamStats) bool) integrator.StreamStats {
	r.t.Helper()
	r.pub.Flush()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := r.ig.StreamStats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: stats %+v", what, s)
		}
		time.Sleep(5 * time.Millisecond) // polling another goroutine's counters
	}
}

func sources(b *bus.Belief) []string {
	var out []string
	for _, s := range b.Sources {
		out = append(out, s.Module)
	}
	return out
}

// The belief is the product of the latest posterior of each module with
// the prior, naming the modules and their ages.
func TestStreamFusesLatestPosteriors(t *testing.T) {
	r := startStream(t, integrator.StreamConfig{Slop: time.Second})
	t0 := r.clk.Now()
	r.post("a", "a", 2, 0, t0) // precision 1, mean 2; with the prior: mean 1, var 1/2
	b := r.next()
	if got := sources(b); len(got) != 1 || got[0] != "a" || b.Sources[0].AgeNs != 0 {
		t.Fatalf("first belief from %v (%+v)", got, b.Sources)
	}
	if math.Abs(float64(b.Mu.Data[0])-1) > 1e-6 || math.Abs(float64(b.LogVar.Data[0])-math.Log(0.5)) > 1e-6 {
		t.Fatalf("belief mean %v log-variance %v, want 1 and ln ½", b.Mu.Data[0], b.LogVar.Data[0])
	}
	r.clk.Set(t0.Add(300 * time.Millisecond))
	r.post("b", "b", -1, float32(math.Log(0.5)), t0.Add(300*time.Millisecond)) // precision 2, mean −1
	b = r.next()
	// Precision 1 + 1 + 2 = 4; mean (2·1 + (−1)·2)/4 = 0.
	if got := sources(b); len(got) != 2 || b.Sources[0].AgeNs != int64(300*time.Millisecond) || b.Sources[1].AgeNs != 0 {
		t.Fatalf("second belief from %+v", b.Sources)
	}
	if math.Abs(float64(b.Mu.Data[3])) > 1e-6 || math.Abs(float64(b.LogVar.Data[3])-math.Log(0.25)) > 1e-6 || b.Seq != 2 {
		t.Fatalf("belief %d: mean %v log-variance %v, want 0 and ln ¼", b.Seq, b.Mu.Data[3], b.LogVar.Data[3])
	}
	// a is now older than the slop: the next belief leaves it out.
	r.clk.Set(t0.Add(1500 * time.Millisecond))
	r.post("b", "b", -1, float32(math.Log(0.5)), t0.Add(1400*time.Millisecond))
	b = r.next()
	if got := sources(b); len(got) != 1 || got[0] != "b" {
		t.Fatalf("after a's posterior expired, the belief is from %v", got)
	}
	if s := r.ig.StreamStats(); s.Expired["a"] != 1 || s.Posteriors != 3 || s.Beliefs != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// Out-of-order, future, malformed, NaN and impersonating posteriors are
// each counted against their sender and never stall fusion.
func TestStreamBadInput(t *testing.T) {
	r := startStream(t, integrator.StreamConfig{Slop: time.Hour})
	t0 := r.clk.Now()
	r.post("a", "a", 1, 0, t0)
	r.next()
	r.post("a", "a", 5, 0, t0.Add(-time.Millisecond)) // older than a's latest
	r.post("a", "a", 5, 0, t0.Add(time.Minute))       // from the future
	r.post("a", "b", 5, 0, t0.Add(time.Millisecond))  // b on a's subject
	r.postNaN("a", t0.Add(time.Millisecond))
	r.pub.Publish(r.subj.ObsPost("a"), []byte("not msgpack"))
	s := r.waitStats("five bad posteriors", func(s integrator.StreamStats) bool {
		return s.OutOfOrder["a"]+s.Future["a"]+s.Rejected["a"] == 5
	})
	if s.OutOfOrder["a"] != 1 || s.Future["a"] != 1 || s.Rejected["a"] != 3 || s.Posteriors != 1 {
		t.Fatalf("stats %+v: want 1 out of order, 1 future, 3 rejected, 1 accepted", s)
	}
	// Fusion goes on.
	r.post("c", "c", 3, 0, t0.Add(time.Millisecond))
	if b := r.next(); len(b.Sources) != 2 || b.Mu.Data[0] != 4.0/3 {
		t.Fatalf("belief after bad input: %+v mean %v, want a and c, mean 4/3", b.Sources, b.Mu.Data[0])
	}
}

// A module that floods its subject never grows a queue: the latest
// posterior wins and the last belief reflects it.
func TestStreamFloodLatestWins(t *testing.T) {
	r := startStream(t, integrator.StreamConfig{Slop: time.Hour})
	t0 := r.clk.Now()
	const n = 20000
	for i := 1; i <= n; i++ {
		r.post("a", "a", float32(i), 0, t0.Add(time.Duration(i)))
	}
	want := float32(n) / 2 // the last posterior fused with the prior
	for {
		b := r.next()
		if b.Mu.Data[0] == want {
			break
		}
	}
	s := r.ig.StreamStats()
	t.Logf("%d posteriors published, %d accepted, %d beliefs", n, s.Posteriors, s.Beliefs)
	if s.Posteriors != n || s.Beliefs > s.Posteriors || s.Beliefs == 0 {
		t.Fatalf("stats %+v", s)
	}
}
