package integrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/internal/proc"
)

// TrainConfig configures a training run driven by the integrator.
type TrainConfig struct {
	// store is what the steps of one Train call reuse, step after step.
	store *stepStore

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

	Lambda map[string]float32 // per-module weight of the log-likelihood; default 1
	// KL annealing: β rises linearly from KLFrom to KLTo over AnnealSteps
	// steps, then stays; AnnealSteps 0 means β = KLTo throughout.
	KLFrom, KLTo float32
	AnnealSteps  int

	Deadline time.Duration // per phase of a step; default 30 s

	// CheckpointDir holds integrator.json (step, epoch, position, the
	// epoch's statistics so far, config); every CheckpointEvery steps (0:
	// only at the end) the modules are asked to save theirs after the same
	// step. Each save keeps the file it replaces as integrator.json.prev.
	// Resume continues from it, or from the previous one (logged) if it is
	// damaged; one of another run is refused.
	CheckpointDir   string
	CheckpointEvery int
	Resume          bool

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

// stepStore holds what one Train call's steps reuse, so that a step in its
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
	pcg     rand.PCG
	rng     *rand.Rand
	begin   bus.StepBegin
	latent  bus.Latent
	stats   StepStats
	got     map[string]bool // collect's
	timer   *time.Timer     // collect's deadline

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
		timer: time.NewTimer(time.Hour),
	}
	st.timer.Stop()
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

