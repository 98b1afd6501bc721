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
	name := cfg.Stream
	if err := checkStreamName(name); err != nil {
		return nil, err
	}
	if cfg.Speed < 0 || math.IsNaN(cfg.Speed) || math.IsInf(cfg.Speed, 0) {
		return nil, fmt.Errorf("replay: speed %v: want 0 (as fast as possible) or more", cfg.Speed)
	}
	if cfg.PipelineAs != "" && !bus.ValidName(cfg.PipelineAs) {
		return nil, fmt.Errorf("replay: pipeline %q: want lower-case letters, digits and '-', starting with a letter", cfg.PipelineAs)
	}
	if err := checkJetStream(ctx, js); err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("replay: no stream %s on %s (record one with serket record)", name, js.Conn().ConnectedUrlRedacted())
	}
	if err != nil {
		return nil, fmt.Errorf("replay: stream %s: %w", name, err)
	}
	info := stream.CachedInfo()
	st := info.State
	sum := &ReplaySummary{Stream: name, PerSubject: map[string]uint64{}}

	// Subject filters, and the guard against replaying into the stream.
	recorded := info.Config.Metadata[MetaPipeline]
	subj, err := bus.NewSubjects(recorded)
	if err != nil {
		subj, _ = bus.NewSubjects("")
	}
	var filters []string
	for _, s := range cfg.Subjects {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		abs := subj.Relative(s)
		if err := checkSubject(abs); err != nil {
			return nil, fmt.Errorf("replay: subject %q: %w", s, err)
		}
		filters = append(filters, abs)
	}
	targets := filters
	if len(targets) == 0 {
		if m := info.Config.Metadata[MetaSubjects]; m != "" {
			targets = strings.Split(m, ",")
		} else {
			targets = info.Config.Subjects
		}
	}
	for _, t := range targets {
		if cfg.PipelineAs != "" {
			t = renamePattern(t, cfg.PipelineAs)
		}
		for _, c := range info.Config.Subjects {
			if overlap(t, c) {
				return nil, fmt.Errorf("replay: stream %s still captures %s, so replaying onto %s would record the replay into it (is serket record still running?): stop the recording, or replay with --pipeline-as", name, c, t)
			}
		}
	}

	if st.Msgs == 0 {
		return sum, nil
	}
	// The bounds.
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch cfg.From.kind {
	case seqBound:
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cfg.From.seq
	case timeBound, offsetBound:
		t := cfg.From.t
		if cfg.From.kind == offsetBound {
			t = st.FirstTime.Add(cfg.From.off)
		}
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	endSeq := st.LastSeq
	var endTime time.Time
	switch cfg.To.kind {
	case seqBound:
		endSeq = min(endSeq, cfg.To.seq)
	case timeBound:
		endTime = cfg.To.t
	case offsetBound:
		endTime = st.FirstTime.Add(cfg.To.off)
	}
	if occ.OptStartSeq > endSeq || occ.OptStartTime != nil && occ.OptStartTime.After(st.LastTime) ||
		!endTime.IsZero() && (endTime.Before(st.FirstTime) || occ.OptStartTime != nil && endTime.Before(*occ.OptStartTime)) {
		return sum, nil
	}

	cons, err := js.OrderedConsumer(ctx, name, occ)
	if err != nil {
		return nil, fmt.Errorf("replay: consumer on stream %s: %w", name, err)
	}
	// Bound the read-ahead by bytes rather than by 500 messages: a
	// recording of images must not be buffered 500 at a time. It must hold
	// the largest message the server allows.
	nc := js.Conn()
	it, err := cons.Messages(jetstream.PullMaxBytes(max(32<<20, 2*int(nc.MaxPayload()))))
	if err != nil {
		return nil, fmt.Errorf("replay: consumer on stream %s: %w", name, err)
	}
	defer it.Stop()
	total := uint64(0)
	if ci := cons.CachedInfo(); ci != nil {
		total = ci.NumPending
	}
	if total == 0 {
		return sum, nil
	}

	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	var tickC <-chan time.Time
	if cfg.Progress != nil {
		tick := time.NewTicker(every)
		defer tick.Stop()
		tickC = tick.C
	}
	var (
		t0, start, lastPub time.Time
		span               time.Duration
	)
	progress := func() {
		cfg.Progress(ReplayProgress{Messages: sum.Messages, Total: total, Position: sum.Span, Span: span, Elapsed: time.Since(start)})
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// finish flushes what was published and completes the summary.
	finish := func(err error) (*ReplaySummary, error) {
		if !start.IsZero() {
			sum.Elapsed = lastPub.Sub(start)
			if sum.Elapsed > 0 {
				sum.Speed = sum.Span.Seconds() / sum.Elapsed.Seconds()
			}
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if ferr := nc.FlushWithContext(fctx); ferr != nil && err == nil {
			err = fmt.Errorf("replay: flush to %s: %w", nc.ConnectedUrlRedacted(), ferr)
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			sum.Interrupted = true
		}
		return sum, err
	}

	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return finish(ctx.Err())
			}
			return finish(fmt.Errorf("replay: read stream %s: %w", name, err))
		}
		meta, err := m.Metadata()
		if err != nil {
			return finish(fmt.Errorf("replay: read stream %s: %w", name, err))
		}
		seq := meta.Sequence.Stream
		if seq > endSeq || !endTime.IsZero() && meta.Timestamp.After(endTime) {
			break
		}
		if start.IsZero() {
			t0, start = meta.Timestamp, time.Now()
			sum.FirstSeq = seq
			total = min(total, endSeq-seq+1)
			end := st.LastTime
			if !endTime.IsZero() && endTime.Before(end) {
				end = endTime
			}
			span = max(end.Sub(t0), 0)
		}
		offset := max(meta.Timestamp.Sub(t0), 0)
		if cfg.Speed > 0 {
			due := start.Add(time.Duration(float64(offset) / cfg.Speed))
			for wait := time.Until(due); wait > 0; wait = time.Until(due) {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return finish(ctx.Err())
				case <-timer.C:
				case <-tickC:
					progress()
				}
			}
			timer.Stop()
			sum.MaxLag = max(sum.MaxLag, time.Since(due))
		}
		out := &nats.Msg{Subject: m.Subject(), Data: m.Data()}
		if cfg.PipelineAs != "" {
			if out.Subject, err = renameSubject(m.Subject(), cfg.PipelineAs); err != nil {
				return finish(fmt.Errorf("replay: stream %s seq %d: %w", name, seq, err))
			}
		}
		if h := m.Headers(); len(h) > 0 {
			out.Header = h
		}
		if err := nc.PublishMsg(out); err != nil {
			return finish(fmt.Errorf("replay: publish stream %s seq %d to %s: %w", name, seq, out.Subject, err))
		}
		lastPub = time.Now()
		sum.Messages++
		sum.Bytes += uint64(len(out.Data))
		sum.PerSubject[out.Subject]++
		sum.LastSeq = seq
		sum.Span = offset
		select {
		case <-tickC:
			progress()
		default:
		}
		if seq >= endSeq || meta.NumPending == 0 {
			break
		}
	}
	return finish(nil)
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
