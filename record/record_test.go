package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/serket-go/serket/bus"
)

// startJetStream starts an embedded server with JetStream in a temporary
// store and connects to it.
func startJetStream(t *testing.T) (*bus.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc := dial(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, nc, js
}

func dial(t *testing.T, srv *bus.Server) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: t.Name(), Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// recording runs Record in the background; wait returns its result.
type recording struct {
	started RecordStart
	cancel  context.CancelFunc
	done    chan struct{}
	sum     *RecordSummary
	err     error
}

func startRecord(t *testing.T, js jetstream.JetStream, cfg Config) *recording {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &recording{cancel: cancel, done: make(chan struct{})}
	started := make(chan RecordStart, 1)
	cfg.Started = func(s RecordStart) { started <- s }
	go func() {
		defer close(r.done)
		r.sum, r.err = Record(ctx, js, cfg)
	}()
	select {
	case r.started = <-started:
	case <-r.done:
		t.Fatalf("Record ended before it started: %v", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Record did not start within 10 s")
	}
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *recording) stop(t *testing.T) *RecordSummary {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Fatal("Record did not stop within 15 s of its context's end")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.sum
}

// waitStored waits until the stream has stored n messages in all: the
// server stores core messages asynchronously after it has received them.
func waitStored(t *testing.T, js jetstream.JetStream, stream string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := js.Stream(context.Background(), stream)
		if err != nil {
			t.Fatal(err)
		}
		got := s.CachedInfo().State.LastSeq
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("stream %s stored %d messages, want %d", stream, got, n)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
	}
}

// sent is one message the source published, and when.
type sent struct {
	subject string
	data    []byte
	header  nats.Header
	at      time.Time
}

// gaps between the source's messages: known, uneven, none shorter than
// 60 ms so that at speed 4 each is 15 ms or more.
var gaps = []time.Duration{60, 150, 80, 240, 60, 120, 90, 200, 70, 100, 60}

// publishSource publishes len(gaps)+1 messages round-robin on four
// subjects of the pipeline, sleeping the gaps between them (the gaps are
// the input, not synchronisation), half of them with headers.
func publishSource(t *testing.T, nc *nats.Conn, subj bus.Subjects) []sent {
	t.Helper()
	rel := []string{"obs.post.vision", "belief", "obs.post.audio", "latent"}
	var out []sent
	for i := 0; i <= len(gaps); i++ {
		if i > 0 {
			time.Sleep(gaps[i-1] * time.Millisecond)
		}
		m := &nats.Msg{Subject: subj.Relative(rel[i%len(rel)]), Data: bytes.Repeat([]byte{byte(i), 0xA5}, 10+40*i)}
		if i%2 == 1 {
			m.Header = nats.Header{"Serket-Test": {fmt.Sprint(i)}, "Multi": {"a", "b"}}
		}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		out = append(out, sent{m.Subject, m.Data, m.Header, time.Now()})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return out
}

// arrival is one message a subscriber received, and when.
type arrival struct {
	msg *nats.Msg
	at  time.Time
}

// replayInto subscribes to filter on a connection of its own, runs Replay,
// then publishes a sentinel on Replay's connection: messages of one
// connection arrive in order, so once the sentinel is in, every replayed
// message is too. It returns what arrived before the sentinel.
func replayInto(t *testing.T, srv *bus.Server, js jetstream.JetStream, filter, sentinel string, cfg ReplayConfig) ([]arrival, *ReplaySummary) {
	t.Helper()
	sub := dial(t, srv)
	var (
		mu   sync.Mutex
		got  []arrival
		done = make(chan struct{})
	)
	s, err := sub.Subscribe(filter, func(m *nats.Msg) {
		now := time.Now()
		if m.Subject == sentinel {
			close(done)
			return
		}
		mu.Lock()
		got = append(got, arrival{m, now})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	if err := sub.Flush(); err != nil { // the subscription is in place
		t.Fatal(err)
	}
	sum, err := Replay(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.Conn().Publish(sentinel, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sentinel did not arrive within 10 s")
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got), sum
}

// checkSame checks that every source message arrived once, in order, with
// its payload and headers, on its subject moved to pipeline (or its own).
func checkSame(t *testing.T, src []sent, got []arrival, pipeline string) {
	t.Helper()
	if len(got) != len(src) {
		t.Fatalf("%d messages arrived, want %d", len(got), len(src))
	}
	for i, s := range src {
		m := got[i].msg
		want := s.subject
		if pipeline != "" {
			want, _ = renameSubject(s.subject, pipeline)
		}
		if m.Subject != want {
			t.Errorf("message %d on %s, want %s", i, m.Subject, want)
		}
		if !bytes.Equal(m.Data, s.data) {
			t.Errorf("message %d: payload of %d bytes differs from the %d bytes sent", i, len(m.Data), len(s.data))
		}
		if len(m.Header) != len(s.header) || len(s.header) > 0 && !maps.EqualFunc(m.Header, s.header, slices.Equal) {
			t.Errorf("message %d: headers %v, want %v", i, m.Header, s.header)
		}
	}
}

// checkTiming checks the replayed gaps against the source's, scaled by
// 1/speed, and returns the smallest, median and largest ratio and the
// total's. Each gap must be at least 0.7 × its original, less a slack for
// a busy machine: a message the replay sent late shortens the next gap by
// as much, and the replay reports how late it was (lag); a replay that
// does not wait reports no lag. A message delivered late to the test's
// subscriber does the same, unreported: 10 ms of that is allowed (under
// -race on two busy cores, 5 ms failed one run in four). The median ratio
// and the total bound the pace whatever the slack.
func checkTiming(t *testing.T, src []sent, got []arrival, speed float64, lag time.Duration) (lo, med, hi, total float64) {
	t.Helper()
	slack := 10*time.Millisecond + lag
	var ratios []float64
	for i := 1; i < len(src); i++ {
		want := float64(src[i].at.Sub(src[i-1].at)) / speed
		gap := got[i].at.Sub(got[i-1].at)
		ratios = append(ratios, float64(gap)/want)
		if float64(gap) < 0.7*want-float64(slack) {
			t.Errorf("speed %g: gap %d is %v, want at least 0.7 × %v - %v", speed, i, gap, time.Duration(want), slack)
		}
	}
	slices.Sort(ratios)
	lo, med, hi = ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1]
	if med < 0.8 || med > 1.25 {
		t.Errorf("speed %g: median gap ratio %.3f, want 0.8 to 1.25 (ratios %.3f)", speed, med, ratios)
	}
	want := float64(src[len(src)-1].at.Sub(src[0].at)) / speed
	total = float64(got[len(got)-1].at.Sub(got[0].at)) / want
	if total < 0.7 || total > 2 {
		t.Errorf("speed %g: replay took %v, want 0.7 to 2 × %v", speed, got[len(got)-1].at.Sub(got[0].at), time.Duration(want))
	}
	return lo, med, hi, total
}

func TestRecordReplay(t *testing.T) {
	srv, nc, js := startJetStream(t)
	subj, _ := bus.NewSubjects("robot")
	rec := startRecord(t, js, Config{Pipeline: "robot"})
	if rec.started.Stream != "SERKET_ROBOT" || !slices.Equal(rec.started.Subjects, []string{"serket.v2.robot.>"}) || !rec.started.Created {
		t.Fatalf("started %+v, want a new stream SERKET_ROBOT on serket.v2.robot.>", rec.started)
	}
	// Another pipeline's message is not recorded.
	other, _ := bus.NewSubjects("other")
	nc.Publish(other.Belief(), []byte("not mine"))
	src := publishSource(t, nc, subj)
	waitStored(t, js, "SERKET_ROBOT", uint64(len(src)))
	sum := rec.stop(t)

	var nbytes uint64
	perSubject := map[string]uint64{}
	for _, s := range src {
		nbytes += uint64(len(s.data))
		perSubject[s.subject]++
	}
	if sum.Messages != uint64(len(src)) || sum.Stored != sum.Messages || sum.Bytes != nbytes || !maps.Equal(sum.PerSubject, perSubject) ||
		sum.FirstSeq != 1 || sum.LastSeq != uint64(len(src)) {
		t.Fatalf("summary %+v, want %d messages of %d bytes, %v", sum, len(src), nbytes, perSubject)
	}
	// The stream is parked: it no longer captures the pipeline.
	s, err := js.Stream(context.Background(), "SERKET_ROBOT")
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; !slices.Equal(c.Subjects, []string{ParkedSubject("SERKET_ROBOT")}) || c.Storage != jetstream.FileStorage {
		t.Fatalf("after recording, the stream captures %v (storage %v), want only %s on file", c.Subjects, c.Storage, ParkedSubject("SERKET_ROBOT"))
	}

	for _, speed := range []float64{1, 4} {
		got, rs := replayInto(t, srv, js, "serket.v2.robot.>", "serket.v2.robot.zz.end", ReplayConfig{Stream: "SERKET_ROBOT", Speed: speed})
		checkSame(t, src, got, "")
		lo, med, hi, total := checkTiming(t, src, got, speed, rs.MaxLag)
		t.Logf("speed %g: gap ratios %.3f..%.3f (median %.3f), total %.3f; summary: %d msgs in %v (span %v), achieved %.3fx, max lag %v",
			speed, lo, hi, med, total, rs.Messages, rs.Elapsed, rs.Span, rs.Speed, rs.MaxLag)
		if rs.Messages != uint64(len(src)) || rs.Bytes != nbytes || rs.Speed < 0.7*speed || rs.Speed > 1.3*speed {
			t.Errorf("speed %g: summary %+v", speed, rs)
		}
	}

	// Into a fresh pipeline: same relative subjects, nothing on the live one.
	got, rs := replayInto(t, srv, js, "serket.v2.>", "serket.v2.fresh.zz.end", ReplayConfig{Stream: "SERKET_ROBOT", Speed: 4, PipelineAs: "fresh"})
	checkSame(t, src, got, "fresh")
	lo, med, hi, total := checkTiming(t, src, got, 4, rs.MaxLag)
	t.Logf("speed 4 into pipeline fresh: gap ratios %.3f..%.3f (median %.3f), total %.3f, max lag %v", lo, hi, med, total, rs.MaxLag)

	// As fast as possible: far less than the original.
	got, rs = replayInto(t, srv, js, "serket.v2.robot.>", "serket.v2.robot.zz.end", ReplayConfig{Stream: "SERKET_ROBOT", Speed: 0})
	checkSame(t, src, got, "")
	orig := src[len(src)-1].at.Sub(src[0].at)
	took := got[len(got)-1].at.Sub(got[0].at)
	t.Logf("speed 0: %v for %v of recording (%.1fx)", took, orig, rs.Speed)
	if took > orig/4 {
		t.Errorf("speed 0 took %v for %v of recording", took, orig)
	}

	// Bounds: by sequence, by time, by offset; only some subjects.
	ts := func(seq uint64) time.Time {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		return m.Time
	}
	for _, tt := range []struct {
		name     string
		cfg      ReplayConfig
		from, to int // source indices, inclusive
	}{
		{"seq 3 to 7", ReplayConfig{From: AtSeq(3), To: AtSeq(7)}, 2, 6},
		{"time of 4 to time of 9", ReplayConfig{From: AtTime(ts(4)), To: AtTime(ts(9))}, 3, 8},
		{"offset of 5 on", ReplayConfig{From: AtOffset(ts(5).Sub(ts(1)))}, 4, len(src) - 1},
		{"to offset of 2", ReplayConfig{To: AtOffset(ts(2).Sub(ts(1)))}, 0, 1},
	} {
		tt.cfg.Stream = "SERKET_ROBOT"
		got, rs := replayInto(t, srv, js, "serket.v2.robot.>", "serket.v2.robot.zz.end", tt.cfg)
		checkSame(t, src[tt.from:tt.to+1], got, "")
		if rs.FirstSeq != uint64(tt.from+1) || rs.LastSeq != uint64(tt.to+1) {
			t.Errorf("%s: replayed seq %d to %d, want %d to %d", tt.name, rs.FirstSeq, rs.LastSeq, tt.from+1, tt.to+1)
		}
	}
	var belief []sent
	for _, s := range src {
		if s.subject == subj.Belief() {
			belief = append(belief, s)
		}
	}
	got, _ = replayInto(t, srv, js, "serket.v2.robot.>", "serket.v2.robot.zz.end", ReplayConfig{Stream: "SERKET_ROBOT", Subjects: []string{"belief"}})
	checkSame(t, belief, got, "")

	// A second recording into the same stream appends; its sequences
	// replay it alone.
	rec = startRecord(t, js, Config{Pipeline: "robot"})
	if rec.started.Created || rec.started.Existing != uint64(len(src)) {
		t.Fatalf("second recording started %+v, want the stream reused with %d messages", rec.started, len(src))
	}
	nc.Publish(subj.Latent(), []byte("second"))
	nc.Flush()
	waitStored(t, js, "SERKET_ROBOT", uint64(len(src))+1)
	sum = rec.stop(t)
	if sum.Messages != 1 || sum.FirstSeq != uint64(len(src))+1 || sum.StreamMessages != uint64(len(src))+1 {
		t.Fatalf("second recording %+v", sum)
	}
	got, _ = replayInto(t, srv, js, "serket.v2.robot.>", "serket.v2.robot.zz.end", ReplayConfig{Stream: "SERKET_ROBOT", From: AtSeq(sum.FirstSeq)})
	if len(got) != 1 || string(got[0].msg.Data) != "second" {
		t.Fatalf("replaying the second recording: %d messages", len(got))
	}
}

// TestRecordSubjectFilter: narrowed to obs.>, a recording holds only those.
func TestRecordSubjectFilter(t *testing.T) {
	_, nc, js := startJetStream(t)
	subj, _ := bus.NewSubjects("")
	rec := startRecord(t, js, Config{Subjects: []string{"obs.>"}, Stream: "OBS"})
	if !slices.Equal(rec.started.Subjects, []string{"serket.v2.default.obs.>"}) {
		t.Fatalf("recording %v, want serket.v2.default.obs.>", rec.started.Subjects)
	}
	for _, s := range []string{subj.Belief(), subj.ObsPost("vision"), subj.Latent(), subj.ObsPost("audio"), subj.Step(), subj.ObsPost("vision")} {
		nc.Publish(s, []byte(s))
	}
	nc.Flush()
	// The last message is an obs one: once it is stored, so is every
	// earlier one the stream was going to store.
	waitStored(t, js, "OBS", 3)
	sum := rec.stop(t)
	want := map[string]uint64{subj.ObsPost("vision"): 2, subj.ObsPost("audio"): 1}
	if sum.Messages != 3 || !maps.Equal(sum.PerSubject, want) {
		t.Fatalf("captured %d messages %v, want 3: %v", sum.Messages, sum.PerSubject, want)
	}
}

// TestRecordDuration: a duration ends the recording by itself.
func TestRecordDuration(t *testing.T) {
	_, _, js := startJetStream(t)
	start := time.Now()
	sum, err := Record(context.Background(), js, Config{Duration: 100 * time.Millisecond, MaxBytes: 1 << 20, MaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("a 100 ms recording took %v", took)
	}
	if sum.Messages != 0 || sum.Stream != "SERKET_DEFAULT" || sum.FirstSeq != 0 {
		t.Errorf("summary %+v, want an empty recording into SERKET_DEFAULT", sum)
	}
	s, _ := js.Stream(context.Background(), "SERKET_DEFAULT")
	if c := s.CachedInfo().Config; c.MaxBytes != 1<<20 || c.MaxAge != 0 || c.Discard != jetstream.DiscardNew {
		t.Errorf("stream limits: max bytes %d, max age %v, discard %v", c.MaxBytes, c.MaxAge, c.Discard)
	}
}

// TestRecordLongerThanItsEnding: a recording that lasts longer than the
// time its ending may take still parks its stream (the ending's time
// counts from the end, not from the start).
func TestRecordLongerThanItsEnding(t *testing.T) {
	defer func(d time.Duration) { endTimeout = d }(endTimeout)
	endTimeout = 300 * time.Millisecond
	_, _, js := startJetStream(t)
	if _, err := Record(context.Background(), js, Config{Duration: 500 * time.Millisecond, MaxBytes: 1 << 20, MaxAge: -1}); err != nil {
		t.Fatalf("a recording of 500 ms with 300 ms to end: %v", err)
	}
	s, err := js.Stream(context.Background(), "SERKET_DEFAULT")
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.Metadata[MetaState] != "parked" || !slices.Equal(c.Subjects, []string{ParkedSubject("SERKET_DEFAULT")}) {
		t.Fatalf("after the recording the stream is %q on %v, want parked", c.Metadata[MetaState], c.Subjects)
	}
}

func TestRecordRefusals(t *testing.T) {
	_, _, js := startJetStream(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FOREIGN", Subjects: []string{"serket.v2.x.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Record(ctx, js, Config{Stream: "FOREIGN", Pipeline: "x"}); err == nil || !strings.Contains(err.Error(), "FOREIGN") || !strings.Contains(err.Error(), "not made by serket record") {
		t.Errorf("recording into a foreign stream: %v", err)
	}
	// The foreign stream captures serket.v2.x.>: replaying it there would
	// record the replay; into another pipeline it is fine.
	if _, err := Replay(ctx, js, ReplayConfig{Stream: "FOREIGN", Speed: 1}); err == nil || !strings.Contains(err.Error(), "still captures serket.v2.x.>") {
		t.Errorf("replaying a capturing stream onto its subjects: %v", err)
	}
	if _, err := Replay(ctx, js, ReplayConfig{Stream: "FOREIGN", Speed: 1, PipelineAs: "y"}); err != nil {
		t.Errorf("replaying a capturing stream into another pipeline: %v", err)
	}
	if _, err := Replay(ctx, js, ReplayConfig{Stream: "MISSING"}); err == nil || !strings.Contains(err.Error(), "no stream MISSING") {
		t.Errorf("replaying a missing stream: %v", err)
	}
	if _, err := Replay(ctx, js, ReplayConfig{Stream: "FOREIGN", Speed: -1}); err == nil || !strings.Contains(err.Error(), "speed") {
		t.Errorf("a negative speed: %v", err)
	}
	if _, err := Record(ctx, js, Config{Subjects: []string{"obs..post"}}); err == nil || !strings.Contains(err.Error(), `"obs..post"`) {
		t.Errorf("a bad subject: %v", err)
	}
	if _, err := Record(ctx, js, Config{Stream: "OVER", Pipeline: "x"}); err == nil || !strings.Contains(err.Error(), "OVER") {
		t.Errorf("recording subjects another stream captures: %v", err)
	}
}

func TestRecordNoJetStream(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	js, err := jetstream.New(dial(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Record(ctx, js, Config{})
	if !errors.Is(err, ErrNoJetStream) || !strings.Contains(err.Error(), "serket up --jetstream") || !strings.Contains(err.Error(), srv.ClientURL()) {
		t.Errorf("Record without JetStream: %v", err)
	}
	_, err = Replay(ctx, js, ReplayConfig{Stream: "SERKET_DEFAULT"})
	if !errors.Is(err, ErrNoJetStream) {
		t.Errorf("Replay without JetStream: %v", err)
	}
}

func TestParseBound(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "none",
		"120":                  "seq 120",
		"90s":                  "+1m30s",
		"+2m":                  "+2m0s",
		"2026-05-01T14:03:00Z": "2026-05-01T14:03:00Z",
	} {
		b, err := ParseBound(in)
		if err != nil || b.String() != want {
			t.Errorf("ParseBound(%q) = %v, %v; want %s", in, b, err, want)
		}
	}
	for _, in := range []string{"0", "-5s", "yesterday"} {
		if _, err := ParseBound(in); err == nil {
			t.Errorf("ParseBound(%q) accepted", in)
		}
	}
	if StreamName("my-robot2") != "SERKET_MY_ROBOT2" || StreamName("") != "SERKET_DEFAULT" {
		t.Errorf("StreamName: %s, %s", StreamName("my-robot2"), StreamName(""))
	}
}
