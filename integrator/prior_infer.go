package integrator

import (
	"context"
	"fmt"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
)

// Inference under a prior module: when the pipeline has one (discovered by
// its role) and the aggregation can fuse under a prior, an inference asks
// it for the prior of what the experts say, as training did, and fuses
// under that; its category of each latent goes in the reply. With nothing
// observed, each latent gets a category of its own drawn from the module
// (generation samples the mixture, not N(0, I)). A prior module that
// fails is named in the reply's Missing, and the inference fuses under
// N(0, I).

// posterior is the joint posterior of the experts (one item) and the
// latents to decode: its mean, or n draws. Under a prior module the item
// is repeated n times, so that each draw has a prior of its own.
func (ig *Integrator) posterior(ctx context.Context, experts []poe.Expert, modules []string, in *bus.InferRequest, out *bus.InferReply) aggregate.Posterior {
	d, n := ig.cfg.Latent, max(in.Samples, 1)
	ig.mu.Lock()
	prior := ig.prior
	ig.mu.Unlock()
	cond, ok := ig.cfg.Aggregation.(aggregate.Conditioned)
	if prior == "" || !ok {
		return ig.cfg.Aggregation.Posterior(experts, modules, 1, d)
	}
	rows := tile(experts, n, d)
	prec, shift := make([]float32, n*d), make([]float32, n*d)
	cond.Evidence(prec, shift, rows, modules, n, d)
	req := &bus.PriorRequest{Step: uint64(in.Seed), Terms: []bus.Evidence{{Prec: bus.Matrix(n, d, prec), Shift: bus.Matrix(n, d, shift)}}}
	var rep bus.PriorReply
	rctx, cancel := context.WithTimeout(ctx, ig.cfg.Deadline)
	defer cancel()
	err := ig.request(rctx, ig.cfg.Deadline, ig.subj.Prior(prior), req, &rep, bus.Expect{Latent: d, Batch: n, Terms: 1})
	if err != nil {
		out.Missing[prior] = fmt.Sprintf("prior module: %v; fused under N(0, I)", err)
		return ig.cfg.Aggregation.Posterior(experts, modules, 1, d)
	}
	t := rep.Terms[0]
	out.Prior, out.Concept = prior, t.Concept
	return cond.PosteriorUnder(poe.Prior{Mu: t.Mu.Data, LogVar: t.LogVar.Data}, rows, modules, n, d)
}

// tile repeats every expert's one row n times.
func tile(experts []poe.Expert, n, d int) []poe.Expert {
	out := make([]poe.Expert, len(experts))
	for k, e := range experts {
		t := poe.Expert{Mu: make([]float32, 0, n*d), LogVar: make([]float32, 0, n*d)}
		for range n {
			t.Mu, t.LogVar = append(t.Mu, e.Mu[:d]...), append(t.LogVar, e.LogVar[:d]...)
			if e.Present != nil {
				t.Present = append(t.Present, e.Present[0])
			}
		}
		out[k] = t
	}
	return out
}
