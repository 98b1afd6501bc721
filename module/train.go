package module

import (
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// The module's side of a training run (DESIGN.md section 4). Every handler
// runs on the actor goroutine.
//
// A module takes part in one training session at a time: the integrator
// enrols it with a Control (OpEnrol) carrying a fresh session token, and
// every training message of the session carries that token (Header.Run).
// A step, latent or expert gradient of any other session, or of none, is
// refused and counted, whoever claims to send it: a replayed message of an
// old run, or one forged by a process that never enrolled the module,
// cannot change its weights. Within the session, a message for a step
// other than the current one is stale and dropped. The module saves its
// checkpoint only when the integrator asks (OpSave), labelled with the
// run and step, and restores the run's checkpoint when the integrator
// rolls the run back (OpRestore).
//
// The integrator's StepBegin, Latent, ExpertGrad and Control arrive on four
// subjects, and their order matters: the ExpertGrad of step s must be
// learned from before the StepBegin of step s+1 starts a new one, and a
// save must see every step before it. NATS keeps the order of one
// connection's messages, but separate subscriptions (micro endpoints among
// them) are served by separate goroutines, which would reorder them. So
// all four feed one channel, which nats.go fills from its read loop in
// arrival order, and one goroutine hands them to the actor in that order.

// trainQueue bounds the training messages waiting for the module; a step
// has three, so this only fills if the modality is far behind.
const trainQueue = 1024

// trainSubjects are the subjects of the module's side of training, built
// once: a step's messages are matched against them and published on them.
type trainSubjects struct{ step, latent, egrad, ctl, post, zgrad string }

func newTrainSubjects(s bus.Subjects, name string) trainSubjects {
	return trainSubjects{step: s.Step(), latent: s.Latent(), egrad: s.EGrad(name), ctl: s.Control(name), post: s.Post(name), zgrad: s.ZGrad(name)}
}

// trainMsg hands a decoded training message to the actor: a value on a
// channel, so that a step's hand-offs allocate nothing.
type trainMsg struct {
	kind     trainKind
	step     *bus.StepBegin // kindStep
	ctl      *bus.Control   // kindControl
	reply    string         // kindControl: where the RunState goes
	received time.Time
}

type trainKind uint8

const (
	kindStep    trainKind = iota // step is the StepBegin
	kindLatent                   // r.inLatent holds the latents
	kindEGrad                    // r.inEGrad holds the expert gradient
	kindControl                  // ctl is the integrator's request
)

func (r *runner) subscribeTraining() (stop func(), err error) {
	ch := make(chan *nats.Msg, trainQueue)
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}
	for _, subject := range []string{r.trainSubj.step, r.trainSubj.latent, r.trainSubj.egrad, r.trainSubj.ctl} {
		sub, err := r.nc.ChanSubscribe(subject, ch)
		if err != nil {
			unsubscribe()
			return nil, fmt.Errorf("subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-r.quit:
				return
			case m := <-ch:
				r.handleTraining(m)
			}
		}
	}()
	return func() { unsubscribe(); <-done }, nil
}

// handleTraining decodes one training message and hands it to the actor,
// waiting until the actor is done with it. Messages decode into the
// storage of the last ones: this goroutine alone decodes, and the actor
// keeps nothing of a latent or an expert gradient after handling it (a
// step begin it keeps until the next one has been handled: see inStep).
func (r *runner) handleTraining(m *nats.Msg) {
	start := time.Now()
	var (
		err error
		t   = trainMsg{received: start}
	)
	switch m.Subject {
	case r.trainSubj.step:
		t.kind, t.step = kindStep, &r.inStep[r.inStepNext]
		if err = bus.UnmarshalReuse(m.Subject, m.Data, t.step, bus.Expect{}); err == nil {
			r.inStepNext ^= 1
		}
	case r.trainSubj.latent:
		t.kind = kindLatent
		err = bus.UnmarshalReuse(m.Subject, m.Data, &r.inLatent, bus.Expect{Latent: r.spec.Latent})
	case r.trainSubj.ctl:
		t.kind, t.ctl, t.reply = kindControl, new(bus.Control), m.Reply
		err = bus.UnmarshalFrom(m.Subject, m.Data, t.ctl, bus.Expect{})
	default:
		t.kind = kindEGrad
		err = bus.UnmarshalReuse(m.Subject, m.Data, &r.inEGrad, bus.Expect{Latent: r.spec.Latent})
	}
	codec := time.Since(start).Seconds()
	r.counters(func(c *trainStats) { c.Messages++; c.CodecSeconds += codec })
	if err != nil {
		r.reject(err)
		return
	}
	select {
	case r.trainIn <- t:
		<-r.trainDone
	case <-r.quit:
	}
}

