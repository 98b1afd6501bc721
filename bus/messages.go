package bus

import (
	"fmt"
	"slices"
)

// Message type strings. They are stable: changing one is a wire version bump.
const (
	TypeStepBegin      = "serket.step"
	TypePosterior      = "serket.posterior"
	TypeLatent         = "serket.latent"
	TypeZGrad          = "serket.zgrad"
	TypeExpertGrad     = "serket.egrad"
	TypeInferRequest   = "serket.infer.request"
	TypeInferReply     = "serket.infer.reply"
	TypeEncodeRequest  = "serket.encode.request"
	TypeEncodeReply    = "serket.encode.reply"
	TypeDecodeRequest  = "serket.decode.request"
	TypeDecodeReply    = "serket.decode.reply"
	TypeBelief         = "serket.belief"
	TypeControl        = "serket.control"
	TypeRunState       = "serket.runstate"
	TypeFeatureRequest = "serket.features.request"
	TypeFeatureReply   = "serket.features.reply"
	TypeScoreRequest   = "serket.score.request"
	TypeScoreReply     = "serket.score.reply"
)

// Payload is one raw observation or one rendered output: bytes and their
// media type ("image/png", "text/plain; charset=utf-8", "audio/wav", …).
type Payload struct {
	Type string `msgpack:"type"`
	Data []byte `msgpack:"data"`
}

// Term is one term of a fusion plan: the experts fused (Subset) and the
// modalities whose likelihood is scored under that fused latent (Targets).
type Term struct {
	Subset  []string `msgpack:"s"`
	Targets []string `msgpack:"r"`
	// From, for one stratum of a mixture, are the modules of Subset
	// whose posteriors the latent was drawn from (a mixture of experts'
	// one expert, a mixture of products' subset); empty: all of Subset. A
	// module with a private latent draws it from its own posterior only
	// for a latent drawn from its.
	From []string `msgpack:"f,omitempty"`
}

// StepBegin starts a training or evaluation step: the integrator → every module.
type StepBegin struct {
	Header
	Step  uint64   `msgpack:"step"`
	Epoch int      `msgpack:"epoch"`
	Train bool     `msgpack:"train"` // false: score only, no parameter update
	IDs   []uint64 `msgpack:"ids"`   // sample ids of the batch, B of them
	Plan  []Term   `msgpack:"plan"`
	// Lambda weighs each module's log-likelihood in the objective; a
	// module not listed has weight 1.
	Lambda map[string]float32 `msgpack:"lambda"`
	// Beta is the step's KL weight: a module with a private latent weighs
	// its own KL term by it, as the integrator weighs the shared one's.
	Beta float32 `msgpack:"beta,omitempty"`
}

// MessageType implements Message.
func (*StepBegin) MessageType() string { return TypeStepBegin }

func (m *StepBegin) check(e Expect) error {
	if len(m.IDs) == 0 || len(m.IDs) > MaxBatch {
		return badf("ids", ErrField, "%d sample ids, want 1 to %d", len(m.IDs), MaxBatch)
	}
	if e.Batch > 0 && len(m.IDs) != e.Batch {
		return badf("ids", ErrShape, "%d sample ids, want %d", len(m.IDs), e.Batch)
	}
	if len(m.Plan) == 0 || len(m.Plan) > MaxTerms {
		return badf("plan", ErrField, "%d terms, want 1 to %d", len(m.Plan), MaxTerms)
	}
	// Of several bad entries the least name is reported, so that the error
	// does not depend on the map's order.
	var badName, badWeight string
	nameBad, weightBad := false, false
	for name, l := range m.Lambda {
		switch {
		case !ValidName(name):
			if !nameBad || name < badName {
				badName, nameBad = name, true
			}
		case l < 0 || l != l || l > 1e6:
			if !weightBad || name < badWeight {
				badWeight, weightBad = name, true
			}
		}
	}
	if nameBad {
		return badf("lambda", ErrField, "%q is not a valid module name", badName)
	}
	if weightBad {
		return badf("lambda."+badWeight, ErrField, "weight %v, want 0 to 1e6", m.Lambda[badWeight])
	}
	if m.Beta < 0 || m.Beta != m.Beta || m.Beta > 1e6 {
		return badf("beta", ErrField, "KL weight %v, want 0 to 1e6", m.Beta)
	}
	for i, t := range m.Plan {
		if len(t.Subset) == 0 {
			return inElem("plan", i, badf(".s", ErrField, "empty subset"))
		}
		if err := checkNames(".s", t.Subset); err != nil {
			return inElem("plan", i, err)
		}
		if err := checkNames(".r", t.Targets); err != nil {
			return inElem("plan", i, err)
		}
		if err := checkNames(".f", t.From); err != nil {
			return inElem("plan", i, err)
		}
		for _, m := range t.From {
			if !slices.Contains(t.Subset, m) {
				return inElem("plan", i, badf(".f", ErrField, "%q is not in the term's subset", m))
			}
		}
	}
	return nil
}

