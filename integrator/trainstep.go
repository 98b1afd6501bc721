package integrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// evalStepBase numbers evaluation steps apart from training steps, so that
// evaluating never shifts the noise or plan a training step draws.
const evalStepBase = 1 << 62

// probeEvery is how long a phase of a step waits for a module before it
// asks the bus whether that module is still there: a dead module is left
// out of the step then, not after the whole deadline.
const probeEvery = 250 * time.Millisecond

// step runs one step of the session: StepBegin → posteriors → latents →
// decoder gradients → expert gradients. An evaluation step (eval) scores
// the joint term with λ = β = 1 (the plain ELBO) and updates nothing.
func (r *run) step(ctx context.Context, step uint64, ids []uint64, eval bool) (*StepStats, error) {
	cfg, st := r.cfg, r.store
	b, d := len(ids), r.ig.cfg.Latent
	sm := &st.math
	if eval {
		st.plan = JointPlan()(st.plan, cfg.Modules, nil)
		sm.Reset(StepMath{Step: step, Seed: cfg.Seed, B: b, D: d, Plan: st.plan, Beta: 1, Agg: cfg.Aggregation})
	} else {
		st.pcg.Seed(cfg.Seed^0x91a2, step)
		st.plan = cfg.Plan(st.plan, cfg.Modules, st.rng)
		st.coordinated = cfg.coordinate(st.coordinated, st.plan)
		sm.Reset(StepMath{Step: step, Seed: cfg.Seed, B: b, D: d, Plan: st.coordinated, Lambda: cfg.Lambda, Beta: cfg.beta(step - 1), Agg: cfg.Aggregation,
			SeenOnly: cfg.Pairing.SeenOnly})
	}
	plan := sm.Terms()
	if len(plan) > bus.MaxTerms {
		return nil, fmt.Errorf("integrator: aggregation %s draws more latents for the plan's %d terms than a step carries (%d): fewer modules or subsets",
			cfg.Aggregation.Name(), len(sm.Plan), bus.MaxTerms)
	}
	ss := &st.stats
	*ss = StepStats{Step: step, Epoch: r.st.Epoch, Beta: sm.Beta, Items: b, Missing: ss.Missing[:0]}

	t0 := time.Now()
	st.begin = bus.StepBegin{Header: bus.Header{Run: r.session}, Step: step, Epoch: r.st.Epoch, Train: !eval, IDs: ids, Plan: plan, Lambda: sm.Weights(cfg.Modules), Beta: sm.Beta}
	if err := r.send(st.stepSubj, &st.begin); err != nil {
		return nil, err
	}
	ss.Codec += time.Since(t0)

	posts, err := r.collectPosts(ctx, step, ss, b)
	if err != nil {
		return nil, err
	}
	if len(posts) == 0 {
		if eval {
			r.log.Warn("no module answered the evaluation step; skipping it", "step", step)
		}
		ss.unanswered = true
		return ss, nil
	}

	sm.Priors = r.askPrior(ctx, step, posts, eval)
	t1 := time.Now()
	members, z := sm.Latents(posts)
	ss.Fuse += time.Since(t1)
	t2 := time.Now()
	st.latent = bus.Latent{Header: bus.Header{Run: r.session}, Step: step, Members: members, Z: z, W: sm.RowWeights()}
	if err := r.send(st.latentSubj, &st.latent); err != nil {
		return nil, err
	}
	ss.Codec += time.Since(t2)

	zgrads, err := r.collectZGrads(ctx, step, ss, members, plan, b)
	if err != nil {
		return nil, err
	}
	if len(zgrads) == 0 && len(st.targets) > 0 && !eval {
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
		grads[m].Run = r.session
		if err := r.send(st.egrad[m], grads[m]); err != nil {
			return nil, err
		}
	}
	ss.Codec += time.Since(t4)
	r.gates.step()
	return ss, nil
}

// collectPosts collects the posteriors of every module that is up, until
// the deadline.
func (r *run) collectPosts(ctx context.Context, step uint64, ss *StepStats, b int) (map[string]*bus.Posterior, error) {
	st := r.store
	posts := st.postOf
	clear(posts)
	st.want = r.up(st.want[:0])
	err := r.collect(ctx, step, ss, "post", st.postPrefix, st.want, func(m string, msg *nats.Msg) error {
		p := st.posts.spare(m)
		if err := bus.UnmarshalReuse(msg.Subject, msg.Data, p, bus.Expect{Latent: r.ig.cfg.Latent, Batch: b}); err != nil {
			return err
		}
		if err := r.ofStep(&p.Header, p.Step, step); err != nil {
			return err
		}
		posts[m] = st.posts.accept(m)
		return nil
	})
	for _, m := range r.cfg.Modules {
		if posts[m] == nil {
			ss.Missing = append(ss.Missing, m)
		}
	}
	return posts, err
}

