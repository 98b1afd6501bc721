package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
)

func newEchoCmd(g *globals) *cobra.Command {
	var (
		count    int
		asJSON   bool
		absolute bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "echo [SUBJECT]",
		Short: "print the messages on a subject in readable form",
		Long: `Print every message on SUBJECT, decoded. A subject that does not start with
"serket." is relative to the pipeline: "latent", "post.*", "belief", ">" (all).
--absolute takes SUBJECT as it is (a sensor's subject, say robot.camera):
raw observations are shown by media type, text as it is. Messages that do
not decode are printed with the reason.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			log := g.logger("echo")
			subj, err := bus.NewSubjects(g.pipeline)
			if err != nil {
				return err
			}
			subject := subj.Relative(">")
			switch {
			case len(args) == 1 && absolute:
				subject = args[0]
			case len(args) == 1:
				subject = subj.Relative(args[0])
			}
			cc, err := g.clientConn("serket-echo", log)
			if err != nil {
				return err
			}
			cc.Wait = timeout
			nc, err := bus.Connect(cc)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := signalContext()
			defer cancel()
			msgs := make(chan *nats.Msg, 1024)
			sub, err := nc.ChanSubscribe(subject, msgs)
			if err != nil {
				return fmt.Errorf("subscribe %s: %w", subject, err)
			}
			defer sub.Unsubscribe()
			fmt.Fprintf(os.Stderr, "listening on %s (Ctrl-C stops)\n", subject)
			for n := 0; count == 0 || n < count; n++ {
				select {
				case <-ctx.Done():
					return nil
				case m := <-msgs:
					printMessage(os.Stdout, m, asJSON)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many messages (0: never)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each decoded message as JSON")
	cmd.Flags().BoolVar(&absolute, "absolute", false, "take SUBJECT as it is, not relative to the pipeline (a sensor's subject such as robot.camera)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to keep trying to reach NATS")
	return cmd
}

func printMessage(w io.Writer, m *nats.Msg, asJSON bool) {
	ts := time.Now().Format("15:04:05.000")
	h, err := bus.PeekHeader(m.Data)
	if err != nil {
		if typ := m.Header.Get(bus.HeaderContentType); typ != "" {
			// A sensor's raw observation, not a serket message.
			at := ""
			if ns, err := strconv.ParseInt(m.Header.Get(bus.HeaderTime), 10, 64); err == nil {
				at = " t=" + time.Unix(0, ns).Format("15:04:05.000")
			}
			fmt.Fprintf(w, "%s %s %s%s\n", ts, m.Subject, payload(typ, m.Data), at)
			return
		}
		fmt.Fprintf(w, "%s %s UNDECODABLE (%d bytes): %v\n", ts, m.Subject, len(m.Data), err)
		return
	}
	msg := bus.New(h.Type)
	if msg == nil {
		fmt.Fprintf(w, "%s %s unknown type %q from %q (%d bytes)\n", ts, m.Subject, h.Type, h.Sender, len(m.Data))
		return
	}
	if err := bus.UnmarshalFrom(m.Subject, m.Data, msg, bus.Expect{}); err != nil {
		fmt.Fprintf(w, "%s %s REJECTED: %v\n", ts, m.Subject, err)
		return
	}
	if asJSON {
		b, _ := json.Marshal(msg)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "%s %s %s from=%s %s\n", ts, m.Subject, h.Type, h.Sender, describe(msg))
}

// describe summarises a message's fields: scalars as they are, tensors by
// shape and range, payloads by type and size.
func describe(m bus.Message) string {
	var b strings.Builder
	f := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	switch m := m.(type) {
	case *bus.StepBegin:
		f("step=%d epoch=%d train=%v batch=%d plan=%s", m.Step, m.Epoch, m.Train, len(m.IDs), plan(m.Plan))
	case *bus.Posterior:
		f("step=%d mu=%s logvar=%s present=%d/%d", m.Step, tensor(m.Mu), tensor(m.LogVar), count(m.Present), len(m.Present))
		if m.Time != 0 {
			f(" t=%s", time.Unix(0, m.Time).Format("15:04:05.000"))
		}
	case *bus.Latent:
		f("step=%d members=%v", m.Step, m.Members)
		for i, z := range m.Z {
			f(" z[%d]=%s", i, tensor(z))
		}
	case *bus.ZGrad:
		f("step=%d", m.Step)
		for _, t := range m.Terms {
			f(" term%d: dz=%s ll=%s", t.Term, tensor(t.DZ), tensor(t.LogLik))
		}
	case *bus.ExpertGrad:
		f("step=%d dmu=%s dlogvar=%s", m.Step, tensor(m.DMu), tensor(m.DLogVar))
	case *bus.InferRequest:
		f("observe=%s want=%v n=%d", payloads(m.Observations), m.Want, m.Samples)
	case *bus.InferReply:
		f("contributors=%v missing=%v mu=%s z=%s", m.Contributors, keys(m.Missing), tensor(m.Mu), tensor(m.Z))
	case *bus.EncodeRequest:
		f("observations=%d", len(m.Observations))
	case *bus.EncodeReply:
		f("mu=%s logvar=%s", tensor(m.Mu), tensor(m.LogVar))
	case *bus.DecodeRequest:
		f("z=%s", tensor(m.Z))
	case *bus.DecodeReply:
		f("outputs=%d", len(m.Outputs))
		for _, o := range m.Outputs {
			f(" %s", payload(o.Type, o.Data))
		}
	case *bus.Belief:
		f("seq=%d t=%s mu=%s sources=", m.Seq, time.Unix(0, m.Time).Format("15:04:05.000"), tensor(m.Mu))
		for i, src := range m.Sources {
			if i > 0 {
				f(",")
			}
			f("%s(%s old)", src.Module, time.Duration(src.AgeNs).Round(time.Millisecond))
		}
	}
	return b.String()
}

// payload shows short text as it is, anything else by type and size.
func payload(typ string, data []byte) string {
	if strings.HasPrefix(typ, "text/") && len(data) <= 200 && utf8.Valid(data) {
		return fmt.Sprintf("%s %q", typ, data)
	}
	return fmt.Sprintf("%s (%d bytes)", typ, len(data))
}

func tensor(t bus.Tensor) string {
	if t.Empty() {
		return "[]"
	}
	lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
	for _, v := range t.Data {
		x := float64(v)
		lo, hi, sum = math.Min(lo, x), math.Max(hi, x), sum+x
	}
	if len(t.Data) == 0 {
		return fmt.Sprint(t.Shape)
	}
	return fmt.Sprintf("%v{mean %.3g, %.3g..%.3g}", t.Shape, sum/float64(len(t.Data)), lo, hi)
}

func plan(p []bus.Term) string {
	parts := make([]string, len(p))
	for i, t := range p {
		parts[i] = strings.Join(t.Subset, "+") + "→" + strings.Join(t.Targets, "+")
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func payloads(m map[string]bus.Payload) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s:%s(%dB)", k, m[k].Type, len(m[k].Data)))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func count(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

func keys(m map[string]string) []string { return sortedKeys(m) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
