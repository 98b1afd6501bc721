package integrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// A run's modules, as the integrator keeps track of them: it enrols each
// in a session (bus.Control), knows which process (micro service
// instance) it enrolled, notices when that process is gone, and brings a
// module that comes back into the run again.

// open starts this process's session of the run: every module is
// enrolled. A new run takes the modules' weights as its step 0 and
// checkpoints them; a resumed run has every module whose weights are not
// the run's checkpoint restore it.
func (r *run) open(ctx context.Context) error {
	if err := r.checkRowWeights(ctx); err != nil {
		return err
	}
	r.newSession()
	states, err := r.enrolAll(ctx, r.cfg.peers(), r.st.Run, r.st.Step, r.fresh)
	if err != nil {
		return fmt.Errorf("%w (the modules must run with --train, as serket train starts them)", err)
	}
	for _, m := range r.cfg.peers() {
		r.mods[m] = &modState{instance: states[m].Instance}
		if r.fresh {
			r.log.Info("module enrolled in a new run", "peer", m, "run", r.st.Run, "weights_were", labelText(states[m]), "frozen", r.cfg.isFrozen(m))
		}
	}
	r.committed = r.st.clone()
	if !r.fresh {
		if err := r.back(ctx, r.learning(r.cfg.peers()), states); err != nil {
			return fmt.Errorf("integrator: resume from %s: %w", r.statePath, err)
		}
	}
	if r.fresh {
		// The run's first checkpoint: its weights as they start, so that
		// a module lost before any other checkpoint has one to return to.
		r.st.Partial, r.st.ELBOs = nil, nil
		if err := r.commit(ctx); err != nil {
			return err
		}
	}
	r.lastSave = time.Now()
	return nil
}

// restore has module m, whose weights are not the run's at target (st
// says what they are), restore the run's checkpoint of that step.
func (r *run) restore(ctx context.Context, m string, st bus.RunState, target trainState) error {
	got, err := r.controlOne(ctx, m, bus.Control{Op: bus.OpRestore, ID: target.Run, Step: target.Step})
	if err != nil {
		return fmt.Errorf("module %s (weights of %s) cannot return to run %s step %d: %w", m, labelText(st), target.Run, target.Step, err)
	}
	r.log.Info("module restored the run's checkpoint", "peer", m, "weights_were", labelText(st), "now", labelText(got))
	return nil
}

// newSession opens a fresh session: messages of the earlier ones are
// stale from now on.
func (r *run) newSession() {
	if r.session != "" {
		r.past = append(r.past, r.session)
	}
	r.session = bus.NewToken()
}

// admit runs before every step. A module found gone is asked whether it
// is back; one that is back rejoins; one gone for longer than ModuleWait
// stops the run. While every module is gone there is nothing to step: it
// waits for one.
func (r *run) admit(ctx context.Context) error {
	for {
		if err := r.admitOnce(ctx); err != nil {
			return err
		}
		if len(r.up(r.store.want[:0])) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // asking the gone again
		}
	}
}

// awaitGone waits until no module of the run is gone: each that is back
// rejoins (a restart rolls the run back), one gone longer than ModuleWait
// stops the run.
func (r *run) awaitGone(ctx context.Context) error {
	for len(r.upPeers(r.store.want[:0])) < len(r.cfg.peers()) {
		if err := r.admitOnce(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // asking the gone again
		}
	}
	return nil
}

func (r *run) admitOnce(ctx context.Context) error {
	for _, m := range r.cfg.peers() {
		ms := r.mods[m]
		if ms.gone.IsZero() {
			continue
		}
		alive, inst := r.ping(m)
		if alive && inst == "" {
			continue // it did not say which process it is: ask again next time
		}
		if !alive {
			if since := time.Since(ms.gone); since > r.cfg.ModuleWait {
				return fmt.Errorf("integrator: module %s has been gone for %v (longer than the module wait, %v); the run stops at step %d, its last checkpoint is of step %d: restart the module and resume",
					m, since.Round(time.Second), r.cfg.ModuleWait, r.st.Step, r.committed.Step)
			}
			continue
		}
		if err := r.rejoin(ctx, m, inst); err != nil {
			return err
		}
	}
	return nil
}