// trainState is the integrator's checkpoint.
type trainState struct {
	Step     uint64 `json:"step"`
	Epoch    int    `json:"epoch"`
	Position int    `json:"position"` // items of Epoch already done
	Config   string `json:"config"`
	// Partial is Epoch's statistics over its steps so far (sums, not yet
	// means; Seconds the time spent), and ELBOs their objectives, so that a
	// resumed epoch logs one line for all of its steps.
	Partial *EpochStats `json:"partial,omitempty"`
	ELBOs   []float64   `json:"elbos,omitempty"`
	// MetricsSize is the length of the metrics log when the checkpoint was
	// written, if the log is a file.
	MetricsSize *int64 `json:"metrics_size,omitempty"`
	// CRC is the CRC-32C of the state's compact JSON without CRC; 0 (in
	// files from before it) means unchecked.
	CRC uint32 `json:"crc32c,omitempty"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// sum is the CRC of st.
func (st trainState) sum() (uint32, error) {
	st.CRC = 0
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	return crc32.Checksum(b, crcTable), nil
}

// readState parses a training checkpoint; damage (JSON that does not
// parse, a checksum that does not match) wraps atomicfile.ErrCorrupt.
func readState(r io.Reader) (trainState, error) {
	var st trainState
	data, err := io.ReadAll(r)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%w: it does not parse as a training checkpoint: %v", atomicfile.ErrCorrupt, err)
	}
	if st.CRC != 0 {
		if sum, err := st.sum(); err != nil || sum != st.CRC {
			return st, fmt.Errorf("%w: checksum mismatch", atomicfile.ErrCorrupt)
		}
	}
	return st, nil
}

// check refuses a state no run writes (an unchecksummed file that was
// damaged or edited) as damaged: where it is in the epoch, and its partial
// statistics, must fit a run over items items.
func (st trainState) check(items int) error {
	switch {
	case st.Epoch < 0 || st.Position < 0 || st.Position > items:
		return fmt.Errorf("%w: epoch %d, position %d of %d items", atomicfile.ErrCorrupt, st.Epoch, st.Position, items)
	case st.MetricsSize != nil && *st.MetricsSize < 0:
		return fmt.Errorf("%w: metrics log size %d", atomicfile.ErrCorrupt, *st.MetricsSize)
	case st.Partial != nil && (st.Partial.Epoch != st.Epoch || st.Partial.Steps != len(st.ELBOs)):
		return fmt.Errorf("%w: the epoch so far (epoch %d, %d steps) does not match the checkpoint (epoch %d, %d objectives)",
			atomicfile.ErrCorrupt, st.Partial.Epoch, st.Partial.Steps, st.Epoch, len(st.ELBOs))
	case st.Partial == nil && len(st.ELBOs) > 0:
		return fmt.Errorf("%w: objectives without the epoch's statistics", atomicfile.ErrCorrupt)
	}
	return nil
}

// metricsFile is a metrics log that a resumed run can cut back.
type metricsFile interface {
	io.Writer
	io.Seeker
	Truncate(size int64) error
}

// metricsSize is the length of the metrics log w, if it is a file.
func metricsSize(w io.Writer) *int64 {
	f, ok := w.(metricsFile)
	if !ok {
		return nil
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil
	}
	return &n
}

// cutMetrics cuts the metrics log w back to the length it had at the
// checkpoint st, dropping what a crashed run logged after it.
func (ig *Integrator) cutMetrics(w io.Writer, st trainState) error {
	f, ok := w.(metricsFile)
	if !ok || st.MetricsSize == nil {
		return nil
	}
	want := *st.MetricsSize
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("integrator: resume: metrics log: %w", err)
	}
	switch {
	case n > want:
		if err := f.Truncate(want); err != nil {
			return fmt.Errorf("integrator: resume: cutting the metrics log back to the checkpoint: %w", err)
		}
		if _, err := f.Seek(want, io.SeekStart); err != nil {
			return fmt.Errorf("integrator: resume: metrics log: %w", err)
		}
		ig.log.Info("dropped the metrics logged after the checkpoint; those epochs are redone", "bytes", n-want)
	case n < want:
		ig.log.Warn("the metrics log is shorter than at the checkpoint; lines are missing", "bytes", n, "at_checkpoint", want)
	}
	return nil
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
	if c.KLTo == 0 && c.KLFrom == 0 {
		c.KLTo = 1
	}
	if c.Deadline <= 0 {
		c.Deadline = 30 * time.Second
	}
	return nil
}

// fingerprint identifies the settings a checkpoint belongs to.
func (c *TrainConfig) fingerprint() string {
	return fmt.Sprintf("modules=%s items=%d batch=%d seed=%d", strings.Join(c.Modules, ","), len(c.IDs), c.Batch, c.Seed)
}

func (c *TrainConfig) beta(step uint64) float32 {
	if c.AnnealSteps <= 0 || int(step) >= c.AnnealSteps {
		return c.KLTo
	}
	f := float32(step) / float32(c.AnnealSteps)
	return c.KLFrom + f*(c.KLTo-c.KLFrom)
}

// Train runs cfg.Epochs epochs of message-passing training over the
// pipeline's modules (DESIGN.md section 4) and returns the last epoch's
// statistics. A module that misses a step's deadline sits that step out;
// a step that no module answers is retried rather than skipped with its
// batch unlearned, for as long as the bus is down and a few times more
// (maxRetries, for modules restarting or reconnecting); messages of other
// steps are dropped; a non-finite objective stops training with
// ErrDiverged without saving a checkpoint.
func (ig *Integrator) Train(ctx context.Context, cfg TrainConfig) (*EpochStats, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if ig.nc == nil {
		return nil, errors.New("integrator: Train needs a running integrator (call it from Config.Ready or after Run started)")
	}
	slices.Sort(cfg.Modules)
	cfg.store = newStepStore(ig.subj, cfg.Modules)
	defer cfg.store.timer.Stop()
	st := trainState{Config: cfg.fingerprint()}
	statePath := ""
	if cfg.CheckpointDir != "" {
		statePath = filepath.Join(cfg.CheckpointDir, "integrator.json")
		if cfg.Resume {
			var prev trainState
			used, damaged, err := atomicfile.Read(statePath, func(name string, r io.Reader) error {
				s, err := readState(r)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				if s.Config != st.Config {
					return fmt.Errorf("%s is of another run (%s; this one is %s)", name, s.Config, st.Config)
				}
				if err := s.check(len(cfg.IDs)); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				prev = s
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("integrator: resume: %w", err)
			}
			if damaged != nil {
				ig.log.Error("training checkpoint is damaged; resuming from the previous one", "path", statePath, "err", damaged, "used", used)
			}
			if prev.Epoch >= cfg.Epochs {
				return nil, fmt.Errorf("integrator: resume: %s is at epoch %d, past the %d epochs asked for", used, prev.Epoch+1, cfg.Epochs)
			}
			st = prev
			if err := ig.cutMetrics(cfg.Metrics, st); err != nil {
				return nil, err
			}
			ig.log.Info("resuming training", "step", st.Step, "epoch", st.Epoch, "position", st.Position, "from", used)
		}
	}

	ch := make(chan *nats.Msg, 4096)
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}()
	for _, subj := range []string{ig.subj.Post("*"), ig.subj.ZGrad("*")} {
		s, err := ig.nc.ChanSubscribe(subj, ch)
		if err != nil {
			return nil, fmt.Errorf("integrator: subscribe %s: %w", subj, err)
		}
		subs = append(subs, s)
	}
	if err := ig.nc.Flush(); err != nil {
		return nil, err
	}

	stepsPerEpoch := (len(cfg.IDs) + cfg.Batch - 1) / cfg.Batch
	total := float64(stepsPerEpoch * cfg.Epochs)
	var last *EpochStats
	ranAny := false // steps run by this call (a resumed run may have none left)
	for epoch := st.Epoch; epoch < cfg.Epochs; epoch++ {
		perm := rand.New(rand.NewPCG(cfg.Seed, uint64(epoch))).Perm(len(cfg.IDs))
		es := &EpochStats{Epoch: epoch, LogLik: map[string]float64{}, Missed: map[string]int{}}
		var elbos []float64
		if p := st.Partial; p != nil && p.Epoch == epoch {
			// Resumed mid-epoch: go on summing where the checkpoint left off.
			es, elbos = p, st.ELBOs
			if es.LogLik == nil {
				es.LogLik = map[string]float64{}
			}
			if es.Missed == nil {
				es.Missed = map[string]int{}
			}
		}
		spent := es.Seconds // in this epoch before a restart
		ran := 0            // steps of this epoch run by this call
		timesBefore := ig.moduleTimes(ctx, cfg.Modules)
		start := time.Now()
		for pos := st.Position; pos < len(perm); pos += cfg.Batch {
			if err := ctx.Err(); err != nil {
				return last, err
			}
			end := min(pos+cfg.Batch, len(perm))
			ids := make([]uint64, end-pos)
			for i, p := range perm[pos:end] {
				ids[i] = cfg.IDs[p]
			}
			st.Step++
			save := statePath != "" && (cfg.CheckpointEvery > 0 && int(st.Step)%cfg.CheckpointEvery == 0 || end == len(perm) && epoch == cfg.Epochs-1)
			reconnects := ig.nc.Stats().Reconnects
			ss, err := ig.trainStep(ctx, &cfg, ch, st.Step, epoch, ids, save, es)
			for retries := 0; err == nil && ss.unanswered; {
				// No module answered: nothing was learned. Rather than
				// lose the batch, do the step again — for as long as the
				// bus was down (modules reconnect after the integrator
				// does), else a few times (modules restarting); a step
				// that fails every time is skipped, not retried forever.
				outage := !ig.nc.IsConnected() || ig.nc.Stats().Reconnects != reconnects
				if !outage && retries == maxRetries {
					ig.log.Warn("no module answered the step; skipping it", "step", st.Step, "attempts", retries+1)
					break
				}
				if !outage {
					retries++
				}
				ig.log.Warn("no module answered the step; retrying it", "step", st.Step, "bus_down", outage)
				if err = ig.awaitConnected(ctx); err == nil {
					reconnects = ig.nc.Stats().Reconnects
					ss, err = ig.trainStep(ctx, &cfg, ch, st.Step, epoch, ids, save, es)
				}
			}
			if err != nil {
				return last, err
			}
			ss.Progress = float64(epoch*stepsPerEpoch+(pos/cfg.Batch)+1) / total
			ran++
			ranAny = true
			es.Steps++
			es.LastStep = st.Step
			es.ELBO += ss.ELBO
			elbos = append(elbos, ss.ELBO)
			if len(ss.Terms) > 0 {
				es.JointELBO += ss.Terms[0].ELBO
				es.KL += ss.Terms[0].KL
				for m, v := range ss.Terms[0].LogLik {
					es.LogLik[m] += v
				}
			}
			es.Beta = ss.Beta
			es.WaitSeconds += ss.Wait.Seconds()
			es.FuseSeconds += ss.Fuse.Seconds()
			es.CodecSeconds += ss.Codec.Seconds()
			for _, m := range ss.Missing {
				es.Missed[m]++
			}
			if cfg.OnStep != nil {
				cfg.OnStep(*ss)
			}
			st.Position = end
			if save {
				partial := *es
				partial.Seconds = spent + time.Since(start).Seconds()
				st.Partial, st.ELBOs, st.MetricsSize = &partial, elbos, metricsSize(cfg.Metrics)
				if err := ig.saveState(statePath, st); err != nil {
					return last, err
				}
			}
		}
		st.Epoch, st.Position, st.Partial, st.ELBOs = epoch+1, 0, nil, nil
		es.Seconds = spent + time.Since(start).Seconds()
		if es.Steps > 0 {
			n := float64(es.Steps)
			es.ELBO /= n
			es.JointELBO /= n
			es.KL /= n
			for m := range es.LogLik {
				es.LogLik[m] /= n
			}
			es.SamplesPerSec = float64(len(perm)) / es.Seconds
			k := max(1, len(elbos)/10)
			es.ELBOStart, es.ELBOEnd = mean(elbos[:k]), mean(elbos[len(elbos)-k:])
		}
		if ran > 0 {
			// The modules' share of the epoch, once they have learned
			// from its last step. (Modules restarted with this run have
			// learned from none of a resumed epoch's steps it did not run.)
			ig.awaitLearned(ctx, cfg.Modules, st.Step, cfg.Deadline)
			es.Modules = map[string]ModuleTimes{}
			for m, t := range ig.moduleTimes(ctx, cfg.Modules) {
				b, ok := timesBefore[m]
				d := ModuleTimes{t.StepSeconds - b.StepSeconds, t.ComputeSeconds - b.ComputeSeconds, t.CodecSeconds - b.CodecSeconds, t.SaveSeconds - b.SaveSeconds, t.PeakRSSBytes}
				if ok && d.StepSeconds >= 0 && d.ComputeSeconds >= 0 && d.CodecSeconds >= 0 && d.SaveSeconds >= 0 {
					es.Modules[m] = d
				}
			}
		}
		if len(cfg.EvalIDs) > 0 {
			if err := ig.evaluate(ctx, &cfg, ch, epoch, es); err != nil {
				return last, err
			}
		}
		es.PeakRSSBytes = proc.PeakRSS()
		if cfg.Metrics != nil {
			line, _ := json.Marshal(es)
			fmt.Fprintf(cfg.Metrics, "%s\n", line)
		}
		ig.log.Info("epoch done", "epoch", epoch, "elbo", es.ELBO, "joint_elbo", es.JointELBO, "samples_per_sec", int(es.SamplesPerSec), "missed", es.Missed)
		last = es
	}
	if statePath != "" && ranAny {
		ig.awaitLearned(ctx, cfg.Modules, st.Step, cfg.Deadline)
	}
	return last, nil
}

// maxRetries is how many times a step no module answered is tried again
// while the bus stays up.
const maxRetries = 3

// awaitConnected returns once the integrator's connection is up (it
// reconnects by itself after a NATS restart), or ctx's error.
func (ig *Integrator) awaitConnected(ctx context.Context) error {
	for !ig.nc.IsConnected() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // polling the connection's state
		}
	}
	return ctx.Err()
}

// evaluate scores cfg.EvalIDs in batches with the plain joint ELBO and
// records the item-weighted means in es.
func (ig *Integrator) evaluate(ctx context.Context, cfg *TrainConfig, ch chan *nats.Msg, epoch int, es *EpochStats) error {
	es.TestLogLik = map[string]float64{}
	n := 0
	for pos := 0; pos < len(cfg.EvalIDs); pos += cfg.Batch {
		ids := cfg.EvalIDs[pos:min(pos+cfg.Batch, len(cfg.EvalIDs))]
		ig.evalSteps++
		ss, err := ig.runStep(ctx, cfg, ch, evalStepBase+ig.evalSteps, epoch, ids, false, true, es)
		if err != nil {
			return err
		}
		if len(ss.Terms) == 0 {
			continue // nobody answered; logged by runStep
		}
		w := float64(len(ids))
		es.TestELBO += w * ss.Terms[0].ELBO
		es.TestKL += w * ss.Terms[0].KL
		for m, v := range ss.Terms[0].LogLik {
			es.TestLogLik[m] += w * v
		}
		n += len(ids)
	}
	if n > 0 {
		es.TestELBO /= float64(n)
		es.TestKL /= float64(n)
		for m := range es.TestLogLik {
			es.TestLogLik[m] /= float64(n)
		}
	}
	ig.log.Info("evaluated", "epoch", epoch, "items", n, "test_elbo", es.TestELBO)
	return nil
}

// awaitLearned waits until every module reports (on its train status
// endpoint) that it has learned from step, so the end-of-run checkpoints are
// on disk when Train returns; a module that does not within the deadline is
// logged.
func (ig *Integrator) awaitLearned(ctx context.Context, modules []string, step uint64, deadline time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	for _, m := range modules {
		for {
			msg, err := ig.nc.RequestWithContext(ctx, ig.subj.TrainStatus(m), nil)
			var status struct {
				Step uint64 `json:"step"`
			}
			// Equal, not at least: after the integrator resumed, a
			// module may report a later step it learned before the crash.
			if err == nil && json.Unmarshal(msg.Data, &status) == nil && status.Step == step {
				break
			}
			if ctx.Err() != nil {
				ig.log.Warn("a module did not confirm the last step; its checkpoint may be older", "peer", m, "step", step)
				break
			}
			select { // the module is still learning or saving
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// saveState writes st to path, keeping the file it replaces as the
// previous generation.
func (ig *Integrator) saveState(path string, st trainState) error {
	sum, err := st.sum()
	if err != nil {
		return fmt.Errorf("integrator: checkpoint: %w", err)
	}
	st.CRC = sum
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("integrator: checkpoint: %w", err)
	}
	err = atomicfile.WriteKeep(path, func(w io.Writer) error { _, err := w.Write(append(data, '\n')); return err })
	if err != nil {
		return fmt.Errorf("integrator: checkpoint: %w", err)
	}
	return nil
}

// trainStep runs one step: StepBegin → posteriors → latents → decoder
// gradients → expert gradients.
func (ig *Integrator) trainStep(ctx context.Context, cfg *TrainConfig, ch chan *nats.Msg, step uint64, epoch int, ids []uint64, save bool, es *EpochStats) (*StepStats, error) {
	return ig.runStep(ctx, cfg, ch, step, epoch, ids, save, false, es)
}

// evalStepBase numbers evaluation steps apart from training steps, so that
// evaluating never shifts the noise or plan a training step draws.
const evalStepBase = 1 << 62

// runStep runs one step; an evaluation step (eval) scores the joint term
// with λ = β = 1 (the plain ELBO) and updates nothing.
func (ig *Integrator) runStep(ctx context.Context, cfg *TrainConfig, ch chan *nats.Msg, step uint64, epoch int, ids []uint64, save, eval bool, es *EpochStats) (*StepStats, error) {
	b, d := len(ids), ig.cfg.Latent
	st := cfg.store
	sm := &st.math
	if eval {
		st.plan = JointPlan()(st.plan, cfg.Modules, nil)
		sm.Reset(StepMath{Step: step, Seed: cfg.Seed, B: b, D: d, Plan: st.plan, Beta: 1})
	} else {
		st.pcg.Seed(cfg.Seed^0x91a2, step)
		st.plan = cfg.Plan(st.plan, cfg.Modules, st.rng)
		sm.Reset(StepMath{Step: step, Seed: cfg.Seed, B: b, D: d, Plan: st.plan, Lambda: cfg.Lambda, Beta: cfg.beta(step - 1)})
	}
	plan := sm.Plan
	ss := &st.stats
	*ss = StepStats{Step: step, Epoch: epoch, Beta: sm.Beta, Missing: ss.Missing[:0]}

	t0 := time.Now()
	st.begin = bus.StepBegin{Step: step, Epoch: epoch, Train: !eval, IDs: ids, Plan: plan, Lambda: sm.Weights(cfg.Modules), Checkpoint: save}
	if err := ig.send(st.stepSubj, &st.begin); err != nil {
		return nil, err
	}
	ss.Codec += time.Since(t0)

	// Posteriors from every module, until the deadline.
	posts := st.postOf
	clear(posts)
	err := ig.collect(ctx, cfg, ch, step, es, ss, "post", st.postPrefix, cfg.Modules, func(m string, msg *nats.Msg) error {
		p := st.posts.spare(m)
		if err := bus.UnmarshalReuse(msg.Subject, msg.Data, p, bus.Expect{Latent: d, Batch: b}); err != nil {
			return err
		}
		if p.Step != step {
			return errStale
		}
		posts[m] = st.posts.accept(m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, m := range cfg.Modules {
		if posts[m] == nil {
			ss.Missing = append(ss.Missing, m)
		}
	}
	if len(posts) == 0 {
		if eval {
			ig.log.Warn("no module answered the evaluation step; skipping it", "step", step)
		}
		ss.unanswered = true
		return ss, nil
	}

	t1 := time.Now()
	members, z := sm.Latents(posts)
	ss.Fuse += time.Since(t1)
	t2 := time.Now()
	st.latent = bus.Latent{Step: step, Members: members, Z: z}
	if err := ig.send(st.latentSubj, &st.latent); err != nil {
		return nil, err
	}
	ss.Codec += time.Since(t2)

	// Decoder gradients from every member that is a target of some term.
	targets := st.targets[:0]
	for _, m := range members {
		for _, t := range plan {
			if slices.Contains(t.Targets, m) {
				targets = append(targets, m)
				break
			}
		}
	}
	st.targets = targets
	zgrads := st.zgradOf
	clear(zgrads)
	err = ig.collect(ctx, cfg, ch, step, es, ss, "zgrad", st.zgradPrefix, targets, func(m string, msg *nats.Msg) error {
		zg := st.zgrads.spare(m)
		if err := bus.UnmarshalReuse(msg.Subject, msg.Data, zg, bus.Expect{Latent: d, Batch: b, Terms: len(plan)}); err != nil {
			return err
		}
		if zg.Step != step {
			return errStale
		}
		zgrads[m] = st.zgrads.accept(m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, m := range targets {
		if zgrads[m] == nil && !slices.Contains(ss.Missing, m) {
			ss.Missing = append(ss.Missing, m)
		}
	}
	if len(zgrads) == 0 && len(targets) > 0 && !eval {
		// Every decoder was lost (the bus went down mid-step): the
		// expert gradients would hold the KL term alone. Send none; the
		// step is done again.
		ss.unanswered = true
		return ss, nil
	}

	t3 := time.Now()
	grads, terms, err := sm.Grads(zgrads)
	ss.Fuse += time.Since(t3)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDiverged, err)
	}
	ss.Terms = terms
	for _, t := range terms {
		ss.ELBO += t.ELBO
	}
	if eval {
		return ss, nil
	}
	t4 := time.Now()
	for _, m := range members {
		if err := ig.send(st.egrad[m], grads[m]); err != nil {
			return nil, err
		}
	}
	ss.Codec += time.Since(t4)
	return ss, nil
}

var errStale = errors.New("stale")

// inbox keeps two messages of one kind per module, for UnmarshalReuse: the
// one this step uses and a spare the next message decodes into. A step
// accepts one message per module and phase (collect), so the spare is
// never the one in use; a refused or stale message only spoils the spare.
type inbox[T any] struct {
	cur, next map[string]*T
}

// spare is module m's message to decode into.
func (b *inbox[T]) spare(m string) *T {
	if b.next == nil {
		b.cur, b.next = map[string]*T{}, map[string]*T{}
	}
	if b.next[m] == nil {
		b.next[m] = new(T)
	}
	return b.next[m]
}

// accept makes the spare m's current message and returns it; the last
// current one becomes the spare.
func (b *inbox[T]) accept(m string) *T {
	b.cur[m], b.next[m] = b.next[m], b.cur[m]
	return b.cur[m]
}

// collect reads messages of one kind ("post" or "zgrad", on subjects
// prefix+<module>) until every one of want has sent a valid one for this
// step or the deadline passes. Other kinds and other steps are stale and
// dropped; invalid ones are rejected with a log line naming the sender.
func (ig *Integrator) collect(ctx context.Context, cfg *TrainConfig, ch chan *nats.Msg, step uint64, es *EpochStats, ss *StepStats, kind, prefix string, want []string, accept func(m string, msg *nats.Msg) error) error {
	got, timer := cfg.store.got, cfg.store.timer
	clear(got)
	timer.Reset(cfg.Deadline)
	defer timer.Stop()
	start := time.Now()
	defer func() { ss.Wait += time.Since(start) }()
	for len(got) < len(want) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			var late []string
			for _, m := range want {
				if !got[m] {
					late = append(late, m)
				}
			}
			ig.log.Warn("modules missed the step's deadline; the step goes on without them", "step", step, "phase", kind, "modules", late, "deadline", cfg.Deadline)
			return nil
		case msg := <-ch:
			m, ok := strings.CutPrefix(msg.Subject, prefix)
			if !ok || !slices.Contains(want, m) || got[m] {
				es.Stale++
				continue
			}
			t := time.Now()
			err := accept(m, msg)
			ss.Codec += time.Since(t)
			switch {
			case errors.Is(err, errStale):
				es.Stale++
			case err != nil:
				es.Rejected++
				ig.reject(fmt.Errorf("step %d: %s from module %s: %w", step, kind, m, err))
			default:
				got[m] = true
			}
		}
	}
	return nil
}

// send marshals m as the integrator and publishes it.
func (ig *Integrator) send(subject string, m bus.Message) error {
	m.(interface{ SetSender(string) }).SetSender(Name)
	ig.sendMu.Lock()
	defer ig.sendMu.Unlock()
	b, err := bus.MarshalAppend(ig.sendBuf[:0], m, bus.DefaultMaxBytes)
	if err != nil {
		return err
	}
	ig.sendBuf = b // reused by the next message: Publish copies
	if err := ig.nc.Publish(subject, b); err != nil {
		return fmt.Errorf("integrator: publish %s: %w", subject, err)
	}
	return nil
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
