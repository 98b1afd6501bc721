package integrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
)

// TrainConfig configures a training run driven by the integrator.
type TrainConfig struct {
	Modules []string // the modules that take part (required)
	IDs     []uint64 // the training items (required)
	// EvalIDs, if any, are scored after every epoch with the plain joint
	// ELBO (λ = β = 1), without updating anything: EpochStats.Test*.
	EvalIDs []uint64

	Epochs  int      // default 1
	Batch   int      // default 100
	Seed    uint64   // batch order, plan subsets and noise; default 1
	Plan    PlanFunc // default MVAEPlan(Subsets)
	Subsets int      // k random subsets of the default plan
	// Aggregation is how each term's experts make its latents; default
	// PoE. One that weighs rows needs modules that say they honour row
	// weights (bus.TrainsRowWeights).
	Aggregation aggregate.Aggregation
	// GateLR is the learning rate of a learned aggregation's weights
	// (gpoe's gates, by Adam); default 1e-3, the modules' default.
	GateLR float32

	// Frozen are modules that take part without learning (coordinated
	// training of the others against them): they must have trained
	// weights (a checkpoint), and at least one module must learn. The plan
	// keeps what teaches the learners (see coordinate).
	Frozen []string

	// Prior is the run's prior module (module.RunPrior), if any: every
	// step asks it for each item's prior given the step's evidence, in
	// place of N(0, I), and it is enrolled, checkpointed and rolled back
	// with the modules. It needs a Conditioned aggregation (poe, gpoe).
	Prior string

	// Pairing is how batches mix paired and unpaired items, and whether
	// a term scores items its subset did not see (zero: plain).
	Pairing Pairing

	Lambda map[string]float32 // per-module weight of the log-likelihood; default 1
	// KL annealing: β rises linearly from KLFrom to KLTo over AnnealSteps
	// steps, then stays; AnnealSteps 0 means β = KLTo throughout.
	KLFrom, KLTo float32
	AnnealSteps  int

	Deadline time.Duration // per phase of a step; default 30 s

	// CheckpointDir holds integrator.json (the run's id, step, epoch,
	// position, the epoch's statistics so far, config). A checkpoint of
	// the run is taken when it starts, every CheckpointEvery steps (0:
	// not by count), every CheckpointInterval (0: not by time) and at
	// its end: every module is asked to save its own, labelled with the
	// run and step, and once all have, integrator.json is written. Each
	// save keeps the file it replaces as integrator.json.prev. Resume
	// continues from it, or from the previous one (logged) if it is
	// damaged; one of another run is refused, and so is Resume with
	// nothing to resume. Without CheckpointDir nothing is saved, and a
	// module that restarts mid-run stops it (see ModuleWait).
	CheckpointDir      string
	CheckpointEvery    int
	CheckpointInterval time.Duration
	Resume             bool

	// ModuleWait is how long the run goes on without a module that is
	// gone (its process died, or another took its place) before it stops
	// with an error; default 2 minutes. A module that comes back within
	// it rejoins: one that restarted from its checkpoint rolls the whole
	// run back to that checkpoint, so that the run's weights stay those
	// of one step.
	ModuleWait time.Duration

	// Metrics receives one JSON line per epoch (see EpochStats), at the
	// epoch's end. If it is a file (it has Seek and Truncate, as an
	// *os.File has), every checkpoint records its length and Resume cuts it
	// back to that: an epoch that a crashed run logged after its last
	// checkpoint, and that the resumed run redoes, is logged once. A
	// resumed epoch's line covers the whole epoch, before and after the
	// restart.
	Metrics io.Writer
	// OnStep, if set, is called after every step (progress bars). The
	// slices and maps of its StepStats are reused by the next step: they
	// are valid during the call, and Clone keeps a copy.
	OnStep func(StepStats)
}

// stepStore holds what one run's steps reuse, so that a step in its
// steady state allocates nothing of its own: the step arithmetic's
// buffers, the messages' storage (the modules' decode into inboxes; the
// integrator's own are built in place), the plan, the statistics and the
// subjects.
type stepStore struct {
	math    StepMath
	posts   inbox[bus.Posterior]
	zgrads  inbox[bus.ZGrad]
	postOf  map[string]*bus.Posterior // this step's, by module
	zgradOf map[string]*bus.ZGrad
	targets []string
	plan    []bus.Term
	// coordinated is plan as it teaches the modules that learn (all of
	// it unless some are frozen).
	coordinated []bus.Term
	pcg         rand.PCG
	rng         *rand.Rand
	begin       bus.StepBegin
	latent      bus.Latent
	stats       StepStats
	got         map[string]bool // collect's
	timer       *time.Timer     // collect's deadline
	probe       *time.Timer     // when collect next asks whether a late module is there
	want        []string        // the modules a phase waits for
	ids         []uint64        // the step's batch
	// The prior module's request and reply, and the priors of the step
	// (into the reply's storage).
	priorReq bus.PriorRequest
	priorRep bus.PriorReply
	priors   []poe.Prior

	stepSubj, latentSubj    string
	postPrefix, zgradPrefix string            // …post. and …zgrad.
	egrad                   map[string]string // each module's …egrad.<module>
}