// rejoin brings back module m, found gone and now answering as process
// inst. The process that was enrolled, back after the bus lost it, still
// holds the run's weights and goes on; a new process (the module
// restarted) holds what it restored, so the whole run rolls back to the
// run's last checkpoint with it.
func (r *run) rejoin(ctx context.Context, m, inst string) error {
	ms := r.mods[m]
	if inst == ms.instance || r.cfg.isFrozen(m) {
		// A frozen module's weights are the same at every step: a new
		// process of it takes up the run where it is.
		st, err := r.controlOne(ctx, m, bus.Control{Op: bus.OpEnrol, ID: r.st.Run, Step: r.st.Step, Frozen: r.cfg.isFrozen(m)})
		if err != nil {
			return nil // not yet: the next step asks again
		}
		if st.ID == r.st.Run || r.cfg.isFrozen(m) {
			r.log.Warn("module is back; it rejoins the run, having sat out the steps it missed", "peer", m, "gone_for", time.Since(ms.gone).Round(time.Millisecond))
			ms.gone, ms.instance = time.Time{}, inst
			return nil
		}
	}
	ms.gone = time.Time{} // up again: the rollback takes it in
	return r.rollback(ctx, fmt.Sprintf("module %s restarted", m))
}

// rollback returns the whole run to its last checkpoint: a new session,
// every module that is up restores the checkpoint (unless its weights are
// already that step's), and the integrator takes up the checkpoint's
// position and statistics. The steps since are done again, drawing the
// same batches and noise.
func (r *run) rollback(ctx context.Context, why string) error {
	target := r.committed
	if r.statePath == "" {
		return fmt.Errorf("integrator: %s at step %d and the run keeps no checkpoints (no checkpoint directory): its weights for this run are lost; stopping", why, r.st.Step)
	}
	if target.Step == r.rollbackStep && r.rollbacks > 0 {
		r.rollbacks++
	} else {
		r.rollbacks, r.rollbackStep = 1, target.Step
	}
	if r.rollbacks > maxRollbacks {
		return fmt.Errorf("integrator: %s, and the run has rolled back to step %d %d times in a row; stopping (its checkpoint stays; look at the module's log, then resume)", why, target.Step, maxRollbacks)
	}
	r.log.Warn("rolling the run back to its last checkpoint; the steps since are done again", "why", why, "from_step", r.st.Step, "to_step", target.Step)
	r.newSession()
	up := r.upPeers(nil)
	states, err := r.enrolAll(ctx, up, target.Run, target.Step, false)
	if err != nil {
		return err
	}
	for _, m := range up {
		r.mods[m] = &modState{instance: states[m].Instance}
	}
	if err := r.back(ctx, r.learning(up), states); err != nil {
		return fmt.Errorf("integrator: rollback: %w", err)
	}
	return errRolledBack
}

// back returns the run to its last checkpoint: every module of names whose
// weights (states) are not of it restores it, and the run takes up its
// position. A module with no usable checkpoint of it (the file damaged,
// say) takes the whole run back to the checkpoint before, if there is one.
func (r *run) back(ctx context.Context, names []string, states map[string]bus.RunState) error {
	err := r.returnTo(ctx, names, states, r.committed)
	if err != nil && r.older != nil {
		r.log.Warn("a module cannot return to the run's last checkpoint; the run goes back to the one before", "err", err, "last", r.committed.Step, "before", r.older.Step)
		if err2 := r.returnTo(ctx, names, nil, *r.older); err2 != nil {
			return fmt.Errorf("%w; nor to the checkpoint before: %w", err, err2)
		}
		r.committed, r.older, err = r.older.clone(), nil, nil
	}
	if err != nil {
		return err
	}
	r.st = r.committed.clone()
	if err := r.gates.load(r.st.Gates, r.statePath); err != nil {
		return err
	}
	return r.ig.cutMetrics(r.cfg.Metrics, r.st)
}