// Posterior is a module's Gaussian posterior q(z|x) for a batch: module →
// integrator. Mu and LogVar are B×D; Present has B entries (empty: all
// present). Time (Unix nanoseconds) is set for streaming fusion.
type Posterior struct {
	Header
	Step    uint64 `msgpack:"step"`
	Time    int64  `msgpack:"t"`
	Mu      Tensor `msgpack:"mu"`
	LogVar  Tensor `msgpack:"logvar"`
	Present []bool `msgpack:"present"`
}

// MessageType implements Message.
func (*Posterior) MessageType() string { return TypePosterior }

func (m *Posterior) check(e Expect) error {
	if err := checkMatrix("mu", m.Mu, 0, e); err != nil {
		return err
	}
	if err := checkMatrix("logvar", m.LogVar, m.Mu.Rows(), Expect{Latent: m.Mu.Cols()}); err != nil {
		return err
	}
	if len(m.Present) != 0 && len(m.Present) != m.Mu.Rows() {
		return badf("present", ErrShape, "%d entries for %d rows", len(m.Present), m.Mu.Rows())
	}
	return nil
}

// Latent carries the sampled shared latent of every plan term of a step:
// integrator → every module. Z[i] is B×D for term i. Members are the modules
// whose posterior was fused this step; a module not among them sits the step out.
type Latent struct {
	Header
	Step    uint64   `msgpack:"step"`
	Members []string `msgpack:"members"`
	Z       []Tensor `msgpack:"z"`
	// W weighs the rows of each term's objective (B entries, 0 to 1), for
	// objectives whose terms count rows differently: a mixture's strata
	// weigh 1/M in a row of M experts and 0 where the term's own expert is
	// absent; a seen-only run (integrator.Pairing) weighs 0 the rows none
	// of a term's experts saw. A module multiplies its rows' weights by
	// them (Decode's w).
	// Empty: every row of every term weighs 1; an empty entry: that term's.
	W []Tensor `msgpack:"w,omitempty"`
}

// MessageType implements Message.
func (*Latent) MessageType() string { return TypeLatent }

func (m *Latent) check(e Expect) error {
	if err := checkNames("members", m.Members); err != nil {
		return err
	}
	if len(m.Z) > MaxTerms || (e.Terms > 0 && len(m.Z) != e.Terms) {
		return badf("z", ErrShape, "%d latents, want one per plan term (%d)", len(m.Z), e.Terms)
	}
	rows := 0
	for i, z := range m.Z {
		if err := checkMatrix("", z, rows, e); err != nil {
			return inElem("z", i, err)
		}
		rows = z.Rows()
	}
	return m.checkWeights(rows)
}

