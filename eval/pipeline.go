package eval

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
)

// Pipeline is a running pipeline's modules as evaluation reaches them:
// over the bus, as the integrator does, whatever their language or process.
// It knows of each module what its service says it can do, and the labels
// of the dataset the modules' items come from.
type Pipeline struct {
	nc      *nats.Conn
	subj    bus.Subjects
	Latent  int
	Modules []*Module // by name
	Labels  *Labels
	// Timeout bounds one request to a module; default 2 minutes (a batch
	// of likelihoods can take a while on two cores).
	Timeout time.Duration
	// Aggregation fuses the modules' posteriors as the run was trained to
	// (its integrator.json says which); nil is PoE.
	Aggregation aggregate.Aggregation
	// Prior is the pipeline's prior module (role "prior"), if it has one:
	// every posterior is fused under its prior (see fuse).
	Prior      string
	priorAsked uint64 // prior requests sent: each one's Step
}

// Module is one module of a Pipeline.
type Module struct {
	Name       string
	Likelihood string
	// What it answers: encode (always), items by sample id (score; a
	// module with a dataset of its own), features (module.Featurer) and
	// decode (rendering).
	Items, Features bool
	p               *Pipeline
}

// chunk is how many items one request to a module carries: enough to
// keep its GEMMs busy, small enough for any message limit (1000 rows of
// a 2560-value feature are 10 MiB).
const chunk = 500

