// Package record captures a pipeline's messages into a JetStream stream and
// plays them back with their original timing, so that an experiment can be
// rerun exactly: `serket record` and `serket replay` are thin shells around
// Record and Replay.
//
// A recording is a file-backed JetStream stream bound to the recorded
// subjects only while Record runs. When it ends (duration over, context
// cancelled), Record parks the stream on an inert subject of its own
// (ParkedSubject), so that the stream stops capturing and a replay onto the
// original subjects is not recorded again. Record reuses a stream of that
// name it made before, appending a new session to it, and refuses a stream
// it did not make.
//
// Replay reads the stream with an ordered consumer and republishes every
// message, with its headers, to its original subject, or to the same
// subject under another pipeline's namespace. Each message goes out at
// start + (its stored timestamp − the first one's) / speed, measured on the
// monotonic clock from the start, so that scheduling errors do not
// accumulate.
//
// Core NATS does not store a request's reply subject, so replayed requests
// go out without one: a replay feeds consumers of messages, not requesters
// waiting for answers.
package record

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/serket-go/serket/bus"
)

// ErrNoJetStream is returned (wrapped, with the server's URL and what to
// do) when the NATS server has no JetStream.
var ErrNoJetStream = errors.New("no JetStream")

// Defaults of a recording's limits.
const (
	DefaultMaxBytes = 1 << 30            // 1 GiB
	DefaultMaxAge   = 7 * 24 * time.Hour // a week
)

// Stream metadata keys written by Record.
const (
	MetaRecorder = "serket.record"          // "v1": the stream was made by Record
	MetaPipeline = "serket.record.pipeline" // the pipeline recorded
	MetaSubjects = "serket.record.subjects" // the subjects recorded, comma-separated
	MetaState    = "serket.record.state"    // "recording" or "parked"
)

