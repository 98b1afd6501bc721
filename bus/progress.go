package bus

import (
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// TypeTrainProgress is the type string of TrainProgress.
const TypeTrainProgress = "serket.train.progress"

// TrainProgress is the integrator's account of its training run as it
// goes, on …train.progress: integrator → anyone listening (a live view's
// training curves). A report averages the training steps since the one
// before it; at the end of an epoch one more report (EpochEnd) carries
// the steps not yet reported, if any, and the epoch's evaluation.
//
// The figures are those of integrator.StepStats, averaged with equal
// weight per step as the metrics log averages an epoch's: ELBO is the
// mean of the steps' ELBOs (each Σ over the plan's terms, a batch mean),
// JointELBO, KL and LogLik those of the first term (the joint one in MVAE
// plans). A report of no step (Steps 0, an epoch's end just after a
// report) has none of them: they are zero.
type TrainProgress struct {
	Header
	// ID is the run's id (Control.ID), "" if unknown.
	ID string `msgpack:"id"`
	// Step is the last training step the report covers; Epoch (0-based)
	// is the epoch it is in, of the run's Epochs.
	Step   uint64 `msgpack:"step"`
	Epoch  int32  `msgpack:"epoch"`
	Epochs int32  `msgpack:"epochs"`
	// Progress is how much of the whole run is done after Step, 0 to 1.
	Progress float64 `msgpack:"p"`
	// Steps is how many steps the report averages, Items the samples in
	// them. Steps is at least 1 but in an EpochEnd report.
	Steps int32 `msgpack:"steps"`
	Items int64 `msgpack:"items"`
	// ELBO, JointELBO and KL are means over the steps, in nats per
	// sample; LogLik is the joint term's log-likelihood per module.
	ELBO      float64            `msgpack:"elbo"`
	JointELBO float64            `msgpack:"joint"`
	KL        float64            `msgpack:"kl"`
	LogLik    map[string]float64 `msgpack:"ll"`
	// Beta is the KL weight of the report's last step.
	Beta float32 `msgpack:"beta"`
	// SamplesPerSec is Items over the wall time since the previous
	// report (or since the epoch's steps began, if later); in an EpochEnd
	// report, the whole epoch's throughput (as in the metrics log).
	SamplesPerSec float64 `msgpack:"sps"`
	// Missed counts, for each module absent from any of the steps, the
	// steps it was absent from (it did not answer in time).
	Missed map[string]int32 `msgpack:"missed"`
	// EpochEnd marks the report that ends Epoch. Tested says the run
	// evaluated its held-out items after the epoch: TestELBO, TestKL and
	// TestLogLik are the plain joint ELBO per item, its KL and its
	// log-likelihood per module (integrator.EpochStats.Test*).
	EpochEnd   bool               `msgpack:"end"`
	Tested     bool               `msgpack:"tested"`
	TestELBO   float64            `msgpack:"test_elbo"`
	TestKL     float64            `msgpack:"test_kl"`
	TestLogLik map[string]float64 `msgpack:"test_ll"`
}

// MessageType implements Message.
func (*TrainProgress) MessageType() string { return TypeTrainProgress }

func (m *TrainProgress) check(Expect) error {
	if m.ID != "" && !ValidToken(m.ID) {
		return badf("id", ErrField, "run id %q is not a token (hex digits, at most %d)", m.ID, MaxTokenLen)
	}
	if m.Epochs < 1 {
		return badf("epochs", ErrField, "%d epochs, want at least 1", m.Epochs)
	}
	if m.Epoch < 0 {
		return badf("epoch", ErrField, "epoch %d, want at least 0", m.Epoch)
	}
	if !finite(m.Progress) || m.Progress < 0 || m.Progress > 1 {
		return badf("p", ErrField, "progress %v, want 0 to 1", m.Progress)
	}
	if m.Steps < 0 || m.Steps == 0 && !m.EpochEnd {
		return badf("steps", ErrField, "%d steps, want at least 1 (0 only at an epoch's end)", m.Steps)
	}
	if m.Items < 0 {
		return badf("items", ErrField, "%d items, want at least 0", m.Items)
	}
	for _, f := range [...]struct {
		name string
		v    float64
	}{{"elbo", m.ELBO}, {"joint", m.JointELBO}, {"kl", m.KL}, {"sps", m.SamplesPerSec}, {"test_elbo", m.TestELBO}, {"test_kl", m.TestKL}} {
		if !finite(f.v) {
			return badf(f.name, ErrNotFinite, "%v", f.v)
		}
	}
	if m.SamplesPerSec < 0 {
		return badf("sps", ErrField, "%v samples/s, want at least 0", m.SamplesPerSec)
	}
	if b := float64(m.Beta); !finite(b) || b < 0 || b > 1e6 {
		return badf("beta", ErrField, "KL weight %v, want 0 to 1e6", m.Beta)
	}
	if err := checkFigures("ll", m.LogLik); err != nil {
		return err
	}
	if err := checkCounts("missed", m.Missed, m.Steps); err != nil {
		return err
	}
	if m.Tested && !m.EpochEnd {
		return badf("tested", ErrField, "an evaluation outside an epoch's end")
	}
	return checkFigures("test_ll", m.TestLogLik)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// checkCounts holds a per-module count of steps to MaxModules valid names
// and counts from 1 to steps. Of several bad entries the least name is
// reported.
func checkCounts(field string, m map[string]int32, steps int32) error {
	if len(m) > MaxModules {
		return badf(field, ErrTooLarge, "%d modules, at most %d", len(m), MaxModules)
	}
	bad, found := "", false
	for name, n := range m {
		if (!ValidName(name) || n < 1 || n > steps) && (!found || name < bad) {
			bad, found = name, true
		}
	}
	switch {
	case !found:
		return nil
	case !ValidName(bad):
		return badf(field, ErrField, "%q is not a valid module name", bad)
	}
	return badf(field+"."+bad, ErrField, "%d steps of %d", m[bad], steps)
}

// checkFigures holds a per-module map to MaxModules valid names and
// finite values. Of several bad entries the least name is reported, so
// that the error does not depend on the map's order.
func checkFigures(field string, m map[string]float64) error {
	if len(m) > MaxModules {
		return badf(field, ErrTooLarge, "%d modules, at most %d", len(m), MaxModules)
	}
	var badName, badValue string
	nameBad, valueBad := false, false
	for name, v := range m {
		switch {
		case !ValidName(name):
			if !nameBad || name < badName {
				badName, nameBad = name, true
			}
		case !finite(v):
			if !valueBad || name < badValue {
				badValue, valueBad = name, true
			}
		}
	}
	if nameBad {
		return badf(field, ErrField, "%q is not a valid module name", badName)
	}
	if valueBad {
		return badf(field+"."+badValue, ErrNotFinite, "%v", m[badValue])
	}
	return nil
}

// EncodeMsgpack implements msgpack.CustomEncoder: byte for byte what
// msgpack's reflection writes (as encode_hot.go's encoders), but with the
// maps in key order, so that a report encodes one way only and into a
// reused buffer without allocating.
func (m *TrainProgress) EncodeMsgpack(enc *msgpack.Encoder) error {
	w := hotWriter{e: enc}
	w.header(&m.Header, 19)
	w.str("id")
	w.str(m.ID)
	w.str("step")
	w.uint64(m.Step)
	w.str("epoch")
	w.int32(m.Epoch)
	w.str("epochs")
	w.int32(m.Epochs)
	w.str("p")
	w.float64(m.Progress)
	w.str("steps")
	w.int32(m.Steps)
	w.str("items")
	w.int64(m.Items)
	w.str("elbo")
	w.float64(m.ELBO)
	w.str("joint")
	w.float64(m.JointELBO)
	w.str("kl")
	w.float64(m.KL)
	w.str("ll")
	w.figures(m.LogLik)
	w.str("beta")
	w.float32(m.Beta)
	w.str("sps")
	w.float64(m.SamplesPerSec)
	w.str("missed")
	w.counts(m.Missed)
	w.str("end")
	w.bool(m.EpochEnd)
	w.str("tested")
	w.bool(m.Tested)
	w.str("test_elbo")
	w.float64(m.TestELBO)
	w.str("test_kl")
	w.float64(m.TestKL)
	w.str("test_ll")
	w.figures(m.TestLogLik)
	return w.err
}

// figures writes a per-module map as msgpack writes a map[string]float64,
// in key order.
func (w *hotWriter) figures(m map[string]float64) {
	if m == nil {
		w.null()
		return
	}
	var stack [MaxModules]string
	keys := sortedKeys(&stack, m)
	w.mapLen(len(keys))
	for _, k := range keys {
		w.str(k)
		w.float64(m[k])
	}
}

// counts writes a per-module count as msgpack writes a map[string]int32,
// in key order.
func (w *hotWriter) counts(m map[string]int32) {
	if m == nil {
		w.null()
		return
	}
	var stack [MaxModules]string
	keys := sortedKeys(&stack, m)
	w.mapLen(len(keys))
	for _, k := range keys {
		w.str(k)
		w.int32(m[k])
	}
}

// sortedKeys is m's keys in order, in stack when they fit (a message
// checked before it is encoded has at most MaxModules), so that encoding
// allocates nothing.
func sortedKeys[V any](stack *[MaxModules]string, m map[string]V) []string {
	keys := stack[:0]
	if len(m) > len(stack) {
		keys = make([]string, 0, len(m))
	}
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// int32 is an int32 field's encoding: always 5 bytes.
func (w *hotWriter) int32(v int32) {
	if w.err == nil {
		w.err = w.e.EncodeInt32(v)
	}
}

// int64 is an int64 field's encoding: always 9 bytes.
func (w *hotWriter) int64(v int64) {
	if w.err == nil {
		w.err = w.e.EncodeInt64(v)
	}
}

func (w *hotWriter) float64(v float64) {
	if w.err == nil {
		w.err = w.e.EncodeFloat64(v)
	}
}