// handleTrainMsg runs on the actor. A message of a session the module is
// not enrolled in goes no further.
func (r *runner) handleTrainMsg(t trainMsg) {
	switch t.kind {
	case kindStep:
		if r.ours("step", t.step.Step, &t.step.Header) {
			r.beginStep(t.step, t.received)
		}
	case kindLatent:
		if r.ours("latent", r.inLatent.Step, &r.inLatent.Header) {
			r.decodeStep(&r.inLatent)
		}
	case kindEGrad:
		if r.ours("expert gradient", r.inEGrad.Step, &r.inEGrad.Header) {
			r.learnStep(&r.inEGrad)
		}
	case kindControl:
		r.control(t.ctl, t.reply)
	}
}

// ours reports whether a training message is of the session the module is
// enrolled in, from the integrator; it counts and logs (rate-limited) one
// that is not.
func (r *runner) ours(what string, step uint64, h *bus.Header) bool {
	if r.session != "" && h.Run == r.session && h.Sender == integratorName {
		return true
	}
	why := "not of the session this module is enrolled in"
	switch {
	case r.session == "":
		why = "this module is enrolled in no training session"
	case h.Run == "":
		why = "it carries no session"
	case h.Sender != integratorName:
		why = "its sender is not the integrator"
	}
	r.counters(func(c *trainStats) {
		c.Refused++
		c.LastError = fmt.Sprintf("refused %s of step %d from %q: %s", what, step, h.Sender, why)
	})
	r.logLimit.Warn(r.log, "refused "+h.Sender, "refused a training message (logged once per 10 s; all are counted)",
		"what", what, "step", step, "from", h.Sender, "session", h.Run, "why", why)
	return false
}

// integratorName is the integrator's sender name (integrator.Name, which
// the SDK cannot import).
const integratorName = "integrator"

// compute runs one call into the modality (through safely) and counts its
// time as the step's compute.
func (r *runner) compute(what string, f func() error) error {
	start := time.Now()
	err := r.safely(what, f)
	d := time.Since(start).Seconds()
	r.counters(func(c *trainStats) { c.ComputeSeconds += d })
	return err
}

