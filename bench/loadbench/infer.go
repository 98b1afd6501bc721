package loadbench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
)

// inferBench sends inference requests and checks their replies.
type inferBench struct {
	subject string
	from    []string // sorted
	to      []string // sorted
	reqs    [][]byte // one marshalled request per cfg.Requests entry

	mu  sync.Mutex
	ref map[int][]float32 // request → the fused mean of its first ok reply
}

// newInferBench marshals every request once, refusing one the server nc
// is connected to would not carry.
func newInferBench(cfg Config, nc *nats.Conn) (*inferBench, error) {
	c, err := client.New(nc, cfg.Pipeline, "bench-load")
	if err != nil {
		return nil, err
	}
	b := &inferBench{subject: c.Subjects().Infer(), from: slices.Sorted(maps.Keys(cfg.Requests[0])),
		to: slices.Sorted(slices.Values(cfg.Want)), ref: map[int][]float32{}}
	for i, obs := range cfg.Requests {
		if err := client.CheckObservations(obs); err != nil {
			return nil, fmt.Errorf("loadbench: request %d: %w", i, err)
		}
		req := &bus.InferRequest{Observations: obs, Want: b.to}
		req.SetSender("bench-load")
		data, err := bus.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("loadbench: request %d: %w", i, err)
		}
		if max := nc.MaxPayload(); int64(len(data)) > max {
			return nil, fmt.Errorf("loadbench: request %d: %d bytes, the server at %s takes at most %d: %w", i, len(data), nc.ConnectedUrlRedacted(), max, bus.ErrTooLarge)
		}
		b.reqs = append(b.reqs, data)
	}
	return b, nil
}

func (b *inferBench) meanBytes() int {
	sum := 0
	for _, r := range b.reqs {
		sum += len(r)
	}
	return sum / len(b.reqs)
}

// shoot sends client c's seq-th request: the clients walk the requests in
// step, each from its own offset.
func (b *inferBench) shoot(ctx context.Context, nc *nats.Conn, c, seq int) (bench.Outcome, string) {
	k := (c + seq) % len(b.reqs)
	msg, err := nc.RequestWithContext(ctx, b.subject, b.reqs[k])
	if errors.Is(err, nats.ErrNoResponders) {
		return bench.Failed, "no responders: no integrator serves the pipeline"
	}
	if err != nil {
		return bench.Classify(err)
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return bench.Failed, bench.Kind(fmt.Sprintf("error reply %s: %s", msg.Header.Get(micro.ErrorCodeHeader), desc))
	}
	var rep bus.InferReply
	if err := bus.UnmarshalFrom(msg.Subject, msg.Data, &rep, bus.Expect{}); err != nil {
		return bench.Failed, bench.Kind("undecodable reply: " + err.Error())
	}
	if kind := b.verify(k, &rep); kind != "" {
		return bench.Failed, kind
	}
	return bench.OK, ""
}

// verify says what is wrong with a reply to request k ("" if nothing): a
// module that did not take part, outputs that are not the ones asked for,
// or a fused mean other than the one the request gave before (a reply
// meant for another request).
func (b *inferBench) verify(k int, rep *bus.InferReply) string {
	for _, name := range slices.Sorted(maps.Keys(rep.Missing)) {
		return bench.Kind(fmt.Sprintf("degraded: %s missing: %s", name, rep.Missing[name]))
	}
	if !slices.Equal(rep.Contributors, b.from) && len(rep.Contributors)+len(b.from) > 0 {
		return fmt.Sprintf("mismatch: contributors %v for a request from %v", rep.Contributors, b.from)
	}
	if got := slices.Sorted(maps.Keys(rep.Outputs)); !slices.Equal(got, b.to) && len(got)+len(b.to) > 0 {
		return fmt.Sprintf("mismatch: outputs of %v for a request of %v", got, b.to)
	}
	for _, name := range b.to {
		if n := len(rep.Outputs[name]); n != 1 {
			return fmt.Sprintf("mismatch: %d %s outputs, want 1", n, name)
		}
	}
	if rep.Z.Rows() != 1 {
		return fmt.Sprintf("mismatch: %d latents, want 1", rep.Z.Rows())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ref, ok := b.ref[k]
	if !ok {
		b.ref[k] = slices.Clone(rep.Mu.Data)
		return ""
	}
	if len(ref) != len(rep.Mu.Data) {
		return "mismatch: the fused mean is not this request's"
	}
	for i, v := range ref {
		if d := math.Abs(float64(rep.Mu.Data[i] - v)); d > 1e-4*(1+math.Abs(float64(v))) {
			return "mismatch: the fused mean is not this request's"
		}
	}
	return ""
}
