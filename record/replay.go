package record

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/serket-go/serket/bus"
)

// Bound is one end of a replay, inclusive: a stream sequence, a time, or
// an offset from the stream's first message. The zero Bound is no bound.
type Bound struct {
	kind boundKind
	seq  uint64
	t    time.Time
	off  time.Duration
}

type boundKind int

const (
	noBound boundKind = iota
	seqBound
	timeBound
	offsetBound
)

// AtSeq is the bound at stream sequence seq.
func AtSeq(seq uint64) Bound { return Bound{kind: seqBound, seq: seq} }

// AtTime is the bound at time t (the messages' stored timestamps).
func AtTime(t time.Time) Bound { return Bound{kind: timeBound, t: t} }

// AtOffset is the bound d after the stream's first message.
func AtOffset(d time.Duration) Bound { return Bound{kind: offsetBound, off: d} }

// IsZero says whether b is no bound.
func (b Bound) IsZero() bool { return b.kind == noBound }

func (b Bound) String() string {
	switch b.kind {
	case seqBound:
		return "seq " + strconv.FormatUint(b.seq, 10)
	case timeBound:
		return b.t.Format(time.RFC3339Nano)
	case offsetBound:
		return "+" + b.off.String()
	}
	return "none"
}

// ParseBound reads a bound as a person types it: a stream sequence
// ("120"), an offset from the stream's first message ("1m30s"), or a time
// ("2026-05-01T14:03:00Z", "2026-05-01 14:03:00" in local time). "" is no
// bound.
func ParseBound(s string) (Bound, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Bound{}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			return Bound{}, fmt.Errorf("bound %q: stream sequences start at 1", s)
		}
		return AtSeq(n), nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "+")); err == nil {
		if d < 0 {
			return Bound{}, fmt.Errorf("bound %q: a negative offset", s)
		}
		return AtOffset(d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return AtTime(t), nil
		}
	}
	return Bound{}, fmt.Errorf("bound %q: want a stream sequence (120), an offset from the first message (90s) or a time (2006-01-02T15:04:05Z)", s)
}

// ReplayConfig configures Replay.
type ReplayConfig struct {
	// Stream is the stream to play back.
	Stream string
	// Speed scales time: 1 plays at the original pace, 4 four times as
	// fast, 0.5 at half speed; 0 plays as fast as possible.
	Speed float64
	// PipelineAs, if set, republishes each serket.v2.<pipeline>.<rest>
	// message to serket.v2.<PipelineAs>.<rest>, so that a replay feeds a
	// fresh pipeline without colliding with the live one. A message on a
	// subject of another form is an error.
	PipelineAs string
	// Subjects, if set, replay only the messages on these subjects
	// (filters, absolute or relative to the recorded pipeline).
	Subjects []string
	// From and To bound the replay, both inclusive; zero Bounds mean the
	// stream's first and last message. The stream's last message is taken
	// when Replay starts: messages stored afterwards are not replayed.
	From, To Bound
	// Progress, if set, is called about every ProgressEvery (default 1 s)
	// while replaying, from Replay's goroutine: it must return quickly.
	Progress      func(ReplayProgress)
	ProgressEvery time.Duration
}

// ReplayProgress is a replay so far.
type ReplayProgress struct {
	Messages uint64
	Total    uint64        // at most this many messages in all
	Position time.Duration // the last message's time from the first one's, in the recording
	Span     time.Duration // the recording's span to replay, about
	Elapsed  time.Duration // wall time since the first message went out
}

// ReplaySummary is what a replay published.
type ReplaySummary struct {
	Stream            string
	Messages          uint64
	Bytes             uint64 // payload bytes
	FirstSeq, LastSeq uint64
	PerSubject        map[string]uint64 // by subject published to
	// Span is the recording's time from the first to the last message
	// replayed; Elapsed the wall time between publishing them; Speed is
	// Span/Elapsed (0 when Elapsed is 0).
	Span, Elapsed time.Duration
	Speed         float64
	// MaxLag is the longest a message went out after its scheduled time.
	MaxLag time.Duration
	// Interrupted says ctx ended the replay early.
	Interrupted bool
}