func newStepStore(subj bus.Subjects, modules []string) *stepStore {
	st := &stepStore{
		postOf: map[string]*bus.Posterior{}, zgradOf: map[string]*bus.ZGrad{}, got: map[string]bool{},
		stepSubj: subj.Step(), latentSubj: subj.Latent(),
		postPrefix: subj.Prefix() + ".post.", zgradPrefix: subj.Prefix() + ".zgrad.",
		egrad: map[string]string{},
		timer: time.NewTimer(time.Hour), probe: time.NewTimer(time.Hour),
	}
	st.timer.Stop()
	st.probe.Stop()
	st.rng = rand.New(&st.pcg)
	for _, m := range modules {
		st.egrad[m] = subj.EGrad(m)
	}
	return st
}

// Clone returns a copy of s that shares nothing with it, for an OnStep
// that keeps the statistics of a step past its call.
func (s StepStats) Clone() StepStats {
	c := s
	c.Missing = slices.Clone(s.Missing)
	c.Terms = make([]TermStats, len(s.Terms))
	for i, t := range s.Terms {
		c.Terms[i] = TermStats{Subset: slices.Clone(t.Subset), Targets: slices.Clone(t.Targets), ELBO: t.ELBO, KL: t.KL, LogLik: maps.Clone(t.LogLik)}
	}
	return c
}

// StepStats summarise one step.
type StepStats struct {
	Step       uint64
	Epoch      int
	Progress   float64 // of the whole run, 0..1
	ELBO       float64 // Σ over terms, batch mean
	Beta       float32
	Terms      []TermStats
	Missing    []string // modules absent from this step
	Items      int      // in the batch
	Fuse, Wait time.Duration
	Codec      time.Duration

	// unanswered: no module sent its posterior, or none of the decoders
	// its gradients, so nothing was (or could be) learned from the step.
	unanswered bool
}