func (r *runner) beginStep(in *bus.StepBegin, received time.Time) {
	if r.active {
		r.log.Warn("abandoning training step for a newer one", "step", r.step, "new", in.Step)
		r.abandon()
	}
	r.step, r.stepStart = in.Step, received
	if in.Train {
		// Whether it learns from the step or sits it out, once the step
		// is over the weights are the run's as of it.
		r.weights = Label{Run: r.runID, Step: in.Step}
	}
	name := r.spec.Name
	involved := false
	for _, t := range in.Plan {
		if slices.Contains(t.Subset, name) || slices.Contains(t.Targets, name) {
			involved = true
			break
		}
	}
	if !involved {
		return
	}
	ld := r.m.(Loader)
	var (
		x       Batch
		present []bool
	)
	err := r.compute("LoadBatch", func() error {
		var err error
		x, present, err = ld.LoadBatch(in.IDs)
		if err == nil && (x.Len() != len(in.IDs) || len(present) != len(in.IDs)) {
			err = fmt.Errorf("LoadBatch returned %d rows and %d presence flags for %d ids", x.Len(), len(present), len(in.IDs))
		}
		return err
	})
	if err != nil {
		r.reject(fmt.Errorf("step %d: %w", in.Step, err))
		return
	}
	b, d := len(in.IDs), r.spec.Latent
	r.mu, r.logvar = grow(r.mu, b*d), grow(r.logvar, b*d)
	if err := r.compute("Encode", func() error { return r.encodeStep(x, in.Step) }); err != nil {
		r.reject(fmt.Errorf("step %d: encode: %w", in.Step, err))
		r.m.(Learner).Discard()
		return
	}
	r.weight, r.beta = 1, in.Beta
	if l, ok := in.Lambda[name]; ok {
		r.weight = l
	}
	r.x, r.present, r.plan = x, present, in.Plan
	r.train = in.Train
	r.active, r.lastTouch = true, time.Now()
	post := &r.outPost
	post.Step, post.Present, post.Run = in.Step, present, r.session
	post.Mu.SetMatrix(b, d, r.mu)
	post.LogVar.SetMatrix(b, d, r.logvar)
	if !r.publish(r.trainSubj.post, post) {
		r.abandon()
	}
}

func (r *runner) decodeStep(in *bus.Latent) {
	if !r.active || in.Step != r.step {
		r.stale(in.Step)
		return
	}
	name := r.spec.Name
	if !slices.Contains(in.Members, name) {
		// The integrator did not wait for us: this step goes on without us.
		r.log.Warn("left out of a training step (posterior missed the deadline?)", "step", in.Step)
		r.abandon()
		return
	}
	b, d := r.x.Len(), r.spec.Latent
	if len(in.Z) != len(r.plan) {
		r.reject(fmt.Errorf("step %d: %d latents for a plan of %d terms", in.Step, len(in.Z), len(r.plan)))
		r.abandon()
		return
	}
	if len(in.W) > 0 && len(in.W) != len(in.Z) { // Unmarshal checks this too; a direct caller may not
		r.reject(fmt.Errorf("step %d: %d row weights for %d latents", in.Step, len(in.W), len(in.Z)))
		r.abandon()
		return
	}
	// The weights, likelihoods and gradients reuse the last step's storage:
	// the reply is encoded before decodeStep returns.
	r.w = grow(r.w, b)
	for i, p := range r.present {
		r.w[i] = 0
		if p {
			r.w[i] = r.weight
		}
	}
	if err := r.gatherTerms(in, b, d); err != nil {
		r.reject(fmt.Errorf("step %d: %w", in.Step, err))
		r.abandon()
		return
	}
	if err := r.compute("Decode", func() error { return r.decodeTerms(in) }); err != nil {
		r.reject(fmt.Errorf("step %d: %w", in.Step, err))
		r.abandon()
		return
	}
	out := &r.outZGrad
	out.Step, out.Terms, out.Run = in.Step, out.Terms[:0], r.session
	for k, i := range r.dec.terms {
		// The term's entry keeps its shapes' storage from the last step.
		out.Terms = slices.Grow(out.Terms, 1)[:len(out.Terms)+1]
		tg := &out.Terms[len(out.Terms)-1]
		tg.Term = i
		tg.DZ.SetMatrix(b, d, r.dec.dz[k])
		tg.LogLik.SetVector(r.dec.ll[k])
	}
	r.lastTouch = time.Now()
	if !r.publish(r.trainSubj.zgrad, out) {
		r.abandon()
		return
	}
	if !r.train { // an evaluation step ends here: scored, nothing learned
		r.m.(Learner).Discard()
		r.endStep()
	}
}