// Replay plays a stream back (see the package documentation). It returns
// when every message within the bounds has been published and flushed, or
// when ctx is done, with the summary so far and ctx's error. It refuses to
// replay onto subjects the stream still captures (a recording in
// progress), which would record the replay again.
func Replay(ctx context.Context, js jetstream.JetStream, cfg ReplayConfig) (*ReplaySummary, error) {
	if err := checkReplayConfig(cfg); err != nil {
		return nil, err
	}
	if err := checkJetStream(ctx, js); err != nil {
		return nil, err
	}
	info, err := replayStreamInfo(ctx, js, cfg.Stream)
	if err != nil {
		return nil, err
	}
	st := info.State
	sum := &ReplaySummary{Stream: cfg.Stream, PerSubject: map[string]uint64{}}
	filters, err := replayFilters(info, cfg.Subjects)
	if err != nil {
		return nil, err
	}
	if err := checkNotCaptured(cfg.Stream, info, filters, cfg.PipelineAs); err != nil {
		return nil, err
	}
	if st.Msgs == 0 {
		return sum, nil
	}
	w := newWindow(cfg.From, cfg.To, st, filters)
	if w.empty(st) {
		return sum, nil
	}
	it, total, err := openReplay(ctx, js, cfg.Stream, w.occ)
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	if total == 0 {
		return sum, nil
	}
	r := &replayer{cfg: cfg, nc: js.Conn(), window: w, lastTime: st.LastTime, total: total, sum: sum}
	return r.run(ctx, it)
}

// checkReplayConfig checks what Replay can check before asking the server.
func checkReplayConfig(cfg ReplayConfig) error {
	if err := checkStreamName(cfg.Stream); err != nil {
		return err
	}
	if cfg.Speed < 0 || math.IsNaN(cfg.Speed) || math.IsInf(cfg.Speed, 0) {
		return fmt.Errorf("replay: speed %v: want 0 (as fast as possible) or more", cfg.Speed)
	}
	if cfg.PipelineAs != "" && !bus.ValidName(cfg.PipelineAs) {
		return fmt.Errorf("replay: pipeline %q: want lower-case letters, digits and '-', starting with a letter", cfg.PipelineAs)
	}
	return nil
}

// replayStreamInfo looks the stream up, telling a person who has none how
// to make one.
func replayStreamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("replay: no stream %s on %s (record one with serket record)", name, js.Conn().ConnectedUrlRedacted())
	}
	if err != nil {
		return nil, fmt.Errorf("replay: stream %s: %w", name, err)
	}
	return stream.CachedInfo(), nil
}

// replayFilters makes the subjects a person gave absolute, relative to the
// recorded pipeline, and checks them; none means every message.
func replayFilters(info *jetstream.StreamInfo, given []string) ([]string, error) {
	subj, err := bus.NewSubjects(info.Config.Metadata[MetaPipeline])
	if err != nil {
		subj, _ = bus.NewSubjects("")
	}
	var filters []string
	for _, s := range given {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		abs := subj.Relative(s)
		if err := checkSubject(abs); err != nil {
			return nil, fmt.Errorf("replay: subject %q: %w", s, err)
		}
		filters = append(filters, abs)
	}
	return filters, nil
}

// checkNotCaptured is the guard against replaying into the stream: it
// fails if a subject the replay would publish to (under filters, renamed
// to pipelineAs) is one the stream still captures.
func checkNotCaptured(name string, info *jetstream.StreamInfo, filters []string, pipelineAs string) error {
	targets := filters
	if len(targets) == 0 {
		if m := info.Config.Metadata[MetaSubjects]; m != "" {
			targets = strings.Split(m, ",")
		} else {
			targets = info.Config.Subjects
		}
	}
	for _, t := range targets {
		if pipelineAs != "" {
			t = renamePattern(t, pipelineAs)
		}
		for _, c := range info.Config.Subjects {
			if overlap(t, c) {
				return fmt.Errorf("replay: stream %s still captures %s, so replaying onto %s would record the replay into it (is serket record still running?): stop the recording, or replay with --pipeline-as", name, c, t)
			}
		}
	}
	return nil
}

// window is the part of a stream a replay covers: the consumer starts at
// its beginning, and the replay stops after endSeq or endTime.
type window struct {
	occ     jetstream.OrderedConsumerConfig
	endSeq  uint64
	endTime time.Time // zero: no bound by time
}