// checkWeights holds W to one entry per latent, each empty or a vector of
// a weight per row between 0 and 1.
func (m *Latent) checkWeights(rows int) error {
	if len(m.W) == 0 {
		return nil
	}
	if len(m.W) != len(m.Z) {
		return badf("w", ErrShape, "%d weight vectors for %d latents, want one per latent", len(m.W), len(m.Z))
	}
	for i, w := range m.W {
		if w.Empty() {
			continue
		}
		if err := w.check(); err != nil {
			return inElem("w", i, bad("", err))
		}
		if len(w.Shape) != 1 || w.Shape[0] != rows {
			return inElem("w", i, badf("", ErrShape, "shape %v, want [%d] (a weight per row)", w.Shape, rows))
		}
		for r, v := range w.Data {
			if v < 0 || v > 1 {
				return inElem("w", i, badf("", ErrField, "row %d weighs %v, want 0 to 1", r, v))
			}
		}
	}
	return nil
}

// TermGrad is a module's contribution to one plan term: dL/dz (B×D, already
// weighted by the module's lambda) and log p(x|z) per row (B).
type TermGrad struct {
	Term   int    `msgpack:"term"`
	DZ     Tensor `msgpack:"dz"`
	LogLik Tensor `msgpack:"ll"`
}

// ZGrad is a module's decoder result for every term that targets it:
// module → integrator.
type ZGrad struct {
	Header
	Step  uint64     `msgpack:"step"`
	Terms []TermGrad `msgpack:"terms"`
}

// MessageType implements Message.
func (*ZGrad) MessageType() string { return TypeZGrad }

func (m *ZGrad) check(e Expect) error {
	if len(m.Terms) > MaxTerms {
		return badf("terms", ErrTooLarge, "%d terms, at most %d", len(m.Terms), MaxTerms)
	}
	for i, t := range m.Terms {
		if err := t.check(e); err != nil {
			return inElem("terms", i, err)
		}
	}
	return nil
}

func (t *TermGrad) check(e Expect) error {
	if t.Term < 0 || t.Term >= MaxTerms || (e.Terms > 0 && t.Term >= e.Terms) {
		return badf(".term", ErrField, "term index %d out of range", t.Term)
	}
	if err := checkMatrix(".dz", t.DZ, 0, e); err != nil {
		return err
	}
	if err := t.LogLik.check(); err != nil {
		return bad(".ll", err)
	}
	if len(t.LogLik.Shape) != 1 || t.LogLik.Shape[0] != t.DZ.Rows() {
		return badf(".ll", ErrShape, "shape %v, want [%d]", t.LogLik.Shape, t.DZ.Rows())
	}
	return nil
}

// ExpertGrad is the gradient of the step's objective with respect to one
// module's posterior parameters, summed over every term its expert took part
// in: integrator → that module. DMu and DLogVar are B×D.
type ExpertGrad struct {
	Header
	Step    uint64 `msgpack:"step"`
	DMu     Tensor `msgpack:"dmu"`
	DLogVar Tensor `msgpack:"dlogvar"`
}

// MessageType implements Message.
func (*ExpertGrad) MessageType() string { return TypeExpertGrad }

func (m *ExpertGrad) check(e Expect) error {
	if err := checkMatrix("dmu", m.DMu, 0, e); err != nil {
		return err
	}
	return checkMatrix("dlogvar", m.DLogVar, m.DMu.Rows(), Expect{Latent: m.DMu.Cols()})
}

// InferRequest asks a pipeline to fuse what the given modules observe and to
// render the wanted modules' decodings: client → integrator.
type InferRequest struct {
	Header
	Observations map[string]Payload `msgpack:"obs"`  // module → one raw observation
	Want         []string           `msgpack:"want"` // modules to decode
	Samples      int                `msgpack:"n"`    // latent samples to decode; 0 decodes the fused mean once
	Seed         int64              `msgpack:"seed"` // noise seed for the samples
}

// MessageType implements Message.
func (*InferRequest) MessageType() string { return TypeInferRequest }

func (m *InferRequest) check(Expect) error {
	if len(m.Observations) > MaxModules {
		return badf("obs", ErrTooLarge, "%d observations, at most %d", len(m.Observations), MaxModules)
	}
	for name, p := range m.Observations {
		if !ValidName(name) {
			return badf("obs", ErrField, "%q is not a valid module name", name)
		}
		if err := checkPayloads("obs."+name, []Payload{p}); err != nil {
			return err
		}
	}
	if err := checkNames("want", m.Want); err != nil {
		return err
	}
	if m.Samples < 0 || m.Samples > MaxSamples {
		return badf("n", ErrField, "%d samples, want 0 to %d", m.Samples, MaxSamples)
	}
	return nil
}

