package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/record"
)

func newRecordCmd(g *globals) *cobra.Command {
	var (
		stream   string
		subjects []string
		duration time.Duration
		maxBytes string
		maxAge   time.Duration
		purge    bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "record",
		Short: "capture a pipeline's messages into a JetStream stream, to replay them",
		Long: `Capture the messages of a pipeline into a JetStream stream (file storage) so
that an experiment can be replayed exactly with serket replay. The server needs
JetStream: serket up --jetstream, or a server with JetStream enabled.

--subjects narrows what is captured; a subject that does not start with
"serket." is relative to the pipeline ("obs.>", "belief"). The recording runs
for --duration, or until Ctrl-C, then prints what it captured. The stream stops
capturing when the recording ends; recording again into the same stream
appends to it (--purge empties it first).`,
		Example: `  serket record --duration 10m
  serket record --subjects 'obs.>' --subjects belief --stream RUN42
  serket up --jetstream &  serket record --pipeline robot`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration < 0 {
				return usagef("--duration %v is negative", duration)
			}
			limit, err := recParseSize(maxBytes)
			if err != nil {
				return usagef("--max-bytes %q: %v", maxBytes, err)
			}
			age := maxAge
			if age == 0 {
				age = -1 // no limit
			} else if age < 0 {
				return usagef("--max-age %v is negative", maxAge)
			}
			log := g.logger("record")
			nc, js, err := jetStreamConn(g, "serket-record", log, timeout)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := signalContext()
			defer cancel()

			errOut := cmd.ErrOrStderr()
			tty := recIsTerminal(errOut)
			every := 10 * time.Second
			if tty {
				every = time.Second
			}
			cfg := record.Config{
				Stream: stream, Pipeline: g.pipeline, Subjects: subjects, Duration: duration,
				MaxBytes: limit, MaxAge: age, Purge: purge, ProgressEvery: every,
				Started: func(s record.RecordStart) {
					how := "new stream"
					if !s.Created {
						how = fmt.Sprintf("reused stream, %s in it", recMessages(s.Existing))
					}
					until := "until Ctrl-C"
					if duration > 0 {
						until = "for " + duration.String() + " (Ctrl-C stops)"
					}
					lim := "no size limit"
					if s.MaxBytes > 0 {
						lim = "max " + recBytes(uint64(s.MaxBytes))
					}
					if s.MaxAge > 0 {
						lim += ", max age " + s.MaxAge.String()
					}
					fmt.Fprintf(errOut, "recording %s into stream %s (%s; file storage, %s) %s\n",
						strings.Join(s.Subjects, ", "), s.Stream, how, lim, until)
				},
				Progress: func(p record.RecordProgress) {
					line := fmt.Sprintf("%8s  %s  %s", p.Elapsed.Round(time.Second), recMessages(p.Messages), recBytes(p.Bytes))
					if tty {
						fmt.Fprintf(errOut, "\r\033[K%s", line)
					} else {
						fmt.Fprintln(errOut, line)
					}
				},
			}
			sum, err := record.Record(ctx, js, cfg)
			if tty && sum != nil {
				fmt.Fprint(errOut, "\r\033[K")
			}
			if sum != nil {
				printRecordSummary(cmd.OutOrStdout(), sum, limit)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&stream, "stream", "", "JetStream stream to record into (default SERKET_<PIPELINE>)")
	f.StringSliceVar(&subjects, "subjects", nil, "subjects to capture, absolute or relative to the pipeline (default: all of the pipeline's, serket.v2.<pipeline>.>)")
	f.DurationVar(&duration, "duration", 0, "how long to record (0: until Ctrl-C)")
	f.StringVar(&maxBytes, "max-bytes", "1GiB", "the stream's size limit (KiB, MiB, GiB, or KB, MB, GB; 0: none); when full, new messages are refused")
	f.DurationVar(&maxAge, "max-age", record.DefaultMaxAge, "how long the stream keeps messages (0: for ever)")
	f.BoolVar(&purge, "purge", false, "empty an existing stream before recording")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long to keep trying to reach NATS")
	return cmd
}

func printRecordSummary(w io.Writer, s *record.RecordSummary, limit int64) {
	fmt.Fprintf(w, "recorded %s (%s) in %v into stream %s", recMessages(s.Messages), recBytes(s.Bytes), s.Elapsed.Round(time.Millisecond), s.Stream)
	if s.Messages > 0 {
		fmt.Fprintf(w, ", seq %d-%d", s.FirstSeq, s.LastSeq)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, subj := range sortedKeys(s.PerSubject) {
		fmt.Fprintf(tw, "  %s\t%d\n", subj, s.PerSubject[subj])
	}
	tw.Flush()
	if s.Stored > s.Messages {
		fmt.Fprintf(w, "warning: %d of the %d messages stored are already gone (the stream's --max-age)\n", s.Stored-s.Messages, s.Stored)
	}
	if s.Full {
		fmt.Fprintf(w, "warning: stream %s is full (%s of --max-bytes %s): messages that did not fit were not recorded\n", s.Stream, recBytes(s.StreamBytes), recBytes(uint64(limit)))
	}
	if s.Messages > 0 {
		if s.StreamMessages > s.Messages {
			fmt.Fprintf(w, "stream %s holds %d messages in all; replay this recording with: serket replay --stream %s --from %d --to %d\n", s.Stream, s.StreamMessages, s.Stream, s.FirstSeq, s.LastSeq)
		} else {
			fmt.Fprintf(w, "replay with: serket replay --stream %s\n", s.Stream)
		}
	}
}

func newReplayCmd(g *globals) *cobra.Command {
	var (
		stream     string
		speed      float64
		pipelineAs string
		from, to   string
		subjects   []string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "play a recorded stream back onto the bus with its original timing",
		Long: `Play back a stream that serket record made: every message is republished, with
its headers, to its original subject, or with --pipeline-as to the same subject
under another pipeline (serket.v2.<other>.…), so that a replay can feed a fresh
pipeline without colliding with the live one.

The original gaps between messages (their JetStream timestamps) are kept,
divided by --speed: 2 plays twice as fast, 0 as fast as possible. --from and
--to bound the replay (inclusive), each a stream sequence (120), an offset from
the stream's first message (90s), or a time (2026-05-01T14:03:00Z).
Replayed requests carry no reply subject: nobody is waiting for the answers.`,
		Example: `  serket replay --stream SERKET_DEFAULT --speed 1
  serket replay --pipeline-as rerun --speed 4 --from 30s --to 2m
  serket replay --subjects 'obs.>' --speed 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if speed < 0 || math.IsNaN(speed) || math.IsInf(speed, 0) {
				return usagef("--speed %v: want 0 (as fast as possible) or more", speed)
			}
			if pipelineAs != "" && !bus.ValidName(pipelineAs) {
				return usagef("--pipeline-as %q: want lower-case letters, digits and '-', starting with a letter", pipelineAs)
			}
			lo, err := record.ParseBound(from)
			if err != nil {
				return usagef("--from: %v", err)
			}
			hi, err := record.ParseBound(to)
			if err != nil {
				return usagef("--to: %v", err)
			}
			if stream == "" {
				if _, err := bus.NewSubjects(g.pipeline); err != nil {
					return err
				}
				stream = record.StreamName(g.pipeline)
			}
			log := g.logger("replay")
			nc, js, err := jetStreamConn(g, "serket-replay", log, timeout)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := signalContext()
			defer cancel()

			errOut := cmd.ErrOrStderr()
			tty := recIsTerminal(errOut)
			every := 5 * time.Second
			if tty {
				every = 200 * time.Millisecond
			}
			target := "their original subjects"
			if pipelineAs != "" {
				target = "pipeline " + pipelineAs
			}
			pace := fmt.Sprintf("at %gx speed", speed)
			if speed == 0 {
				pace = "as fast as possible"
			}
			fmt.Fprintf(errOut, "replaying stream %s onto %s %s (Ctrl-C stops)\n", stream, target, pace)
			sum, err := record.Replay(ctx, js, record.ReplayConfig{
				Stream: stream, Speed: speed, PipelineAs: pipelineAs, Subjects: subjects,
				From: lo, To: hi, ProgressEvery: every,
				Progress: func(p record.ReplayProgress) {
					line := fmt.Sprintf("%d/%d messages  %v of %v recorded  %v elapsed",
						p.Messages, p.Total, p.Position.Round(10*time.Millisecond), p.Span.Round(10*time.Millisecond), p.Elapsed.Round(10*time.Millisecond))
					if tty {
						fmt.Fprintf(errOut, "\r\033[K%s", line)
					} else {
						fmt.Fprintln(errOut, line)
					}
				},
			})
			if tty {
				fmt.Fprint(errOut, "\r\033[K")
			}
			if sum != nil {
				printReplaySummary(cmd.OutOrStdout(), sum, speed, target)
			}
			if errors.Is(err, context.Canceled) && sum != nil && sum.Interrupted {
				return nil // Ctrl-C: the summary so far is the answer
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&stream, "stream", "", "JetStream stream to replay (default SERKET_<PIPELINE>)")
	f.Float64Var(&speed, "speed", 1, "time scale: 1 the original pace, 2 twice as fast, 0 as fast as possible")
	f.StringVar(&pipelineAs, "pipeline-as", "", "republish under this pipeline's subjects instead of the original ones")
	f.StringVar(&from, "from", "", "first message: a stream sequence, an offset from the first message (90s) or a time")
	f.StringVar(&to, "to", "", "last message: a stream sequence, an offset from the first message or a time")
	f.StringSliceVar(&subjects, "subjects", nil, "replay only these subjects (absolute, or relative to the recorded pipeline)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long to keep trying to reach NATS")
	return cmd
}

func printReplaySummary(w io.Writer, s *record.ReplaySummary, asked float64, target string) {
	if s.Messages == 0 {
		fmt.Fprintf(w, "nothing to replay in stream %s (empty, or nothing within the bounds)\n", s.Stream)
		return
	}
	status := "replayed"
	if s.Interrupted {
		status = "interrupted after replaying"
	}
	fmt.Fprintf(w, "%s %s (%s) from stream %s, seq %d-%d, onto %s: %v of recording in %v",
		status, recMessages(s.Messages), recBytes(s.Bytes), s.Stream, s.FirstSeq, s.LastSeq, target, s.Span.Round(time.Millisecond), s.Elapsed.Round(time.Millisecond))
	if s.Messages > 1 && s.Elapsed > 0 {
		fmt.Fprintf(w, ", speed %.2fx", s.Speed)
	}
	if asked > 0 {
		fmt.Fprintf(w, " (asked %gx), max lag %v", asked, s.MaxLag.Round(100*time.Microsecond))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, subj := range sortedKeys(s.PerSubject) {
		fmt.Fprintf(tw, "  %s\t%d\n", subj, s.PerSubject[subj])
	}
	tw.Flush()
}

func recIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// recParseSize reads a byte size: a number with an optional unit, KiB,
// MiB, GiB, TiB (or K, M, G, T) in powers of 1024, KB, MB, GB, TB in powers
// of 1000. 0 (or "none", "unlimited") means no limit: -1.
func recParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "0", "none", "unlimited", "-1":
		return -1, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, errors.New("want a size such as 512MiB, 1GiB or 2GB")
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q: want KiB, MiB, GiB, TiB, KB, MB, GB or TB", unit)
	}
	n := v * mult
	if n < 1 || n > math.MaxInt64/2 {
		return 0, errors.New("out of range")
	}
	return int64(n), nil
}

func recMessages(n uint64) string {
	if n == 1 {
		return "1 message"
	}
	return fmt.Sprintf("%d messages", n)
}

// recBytes prints a byte count in powers of 1024.
func recBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// jetStreamConn connects as name and opens JetStream on the connection.
func jetStreamConn(g *globals, name string, log *slog.Logger, timeout time.Duration) (*nats.Conn, jetstream.JetStream, error) {
	cc, err := g.clientConn(name, log)
	if err != nil {
		return nil, nil, err
	}
	cc.Wait = timeout
	nc, err := bus.Connect(cc)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