// newWindow places the bounds in a stream whose state is st.
func newWindow(from, to Bound, st jetstream.StreamState, filters []string) window {
	w := window{
		occ:    jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy},
		endSeq: st.LastSeq,
	}
	switch from.kind {
	case seqBound:
		w.occ.DeliverPolicy, w.occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from.seq
	case timeBound, offsetBound:
		t := from.t
		if from.kind == offsetBound {
			t = st.FirstTime.Add(from.off)
		}
		w.occ.DeliverPolicy, w.occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	switch to.kind {
	case seqBound:
		w.endSeq = min(w.endSeq, to.seq)
	case timeBound:
		w.endTime = to.t
	case offsetBound:
		w.endTime = st.FirstTime.Add(to.off)
	}
	return w
}

// empty says whether w ends before it starts or lies outside the stream.
func (w window) empty(st jetstream.StreamState) bool {
	start := w.occ.OptStartTime
	return w.occ.OptStartSeq > w.endSeq || start != nil && start.After(st.LastTime) ||
		!w.endTime.IsZero() && (w.endTime.Before(st.FirstTime) || start != nil && w.endTime.Before(*start))
}

// openReplay starts an ordered consumer on the stream and says how many
// messages it has to deliver, at most.
func openReplay(ctx context.Context, js jetstream.JetStream, name string, occ jetstream.OrderedConsumerConfig) (jetstream.MessagesContext, uint64, error) {
	cons, err := js.OrderedConsumer(ctx, name, occ)
	if err != nil {
		return nil, 0, fmt.Errorf("replay: consumer on stream %s: %w", name, err)
	}
	// Bound the read-ahead by bytes rather than by 500 messages: a
	// recording of images must not be buffered 500 at a time. It must hold
	// the largest message the server allows.
	it, err := cons.Messages(jetstream.PullMaxBytes(max(32<<20, 2*int(js.Conn().MaxPayload()))))
	if err != nil {
		return nil, 0, fmt.Errorf("replay: consumer on stream %s: %w", name, err)
	}
	total := uint64(0)
	if ci := cons.CachedInfo(); ci != nil {
		total = ci.NumPending
	}
	return it, total, nil
}

// replayer is a replay under way: what it publishes to, the clock it
// keeps, and the summary so far.
type replayer struct {
	cfg ReplayConfig
	nc  *nats.Conn
	window
	lastTime time.Time // the stream's last message's, when Replay started
	total    uint64    // messages to replay, at most

	t0, start, lastPub time.Time     // t0: the first message's stored time; start: when it went out
	span               time.Duration // the recording's span to replay, about
	timer              *time.Timer
	tickC              <-chan time.Time // progress ticks; nil without cfg.Progress
	sum                *ReplaySummary
}

// run publishes what it reads from it, each message at its time, until
// the window ends or ctx is done.
func (r *replayer) run(ctx context.Context, it jetstream.MessagesContext) (*ReplaySummary, error) {
	every := r.cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	if r.cfg.Progress != nil {
		tick := time.NewTicker(every)
		defer tick.Stop()
		r.tickC = tick.C
	}
	r.timer = time.NewTimer(time.Hour)
	r.timer.Stop()
	defer r.timer.Stop()

	name := r.cfg.Stream
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return r.finish(ctx, ctx.Err())
			}
			return r.finish(ctx, fmt.Errorf("replay: read stream %s: %w", name, err))
		}
		meta, err := m.Metadata()
		if err != nil {
			return r.finish(ctx, fmt.Errorf("replay: read stream %s: %w", name, err))
		}
		seq := meta.Sequence.Stream
		if seq > r.endSeq || !r.endTime.IsZero() && meta.Timestamp.After(r.endTime) {
			break
		}
		if r.start.IsZero() {
			r.begin(seq, meta.Timestamp)
		}
		offset := max(meta.Timestamp.Sub(r.t0), 0)
		if err := r.pace(ctx, offset); err != nil {
			return r.finish(ctx, err)
		}
		if err := r.publish(m, seq, offset); err != nil {
			return r.finish(ctx, err)
		}
		select {
		case <-r.tickC:
			r.progress()
		default:
		}
		if seq >= r.endSeq || meta.NumPending == 0 {
			break
		}
	}
	return r.finish(ctx, nil)
}