// StreamName is the default stream of a pipeline: SERKET_<PIPELINE>,
// upper-cased, with every character a stream name may not hold (and '-')
// replaced by '_'.
func StreamName(pipeline string) string {
	if pipeline == "" {
		pipeline = bus.DefaultPipeline
	}
	b := []byte("SERKET_" + strings.ToUpper(pipeline))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// ParkedSubject is the subject a recording stream is bound to between
// recordings: nobody publishes there, so the stream captures nothing.
func ParkedSubject(stream string) string { return "_serket.parked." + stream }

// Config configures Record.
type Config struct {
	// Stream is the stream to record into; "" means StreamName(Pipeline).
	// A stream of that name made by Record before is reused (the new
	// messages are appended); one made otherwise is refused.
	Stream string
	// Pipeline is the pipeline whose subjects are recorded; "" means
	// bus.DefaultPipeline.
	Pipeline string
	// Subjects are what to capture, absolute ("serket.v2.default.belief")
	// or relative to the pipeline ("obs.>", "belief", see
	// bus.Subjects.Relative). Empty means every subject of the pipeline,
	// serket.v2.<pipeline>.>.
	Subjects []string
	// Duration bounds the recording; 0 records until ctx is done. Either
	// way the end is normal: Record returns the summary and no error.
	Duration time.Duration
	// MaxBytes and MaxAge limit the stream: 0 means DefaultMaxBytes and
	// DefaultMaxAge, a negative value no limit. A full stream refuses new
	// messages (the recording keeps its beginning); messages older than
	// MaxAge are removed.
	MaxBytes int64
	MaxAge   time.Duration
	// Purge empties a reused stream before recording.
	Purge bool
	// Started, if set, is called once the stream captures the subjects.
	Started func(RecordStart)
	// Progress, if set, is called every ProgressEvery (default 1 s) while
	// recording, from Record's goroutine.
	Progress      func(RecordProgress)
	ProgressEvery time.Duration
}

// RecordStart describes a recording that has begun.
type RecordStart struct {
	Stream   string
	Subjects []string // absolute
	Created  bool     // false: an existing stream was reused
	Existing uint64   // messages already in the stream
	MaxBytes int64    // -1: no limit
	MaxAge   time.Duration
}

// RecordProgress is a recording so far.
type RecordProgress struct {
	Elapsed  time.Duration
	Messages uint64 // stored in this recording
	Bytes    uint64 // stream bytes added by this recording (with storage overhead)
}

// RecordSummary is what a recording captured.
type RecordSummary struct {
	Stream   string
	Subjects []string // absolute, as captured
	Created  bool
	Elapsed  time.Duration
	// FirstSeq and LastSeq bound this recording's messages in the stream
	// (0 and 0: none); replay them alone with From/To sequence bounds.
	FirstSeq, LastSeq uint64
	// Stored is how many messages the stream stored during the recording;
	// Messages, Bytes (payload bytes) and PerSubject describe those still in
	// it when Record returned (fewer than Stored if limits removed some).
	Stored     uint64
	Messages   uint64
	Bytes      uint64
	PerSubject map[string]uint64
	// StreamMessages and StreamBytes are the whole stream's afterwards.
	StreamMessages, StreamBytes uint64
	// Full says the stream reached its byte limit: messages that did not
	// fit were refused.
	Full bool
}

// Record captures cfg.Subjects into a stream until cfg.Duration has passed
// or ctx is done, then parks the stream and summarises what it captured.
// It fails if the server has no JetStream (ErrNoJetStream), if the stream
// exists but was not made by Record, or if the stream cannot be created
// (overlapping subjects of another stream, a bad name, …).
func Record(ctx context.Context, js jetstream.JetStream, cfg Config) (*RecordSummary, error) {
	r, err := newRecorder(js, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkJetStream(ctx, js); err != nil {
		return nil, err
	}
	if err := r.open(ctx, cfg.Purge); err != nil {
		return nil, err
	}

	if cfg.Started != nil {
		cfg.Started(RecordStart{
			Stream: r.sc.Name, Subjects: r.sc.Subjects, Created: r.created, Existing: r.existing,
			MaxBytes: r.sc.MaxBytes, MaxAge: r.sc.MaxAge,
		})
	}
	r.wait(ctx, cfg)
	elapsed := time.Since(r.start)
	// From here on, ending is normal: park the stream and summarise with a
	// context of our own, whatever happened to ctx, and given its time
	// from now (not from the start: a recording lasts as long as it likes).
	endCtx, cancelEnd := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancelEnd()
	if err := r.park(endCtx); err != nil {
		return nil, err
	}
	return r.summarise(endCtx, elapsed)
}

// endTimeout bounds parking the stream and summarising a recording once it
// ends (a variable so that a test can show it counts from the end).
var endTimeout = 30 * time.Second

// recorder is one recording: the stream it captures into (sc holds its
// name, subjects and limits) and where this recording's messages start.
type recorder struct {
	js      jetstream.JetStream
	sc      jetstream.StreamConfig
	stream  jetstream.Stream
	created bool // false: a stream Record made before is reused

	start                          time.Time
	startSeq, startBytes, existing uint64 // startSeq: the last sequence before this recording
}

// newRecorder checks cfg and makes the configuration of the stream to
// capture into.
func newRecorder(js jetstream.JetStream, cfg Config) (*recorder, error) {
	subj, err := bus.NewSubjects(cfg.Pipeline)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	name := cfg.Stream
	if name == "" {
		name = StreamName(cfg.Pipeline)
	}
	if err := checkStreamName(name); err != nil {
		return nil, err
	}
	subjects, err := resolveSubjects(subj, cfg.Subjects)
	if err != nil {
		return nil, err
	}
	if cfg.Duration < 0 {
		return nil, fmt.Errorf("record: duration %v is negative", cfg.Duration)
	}
	maxBytes, maxAge := limits(cfg.MaxBytes, cfg.MaxAge)
	sc := jetstream.StreamConfig{
		Name:        name,
		Description: "serket recording of " + strings.Join(subjects, ", "),
		Subjects:    subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    maxBytes,
		MaxAge:      maxAge,
		MaxMsgs:     -1,
		Replicas:    1,
		Metadata: map[string]string{
			MetaRecorder: "v1",
			MetaPipeline: strings.TrimPrefix(subj.Prefix(), fmt.Sprintf("serket.v%d.", bus.WireVersion)),
			MetaSubjects: strings.Join(subjects, ","),
			MetaState:    "recording",
		},
	}
	return &recorder{js: js, sc: sc}, nil
}

// limits turns Config's MaxBytes and MaxAge into JetStream's: 0 is the
// default, a negative value no limit.
func limits(maxBytes int64, maxAge time.Duration) (int64, time.Duration) {
	if maxBytes == 0 {
		maxBytes = DefaultMaxBytes
	} else if maxBytes < 0 {
		maxBytes = -1
	}
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	} else if maxAge < 0 {
		maxAge = 0 // JetStream: no limit
	}
	return maxBytes, maxAge
}

// open creates the stream, or binds the one Record made before to the
// subjects again, and notes where this recording starts.
func (r *recorder) open(ctx context.Context, purge bool) error {
	before, err := r.previous(ctx, purge)
	if err != nil {
		return err
	}
	r.created = before == nil
	if before != nil {
		// Keep what JetStream does not let an update change.
		r.sc.Storage, r.sc.Replicas = before.Config.Storage, before.Config.Replicas
	}
	r.stream, err = r.js.CreateOrUpdateStream(ctx, r.sc)
	if err != nil {
		return fmt.Errorf("record: stream %s on %s: %w", r.sc.Name, strings.Join(r.sc.Subjects, ", "), err)
	}
	r.start = time.Now()
	if before != nil {
		r.startSeq, r.startBytes, r.existing = before.State.LastSeq, before.State.Bytes, before.State.Msgs
	}
	return nil
}

// previous is the stream as it is, if it is (nil if not). It refuses one
// Record did not make; its state, read while the stream is still parked,
// is where this recording's messages start.
func (r *recorder) previous(ctx context.Context, purge bool) (*jetstream.StreamInfo, error) {
	name := r.sc.Name
	s, err := r.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record: look up stream %s: %w", name, err)
	}
	info := s.CachedInfo()
	if info.Config.Metadata[MetaRecorder] == "" {
		return nil, fmt.Errorf("record: stream %s exists and was not made by serket record (it captures %s); choose another stream name", name, strings.Join(info.Config.Subjects, ", "))
	}
	if purge {
		if err := s.Purge(ctx); err != nil {
			return nil, fmt.Errorf("record: purge stream %s: %w", name, err)
		}
	}
	if info, err = s.Info(ctx); err != nil {
		return nil, fmt.Errorf("record: stream %s: %w", name, err)
	}
	return info, nil
}