// InferReply answers an InferRequest: the fused posterior (1×D), the latents
// that were decoded (N×D), which modules contributed, why others did not, and
// every wanted module's rendered outputs (N each).
type InferReply struct {
	Header
	Mu           Tensor               `msgpack:"mu"`
	LogVar       Tensor               `msgpack:"logvar"`
	Z            Tensor               `msgpack:"z"`
	Contributors []string             `msgpack:"contrib"`
	Missing      map[string]string    `msgpack:"missing"` // module → reason
	Outputs      map[string][]Payload `msgpack:"out"`
	// Prior is the prior module whose prior the posterior is under ("":
	// N(0, I)), and Concept the category it gave each latent of Z (empty
	// if it has none; −1 for a latent it gave none).
	Prior   string  `msgpack:"prior,omitempty"`
	Concept []int32 `msgpack:"c,omitempty"`
}

// MessageType implements Message.
func (*InferReply) MessageType() string { return TypeInferReply }

func (m *InferReply) check(e Expect) error {
	if err := checkMatrix("mu", m.Mu, 1, e); err != nil {
		return err
	}
	if err := checkMatrix("logvar", m.LogVar, 1, Expect{Latent: m.Mu.Cols()}); err != nil {
		return err
	}
	if err := checkMatrix("z", m.Z, 0, Expect{Latent: m.Mu.Cols()}); err != nil {
		return err
	}
	if err := checkNames("contrib", m.Contributors); err != nil {
		return err
	}
	if m.Prior != "" && !ValidName(m.Prior) {
		return badf("prior", ErrField, "%q is not a valid module name", m.Prior)
	}
	if err := checkConcepts("c", m.Concept, m.Z.Rows()); err != nil {
		return err
	}
	if len(m.Missing) > MaxModules || len(m.Outputs) > MaxModules {
		return badf("out", ErrTooLarge, "more than %d modules", MaxModules)
	}
	for name, outs := range m.Outputs {
		if !ValidName(name) {
			return badf("out", ErrField, "%q is not a valid module name", name)
		}
		if err := checkPayloads("out."+name, outs); err != nil {
			return err
		}
	}
	return nil
}

// EncodeRequest asks a module to encode raw observations and its own items
// by sample id (evaluation), one posterior row each, the observations'
// first: integrator or evaluator → module.
type EncodeRequest struct {
	Header
	Observations []Payload `msgpack:"obs"`
	IDs          []uint64  `msgpack:"ids"`
}

// MessageType implements Message.
func (*EncodeRequest) MessageType() string { return TypeEncodeRequest }

func (m *EncodeRequest) check(Expect) error {
	if n := len(m.Observations) + len(m.IDs); n == 0 || n > MaxBatch {
		return badf("obs", ErrField, "%d observations and %d ids, want 1 to %d in all", len(m.Observations), len(m.IDs), MaxBatch)
	}
	return checkPayloads("obs", m.Observations)
}

// checkIDs checks a batch of sample ids.
func checkIDs(ids []uint64) error {
	if len(ids) == 0 || len(ids) > MaxBatch {
		return badf("ids", ErrField, "%d sample ids, want 1 to %d", len(ids), MaxBatch)
	}
	return nil
}

// EncodeReply is a module's posterior for an EncodeRequest: Mu and LogVar
// N×D; with sample ids, Present says for every row whether the module has
// it (an absent item's row is a placeholder; observations are present).
type EncodeReply struct {
	Header
	Mu      Tensor `msgpack:"mu"`
	LogVar  Tensor `msgpack:"logvar"`
	Present []bool `msgpack:"present"`
}

// MessageType implements Message.
func (*EncodeReply) MessageType() string { return TypeEncodeReply }