// begin starts the clock at the first message replayed, stored at t0.
func (r *replayer) begin(seq uint64, t0 time.Time) {
	r.t0, r.start = t0, time.Now()
	r.sum.FirstSeq = seq
	r.total = min(r.total, r.endSeq-seq+1)
	end := r.lastTime
	if !r.endTime.IsZero() && r.endTime.Before(end) {
		end = r.endTime
	}
	r.span = max(end.Sub(r.t0), 0)
}

// pace waits until a message stored offset after the first one is due,
// offset/Speed after the start, reporting progress meanwhile, and notes
// how late it is.
func (r *replayer) pace(ctx context.Context, offset time.Duration) error {
	if r.cfg.Speed <= 0 {
		return nil // as fast as possible
	}
	due := r.start.Add(time.Duration(float64(offset) / r.cfg.Speed))
	for wait := time.Until(due); wait > 0; wait = time.Until(due) {
		r.timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.timer.C:
		case <-r.tickC:
			r.progress()
		}
	}
	r.timer.Stop()
	r.sum.MaxLag = max(r.sum.MaxLag, time.Since(due))
	return nil
}

// publish sends m, with its headers, to its subject or the same subject
// under cfg.PipelineAs, and counts it.
func (r *replayer) publish(m jetstream.Msg, seq uint64, offset time.Duration) error {
	out := &nats.Msg{Subject: m.Subject(), Data: m.Data()}
	if r.cfg.PipelineAs != "" {
		var err error
		if out.Subject, err = renameSubject(m.Subject(), r.cfg.PipelineAs); err != nil {
			return fmt.Errorf("replay: stream %s seq %d: %w", r.cfg.Stream, seq, err)
		}
	}
	if h := m.Headers(); len(h) > 0 {
		out.Header = h
	}
	if err := r.nc.PublishMsg(out); err != nil {
		return fmt.Errorf("replay: publish stream %s seq %d to %s: %w", r.cfg.Stream, seq, out.Subject, err)
	}
	r.lastPub = time.Now()
	r.sum.Messages++
	r.sum.Bytes += uint64(len(out.Data))
	r.sum.PerSubject[out.Subject]++
	r.sum.LastSeq = seq
	r.sum.Span = offset
	return nil
}

// progress reports the replay so far to cfg.Progress.
func (r *replayer) progress() {
	r.cfg.Progress(ReplayProgress{Messages: r.sum.Messages, Total: r.total, Position: r.sum.Span, Span: r.span, Elapsed: time.Since(r.start)})
}

// finish flushes what was published and completes the summary.
func (r *replayer) finish(ctx context.Context, err error) (*ReplaySummary, error) {
	sum := r.sum
	if !r.start.IsZero() {
		sum.Elapsed = r.lastPub.Sub(r.start)
		if sum.Elapsed > 0 {
			sum.Speed = sum.Span.Seconds() / sum.Elapsed.Seconds()
		}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := r.nc.FlushWithContext(fctx); ferr != nil && err == nil {
		err = fmt.Errorf("replay: flush to %s: %w", r.nc.ConnectedUrlRedacted(), ferr)
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		sum.Interrupted = true
	}
	return sum, err
}

// renameSubject moves serket.v2.<pipeline>.<rest> to another pipeline.
func renameSubject(s, pipeline string) (string, error) {
	toks := strings.SplitN(s, ".", 4)
	if len(toks) != 4 || toks[0] != "serket" || toks[1] != fmt.Sprintf("v%d", bus.WireVersion) {
		return "", fmt.Errorf("cannot move subject %s to pipeline %s: not a serket.v%d.<pipeline>.<subject> subject", s, pipeline, bus.WireVersion)
	}
	return strings.Join([]string{toks[0], toks[1], pipeline, toks[3]}, "."), nil
}

// renamePattern is renameSubject for subject filters, as far as it goes.
func renamePattern(p, pipeline string) string {
	v := fmt.Sprintf("v%d", bus.WireVersion)
	switch p {
	case ">", "serket.>", "serket." + v + ".>", "serket.*.>", "serket." + v + ".*":
		return "serket." + v + "." + pipeline + ".>"
	}
	if r, err := renameSubject(p, pipeline); err == nil {
		return r
	}
	return p
}
