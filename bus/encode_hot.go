package bus

import (
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// The integrator's messages of every training step, the step begin and the
// latents, carry name lists and a weight map, which msgpack's reflection
// encodes through reflect values that allocate. They are encoded by hand
// here, byte for byte as reflection would encode them (the golden files in
// testdata check it), so that sending a step allocates nothing; the one
// difference is that the weights go in key order, not the map's. So are
// the messages of streaming, a module's posterior and the integrator's
// belief, whose round trip is measured against a bare NATS request
// (serket bench fusion): reflection spends microseconds on each.

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *StepBegin) EncodeMsgpack(enc *msgpack.Encoder) error {
	w := hotWriter{e: enc}
	fields := 6
	if m.Beta != 0 { // omitempty
		fields++
	}
	w.header(&m.Header, fields)
	w.str("step")
	w.uint64(m.Step)
	w.str("epoch")
	w.int(int64(m.Epoch))
	w.str("train")
	w.bool(m.Train)
	w.str("ids")
	if m.IDs == nil {
		w.null()
	} else {
		w.arrayLen(len(m.IDs))
		for _, id := range m.IDs {
			w.uint64(id)
		}
	}
	w.str("plan")
	if m.Plan == nil {
		w.null()
	} else {
		w.arrayLen(len(m.Plan))
		for _, t := range m.Plan {
			if len(t.From) > 0 { // omitempty
				w.mapLen(3)
			} else {
				w.mapLen(2)
			}
			w.str("s")
			w.strings(t.Subset)
			w.str("r")
			w.strings(t.Targets)
			if len(t.From) > 0 {
				w.str("f")
				w.strings(t.From)
			}
		}
	}
	w.str("lambda")
	if m.Lambda == nil {
		w.null()
	} else {
		// In key order, so that a step begin always encodes the same way.
		var stack [MaxModules]string
		keys := stack[:0]
		if len(m.Lambda) > len(stack) {
			keys = make([]string, 0, len(m.Lambda))
		}
		for k := range m.Lambda {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.mapLen(len(keys))
		for _, k := range keys {
			w.str(k)
			w.float32(m.Lambda[k])
		}
	}
	if m.Beta != 0 {
		w.str("beta")
		w.float32(m.Beta)
	}
	return w.err
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Latent) EncodeMsgpack(enc *msgpack.Encoder) error {
	w := hotWriter{e: enc}
	fields := 3
	if len(m.W) > 0 { // omitempty
		fields++
	}
	w.header(&m.Header, fields)
	w.str("step")
	w.uint64(m.Step)
	w.str("members")
	w.strings(m.Members)
	w.str("z")
	w.tensors(m.Z)
	if len(m.W) > 0 {
		w.str("w")
		w.tensors(m.W)
	}
	return w.err
}

// EncodeMsgpack implements msgpack.CustomEncoder: a module's posterior,
// streamed or of a training step.
func (m *Posterior) EncodeMsgpack(enc *msgpack.Encoder) error {
	w := hotWriter{e: enc}
	w.header(&m.Header, 5)
	w.str("step")
	w.uint64(m.Step)
	w.str("t")
	w.int64(m.Time)
	w.str("mu")
	w.tensor(&m.Mu)
	w.str("logvar")
	w.tensor(&m.LogVar)
	w.str("present")
	if m.Present == nil {
		w.null()
	} else {
		w.arrayLen(len(m.Present))
		for _, p := range m.Present {
			w.bool(p)
		}
	}
	return w.err
}

// EncodeMsgpack implements msgpack.CustomEncoder: the integrator's belief.
func (m *Belief) EncodeMsgpack(enc *msgpack.Encoder) error {
	w := hotWriter{e: enc}
	fields := 5
	if m.Prior != "" { // omitempty
		fields++
	}
	if m.Concept != 0 { // omitempty
		fields++
	}
	w.header(&m.Header, fields)
	w.str("seq")
	w.uint64(m.Seq)
	w.str("t")
	w.int64(m.Time)
	w.str("mu")
	w.tensor(&m.Mu)
	w.str("logvar")
	w.tensor(&m.LogVar)
	w.str("src")
	if m.Sources == nil {
		w.null()
	} else {
		w.arrayLen(len(m.Sources))
		for _, src := range m.Sources {
			w.mapLen(2)
			w.str("m")
			w.str(src.Module)
			w.str("age")
			w.int64(src.AgeNs)
		}
	}
	if m.Prior != "" {
		w.str("prior")
		w.str(m.Prior)
	}
	if m.Concept != 0 {
		w.str("c")
		w.int32(m.Concept)
	}
	return w.err
}

// tensor writes t as msgpack writes a Tensor field.
func (w *hotWriter) tensor(t *Tensor) {
	if w.err == nil {
		w.err = t.EncodeMsgpack(w.e)
	}
}

// tensors writes ts as msgpack writes a []Tensor: nil, or an array.
func (w *hotWriter) tensors(ts []Tensor) {
	if ts == nil {
		w.null()
		return
	}
	w.arrayLen(len(ts))
	for i := range ts {
		if w.err == nil {
			w.err = ts[i].EncodeMsgpack(w.e)
		}
	}
}

// hotWriter writes msgpack values as msgpack's reflection encoder writes
// the same Go types, keeping the first error.
type hotWriter struct {
	e   *msgpack.Encoder
	err error
}

// header starts a message's map of n entries with the header's four.
func (w *hotWriter) header(h *Header, n int) {
	w.mapLen(n + 4)
	w.str("type")
	w.str(h.Type)
	w.str("v")
	w.int(int64(h.Version))
	w.str("from")
	w.str(h.Sender)
	w.str("run")
	w.str(h.Run)
}

// str writes a string: a map key or a string value.
func (w *hotWriter) str(s string) {
	if w.err == nil {
		w.err = w.e.EncodeString(s)
	}
}

func (w *hotWriter) strings(s []string) {
	if s == nil {
		w.null()
		return
	}
	w.arrayLen(len(s))
	for _, v := range s {
		w.str(v)
	}
}

func (w *hotWriter) null() {
	if w.err == nil {
		w.err = w.e.EncodeNil()
	}
}

func (w *hotWriter) mapLen(n int) {
	if w.err == nil {
		w.err = w.e.EncodeMapLen(n)
	}
}

func (w *hotWriter) arrayLen(n int) {
	if w.err == nil {
		w.err = w.e.EncodeArrayLen(n)
	}
}

// uint64 is a uint64 field's encoding: always 9 bytes (msgpack's encoder
// is not asked for compact integers).
func (w *hotWriter) uint64(v uint64) {
	if w.err == nil {
		w.err = w.e.EncodeUint64(v)
	}
}

// int is an int field's encoding: the shortest form.
func (w *hotWriter) int(v int64) {
	if w.err == nil {
		w.err = w.e.EncodeInt(v)
	}
}

func (w *hotWriter) bool(v bool) {
	if w.err == nil {
		w.err = w.e.EncodeBool(v)
	}
}

func (w *hotWriter) float32(v float32) {
	if w.err == nil {
		w.err = w.e.EncodeFloat32(v)
	}
}