func (m *EncodeReply) check(e Expect) error {
	if err := checkMatrix("mu", m.Mu, 0, e); err != nil {
		return err
	}
	if len(m.Present) != 0 && len(m.Present) != m.Mu.Rows() {
		return badf("present", ErrShape, "%d entries for %d rows", len(m.Present), m.Mu.Rows())
	}
	return checkMatrix("logvar", m.LogVar, m.Mu.Rows(), Expect{Latent: m.Mu.Cols()})
}

// FeatureRequest asks a module for its vector view (module.Featurer) of its
// own items by sample id and of its decoder's means at latents Z (rows×D),
// the items' first: evaluator → module. Judges learn classes from the
// first and tell the classes of the second.
type FeatureRequest struct {
	Header
	IDs []uint64 `msgpack:"ids"`
	Z   Tensor   `msgpack:"z"`
}

// MessageType implements Message.
func (*FeatureRequest) MessageType() string { return TypeFeatureRequest }

func (m *FeatureRequest) check(e Expect) error {
	if len(m.Z.Shape) > 0 {
		if err := checkMatrix("z", m.Z, 0, e); err != nil {
			return err
		}
	}
	if n := len(m.IDs) + m.Z.Rows(); n == 0 || n > MaxBatch {
		return badf("ids", ErrField, "%d ids and %d latents, want 1 to %d in all", len(m.IDs), m.Z.Rows(), MaxBatch)
	}
	return nil
}

// FeatureReply carries one feature vector a row (X is rows×F) and, with
// items, for every row whether the module has it.
type FeatureReply struct {
	Header
	X       Tensor `msgpack:"x"`
	Present []bool `msgpack:"present"`
}

// MessageType implements Message.
func (*FeatureReply) MessageType() string { return TypeFeatureReply }

func (m *FeatureReply) check(e Expect) error {
	if err := checkMatrix("x", m.X, e.Batch, Expect{}); err != nil {
		return err
	}
	if len(m.Present) != 0 && len(m.Present) != m.X.Rows() {
		return badf("present", ErrShape, "%d entries for %d rows", len(m.Present), m.X.Rows())
	}
	return nil
}

// ScoreRequest asks a module for log p(x_i | z) of its own items under
// latents: IDs has N items and Z (N·K×D) K latents per item, row r scoring
// item IDs[r/K]. Evaluation's importance sampling sends it.
type ScoreRequest struct {
	Header
	IDs []uint64 `msgpack:"ids"`
	Z   Tensor   `msgpack:"z"`
}

// MessageType implements Message.
func (*ScoreRequest) MessageType() string { return TypeScoreRequest }

func (m *ScoreRequest) check(e Expect) error {
	if err := checkIDs(m.IDs); err != nil {
		return err
	}
	if err := checkMatrix("z", m.Z, 0, e); err != nil {
		return err
	}
	if r := m.Z.Rows(); r == 0 || r%len(m.IDs) != 0 {
		return badf("z", ErrShape, "%d latents for %d items: want a positive multiple", r, len(m.IDs))
	}
	return nil
}

// ScoreReply carries log p(x | z) per latent row of a ScoreRequest (LL has
// N·K entries) and, per item, whether the module has it (an absent item's
// rows score 0).
type ScoreReply struct {
	Header
	LL      Tensor `msgpack:"ll"`
	Present []bool `msgpack:"present"`
}

// MessageType implements Message.
func (*ScoreReply) MessageType() string { return TypeScoreReply }

func (m *ScoreReply) check(e Expect) error {
	if err := m.LL.check(); err != nil {
		return bad("ll", err)
	}
	if len(m.LL.Shape) != 1 || e.Batch > 0 && m.LL.Shape[0] != e.Batch {
		return badf("ll", ErrShape, "shape %v, want [%d]", m.LL.Shape, e.Batch)
	}
	return nil
}

// DecodeRequest asks a module to render its decoding of each latent row
// (Z is N×D): integrator → module.
type DecodeRequest struct {
	Header
	Z Tensor `msgpack:"z"`
}

// MessageType implements Message.
func (*DecodeRequest) MessageType() string { return TypeDecodeRequest }