// collectZGrads collects the decoder gradients of every member that is a
// target of some term of plan.
func (r *run) collectZGrads(ctx context.Context, step uint64, ss *StepStats, members []string, plan []bus.Term, b int) (map[string]*bus.ZGrad, error) {
	st := r.store
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
	err := r.collect(ctx, step, ss, "zgrad", st.zgradPrefix, targets, func(m string, msg *nats.Msg) error {
		zg := st.zgrads.spare(m)
		if err := bus.UnmarshalReuse(msg.Subject, msg.Data, zg, bus.Expect{Latent: r.ig.cfg.Latent, Batch: b, Terms: len(plan)}); err != nil {
			return err
		}
		if err := r.ofStep(&zg.Header, zg.Step, step); err != nil {
			return err
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
	return zgrads, nil
}

// ofStep checks that a module's message belongs to this session and step:
// one of an earlier session of this integrator, or of another step, is
// stale (it was in flight when the run moved on); one of a session the
// integrator never opened was not sent by a module it enrolled.
func (r *run) ofStep(h *bus.Header, got, step uint64) error {
	switch {
	case h.Run == r.session && got == step:
		return nil
	case h.Run == r.session || slices.Contains(r.past, h.Run):
		return errStale
	case h.Run == "":
		return errors.New("it carries no session")
	}
	return fmt.Errorf("it is of session %s, which this integrator never opened", h.Run)
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
// step, has been found gone (see probeEvery), or the deadline passes.
// Other kinds and other steps are stale and dropped; invalid ones are
// rejected and counted, and logged once per interval and sender.
func (r *run) collect(ctx context.Context, step uint64, ss *StepStats, kind, prefix string, want []string, accept func(m string, msg *nats.Msg) error) error {
	got, timer := r.store.got, r.store.timer
	clear(got)
	timer.Reset(r.cfg.Deadline)
	defer timer.Stop()
	probe := r.store.probe
	probe.Reset(probeEvery)
	defer probe.Stop()
	start := time.Now()
	defer func() { ss.Wait += time.Since(start) }()
	for len(got) < len(want) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			r.log.Warn("modules missed the step's deadline; the step goes on without them", "step", step, "phase", kind, "modules", missingOf(want, got), "deadline", r.cfg.Deadline)
			return nil
		case <-probe.C:
			for _, m := range missingOf(want, got) {
				if r.gone(m) {
					got[m] = true // it will send nothing: stop waiting for it
				}
			}
			probe.Reset(probeEvery)
		case msg := <-r.ch:
			r.take(msg, step, ss, kind, prefix, want, accept)
		}
	}
	return nil
}

// take handles one message that arrived while collecting.
func (r *run) take(msg *nats.Msg, step uint64, ss *StepStats, kind, prefix string, want []string, accept func(m string, msg *nats.Msg) error) {
	got := r.store.got
	m, ok := strings.CutPrefix(msg.Subject, prefix)
	if !ok || !slices.Contains(want, m) || got[m] {
		r.es.Stale++
		return
	}
	t := time.Now()
	err := accept(m, msg)
	ss.Codec += time.Since(t)
	switch {
	case errors.Is(err, errStale):
		r.es.Stale++
	case err != nil:
		r.es.Rejected++
		r.rejected(m, fmt.Errorf("step %d: %s from module %s: %w", step, kind, m, err))
	default:
		got[m] = true
	}
}

// missingOf is the modules of want not in got.
func missingOf(want []string, got map[string]bool) []string {
	var late []string
	for _, m := range want {
		if !got[m] {
			late = append(late, m)
		}
	}
	return late
}

// send marshals m as the integrator and publishes it.
func (r *run) send(subject string, m bus.Message) error {
	return r.ig.send(subject, m)
}

// send marshals m as the integrator and publishes it.
func (ig *Integrator) send(subject string, m bus.Message) error {
	m.(interface{ SetSender(string) }).SetSender(Name)
	ig.sendMu.Lock()
	defer ig.sendMu.Unlock()
	b, err := bus.MarshalAppend(ig.sendBuf[:0], m, bus.PayloadLimit(ig.nc))
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
