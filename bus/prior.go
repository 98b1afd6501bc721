package bus

import (
	"math"
)

// Prior modules (SERKET's concept mixture, an HMM over time, …) are not
// modalities: they see no observation, only what the modalities' experts
// say of each item, and give back the prior the integrator fuses with and
// takes the KL from, in place of N(0, I). The integrator asks at every
// training step with a PriorRequest on …train.prior.<module>, the only
// subject the module learns from; anyone may ask on …prior.<module>
// (inference, evaluation, streaming). The module answers with a
// PriorReply.

const (
	TypePriorRequest = "serket.prior.request"
	TypePriorReply   = "serket.prior.reply"
)

// RolePrior is a prior module's MetaRole: the integrator and evaluation
// find a pipeline's prior module by it.
const RolePrior = "prior"

// MaxConcepts bounds a prior module's category numbers.
const MaxConcepts = 1 << 16

// Evidence is what a term's experts say of each of B items, in natural
// parameters so that an item no expert saw is simply zero: per dimension
// the precision (≥ 0) and the precision-weighted mean (B×D each). With
// the prior p, the term's fused posterior is p · N(Shift/Prec, 1/Prec).
type Evidence struct {
	Prec  Tensor `msgpack:"prec"`
	Shift Tensor `msgpack:"shift"`
}

// PriorRequest asks a prior module for the prior of every item of every
// term: integrator → prior module. In a training step (Train, with the
// session the module is enrolled in as Run) the module may also learn
// from it; an inference request (Train false) changes nothing.
type PriorRequest struct {
	Header
	Step  uint64     `msgpack:"step"`
	Train bool       `msgpack:"train"`
	Terms []Evidence `msgpack:"terms"`
}

// MessageType implements Message.
func (*PriorRequest) MessageType() string { return TypePriorRequest }

func (m *PriorRequest) check(e Expect) error {
	if len(m.Terms) == 0 || len(m.Terms) > MaxTerms || (e.Terms > 0 && len(m.Terms) != e.Terms) {
		return badf("terms", ErrShape, "%d terms, want 1 to %d (%d expected)", len(m.Terms), MaxTerms, e.Terms)
	}
	if e.Batch == 0 { // every term has the first one's rows, at least one
		if e.Batch = m.Terms[0].Prec.Rows(); e.Batch < 1 {
			return badf("terms[0].prec", ErrShape, "no rows")
		}
	}
	for i := range m.Terms {
		if err := m.Terms[i].check(e); err != nil {
			return inElem("terms", i, err)
		}
	}
	return nil
}

func (ev *Evidence) check(e Expect) error {
	if err := checkMatrix(".prec", ev.Prec, 0, e); err != nil {
		return err
	}
	if err := checkMatrix(".shift", ev.Shift, ev.Prec.Rows(), Expect{Latent: ev.Prec.Cols()}); err != nil {
		return err
	}
	for i, v := range ev.Prec.Data {
		if v < 0 {
			return badf(".prec", ErrField, "element %d is %g: a precision is at least 0", i, v)
		}
	}
	return nil
}

// PriorTerm is a prior module's prior for one term's items: a diagonal
// Gaussian per item (Mu, LogVar B×D) and, if the module has categories,
// the category each item is given (Concept, B of them, −1 for none) and
// its probability (Prob, B).
type PriorTerm struct {
	Mu      Tensor  `msgpack:"mu"`
	LogVar  Tensor  `msgpack:"logvar"`
	Concept []int32 `msgpack:"c,omitempty"`
	Prob    Tensor  `msgpack:"p"`
}

// PriorReply answers a PriorRequest with a prior per term, in its order:
// prior module → integrator.
type PriorReply struct {
	Header
	Step  uint64      `msgpack:"step"`
	Terms []PriorTerm `msgpack:"terms"`
	// Learned says the module learned from the request: a training
	// request it answers without learning (it is not enrolled in the
	// request's session, say) leaves it false, and the integrator says so.
	Learned bool `msgpack:"learned,omitempty"`
}

// MessageType implements Message.
func (*PriorReply) MessageType() string { return TypePriorReply }

func (m *PriorReply) check(e Expect) error {
	if len(m.Terms) == 0 || len(m.Terms) > MaxTerms || (e.Terms > 0 && len(m.Terms) != e.Terms) {
		return badf("terms", ErrShape, "%d terms, want 1 to %d (%d expected)", len(m.Terms), MaxTerms, e.Terms)
	}
	if e.Batch == 0 {
		if e.Batch = m.Terms[0].Mu.Rows(); e.Batch < 1 {
			return badf("terms[0].mu", ErrShape, "no rows")
		}
	}
	for i := range m.Terms {
		if err := m.Terms[i].check(e); err != nil {
			return inElem("terms", i, err)
		}
	}
	return nil
}

// MaxPriorLogVar bounds a prior's log-variance: beyond it a prior would
// say nothing (or everything) and is more likely garbage than a belief.
const MaxPriorLogVar = 30

func (p *PriorTerm) check(e Expect) error {
	if err := checkMatrix(".mu", p.Mu, 0, e); err != nil {
		return err
	}
	rows := p.Mu.Rows()
	if err := checkMatrix(".logvar", p.LogVar, rows, Expect{Latent: p.Mu.Cols()}); err != nil {
		return err
	}
	for i, v := range p.LogVar.Data {
		if math.Abs(float64(v)) > MaxPriorLogVar {
			return badf(".logvar", ErrField, "element %d is %g: a prior's log-variance is within ±%d", i, v, MaxPriorLogVar)
		}
	}
	if err := p.Prob.check(); err != nil {
		return bad(".p", err)
	}
	if !p.Prob.Empty() && (len(p.Prob.Shape) != 1 || p.Prob.Shape[0] != rows) {
		return badf(".p", ErrShape, "shape %v, want [%d]", p.Prob.Shape, rows)
	}
	for i, v := range p.Prob.Data {
		if v < 0 || v > 1 {
			return badf(".p", ErrField, "element %d is %g: a probability is in [0, 1]", i, v)
		}
	}
	return checkConcepts(".c", p.Concept, rows)
}

// checkConcepts checks categories given to rows items: none, or one per
// row, each −1 (none) or in [0, MaxConcepts).
func checkConcepts(field string, cs []int32, rows int) error {
	if len(cs) != 0 && len(cs) != rows {
		return badf(field, ErrShape, "%d categories for %d rows", len(cs), rows)
	}
	for i, c := range cs {
		if c < -1 || c >= MaxConcepts {
			return badf(field, ErrField, "element %d is %d: a category is −1 (none) or in [0, %d)", i, c, MaxConcepts)
		}
	}
	return nil
}