// encodeStep encodes the step's batch into r.mu and r.logvar, keeping a
// private latent's whole posterior.
func (r *runner) encodeStep(x Batch, step uint64) error {
	if r.priv == nil {
		return r.m.Encode(x, r.mu, r.logvar)
	}
	pr, b := r.priv, x.Len()
	pr.begin(b, step)
	if err := r.m.Encode(x, pr.mu, pr.lv); err != nil {
		return err
	}
	pr.shared(r.mu, pr.mu, b)
	pr.shared(r.logvar, pr.lv, b)
	return nil
}

// stepTerms are the terms of a step the module decodes, gathered for one
// call into the modality: each term's index in the plan, latent, rows'
// weights, and the likelihoods and latent gradients it gets back. Their
// storage is the last step's.
type stepTerms struct {
	terms          []int
	z, w, ll, dz   [][]float32
	wbuf, llb, dzb [][]float32 // the weights', likelihoods' and gradients' storage, one per term
	pz, pdz        [][]float32 // with a private latent: the whole latents and their gradients
}

// gatherTerms readies r.dec with the terms of in that target the module,
// for a batch of b rows of latent size d.
func (r *runner) gatherTerms(in *bus.Latent, b, d int) error {
	s, name := &r.dec, r.spec.Name
	s.terms, s.z, s.w, s.ll, s.dz = s.terms[:0], s.z[:0], s.w[:0], s.ll[:0], s.dz[:0]
	for i, t := range r.plan {
		if !slices.Contains(t.Targets, name) {
			continue
		}
		if in.Z[i].Rows() != b {
			return fmt.Errorf("z[%d] has %d rows, the batch has %d", i, in.Z[i].Rows(), b)
		}
		k := len(s.terms)
		if k == len(s.llb) {
			s.wbuf, s.llb, s.dzb = append(s.wbuf, nil), append(s.llb, nil), append(s.dzb, nil)
		}
		s.llb[k], s.dzb[k] = grow(s.llb[k], b), grow(s.dzb[k], b*d)
		clear(s.llb[k]) // as fresh buffers were: a modality may add into them
		clear(s.dzb[k])
		tw, err := r.termWeights(in, i, k)
		if err != nil {
			return err
		}
		s.terms = append(s.terms, i)
		s.z, s.w = append(s.z, in.Z[i].Data), append(s.w, tw)
		s.ll, s.dz = append(s.ll, s.llb[k]), append(s.dz, s.dzb[k])
	}
	return nil
}

// decodeTerms decodes the gathered terms in one call (DecodeTerms). With a
// private latent, each term's latent gets its private part first and its
// gradient is taken back through it after (see private).
func (r *runner) decodeTerms(in *bus.Latent) error {
	s := &r.dec
	z, dz := s.z, s.dz
	if r.priv != nil {
		z, dz = r.privateTerms(in)
	}
	if err := DecodeTerms(r.m, z, r.x, s.w, s.ll, dz); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if r.priv != nil {
		r.privateBackward(in)
	}
	return nil
}

// privateTerms are the gathered terms' whole latents, the private part
// drawn (in term order), and their zeroed gradients: the private latent's
// storage, listed in r.dec's.
func (r *runner) privateTerms(in *bus.Latent) (z, dz [][]float32) {
	s, b := &r.dec, r.x.Len()
	s.pz, s.pdz = s.pz[:0], s.pdz[:0]
	for k, i := range s.terms {
		zk, dzk := r.priv.termLatent(k, in.Z[i].Data, b, r.ownTerm(r.plan[i]))
		s.pz, s.pdz = append(s.pz, zk), append(s.pdz, dzk)
	}
	return s.pz, s.pdz
}

// privateBackward takes each decoded term's gradient back through its
// private draw: the shared columns into the term's gradient for the
// integrator, the private ones into the posterior's, with the term's KL
// weighed per row as the term weighs the row.
func (r *runner) privateBackward(in *bus.Latent) {
	s, b := &r.dec, r.x.Len()
	r.kl = grow(r.kl, b)
	for k, i := range s.terms {
		for row, p := range r.present {
			r.kl[row] = 0
			if p {
				r.kl[row] = r.beta / float32(b)
				if len(in.W) > 0 && !in.W[i].Empty() {
					r.kl[row] *= in.W[i].Data[row]
				}
			}
		}
		r.priv.termBackward(k, s.dz[k], b, r.ownTerm(r.plan[i]), r.kl)
	}
}