// Connect finds the modules of the pipeline on nc (waiting up to ctx for
// every one of want, if given) and returns them with labels. Modules of
// another latent size are an error.
func Connect(ctx context.Context, nc *nats.Conn, pipeline string, labels *Labels, want []string) (*Pipeline, error) {
	subj, err := bus.NewSubjects(pipeline)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{nc: nc, subj: subj, Labels: labels, Timeout: 2 * time.Minute}
	for {
		svcs, err := bus.Discover(ctx, nc, bus.DiscoverConfig{Pipeline: pipeline, Window: 150 * time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		if err := p.take(svcs); err != nil {
			return nil, err
		}
		missing := p.missing(want)
		if len(p.Modules) > 0 && len(missing) == 0 {
			return p, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("eval: pipeline %q: modules %v not running (found %v)", pipeline, missing, p.Names())
		}
	}
}

// take sets the modules from a discovery.
func (p *Pipeline) take(svcs []bus.Service) error {
	p.Modules, p.Latent, p.Prior = nil, 0, ""
	for _, s := range svcs {
		name := s.Module()
		if s.Role() == bus.RolePrior && name != "" {
			p.Prior = name
		}
		if s.Role() != "module" || name == "" || slices.ContainsFunc(p.Modules, func(m *Module) bool { return m.Name == name }) {
			continue
		}
		latent, _ := strconv.Atoi(s.Metadata[bus.MetaLatent])
		if p.Latent != 0 && latent != p.Latent {
			return fmt.Errorf("eval: module %s has latent size %d, another %d", name, latent, p.Latent)
		}
		p.Latent = latent
		m := &Module{Name: name, Likelihood: s.Metadata[bus.MetaLikelihood], p: p}
		for _, e := range s.Endpoints {
			m.Items = m.Items || e.Name == "score"
			m.Features = m.Features || e.Name == "features"
		}
		p.Modules = append(p.Modules, m)
	}
	slices.SortFunc(p.Modules, func(a, b *Module) int { return cmpString(a.Name, b.Name) })
	return nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (p *Pipeline) missing(want []string) []string {
	var out []string
	for _, w := range want {
		if p.Module(w) == nil && w != p.Prior {
			out = append(out, w)
		}
	}
	return out
}

// Names are the modules' names, sorted.
func (p *Pipeline) Names() []string {
	out := make([]string, len(p.Modules))
	for i, m := range p.Modules {
		out[i] = m.Name
	}
	return out
}

// Module returns the module called name, or nil.
func (p *Pipeline) Module(name string) *Module {
	for _, m := range p.Modules {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// errCannot wraps a module's answer that it cannot do what was asked (it
// lacks the optional interface).
var errCannot = errors.New("the module cannot do it")

// request sends in to a module's subject and decodes its answer into out.
func (p *Pipeline) request(ctx context.Context, subject string, in, out bus.Message, e bus.Expect) error {
	in.(interface{ SetSender(string) }).SetSender("eval")
	b, err := bus.MarshalLimit(in, bus.PayloadLimit(p.nc))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	msg, err := p.nc.RequestWithContext(ctx, subject, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%s: no module answers", subject)
	case err != nil:
		return fmt.Errorf("%s: %w", subject, err)
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		if msg.Header.Get(micro.ErrorCodeHeader) == "501" {
			return fmt.Errorf("%w: %s", errCannot, desc)
		}
		return fmt.Errorf("%s: %s", subject, desc)
	}
	e.MaxBytes = bus.PayloadLimit(p.nc)
	return bus.UnmarshalFrom(subject, msg.Data, out, e)
}

// Encode returns the module's posterior of its items ids (N×D each) and
// which of them it has.
func (m *Module) Encode(ctx context.Context, ids []uint64) (mu, logvar []float32, present []bool, err error) {
	d := m.p.Latent
	for lo := 0; lo < len(ids); lo += chunk {
		part := ids[lo:min(lo+chunk, len(ids))]
		var rep bus.EncodeReply
		if err := m.p.request(ctx, m.p.subj.Encode(m.Name), &bus.EncodeRequest{IDs: part}, &rep, bus.Expect{Latent: d, Batch: len(part)}); err != nil {
			return nil, nil, nil, err
		}
		if len(rep.Present) != len(part) {
			return nil, nil, nil, fmt.Errorf("eval: module %s said nothing of which items it has", m.Name)
		}
		mu, logvar, present = append(mu, rep.Mu.Data...), append(logvar, rep.LogVar.Data...), append(present, rep.Present...)
	}
	return mu, logvar, present, nil
}

// Score returns log p(x_i | z) of the module's items under latents: z
// holds k latents per item (len(ids)·k rows), and so does the result.
func (m *Module) Score(ctx context.Context, ids []uint64, z []float32, k int) ([]float32, error) {
	d := m.p.Latent
	per := max(1, chunk*20/max(k, 1)) // items per request: about 10,000 latents
	out := make([]float32, 0, len(ids)*k)
	for lo := 0; lo < len(ids); lo += per {
		hi := min(lo+per, len(ids))
		rows := (hi - lo) * k
		var rep bus.ScoreReply
		in := &bus.ScoreRequest{IDs: ids[lo:hi], Z: bus.Matrix(rows, d, z[lo*k*d:hi*k*d])}
		if err := m.p.request(ctx, m.p.subj.Score(m.Name), in, &rep, bus.Expect{Batch: rows}); err != nil {
			return nil, err
		}
		out = append(out, rep.LL.Data...)
	}
	return out, nil
}

// Feats returns the module's features of its items ids followed by its
// decoder's means at the n latents z, F values each, and F.
func (m *Module) Feats(ctx context.Context, ids []uint64, z []float32, n int) ([]float32, int, error) {
	d, f := m.p.Latent, 0
	var out []float32
	for lo := 0; lo < len(ids)+n; lo += chunk {
		hi := min(lo+chunk, len(ids)+n)
		in := &bus.FeatureRequest{}
		if lo < len(ids) {
			in.IDs = ids[lo:min(hi, len(ids))]
		}
		if zlo, zhi := max(lo, len(ids))-len(ids), hi-len(ids); zhi > zlo {
			in.Z = bus.Matrix(zhi-zlo, d, z[zlo*d:zhi*d])
		}
		var rep bus.FeatureReply
		if err := m.p.request(ctx, m.p.subj.Features(m.Name), in, &rep, bus.Expect{Batch: hi - lo}); err != nil {
			return nil, 0, err
		}
		f = rep.X.Cols()
		out = append(out, rep.X.Data...)
	}
	return out, f, nil
}

// Render returns what the module renders of each of the n latents z.
func (m *Module) Render(ctx context.Context, z []float32, n int) ([]bus.Payload, error) {
	var rep bus.DecodeReply
	if err := m.p.request(ctx, m.p.subj.Decode(m.Name), &bus.DecodeRequest{Z: bus.Matrix(n, m.p.Latent, z)}, &rep, bus.Expect{Batch: n}); err != nil {
		return nil, err
	}
	return rep.Outputs, nil
}