func (m *DecodeRequest) check(e Expect) error {
	if err := checkMatrix("z", m.Z, 0, e); err != nil {
		return err
	}
	if m.Z.Rows() == 0 {
		return badf("z", ErrShape, "no rows")
	}
	return nil
}

// DecodeReply carries one rendered output per latent row of a DecodeRequest.
type DecodeReply struct {
	Header
	Outputs []Payload `msgpack:"out"`
}

// MessageType implements Message.
func (*DecodeReply) MessageType() string { return TypeDecodeReply }

func (m *DecodeReply) check(e Expect) error {
	if e.Batch > 0 && len(m.Outputs) != e.Batch {
		return badf("out", ErrShape, "%d outputs for %d latents", len(m.Outputs), e.Batch)
	}
	return checkPayloads("out", m.Outputs)
}

// Source is one module's contribution to a belief and how old its posterior
// was when the belief was fused.
type Source struct {
	Module string `msgpack:"m"`
	AgeNs  int64  `msgpack:"age"`
}

// Belief is the streaming fused posterior (Mu and LogVar 1×D) at Time (Unix
// nanoseconds): integrator → anyone listening.
type Belief struct {
	Header
	Seq     uint64   `msgpack:"seq"`
	Time    int64    `msgpack:"t"`
	Mu      Tensor   `msgpack:"mu"`
	LogVar  Tensor   `msgpack:"logvar"`
	Sources []Source `msgpack:"src"`
	// Prior is the prior module the belief is fused under ("": N(0, I)),
	// and Concept the category it places the belief in (−1: none).
	Prior   string `msgpack:"prior,omitempty"`
	Concept int32  `msgpack:"c,omitempty"`
}

// MessageType implements Message.
func (*Belief) MessageType() string { return TypeBelief }

func (m *Belief) check(e Expect) error {
	if err := checkMatrix("mu", m.Mu, 1, e); err != nil {
		return err
	}
	if err := checkMatrix("logvar", m.LogVar, 1, Expect{Latent: m.Mu.Cols()}); err != nil {
		return err
	}
	if len(m.Sources) > MaxModules {
		return badf("src", ErrTooLarge, "%d sources, at most %d", len(m.Sources), MaxModules)
	}
	for i, s := range m.Sources {
		if !ValidName(s.Module) {
			return badf(fmt.Sprintf("src[%d]", i), ErrField, "%q is not a valid module name", s.Module)
		}
		for _, t := range m.Sources[:i] {
			if t.Module == s.Module {
				return badf(fmt.Sprintf("src[%d]", i), ErrField, "%q appears twice", s.Module)
			}
		}
		if s.AgeNs < 0 {
			return badf(fmt.Sprintf("src[%d].age", i), ErrField, "negative age %d", s.AgeNs)
		}
	}
	if m.Prior != "" && !ValidName(m.Prior) {
		return badf("prior", ErrField, "%q is not a valid module name", m.Prior)
	}
	if m.Concept < -1 || m.Concept >= MaxConcepts {
		return badf("c", ErrField, "%d: a category is −1 (none) or in [0, %d)", m.Concept, MaxConcepts)
	}
	return nil
}

// Control operations: what the integrator asks of a module about a
// training run (Control.Op).
const (
	// OpEnrol makes the module take part in the session Header.Run of
	// run ID from step Step (its earlier session, if any, ends). With
	// Adopt, the module takes its weights as the run's at Step (a new
	// run starts from whatever weights its modules have).
	OpEnrol = "enrol"
	// OpSave has the module save its checkpoint, labelled with run ID
	// and step Step: the weights it has once it has handled every
	// message of the session up to that step.
	OpSave = "save"
	// OpRestore has the module load its checkpoint of run ID at step
	// Step (its newest file or the previous generation, whichever holds
	// it), to roll the run back to its last checkpoint.
	OpRestore = "restore"
)

