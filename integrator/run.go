package integrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/internal/lograte"
	"github.com/serket-go/serket/internal/proc"
)

// Train runs cfg.Epochs epochs of message-passing training over the
// pipeline's modules (DESIGN.md section 4) and returns the last epoch's
// statistics.
//
// The run has an id, kept in its checkpoints, and this process drives it
// in a session: it enrols every module with a fresh session token that
// every training message carries, so that a module takes no step of
// another run, an earlier session or a forger (see bus.Control). A new run
// takes its modules' weights as they are and checkpoints them as its step
// 0; a resumed one has every module restore the run's checkpoint. A
// module that misses a step's deadline sits that step out; one found gone
// is left out of steps at once and, when it is back, rejoins — if it
// restarted, by rolling the whole run back to its last checkpoint, so the
// run's weights stay those of one step. A step that no module answers is
// retried rather than skipped with its batch unlearned, for as long as the
// bus is down and a few times more (maxRetries); messages of other steps
// are dropped; a non-finite objective stops training with ErrDiverged
// without saving a checkpoint.
func (ig *Integrator) Train(ctx context.Context, cfg TrainConfig) (*EpochStats, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if ig.nc == nil {
		return nil, errors.New("integrator: Train needs a running integrator (call it from Config.Ready or after Run started)")
	}
	slices.Sort(cfg.Modules)
	r, err := ig.newRun(&cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return r.train(ctx)
}

// run is one training run as this integrator process drives it.
type run struct {
	ig    *Integrator
	cfg   *TrainConfig
	log   *slog.Logger
	store *stepStore
	ch    chan *nats.Msg // the modules' posteriors and decoder gradients
	subs  []*nats.Subscription

	st        trainState  // where the run stands
	committed trainState  // its last checkpoint: what a rollback returns to
	older     *trainState // the one before, if known: where a module without a usable last one can still return
	fresh     bool        // a new run, not a resumed one
	statePath string      // integrator.json, "" when the run keeps no checkpoints
	lastSave  time.Time   // when the last checkpoint was taken

	session string   // the token of this process's enrolment of the modules
	past    []string // its earlier sessions, whose late messages are stale
	mods    map[string]*modState

	es    *EpochStats // the epoch under way, sums until its end
	elbos []float64   // its steps' objectives

	ranAny       bool             // this call ran a training step
	rollbacks    int              // in a row to rollbackStep
	rollbackStep uint64           // the checkpoint the last rollback returned to
	limit        *lograte.Limiter // the integrator's: a line per kind per interval
	gates        *gates           // a learned aggregation's, nil for another
	order        []uint64         // the epoch's items in the order its steps take them
	progress     *progress        // its reports on …train.progress
}

// modState is what the run knows of one module's process.
type modState struct {
	instance string    // its micro service id, new at every start
	gone     time.Time // since when it is gone; zero while it is up
}

// maxRollbacks is how many times in a row the run rolls back to the same
// checkpoint before it stops: a module that crashes on the same step each
// time would otherwise loop.
const maxRollbacks = 3

// errRolledBack ends an epoch whose run was rolled back: the epoch loop
// starts again from the run's restored position.
var errRolledBack = errors.New("the run was rolled back to its last checkpoint")

func (ig *Integrator) newRun(cfg *TrainConfig) (*run, error) {
	r := &run{ig: ig, cfg: cfg, log: ig.log, store: newStepStore(ig.subj, cfg.Modules), mods: map[string]*modState{}, limit: ig.limit,
		gates: newGates(cfg, ig.cfg.Latent)}
	r.st = trainState{Config: cfg.fingerprint(), Prior: cfg.Prior}
	if a := cfg.Aggregation.Name(); a != aggregate.PoE().Name() {
		r.st.Aggregation = a
	}
	if cfg.CheckpointDir != "" {
		r.statePath = filepath.Join(cfg.CheckpointDir, "integrator.json")
	}
	if cfg.Resume {
		if err := r.load(); err != nil {
			r.close()
			return nil, err
		}
	} else {
		r.fresh, r.st.Run = true, bus.NewToken()
	}
	r.progress = newRunProgress(r)
	r.ch = make(chan *nats.Msg, 4096)
	for _, subj := range []string{ig.subj.Post("*"), ig.subj.ZGrad("*")} {
		s, err := ig.nc.ChanSubscribe(subj, r.ch)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("integrator: subscribe %s: %w", subj, err)
		}
		r.subs = append(r.subs, s)
	}
	if err := ig.nc.Flush(); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *run) close() {
	for _, s := range r.subs {
		s.Unsubscribe()
	}
	r.store.timer.Stop()
	r.store.probe.Stop()
}