// ownTerm reports whether term t's latent was drawn from this module's
// posterior among others: its subset has the module, or, for a mixture's
// stratum, its From does.
func (r *runner) ownTerm(t bus.Term) bool {
	from := t.From
	if len(from) == 0 {
		from = t.Subset
	}
	return slices.Contains(from, r.spec.Name)
}

// termWeights are the rows' weights r.w of the step times the latent's row
// weights of term i, if it has any (a mixture's strata weigh rows by how
// many experts they have), in the k-th gathered term's storage; else r.w
// itself.
func (r *runner) termWeights(in *bus.Latent, i, k int) ([]float32, error) {
	w := r.w
	if len(in.W) == 0 || in.W[i].Empty() {
		return w, nil
	}
	if len(in.W[i].Data) != len(w) {
		return nil, fmt.Errorf("term %d: %d row weights for a batch of %d", i, len(in.W[i].Data), len(w))
	}
	wt := grow(r.dec.wbuf[k], len(w))
	r.dec.wbuf[k] = wt
	for j, v := range in.W[i].Data {
		wt[j] = w[j] * v
	}
	return wt, nil
}

func (r *runner) learnStep(in *bus.ExpertGrad) {
	if !r.active || in.Step != r.step {
		r.stale(in.Step)
		return
	}
	if in.DMu.Rows() != r.x.Len() {
		r.reject(fmt.Errorf("step %d: gradient has %d rows, the batch has %d", in.Step, in.DMu.Rows(), r.x.Len()))
		r.abandon()
		return
	}
	l := r.m.(Learner)
	dmu, dlv := in.DMu.Data, in.DLogVar.Data
	if r.priv != nil {
		dmu, dlv = r.priv.learnGrads(dmu, dlv, r.x.Len())
	}
	learn := func() error { return l.Learn(dmu, dlv) }
	if r.frozen { // its decoders' gradients were for the others' sake
		learn = func() error { l.Discard(); return nil }
	}
	if err := r.compute("Learn", learn); err != nil {
		r.reject(fmt.Errorf("step %d: learn: %w", in.Step, err))
		r.abandon()
		return
	}
	r.endStep()
	took := time.Since(r.stepStart).Seconds()
	r.counters(func(c *trainStats) {
		c.Steps++
		c.Step = in.Step
		c.StepSeconds += took
	})
}

// abandon drops the current step's accumulated gradients.
func (r *runner) abandon() {
	if !r.active {
		return
	}
	if l, ok := As[Learner](r.m); ok {
		l.Discard()
	}
	r.counters(func(c *trainStats) { c.Abandoned++ })
	r.endStep()
}

func (r *runner) endStep() {
	if rc, ok := As[Recycler](r.m); ok && r.x != nil {
		rc.Recycle(r.x)
	}
	r.active, r.train = false, false
	r.x, r.present, r.plan = nil, nil, nil
}

// publish sends m from this module; it logs and returns false on failure.
// Its time counts as the step's codec time.
func (r *runner) publish(subject string, m bus.Message) bool {
	start := time.Now()
	m.(interface{ SetSender(string) }).SetSender(r.spec.Name)
	r.sendMu.Lock()
	b, err := bus.MarshalAppend(r.sendBuf[:0], m, bus.PayloadLimit(r.nc))
	if err == nil {
		r.sendBuf = b // reused by the next step's messages: Publish copies
		err = r.nc.Publish(subject, b)
	}
	r.sendMu.Unlock()
	d := time.Since(start).Seconds()
	r.counters(func(c *trainStats) { c.CodecSeconds += d })
	if err != nil {
		r.log.Error("cannot publish", "subject", subject, "err", err)
		return false
	}
	return true
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