// EpochStats is one line of the metrics log.
type EpochStats struct {
	Epoch         int                `json:"epoch"`
	Steps         int                `json:"steps"`
	LastStep      uint64             `json:"last_step"`
	ELBO          float64            `json:"elbo"`       // mean over steps of Σ_terms
	ELBOStart     float64            `json:"elbo_start"` // the mean of the epoch's first tenth of steps (at least one)
	ELBOEnd       float64            `json:"elbo_end"`   // and of its last tenth
	JointELBO     float64            `json:"joint_elbo"` // the first term (the joint one in MVAE plans)
	KL            float64            `json:"kl"`         // the joint term's
	LogLik        map[string]float64 `json:"loglik"`     // the joint term's, per module
	Beta          float32            `json:"beta"`
	SamplesPerSec float64            `json:"samples_per_sec"`
	Seconds       float64            `json:"seconds"`
	WaitSeconds   float64            `json:"wait_seconds"`  // waiting for modules (their compute + messaging)
	FuseSeconds   float64            `json:"fuse_seconds"`  // the integrator's own compute
	CodecSeconds  float64            `json:"codec_seconds"` // the integrator's message encoding/decoding
	Missed        map[string]int     `json:"missed,omitempty"`
	TestELBO      float64            `json:"test_elbo,omitempty"`   // the joint ELBO per item on EvalIDs
	TestKL        float64            `json:"test_kl,omitempty"`     // its KL
	TestLogLik    map[string]float64 `json:"test_loglik,omitempty"` // per module
	Rejected      int                `json:"rejected,omitempty"`
	Stale         int                `json:"stale,omitempty"`
	// PlainPrior counts the steps that fell back to N(0, I) because the
	// run's prior module did not give a usable prior.
	PlainPrior int `json:"plain_prior,omitempty"`
	// Modules is where each module's time in the epoch's steps went, as
	// its train status endpoint reports it (a module that restarted
	// during the epoch is left out; after the integrator resumed, the
	// steps since).
	Modules map[string]ModuleTimes `json:"modules,omitempty"`
	// PeakRSSBytes is the integrator process's peak resident memory so far.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// ModuleTimes is a module's time in training steps: StepSeconds from each
// StepBegin to the step's end, of which ComputeSeconds in the modality,
// CodecSeconds encoding and decoding messages, SaveSeconds writing
// checkpoints; the rest is waiting for the integrator and the others.
type ModuleTimes struct {
	StepSeconds    float64 `json:"step_seconds"`
	ComputeSeconds float64 `json:"compute_seconds"`
	CodecSeconds   float64 `json:"codec_seconds"`
	SaveSeconds    float64 `json:"save_seconds"`
	PeakRSSBytes   int64   `json:"peak_rss_bytes"` // the module process's peak resident memory so far
}

// moduleTimes asks every module for its step times so far.
func (ig *Integrator) moduleTimes(ctx context.Context, modules []string) map[string]ModuleTimes {
	out := map[string]ModuleTimes{}
	for _, m := range modules {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		msg, err := ig.nc.RequestWithContext(rctx, ig.subj.TrainStatus(m), nil)
		cancel()
		var t ModuleTimes
		if err == nil && json.Unmarshal(msg.Data, &t) == nil {
			out[m] = t
		}
	}
	return out
}

// ErrDiverged is returned when the objective or a gradient stops being finite.
var ErrDiverged = errors.New("training diverged")

func (c *TrainConfig) defaults() error {
	if len(c.Modules) == 0 {
		return errors.New("integrator: training needs at least one module")
	}
	for _, m := range c.Modules {
		if !bus.ValidName(m) {
			return fmt.Errorf("integrator: module name %q is not valid", m)
		}
	}
	if len(c.IDs) == 0 {
		return errors.New("integrator: training needs items (ids)")
	}
	if c.Epochs == 0 {
		c.Epochs = 1
	}
	if c.Batch == 0 {
		c.Batch = 100
	}
	if c.Batch < 1 || c.Batch > bus.MaxBatch {
		return fmt.Errorf("integrator: batch size %d: want 1 to %d", c.Batch, bus.MaxBatch)
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Plan == nil {
		c.Plan = MVAEPlan(c.Subsets)
	}
	if c.Aggregation == nil {
		c.Aggregation = aggregate.PoE()
	}
	if err := c.checkPrior(); err != nil {
		return err
	}
	if err := c.Pairing.check(); err != nil {
		return err
	}
	for _, m := range c.Frozen {
		if !slices.Contains(c.Modules, m) && m != c.Prior {
			return fmt.Errorf("integrator: frozen module %s is not one of the run's modules (%s)", m, strings.Join(c.Modules, ", "))
		}
	}
	if !slices.ContainsFunc(c.Modules, c.learns) {
		return errors.New("integrator: every module is frozen: nothing would learn")
	}
	if c.GateLR == 0 {
		c.GateLR = 1e-3
	}
	if !(c.GateLR > 0 && c.GateLR < 1) {
		return fmt.Errorf("integrator: gate learning rate %v: want between 0 and 1", c.GateLR)
	}
	if c.KLTo == 0 && c.KLFrom == 0 {
		c.KLTo = 1
	}
	if c.Deadline <= 0 {
		c.Deadline = 30 * time.Second
	}
	if c.ModuleWait <= 0 {
		c.ModuleWait = 2 * time.Minute
	}
	return nil
}

// fingerprint identifies the settings a checkpoint belongs to.
func (c *TrainConfig) fingerprint() string {
	fp := fmt.Sprintf("modules=%s items=%d batch=%d seed=%d", strings.Join(c.Modules, ","), len(c.IDs), c.Batch, c.Seed)
	if a := c.Aggregation.Name(); a != aggregate.PoE().Name() { // PoE runs' checkpoints stay as they were
		fp += " aggregation=" + a
	}
	if len(c.Frozen) > 0 {
		fp += " frozen=" + strings.Join(slices.Sorted(slices.Values(c.Frozen)), ",")
	}
	if c.Prior != "" {
		fp += " prior=" + c.Prior
	}
	return fp + c.Pairing.fingerprint()
}

func (c *TrainConfig) beta(step uint64) float32 {
	if c.AnnealSteps <= 0 || int(step) >= c.AnnealSteps {
		return c.KLTo
	}
	f := float32(step) / float32(c.AnnealSteps)
	return c.KLFrom + f*(c.KLTo-c.KLFrom)
}