// wait lets the stream capture until cfg.Duration has passed or ctx is
// done, reporting progress meanwhile.
func (r *recorder) wait(ctx context.Context, cfg Config) {
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-tick.C:
			if cfg.Progress != nil {
				r.progress(ctx, cfg.Progress)
			}
		}
	}
}

// progress reports what this recording has stored so far.
func (r *recorder) progress(ctx context.Context, report func(RecordProgress)) {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return // a slow server must not end the recording
	}
	report(RecordProgress{
		Elapsed:  time.Since(r.start),
		Messages: info.State.LastSeq - r.startSeq,
		Bytes:    info.State.Bytes - min(r.startBytes, info.State.Bytes),
	})
}

// park binds the stream to its ParkedSubject, so that it stops capturing.
func (r *recorder) park(ctx context.Context) error {
	pc := r.sc
	pc.Subjects = []string{ParkedSubject(r.sc.Name)}
	pc.Metadata = maps.Clone(r.sc.Metadata)
	pc.Metadata[MetaState] = "parked"
	if _, err := r.js.UpdateStream(ctx, pc); err != nil {
		return fmt.Errorf("record: stop capturing into stream %s (it still captures %s): %w", r.sc.Name, strings.Join(r.sc.Subjects, ", "), err)
	}
	return nil
}