// Control is the integrator's request to one module about a training run,
// on …train.ctl.<module>, answered with a RunState. It travels on the
// module's ordered training channel, so the module handles it after every
// training message the integrator sent before it. Header.Run is the
// session: the one to enrol in (OpEnrol), or the one the module must be
// enrolled in (OpSave, OpRestore).
type Control struct {
	Header
	Op    string `msgpack:"op"`
	ID    string `msgpack:"id"`   // the run's id: kept in checkpoints, the same across its sessions
	Step  uint64 `msgpack:"step"` // see the Op* constants
	Adopt bool   `msgpack:"adopt"`
	// Frozen (with OpEnrol) has the module take part in the run's steps
	// without learning: it encodes and decodes, and never changes its
	// weights or writes its checkpoint (coordinated training of another
	// module against it). A module with no trained weights refuses it.
	Frozen bool `msgpack:"frozen,omitempty"`
}

// MessageType implements Message.
func (*Control) MessageType() string { return TypeControl }

func (m *Control) check(Expect) error {
	switch m.Op {
	case OpEnrol, OpSave, OpRestore:
	default:
		return badf("op", ErrField, "unknown operation %q (want %s, %s or %s)", m.Op, OpEnrol, OpSave, OpRestore)
	}
	if !ValidToken(m.Run) {
		return badf("run", ErrField, "a control needs a session token (hex digits, at most %d), got %q", MaxTokenLen, m.Run)
	}
	if !ValidToken(m.ID) {
		return badf("id", ErrField, "run id %q is not a token (hex digits, at most %d)", m.ID, MaxTokenLen)
	}
	return nil
}

// RunState is a module's answer to a Control: the run and step its
// weights are of after it (ID "" when they are of no run: fresh, or from a
// checkpoint without a label), the process's instance (its micro service
// id, new at every start), whether it keeps a checkpoint it can save and
// restore, and, if the control was refused or failed, why.
type RunState struct {
	Header
	ID       string `msgpack:"id"`
	Step     uint64 `msgpack:"step"`
	Instance string `msgpack:"inst"`
	Keeps    bool   `msgpack:"keeps"`
	Err      string `msgpack:"err"`
}

// MessageType implements Message.
func (*RunState) MessageType() string { return TypeRunState }

func (m *RunState) check(Expect) error {
	if m.ID != "" && !ValidToken(m.ID) {
		return badf("id", ErrField, "run id %q is not a token", m.ID)
	}
	if len(m.Instance) > MaxTokenLen {
		return badf("inst", ErrTooLarge, "instance id of %d bytes, at most %d", len(m.Instance), MaxTokenLen)
	}
	if len(m.Err) > maxErrLen {
		return badf("err", ErrTooLarge, "error text of %d bytes, at most %d", len(m.Err), maxErrLen)
	}
	return nil
}

// maxErrLen bounds the error text a RunState carries.
const maxErrLen = 4096

// New returns an empty message of the given type string, for tools that
// decode whatever arrives (serket echo); nil if the type is unknown.
func New(typ string) Message {
	switch typ {
	case TypeStepBegin:
		return new(StepBegin)
	case TypePosterior:
		return new(Posterior)
	case TypeLatent:
		return new(Latent)
	case TypeZGrad:
		return new(ZGrad)
	case TypeExpertGrad:
		return new(ExpertGrad)
	case TypeInferRequest:
		return new(InferRequest)
	case TypeInferReply:
		return new(InferReply)
	case TypeEncodeRequest:
		return new(EncodeRequest)
	case TypeEncodeReply:
		return new(EncodeReply)
	case TypeDecodeRequest:
		return new(DecodeRequest)
	case TypeDecodeReply:
		return new(DecodeReply)
	case TypeBelief:
		return new(Belief)
	case TypeControl:
		return new(Control)
	case TypeRunState:
		return new(RunState)
	case TypeFeatureRequest:
		return new(FeatureRequest)
	case TypeFeatureReply:
		return new(FeatureReply)
	case TypeScoreRequest:
		return new(ScoreRequest)
	case TypeScoreReply:
		return new(ScoreReply)
	case TypePriorRequest:
		return new(PriorRequest)
	case TypePriorReply:
		return new(PriorReply)
	case TypeTrainProgress:
		return new(TrainProgress)
	}
	return nil
}