// load reads the run's checkpoint to resume it.
func (r *run) load() error {
	if r.statePath == "" {
		return errors.New("integrator: resume: no checkpoint directory to resume from")
	}
	var prev trainState
	used, damaged, err := atomicfile.Read(r.statePath, func(name string, rd io.Reader) (err error) {
		prev, err = r.readState(name, rd)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("integrator: resume: nothing to resume in %s (no integrator.json)", filepath.Dir(r.statePath))
	}
	if err != nil {
		return fmt.Errorf("integrator: resume: %w", err)
	}
	if damaged != nil {
		r.log.Error("training checkpoint is damaged; resuming from the previous one", "path", r.statePath, "err", damaged, "used", used)
	}
	if prev.Run == "" {
		return fmt.Errorf("integrator: resume: %s was written by an earlier serket, whose checkpoints say neither run nor step; start a new run", used)
	}
	if prev.Epoch >= r.cfg.Epochs {
		return fmt.Errorf("integrator: resume: the run of %s has done its %d epochs; ask for more with --epochs", used, prev.Epoch)
	}
	if err := r.gates.load(prev.Gates, used); err != nil {
		return fmt.Errorf("integrator: resume: %w", err)
	}
	r.st = prev
	if used == r.statePath {
		r.older = r.olderState(prev)
	}
	if err := r.ig.cutMetrics(r.cfg.Metrics, r.st); err != nil {
		return err
	}
	r.log.Info("resuming training", "run", r.st.Run, "step", r.st.Step, "epoch", r.st.Epoch, "position", r.st.Position, "from", used)
	return nil
}

// readState reads a training checkpoint of this run's settings.
func (r *run) readState(name string, rd io.Reader) (trainState, error) {
	s, err := readState(rd)
	if err != nil {
		return s, fmt.Errorf("%s: %w", name, err)
	}
	if want := r.cfg.fingerprint(); s.Config != want {
		return s, fmt.Errorf("%s is of another run (%s; this one is %s)", name, s.Config, want)
	}
	if err := s.check(len(r.cfg.IDs)); err != nil {
		return s, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// olderState is the checkpoint of the run before last, if the previous
// generation of integrator.json holds a usable one.
func (r *run) olderState(last trainState) *trainState {
	f, err := os.Open(atomicfile.Prev(r.statePath))
	if err != nil {
		return nil
	}
	defer f.Close()
	s, err := r.readState(f.Name(), f)
	if err != nil || s.Run != last.Run || s.Step >= last.Step {
		return nil
	}
	return &s
}

// train runs the run's epochs.
func (r *run) train(ctx context.Context) (*EpochStats, error) {
	if err := r.open(ctx); err != nil {
		return nil, err
	}
	var last *EpochStats
	for {
		for r.st.Epoch < r.cfg.Epochs {
			es, err := r.epoch(ctx)
			switch {
			case errors.Is(err, errRolledBack):
				continue
			case err != nil:
				return last, err
			}
			last = es
		}
		// A module gone now would be left out of the run's last
		// checkpoint: the run waits for it (its return rolls the run back
		// and the epochs go on), or stops after the module wait.
		err := r.awaitGone(ctx)
		if errors.Is(err, errRolledBack) {
			continue
		}
		if err != nil {
			return last, err
		}
		break
	}
	if r.ranAny {
		if err := r.commit(ctx); err != nil {
			return last, err
		}
	}
	return last, nil
}

// epoch runs the rest of the epoch the run is in, from its position.
func (r *run) epoch(ctx context.Context) (*EpochStats, error) {
	cfg, epoch := r.cfg, r.st.Epoch
	r.order = cfg.epochOrder(r.order, epoch)
	order := r.order
	r.es, r.elbos = &EpochStats{Epoch: epoch, LogLik: map[string]float64{}, Missed: map[string]int{}}, nil
	if p := r.st.Partial; p != nil && p.Epoch == epoch {
		// Resumed mid-epoch: go on summing where the checkpoint left off.
		r.es, r.elbos = p.clone(), slices.Clone(r.st.ELBOs)
	}
	spent := r.es.Seconds // in this epoch before a restart
	ran := 0              // steps of this epoch run by this call
	timesBefore := r.ig.moduleTimes(ctx, cfg.Modules)
	start := time.Now()
	r.progress.begin()
	stepsPerEpoch := (len(cfg.IDs) + cfg.Batch - 1) / cfg.Batch
	for r.st.Position < len(order) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.admit(ctx); err != nil {
			return nil, err
		}
		pos := r.st.Position
		end := min(pos+cfg.Batch, len(order))
		ids := append(r.store.ids[:0], order[pos:end]...)
		r.store.ids = ids
		r.st.Step++
		ss, err := r.stepRetrying(ctx, ids)
		if err != nil {
			return nil, err
		}
		ss.Progress = float64(epoch*stepsPerEpoch+(pos/cfg.Batch)+1) / float64(stepsPerEpoch*cfg.Epochs)
		ran++
		r.ranAny = true
		r.record(ss)
		if cfg.OnStep != nil {
			cfg.OnStep(*ss)
		}
		r.progress.step(ss)
		r.st.Position = end
		r.es.Seconds = spent + time.Since(start).Seconds()
		if r.saveDue() && end < len(order) {
			if err := r.commit(ctx); err != nil {
				return nil, err
			}
		}
	}
	r.es.Seconds = spent + time.Since(start).Seconds()
	return r.endEpoch(ctx, len(order), ran, timesBefore)
}

// stepRetrying runs the run's current step; a step no module answered is
// done again — for as long as the bus was down (modules reconnect after
// the integrator does), else a few times (modules restarting); a step that
// fails every time is skipped, not retried forever.
func (r *run) stepRetrying(ctx context.Context, ids []uint64) (*StepStats, error) {
	nc := r.ig.nc
	reconnects := nc.Stats().Reconnects
	ss, err := r.step(ctx, r.st.Step, ids, false)
	for retries := 0; err == nil && ss.unanswered; {
		outage := !nc.IsConnected() || nc.Stats().Reconnects != reconnects
		if !outage && retries == maxRetries {
			r.log.Warn("no module answered the step; skipping it", "step", r.st.Step, "attempts", retries+1)
			break
		}
		if !outage {
			retries++
		}
		r.log.Warn("no module answered the step; retrying it", "step", r.st.Step, "bus_down", outage)
		if err = r.ig.awaitConnected(ctx); err == nil {
			err = r.admit(ctx) // modules found gone meanwhile: wait for one, or roll back with one back
		}
		if err == nil {
			reconnects = nc.Stats().Reconnects
			ss, err = r.step(ctx, r.st.Step, ids, false)
		}
	}
	return ss, err
}

// record adds a step's statistics to the epoch's.
func (r *run) record(ss *StepStats) {
	es := r.es
	es.Steps++
	es.LastStep = ss.Step
	es.ELBO += ss.ELBO
	r.elbos = append(r.elbos, ss.ELBO)
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
}

// endEpoch turns the epoch's sums into means, adds the modules' times and
// the evaluation, logs the epoch's metrics line and moves the run on to
// the next epoch.
func (r *run) endEpoch(ctx context.Context, items, ran int, timesBefore map[string]ModuleTimes) (*EpochStats, error) {
	es := r.es
	if es.Steps > 0 {
		n := float64(es.Steps)
		es.ELBO /= n
		es.JointELBO /= n
		es.KL /= n
		for m := range es.LogLik {
			es.LogLik[m] /= n
		}
		es.SamplesPerSec = float64(items) / es.Seconds
		k := max(1, len(r.elbos)/10)
		es.ELBOStart, es.ELBOEnd = mean(r.elbos[:k]), mean(r.elbos[len(r.elbos)-k:])
	}
	if ran > 0 {
		// The modules' share of the epoch, once they have learned from
		// its last step. (Modules restarted with this run have learned
		// from none of a resumed epoch's steps it did not run.)
		r.ig.awaitLearned(ctx, r.up(nil), r.st.Step, r.cfg.Deadline)
		es.Modules = moduleShares(r.ig.moduleTimes(ctx, r.cfg.Modules), timesBefore)
	}
	if len(r.cfg.EvalIDs) > 0 {
		if err := r.evaluate(ctx); err != nil {
			return nil, err
		}
	}
	r.progress.epochEnd(es, len(r.cfg.EvalIDs) > 0)
	es.PeakRSSBytes = proc.PeakRSS()
	if r.cfg.Metrics != nil {
		line, _ := json.Marshal(es)
		fmt.Fprintf(r.cfg.Metrics, "%s\n", line)
	}
	r.log.Info("epoch done", "epoch", es.Epoch, "elbo", es.ELBO, "joint_elbo", es.JointELBO, "samples_per_sec", int(es.SamplesPerSec), "missed", es.Missed)
	r.st.Epoch, r.st.Position, r.st.Partial, r.st.ELBOs = es.Epoch+1, 0, nil, nil
	return es, nil
}

// moduleShares is each module's time in the epoch: its times now less
// those before (a module that restarted, whose counters began again, is
// left out).
func moduleShares(now, before map[string]ModuleTimes) map[string]ModuleTimes {
	out := map[string]ModuleTimes{}
	for m, t := range now {
		b, ok := before[m]
		d := ModuleTimes{t.StepSeconds - b.StepSeconds, t.ComputeSeconds - b.ComputeSeconds, t.CodecSeconds - b.CodecSeconds, t.SaveSeconds - b.SaveSeconds, t.PeakRSSBytes}
		if ok && d.StepSeconds >= 0 && d.ComputeSeconds >= 0 && d.CodecSeconds >= 0 && d.SaveSeconds >= 0 {
			out[m] = d
		}
	}
	return out
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
// records the item-weighted means in the epoch's statistics.
func (r *run) evaluate(ctx context.Context) error {
	es := r.es
	es.TestLogLik = map[string]float64{}
	n := 0
	for pos := 0; pos < len(r.cfg.EvalIDs); pos += r.cfg.Batch {
		ids := r.cfg.EvalIDs[pos:min(pos+r.cfg.Batch, len(r.cfg.EvalIDs))]
		r.ig.evalSteps++
		ss, err := r.step(ctx, evalStepBase+r.ig.evalSteps, ids, true)
		if err != nil {
			return err
		}
		if len(ss.Terms) == 0 {
			continue // nobody answered; logged by step
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
	r.log.Info("evaluated", "epoch", es.Epoch, "items", n, "test_elbo", es.TestELBO)
	return nil
}

// awaitLearned waits until every module reports (on its train status
// endpoint) that it has learned from step, so that its time for the
// epoch's steps is complete; a module that does not within the deadline is
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
			if err == nil && json.Unmarshal(msg.Data, &status) == nil && status.Step >= step {
				break
			}
			if ctx.Err() != nil {
				ig.log.Warn("a module did not confirm the epoch's last step; its times may miss it", "peer", m, "step", step)
				break
			}
			select { // the module is still learning
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// rejected logs a module's message that was refused, once per interval
// and module.
func (r *run) rejected(module string, err error) {
	r.ig.mu.Lock()
	r.ig.stats.Rejected++
	r.ig.stats.LastError = err.Error()
	r.ig.mu.Unlock()
	r.limit.Warn(r.log, "rejected "+module, "rejected a training message (logged once per 10 s per module; all are counted)", "peer", module, "err", err)
}

// clone is a copy of es that shares no map with it.
func (es *EpochStats) clone() *EpochStats {
	c := *es
	c.LogLik = maps.Clone(es.LogLik)
	c.Missed = maps.Clone(es.Missed)
	c.TestLogLik = maps.Clone(es.TestLogLik)
	if es.Modules != nil {
		c.Modules = maps.Clone(es.Modules)
	}
	if c.LogLik == nil {
		c.LogLik = map[string]float64{}
	}
	if c.Missed == nil {
		c.Missed = map[string]int{}
	}
	return &c
}