// summarise describes the recording, which lasted elapsed, once parked.
func (r *recorder) summarise(ctx context.Context, elapsed time.Duration) (*RecordSummary, error) {
	name, maxBytes := r.sc.Name, r.sc.MaxBytes
	info, err := r.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("record: stream %s: %w", name, err)
	}
	sum := &RecordSummary{
		Stream:         name,
		Subjects:       r.sc.Subjects,
		Created:        r.created,
		Elapsed:        elapsed,
		Stored:         info.State.LastSeq - r.startSeq,
		PerSubject:     map[string]uint64{},
		StreamMessages: info.State.Msgs,
		StreamBytes:    info.State.Bytes,
		Full:           maxBytes > 0 && float64(info.State.Bytes) >= 0.95*float64(maxBytes),
	}
	if err := count(ctx, r.js, name, r.startSeq, info, sum); err != nil {
		return sum, err
	}
	return sum, nil
}

// count reads the headers of this recording's messages, sequences
// startSeq+1 to the stream's last, to count them by subject.
func count(ctx context.Context, js jetstream.JetStream, name string, startSeq uint64, info *jetstream.StreamInfo, sum *RecordSummary) error {
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last <= startSeq {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   startSeq + 1,
		HeadersOnly:   true,
	})
	if err != nil {
		return fmt.Errorf("record: read back stream %s: %w", name, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("record: read back stream %s: %w", name, err)
	}
	defer it.Stop()
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		return nil // limits removed them all
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("record: read back stream %s: %w", name, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("record: read back stream %s: %w", name, err)
		}
		if meta.Sequence.Stream > last {
			return nil
		}
		if sum.FirstSeq == 0 {
			sum.FirstSeq = meta.Sequence.Stream
		}
		sum.LastSeq = meta.Sequence.Stream
		sum.Messages++
		sum.PerSubject[m.Subject()]++
		if n, err := strconv.ParseUint(m.Headers().Get(nats.MsgSize), 10, 64); err == nil {
			sum.Bytes += n
		}
		if meta.Sequence.Stream == last || meta.NumPending == 0 {
			return nil
		}
	}
}

// checkJetStream fails with ErrNoJetStream if the server has none.
func checkJetStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.AccountInfo(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
		url := "the NATS server"
		if nc := js.Conn(); nc != nil {
			url += " at " + nc.ConnectedUrlRedacted()
		}
		return fmt.Errorf("record: %w on %s: start it with `serket up --jetstream` or use a server with JetStream enabled", ErrNoJetStream, url)
	default:
		return fmt.Errorf("record: JetStream account info: %w", err)
	}
}

// resolveSubjects makes the subjects a person gave absolute and checks them.
func resolveSubjects(subj bus.Subjects, given []string) ([]string, error) {
	if len(given) == 0 {
		return []string{subj.Relative(">")}, nil
	}
	var out []string
	for _, s := range given {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		abs := subj.Relative(s)
		if err := checkSubject(abs); err != nil {
			return nil, fmt.Errorf("record: subject %q: %w", s, err)
		}
		if !slices.Contains(out, abs) {
			out = append(out, abs)
		}
	}
	if len(out) == 0 {
		return []string{subj.Relative(">")}, nil
	}
	return out, nil
}

// checkSubject checks a subject or subject filter: non-empty tokens
// without white space, '>' only as the last token.
func checkSubject(s string) error {
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return errors.New("an empty token")
		case strings.ContainsAny(t, " \t\r\n"):
			return errors.New("white space")
		case t == ">" && i != len(toks)-1:
			return errors.New("'>' before the last token")
		case len(t) > 1 && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("wildcard inside token %q", t)
		}
	}
	return nil
}

func checkStreamName(name string) error {
	if name == "" || len(name) > 255 || strings.ContainsAny(name, ".*> \t\r\n/\\") {
		return fmt.Errorf("record: stream name %q: want letters, digits, '-' and '_' (no '.', '*', '>', '/', or white space)", name)
	}
	return nil
}

// overlap says whether two subject filters can match a common subject.
func overlap(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(ta) && i < len(tb); i++ {
		if ta[i] == ">" || tb[i] == ">" {
			return true
		}
		if ta[i] != tb[i] && ta[i] != "*" && tb[i] != "*" {
			return false
		}
	}
	return len(ta) == len(tb)
}
