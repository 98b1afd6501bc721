package integrator

import (
	"context"
	"math"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
)

// streamPriorWait bounds how long a belief waits for the prior module: a
// robot's perception must not stall on it, so a late prior leaves the
// belief under N(0, I) (counted in StreamStats.PlainPrior).
const streamPriorWait = 200 * time.Millisecond

// underPrior, with a prior module in the pipeline, replaces the N(0, I)
// prior in s.prec and s.num (the belief's sums) by the module's prior for
// what the sources say, and returns the module and the belief's category;
// without one, or if it fails, it leaves them and returns "" and −1.
func (s *streamer) underPrior() (string, int32) {
	m := s.ig.PriorModule()
	if m == "" {
		return "", -1
	}
	d := len(s.prec)
	req, rep := &s.priorReq, &s.priorRep
	req.Step, req.Terms = s.seq+1, growTo(req.Terms, 1)
	ev := &req.Terms[0]
	ev.Prec.SetMatrix(1, d, growTo(ev.Prec.Data, d))
	ev.Shift.SetMatrix(1, d, growTo(ev.Shift.Data, d))
	for j := range d {
		ev.Prec.Data[j], ev.Shift.Data[j] = float32(max(s.prec[j]-1, 0)), float32(s.num[j])
	}
	ctx, cancel := context.WithTimeout(context.Background(), streamPriorWait)
	defer cancel()
	if err := s.ig.request(ctx, streamPriorWait, s.ig.subj.Prior(m), req, rep, bus.Expect{Latent: d, Batch: 1, Terms: 1}); err != nil {
		s.mu.Lock()
		s.stats.PlainPrior++
		s.mu.Unlock()
		s.ig.limit.Warn(s.ig.log, "stream prior", "the prior module gave a belief no prior: it is fused under N(0, I)", "peer", m, "err", err)
		return "", -1
	}
	t := rep.Terms[0]
	for j := range d {
		l, _ := poe.ClampLogVar(float64(t.LogVar.Data[j]))
		tp := math.Exp(-l)
		s.prec[j] += tp - 1
		s.num[j] += tp * float64(t.Mu.Data[j])
	}
	concept := int32(-1)
	if len(t.Concept) == 1 {
		concept = t.Concept[0]
	}
	return m, concept
}
