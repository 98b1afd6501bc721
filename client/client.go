// Package client is the Go client of a running serket pipeline: inference
// requests and the list of live services. The CLI uses it, and so can any
// program (see examples/quickstart).
package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/boundedread"
)

// Client talks to one pipeline over a NATS connection it does not own.
type Client struct {
	nc       *nats.Conn
	subj     bus.Subjects
	pipeline string
	name     string
}

// New returns a client of the named pipeline ("" means default). name is
// the sender name its messages carry (default "client").
func New(nc *nats.Conn, pipeline, name string) (*Client, error) {
	subj, err := bus.NewSubjects(pipeline)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = "client"
	}
	if !bus.ValidName(name) {
		return nil, fmt.Errorf("client: sender name %q is not a valid name", name)
	}
	if pipeline == "" {
		pipeline = bus.DefaultPipeline
	}
	return &Client{nc: nc, subj: subj, pipeline: pipeline, name: name}, nil
}

// Subjects is the pipeline's subject scheme.
func (c *Client) Subjects() bus.Subjects { return c.subj }

// ErrNoIntegrator means no integrator of the pipeline answered.
var ErrNoIntegrator = errors.New("no integrator answers on this pipeline (is `serket up` running?)")

// Infer sends req to the pipeline's integrator and waits for its reply until
// ctx is done (give ctx a deadline). A request too large for the wire
// ([CheckObservations]) or for the NATS server it is connected to (its
// max_payload, which may be smaller than serket's) is refused before it is
// sent, with an error wrapping bus.ErrTooLarge that gives the sizes.
func (c *Client) Infer(ctx context.Context, req *bus.InferRequest) (*bus.InferReply, error) {
	req.SetSender(c.name)
	if err := CheckObservations(req.Observations); err != nil {
		return nil, err
	}
	b, err := bus.Marshal(req)
	if err != nil {
		return nil, err
	}
	if max := c.nc.MaxPayload(); int64(len(b)) > max {
		return nil, fmt.Errorf("client: %w: the inference request is %s (%s), and the NATS server at %s takes messages of at most %s (its max_payload): raise its max_payload to %s, serket's own limit, or give a smaller input",
			bus.ErrTooLarge, boundedread.Size(int64(len(b))), observationSizes(req.Observations), c.nc.ConnectedUrlRedacted(), boundedread.Size(max), boundedread.Size(bus.DefaultMaxBytes))
	}
	msg, err := c.nc.RequestWithContext(ctx, c.subj.Infer(), b)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("client: %s: %w", c.subj.Infer(), ErrNoIntegrator)
	}
	if err != nil {
		return nil, fmt.Errorf("client: inference on %s: %w", c.subj.Infer(), err)
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return nil, fmt.Errorf("client: the integrator refused the request: %s", desc)
	}
	var rep bus.InferReply
	if err := bus.UnmarshalFrom(msg.Subject, msg.Data, &rep, bus.Expect{}); err != nil {
		return nil, err
	}
	return &rep, nil
}

// CheckObservations refuses observations of more than
// bus.MaxObservationBytes together, what one request may carry, with an
// error wrapping bus.ErrTooLarge that gives each one's size. A program can
// call it before it does anything costly with a request.
func CheckObservations(obs map[string]bus.Payload) error {
	total := 0
	for _, p := range obs {
		total += len(p.Data)
	}
	if total > bus.MaxObservationBytes {
		return fmt.Errorf("client: %w: the observations are %s together (%s); one inference request carries at most %s",
			bus.ErrTooLarge, boundedread.Size(int64(total)), observationSizes(obs), boundedread.Size(bus.MaxObservationBytes))
	}
	return nil
}

// observationSizes lists each observation's size, by module name.
func observationSizes(obs map[string]bus.Payload) string {
	parts := make([]string, 0, len(obs))
	for _, name := range slices.Sorted(maps.Keys(obs)) {
		parts = append(parts, fmt.Sprintf("%s: %s of %s", name, boundedread.Size(int64(len(obs[name].Data))), obs[name].Type))
	}
	if len(parts) == 0 {
		return "no observations"
	}
	return strings.Join(parts, ", ")
}

// Services lists the live services of the pipeline with their stats.
func (c *Client) Services(ctx context.Context, window time.Duration) ([]bus.Service, error) {
	return bus.Discover(ctx, c.nc, bus.DiscoverConfig{Pipeline: c.pipeline, Window: window, Stats: true})
}

// WaitFor polls until every named module (and an integrator, if
// integrator is true) is live, or ctx is done; it returns the services seen
// last.
func (c *Client) WaitFor(ctx context.Context, integrator bool, modules ...string) ([]bus.Service, error) {
	for {
		svcs, err := bus.Discover(ctx, c.nc, bus.DiscoverConfig{Pipeline: c.pipeline, Window: 100 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		var have []string
		haveIntegrator := false
		for _, s := range svcs {
			if s.Role() == "integrator" {
				haveIntegrator = true
			}
			if s.Module() != "" {
				have = append(have, s.Module())
			}
		}
		ok := haveIntegrator || !integrator
		var missing []string
		for _, m := range modules {
			if !slices.Contains(have, m) {
				ok = false
				missing = append(missing, m)
			}
		}
		if ok {
			return svcs, nil
		}
		if ctx.Err() != nil {
			if integrator && !haveIntegrator {
				missing = append(missing, "integrator")
			}
			return svcs, fmt.Errorf("client: still waiting for %v: %w", missing, ctx.Err())
		}
	}
}