// returnTo has every module of names restore the run's checkpoint of
// target, but those whose weights states says are of it already (nil
// states: every one).
func (r *run) returnTo(ctx context.Context, names []string, states map[string]bus.RunState, target trainState) error {
	var errs []error
	for _, m := range names {
		st, known := states[m]
		if known && labelOf(st) == target.weights() {
			continue
		}
		if err := r.restore(ctx, m, st, target); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// gone reports whether module m, late in a phase of a step, is no longer
// the process the run enrolled (it died, or another took its place), and
// from then on counts it gone: later steps do not wait for it.
func (r *run) gone(m string) bool {
	ms := r.mods[m]
	if ms == nil {
		return false
	}
	if !ms.gone.IsZero() {
		return true
	}
	alive, inst := r.ping(m)
	if alive && (inst == "" || inst == ms.instance) {
		return false
	}
	ms.gone = time.Now()
	r.log.Warn("module is gone; steps go on without it until it is back", "peer", m, "step", r.st.Step, "restarted", alive)
	return true
}

// up appends to dst the run's modules that are not gone.
func (r *run) up(dst []string) []string {
	for _, m := range r.cfg.Modules {
		if ms := r.mods[m]; ms == nil || ms.gone.IsZero() {
			dst = append(dst, m)
		}
	}
	return dst
}

// upPeers appends to dst the run's peers (modules and prior module) that
// are not gone.
func (r *run) upPeers(dst []string) []string {
	dst = r.up(dst)
	if p := r.cfg.Prior; p != "" {
		if ms := r.mods[p]; ms == nil || ms.gone.IsZero() {
			dst = append(dst, p)
		}
	}
	return dst
}

// pingTimeout bounds a ping: micro answers PING on its own goroutine, so a
// live module answers fast however busy its modality is.
const pingTimeout = 500 * time.Millisecond

// ping asks module m's micro service whether it is there, and which
// process it is (its instance id; "" if the answer did not say, or did not
// come in time, which counts as there).
func (r *run) ping(m string) (alive bool, instance string) {
	msg, err := r.ig.nc.Request("$SRV.PING."+bus.ServiceName(m), nil, pingTimeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return false, ""
	case err != nil:
		return true, ""
	}
	var info struct {
		ID string `json:"id"`
	}
	json.Unmarshal(msg.Data, &info)
	return true, info.ID
}

// saveDue reports whether a checkpoint is due after the current step.
func (r *run) saveDue() bool {
	c := r.cfg
	return r.statePath != "" &&
		(c.CheckpointEvery > 0 && r.st.Step%uint64(c.CheckpointEvery) == 0 ||
			c.CheckpointInterval > 0 && time.Since(r.lastSave) >= c.CheckpointInterval)
}

// commit takes a checkpoint of the run at its current step: every module
// saves its own, labelled with the run and step, and once every one has,
// integrator.json records the step, so that a checkpoint is always of one
// step. While a module is gone, or when one cannot save, the checkpoint
// waits (logged) and the run's last checkpoint stays the one before.
func (r *run) commit(ctx context.Context) error {
	if r.statePath == "" {
		return nil
	}
	r.lastSave = time.Now()
	if gone := slices.DeleteFunc(slices.Clone(r.cfg.peers()), func(m string) bool { return r.mods[m].gone.IsZero() }); len(gone) > 0 {
		r.limit.Warn(r.log, "checkpoint postponed", "checkpoint postponed while modules are gone", "step", r.st.Step, "gone", gone, "last_checkpoint", r.committed.Step)
		return nil
	}
	states, errs := r.controlAll(ctx, r.learning(r.cfg.peers()), bus.Control{Op: bus.OpSave, ID: r.st.Run, Step: r.st.Step})
	if err := ctx.Err(); err != nil {
		return err
	}
	for m, err := range errs {
		if st := states[m]; st.Instance != "" && !st.Keeps {
			// Nothing it could do better: the checkpoint goes on without it.
			r.limit.Warn(r.log, "keeps none "+m, "a module keeps no checkpoint: the run's checkpoints do not cover it, and if it restarts the run cannot take it back", "peer", m, "err", err)
			delete(errs, m)
		}
	}
	if len(errs) > 0 {
		r.limit.Log(r.log, slog.LevelError, "checkpoint incomplete", "a checkpoint is incomplete; the run's last checkpoint stays the one before",
			"step", r.st.Step, "last_checkpoint", r.committed.Step, "err", joinErrs(errs))
		return nil
	}
	st := r.st
	if r.es != nil && r.es.Epoch == st.Epoch && st.Position > 0 {
		st.Partial, st.ELBOs = r.es.clone(), slices.Clone(r.elbos)
	}
	st.MetricsSize = metricsSize(r.cfg.Metrics)
	var err error
	if st.Gates, err = r.gates.save(r.cfg.Modules, r.ig.cfg.Latent); err != nil {
		return err
	}
	if err := r.ig.saveState(r.statePath, st); err != nil {
		return err
	}
	older := r.committed
	r.committed, r.older = st.clone(), &older
	r.st.MetricsSize = st.MetricsSize
	r.log.Debug("checkpoint taken", "step", st.Step)
	return nil
}

// controlAll sends c to every module of names at once, in the session, and
// returns their answers, and the error of each that did not answer or
// refused.
func (r *run) controlAll(ctx context.Context, names []string, c bus.Control) (map[string]bus.RunState, map[string]error) {
	type answer struct {
		m   string
		st  bus.RunState
		err error
	}
	answers := make(chan answer, len(names))
	for _, m := range names {
		go func() {
			st, err := r.controlOne(ctx, m, c)
			answers <- answer{m, st, err}
		}()
	}
	out, errs := map[string]bus.RunState{}, map[string]error{}
	for range names {
		a := <-answers
		out[a.m] = a.st
		if a.err != nil {
			errs[a.m] = a.err
		}
	}
	return out, errs
}

// allOf is controlAll that fails, naming every module that did not answer
// or refused and why, unless every one did as asked.
func (r *run) allOf(ctx context.Context, names []string, c bus.Control) (map[string]bus.RunState, error) {
	out, errs := r.controlAll(ctx, names, c)
	if len(errs) > 0 {
		return out, fmt.Errorf("integrator: %s at step %d: %s", c.Op, c.Step, joinErrs(errs))
	}
	return out, nil
}

// joinErrs says what went wrong with each module, in name order.
func joinErrs(errs map[string]error) string {
	var s []string
	for m, err := range errs {
		s = append(s, fmt.Sprintf("%s: %v", m, err))
	}
	slices.Sort(s)
	return strings.Join(s, "; ")
}

// controlOne sends c to module m in the session and returns its answer.
func (r *run) controlOne(ctx context.Context, m string, c bus.Control) (bus.RunState, error) {
	c.Run = r.session
	var st bus.RunState
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Deadline)
	defer cancel()
	err := r.ig.request(ctx, r.cfg.Deadline, r.ig.subj.Control(m), &c, &st, bus.Expect{})
	switch {
	case err != nil:
		return st, err
	case st.Err != "":
		return st, errors.New(st.Err)
	}
	return st, nil
}

// weights names the run and step a module's weights are of.
type weights struct {
	run  string
	step uint64
}

// labelOf is what a module says its weights are of.
func labelOf(st bus.RunState) weights { return weights{st.ID, st.Step} }

// weights is what the modules' weights must be of for the run to be at
// st: its run and step.
func (st trainState) weights() weights { return weights{st.Run, st.Step} }

// labelText says what a module's weights are, for logs.
func labelText(st bus.RunState) string {
	if st.ID == "" {
		return "no run"
	}
	return fmt.Sprintf("run %s step %d", st.ID, st.Step)
}
