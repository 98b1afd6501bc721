package eval

// The phases of an evaluation, as Progress names them and Result.Seconds
// keys them.
const (
	PhaseCoherence   = "coherence"
	PhaseLikelihoods = "likelihoods"
	PhaseLatent      = "latent"
	// PhaseJudge is followed by a space and the modality: "judge vision"
	// is the training of the classifier that judges generated images.
	PhaseJudge = "judge"
)

// Progress says how far one phase of an evaluation has got: Done of Total
// units (Unit names them: "items", "batches", …) are finished. Each phase
// is reported first with Done = 0 and last, once it has succeeded, with
// Done = Total; Done never falls in between. A caller can so draw a bar per
// phase and time it without knowing what the phases are. eval itself never
// prints: progress is the caller's to show.
type Progress struct {
	Phase  string // PhaseCoherence, …
	Detail string // the phase's settings, for people: "IWAE, K = 100, 500 items"
	Unit   string
	Done   int
	Total  int
}

// tracker reports one phase at a time to fn, which may be nil. It is used
// from one goroutine, the evaluating one, so fn needs no lock.
type tracker struct {
	fn func(Progress)
	p  Progress
}

// start begins a phase of total units.
func (t *tracker) start(phase, detail, unit string, total int) {
	t.p = Progress{Phase: phase, Detail: detail, Unit: unit, Total: total}
	t.send()
}

// set reports done units, clamped below Total so that only finish reports
// the end (a phase whose unit count was an estimate still ends once).
func (t *tracker) set(done int) {
	done = min(done, t.p.Total-1)
	if done <= t.p.Done {
		return
	}
	t.p.Done = done
	t.send()
}

// finish reports the phase as done.
func (t *tracker) finish() {
	t.p.Done = t.p.Total
	t.send()
}

func (t *tracker) send() {
	if t.fn != nil {
		t.fn(t.p)
	}
}
