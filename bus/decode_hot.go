package bus

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Hand-written decoders of the five training-step messages (StepBegin,
// Posterior, Latent, ZGrad, ExpertGrad) and of the streamed Belief, so that
// UnmarshalReuse decodes them without allocating: msgpack's reflection decoder allocates a slice
// header per slice field, a string per string and a map per map.
//
// They decode exactly what the reflection decoder (decodeStructValue and
// the decoders of each field's type, msgpack v5.4.1) makes of the same
// bytes: a struct is a map of its keys (unknown keys skipped, a key given
// twice decoded twice into the same field), an array of all its fields in
// order, or nil or an empty array, which zero it; a message's map also
// knows the key "Header", the embedded Header as a nested struct. Each
// field accepts the msgpack types msgpack accepts for its Go type, nil
// included, and keeps what it holds where msgpack keeps it: the elements
// of a slice within its capacity are decoded into, a []string given as nil
// is left alone, a map is added to. FuzzHotDecode holds them to that.
// Only a message that fails to decode may differ: a slice is then cut to
// the elements decoded, so that no element of the last message held in
// the reused storage shows in the unfinished one.
//
// Strings: a string read equal to the one held at the same place before
// (the message type, the last message's sender, a plan name or a member at
// the same index, a lambda key of the last step, a module or prior the
// last belief named) is that string rather than a new one. The strings of
// the last message are looked up where they stay without being part of
// the message's value: the old names in the spare capacity of the kept
// Members, Subset and Targets slices (resetKeeping cuts them to length 0),
// and the last sender, lambda keys and a belief's names in the
// decodeState of the pooled decoder, which resetKeeping fills and the
// decoder's release clears once the message is decoded. No message struct
// gains a field (an unexported one would hold the last sender between
// decodings and break reflect.DeepEqual of messages, and the tests that
// every field of an example is set), so a message still compares and
// encodes as before.

var (
	_ msgpack.CustomDecoder = (*StepBegin)(nil)
	_ msgpack.CustomDecoder = (*Posterior)(nil)
	_ msgpack.CustomDecoder = (*Latent)(nil)
	_ msgpack.CustomDecoder = (*ZGrad)(nil)
	_ msgpack.CustomDecoder = (*ExpertGrad)(nil)
	_ msgpack.CustomDecoder = (*Belief)(nil)
)

// Allocation limits of msgpack's decoder, which these decoders keep to
// when they size a []string or a map from a declared length.
const (
	msgpackSliceAllocLimit = 1e6
	msgpackMaxMapSize      = 1e6
	longStringChunk        = 1 << 20
)

// errArrayStruct is msgpack's error for a struct given as an array of
// another number of items than it has fields.
var errArrayStruct = errors.New("msgpack: number of fields in array-encoded struct has changed")

// decodeState is what the hand-written decoders need besides the msgpack
// decoder: room to read keys and short strings into, and the strings of the
// message the value held before, to keep when they come again.
type decodeState struct {
	buf  [64]byte // a key, or a string of up to 64 bytes, read without allocating
	typ  string   // the type of the message being decoded
	from string   // the sender of the message the value held before
	run  string   // and its session
	// Lambda keys of the StepBegin the value held before: keys[:nkeys]. An
	// array, not a slice, so that a decoder fresh from the pool has room
	// for them without allocating.
	keys  [MaxModules]string
	nkeys int
}

// keepKeys keeps (up to MaxModules of) the keys of lambda.
func (st *decodeState) keepKeys(lambda map[string]float32) {
	n := 0
	for k := range lambda {
		if n == len(st.keys) {
			break
		}
		st.keys[n] = k
		n++
	}
	st.nkeys = n
}

// forget drops the strings of the last message, before the state goes
// back to the pool.
func (st *decodeState) forget() {
	st.typ, st.from, st.run = "", "", ""
	clear(st.keys[:st.nkeys])
	st.nkeys = 0
}

// msgReader is the reader of a pooled decoder: msgpack reads through it,
// and the hand-written decoders find their state in it.
type msgReader struct {
	bytes.Reader
	st decodeState
}

// stateOf is the decodeState of dec: that of the pooled decoder of this
// package, or a fresh one for any other msgpack decoder (msgpack.Unmarshal
// of a message, say), which then decodes as well, only allocating.
func stateOf(dec *msgpack.Decoder) *decodeState {
	if r, ok := dec.Buffered().(*msgReader); ok {
		return &r.st
	}
	return new(decodeState)
}

// ---- structs ----

// hotStruct is a struct that decodeStruct decodes.
type hotStruct interface {
	// hotKeys are the keys of the fields in order, as msgpack lists them,
	// and then, for a message, "Header", which msgpack decodes but does not
	// list; listed is how many are listed (an array holds that many).
	hotKeys() (keys []string, listed int)
	// hotField decodes the field of hotKeys()[i].
	hotField(dec *msgpack.Decoder, st *decodeState, i int) error
	// hotZero sets the struct to its zero value.
	hotZero()
}

// decodeStruct decodes s as msgpack's decodeStructValue decodes a struct.
func decodeStruct(dec *msgpack.Decoder, st *decodeState, s hotStruct) error {
	keys, listed := s.hotKeys()
	c, err := dec.PeekCode()
	if err != nil {
		return err
	}
	switch {
	case c == msgpcode.Nil || msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return err
		}
		if n == -1 {
			s.hotZero()
			return nil
		}
		for range n {
			i, err := st.key(dec, keys)
			if err != nil {
				return err
			}
			if i < 0 {
				err = dec.Skip()
			} else {
				err = s.hotField(dec, st, i)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return err
		}
		if n == 0 {
			s.hotZero()
			return nil
		}
		if n != listed {
			return errArrayStruct
		}
		for i := range listed {
			if err := s.hotField(dec, st, i); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("msgpack: unexpected code=%x decoding map length", c)
}

// key reads a map key as msgpack's struct decoder does (a str, a bin, or
// nil, which is "") and returns its index in keys, or -1 if it is none of
// them.
func (st *decodeState) key(dec *msgpack.Decoder, keys []string) (int, error) {
	n, err := dec.DecodeBytesLen()
	if err != nil || n <= 0 {
		return -1, err
	}
	if n > len(st.buf) { // no field has so long a name: read past it
		for n > 0 {
			k := min(n, len(st.buf))
			if err := dec.ReadFull(st.buf[:k]); err != nil {
				return -1, err
			}
			n -= k
		}
		return -1, nil
	}
	b := st.buf[:n]
	if err := dec.ReadFull(b); err != nil {
		return -1, err
	}
	for i, k := range keys {
		if string(b) == k {
			return i, nil
		}
	}
	return -1, nil
}

// ---- strings ----

// read reads a string as msgpack's DecodeString does (a str, a bin, or nil,
// which is ""): its bytes, in st.buf when they fit (valid until the next
// read), else in a new slice.
func (st *decodeState) read(dec *msgpack.Decoder) ([]byte, error) {
	n, err := dec.DecodeBytesLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n <= len(st.buf) {
		b := st.buf[:n]
		return b, dec.ReadFull(b)
	}
	// Long: only in a message check will refuse. Grown as it is read, as
	// msgpack does, so that a length the input does not hold allocates
	// no more than the input.
	var b []byte
	for len(b) < n {
		k := min(n-len(b), longStringChunk)
		b = slices.Grow(b, k)
		if err := dec.ReadFull(b[len(b) : len(b)+k]); err != nil {
			return nil, err
		}
		b = b[:len(b)+k]
	}
	return b, nil
}

// string reads a string; it is old if equal to it, else a new string.
func (st *decodeState) string(dec *msgpack.Decoder, old string) (string, error) {
	b, err := st.read(dec)
	if err != nil || len(b) == 0 {
		return "", err
	}
	if string(b) == old {
		return old, nil
	}
	return string(b), nil
}

// strings decodes a []string into s as msgpack does (decodeStringSlicePtr):
// nil leaves s as it is; otherwise s's storage is reused when large enough.
// A string equal to the one that was at its index (in s's capacity: see
// resetKeeping) is that string.
func (st *decodeState) strings(dec *msgpack.Decoder, s []string) ([]string, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n == -1 {
		return s, err
	}
	// As msgpack's makeStrings: sized from n (up to its limit), keeping
	// what the storage holds in place.
	switch size := min(n, msgpackSliceAllocLimit); {
	case s == nil:
		s = make([]string, 0, size)
	case cap(s) < size:
		s = append(s[:cap(s)], make([]string, size-cap(s))...)
	}
	old := s[:cap(s)]
	s = s[:0]
	for i := range n {
		b, err := st.read(dec)
		if err != nil {
			return s, err
		}
		var v string
		switch {
		case len(b) == 0:
		case i < len(old) && string(b) == old[i]:
			v = old[i]
		default:
			v = string(b)
		}
		s = append(s, v)
	}
	return s, nil
}

// ---- slices ----

// sized is s of length n as msgpack's decodeSliceValue makes it for n ≥ 0
// elements: what s holds within its capacity is kept (and then decoded
// into), elements beyond are zero; no elements of a nil s are an empty
// slice. (For nil, n = -1, msgpack makes the slice nil.)
func sized[T any](s []T, n int) []T {
	switch {
	case n == 0 && s == nil:
		return []T{}
	case cap(s) >= n:
		return s[:n]
	}
	return append(s[:cap(s)], make([]T, n-cap(s))...)
}

// decodeSlice decodes an array into *s as msgpack's decodeSliceValue
// does: nil makes it nil; otherwise *s (sized) is decoded into, element by
// element, by elem. On failure *s is cut to the elements decoded, so that
// no element of the last message held in the storage shows.
func decodeSlice[T any](dec *msgpack.Decoder, s *[]T, elem func(*T) error) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n == -1 {
		*s = nil
		return nil
	}
	v := sized(*s, n)
	*s = v
	for i := range v {
		if err := elem(&v[i]); err != nil {
			*s = v[:i]
			return err
		}
	}
	return nil
}

// ---- scalars ----

func decodeInt(dec *msgpack.Decoder, v *int) error {
	n, err := dec.DecodeInt64()
	if err == nil {
		*v = int(n)
	}
	return err
}

func decodeInt64(dec *msgpack.Decoder, v *int64) (err error) {
	*v, err = dec.DecodeInt64()
	return err
}

func decodeUint64(dec *msgpack.Decoder, v *uint64) (err error) {
	*v, err = dec.DecodeUint64()
	return err
}

func decodeFloat32(dec *msgpack.Decoder, v *float32) (err error) {
	*v, err = dec.DecodeFloat32()
	return err
}

func decodeBool(dec *msgpack.Decoder, v *bool) (err error) {
	*v, err = dec.DecodeBool()
	return err
}

// ---- the header ----

// Keys of the fields as msgpack lists them: the embedded Header's first.
// A message's keys end in "Header", which msgpack decodes but does not list.
var (
	headerKeys     = []string{"type", "v", "from", "run"}
	stepBeginKeys  = []string{"type", "v", "from", "run", "step", "epoch", "train", "ids", "plan", "lambda", "beta", "Header"}
	posteriorKeys  = []string{"type", "v", "from", "run", "step", "t", "mu", "logvar", "present", "Header"}
	latentKeys     = []string{"type", "v", "from", "run", "step", "members", "z", "w", "Header"}
	zgradKeys      = []string{"type", "v", "from", "run", "step", "terms", "Header"}
	expertGradKeys = []string{"type", "v", "from", "run", "step", "dmu", "dlogvar", "Header"}
	beliefKeys     = []string{"type", "v", "from", "run", "seq", "t", "mu", "logvar", "src", "prior", "c", "Header"}
	sourceKeys     = []string{"m", "age"}
	termKeys       = []string{"s", "r", "f"}
	termGradKeys   = []string{"term", "dz", "ll"}
)

// decodeHeaderField decodes the header's field of headerKeys[i]. The type
// is the message type's constant when equal to it, the sender and the
// session the last message's when equal to them.
func decodeHeaderField(dec *msgpack.Decoder, st *decodeState, h *Header, i int) (err error) {
	switch i {
	case 0:
		h.Type, err = st.string(dec, st.typ)
	case 1:
		err = decodeInt(dec, &h.Version)
	case 2:
		h.Sender, err = st.string(dec, st.from)
	case 3:
		h.Run, err = st.string(dec, st.run)
	}
	return err
}

// headerStruct is Header decoded on its own, for a message's "Header" key.
// (Header itself must have no DecodeMsgpack: every message would inherit it.)
type headerStruct Header

func (h *headerStruct) hotKeys() ([]string, int) { return headerKeys, len(headerKeys) }
func (h *headerStruct) hotZero()                 { *h = headerStruct{} }
func (h *headerStruct) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	return decodeHeaderField(dec, st, (*Header)(h), i)
}

// messageField decodes the header's fields (0 to 3) and the "Header" key
// (last) of a message with keys; it reports whether i was one of them.
func messageField(dec *msgpack.Decoder, st *decodeState, h *Header, keys []string, i int) (bool, error) {
	switch {
	case i < len(headerKeys):
		return true, decodeHeaderField(dec, st, h, i)
	case i == len(keys)-1:
		return true, decodeStruct(dec, st, (*headerStruct)(h))
	}
	return false, nil
}

// decodeMessage decodes m, a message of type typ, as msgpack decodes it.
func decodeMessage(dec *msgpack.Decoder, m hotStruct, typ string) error {
	st := stateOf(dec)
	st.typ = typ
	return decodeStruct(dec, st, m)
}

// ---- StepBegin ----

// DecodeMsgpack implements msgpack.CustomDecoder: it decodes what the
// reflection decoder would, reusing the storage and strings m holds.
func (m *StepBegin) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decodeMessage(dec, m, TypeStepBegin)
}

func (m *StepBegin) hotKeys() ([]string, int) { return stepBeginKeys, len(stepBeginKeys) - 1 }
func (m *StepBegin) hotZero()                 { *m = StepBegin{} }
func (m *StepBegin) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	if ok, err := messageField(dec, st, &m.Header, stepBeginKeys, i); ok {
		return err
	}
	switch i {
	case 4:
		return decodeUint64(dec, &m.Step)
	case 5:
		return decodeInt(dec, &m.Epoch)
	case 6:
		return decodeBool(dec, &m.Train)
	case 7:
		return decodeSlice(dec, &m.IDs, func(v *uint64) error { return decodeUint64(dec, v) })
	case 8:
		return m.decodePlan(dec, st)
	case 9:
		return m.decodeLambda(dec, st)
	case 10:
		return decodeFloat32(dec, &m.Beta)
	}
	return nil
}

func (m *StepBegin) decodePlan(dec *msgpack.Decoder, st *decodeState) error {
	return decodeSlice(dec, &m.Plan, func(t *Term) error { return decodeStruct(dec, st, (*termStruct)(t)) })
}

// decodeLambda decodes the map as msgpack's decodeMapValue does: nil makes
// it nil, entries are added to what it holds. A key equal to a key of the
// last step's lambda is that string.
func (m *StepBegin) decodeLambda(dec *msgpack.Decoder, st *decodeState) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	if n == -1 {
		m.Lambda = nil
		return nil
	}
	if m.Lambda == nil {
		m.Lambda = make(map[string]float32, min(n, msgpackMaxMapSize))
	}
	for range n {
		b, err := st.read(dec)
		if err != nil {
			return err
		}
		k := ""
		if len(b) > 0 {
			k = oldOr(b, st.keys[:st.nkeys])
		}
		v, err := dec.DecodeFloat32()
		if err != nil {
			return err
		}
		m.Lambda[k] = v
	}
	return nil
}

// oldOr is the string of olds equal to b, else a new string.
func oldOr(b []byte, olds []string) string {
	for _, s := range olds {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// termStruct is a plan Term as decodeStruct decodes it.
type termStruct Term

func (t *termStruct) hotKeys() ([]string, int) { return termKeys, len(termKeys) }
func (t *termStruct) hotZero()                 { *t = termStruct{} }
func (t *termStruct) hotField(dec *msgpack.Decoder, st *decodeState, i int) (err error) {
	switch i {
	case 0:
		t.Subset, err = st.strings(dec, t.Subset)
	case 1:
		t.Targets, err = st.strings(dec, t.Targets)
	case 2:
		t.From, err = st.strings(dec, t.From)
	}
	return err
}

// ---- Posterior ----

// DecodeMsgpack implements msgpack.CustomDecoder: it decodes what the
// reflection decoder would, reusing the storage and strings m holds.
func (m *Posterior) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decodeMessage(dec, m, TypePosterior)
}

func (m *Posterior) hotKeys() ([]string, int) { return posteriorKeys, len(posteriorKeys) - 1 }
func (m *Posterior) hotZero()                 { *m = Posterior{} }
func (m *Posterior) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	if ok, err := messageField(dec, st, &m.Header, posteriorKeys, i); ok {
		return err
	}
	switch i {
	case 4:
		return decodeUint64(dec, &m.Step)
	case 5:
		return decodeInt64(dec, &m.Time)
	case 6:
		return m.Mu.DecodeMsgpack(dec)
	case 7:
		return m.LogVar.DecodeMsgpack(dec)
	case 8:
		return decodeSlice(dec, &m.Present, func(v *bool) error { return decodeBool(dec, v) })
	}
	return nil
}

// ---- Latent ----

// DecodeMsgpack implements msgpack.CustomDecoder: it decodes what the
// reflection decoder would, reusing the storage and strings m holds.
func (m *Latent) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decodeMessage(dec, m, TypeLatent)
}

func (m *Latent) hotKeys() ([]string, int) { return latentKeys, len(latentKeys) - 1 }
func (m *Latent) hotZero()                 { *m = Latent{} }
func (m *Latent) hotField(dec *msgpack.Decoder, st *decodeState, i int) (err error) {
	if ok, err := messageField(dec, st, &m.Header, latentKeys, i); ok {
		return err
	}
	switch i {
	case 4:
		return decodeUint64(dec, &m.Step)
	case 5:
		m.Members, err = st.strings(dec, m.Members)
		return err
	case 6:
		return decodeSlice(dec, &m.Z, func(t *Tensor) error { return t.DecodeMsgpack(dec) })
	case 7:
		return decodeSlice(dec, &m.W, func(t *Tensor) error { return t.DecodeMsgpack(dec) })
	}
	return nil
}

// ---- ZGrad ----

// DecodeMsgpack implements msgpack.CustomDecoder: it decodes what the
// reflection decoder would, reusing the storage and strings m holds.
func (m *ZGrad) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decodeMessage(dec, m, TypeZGrad)
}

func (m *ZGrad) hotKeys() ([]string, int) { return zgradKeys, len(zgradKeys) - 1 }
func (m *ZGrad) hotZero()                 { *m = ZGrad{} }
func (m *ZGrad) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	if ok, err := messageField(dec, st, &m.Header, zgradKeys, i); ok {
		return err
	}
	switch i {
	case 4:
		return decodeUint64(dec, &m.Step)
	case 5:
		return decodeSlice(dec, &m.Terms, func(t *TermGrad) error { return decodeStruct(dec, st, (*termGradStruct)(t)) })
	}
	return nil
}

// termGradStruct is a TermGrad as decodeStruct decodes it.
type termGradStruct TermGrad

func (t *termGradStruct) hotKeys() ([]string, int) { return termGradKeys, len(termGradKeys) }
func (t *termGradStruct) hotZero()                 { *t = termGradStruct{} }
func (t *termGradStruct) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	switch i {
	case 0:
		return decodeInt(dec, &t.Term)
	case 1:
		return t.DZ.DecodeMsgpack(dec)
	case 2:
		return t.LogLik.DecodeMsgpack(dec)
	}
	return nil
}

// ---- ExpertGrad ----

// DecodeMsgpack implements msgpack.CustomDecoder: it decodes what the
// reflection decoder would, reusing the storage and strings m holds.
func (m *ExpertGrad) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decodeMessage(dec, m, TypeExpertGrad)
}

func (m *ExpertGrad) hotKeys() ([]string, int) { return expertGradKeys, len(expertGradKeys) - 1 }
func (m *ExpertGrad) hotZero()                 { *m = ExpertGrad{} }
func (m *ExpertGrad) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	if ok, err := messageField(dec, st, &m.Header, expertGradKeys, i); ok {
		return err
	}
	switch i {
	case 4:
		return decodeUint64(dec, &m.Step)
	case 5:
		return m.DMu.DecodeMsgpack(dec)
	case 6:
		return m.DLogVar.DecodeMsgpack(dec)
	}
	return nil
}

// ---- Belief ----

// DecodeMsgpack implements msgpack.CustomDecoder: it decodes what the
// reflection decoder would, reusing the storage and strings m holds (a
// module and a view hear a belief stream).
func (m *Belief) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decodeMessage(dec, m, TypeBelief)
}

func (m *Belief) hotKeys() ([]string, int) { return beliefKeys, len(beliefKeys) - 1 }
func (m *Belief) hotZero()                 { *m = Belief{} }
func (m *Belief) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	if ok, err := messageField(dec, st, &m.Header, beliefKeys, i); ok {
		return err
	}
	switch i {
	case 4:
		return decodeUint64(dec, &m.Seq)
	case 5:
		return decodeInt64(dec, &m.Time)
	case 6:
		return m.Mu.DecodeMsgpack(dec)
	case 7:
		return m.LogVar.DecodeMsgpack(dec)
	case 8:
		return decodeSlice(dec, &m.Sources, func(s *Source) error { return decodeStruct(dec, st, (*sourceStruct)(s)) })
	case 9:
		return st.oldName(dec, &m.Prior)
	case 10:
		n, err := dec.DecodeInt64()
		m.Concept = int32(n) // as reflection sets an int32 field
		return err
	}
	return nil
}

// sourceStruct is a belief's Source as decodeStruct decodes it.
type sourceStruct Source

func (s *sourceStruct) hotKeys() ([]string, int) { return sourceKeys, len(sourceKeys) }
func (s *sourceStruct) hotZero()                 { *s = sourceStruct{} }
func (s *sourceStruct) hotField(dec *msgpack.Decoder, st *decodeState, i int) error {
	switch i {
	case 0:
		return st.oldName(dec, &s.Module)
	case 1:
		return decodeInt64(dec, &s.AgeNs)
	}
	return nil
}

// oldName reads a string into *s: one of the last message's names (kept in
// st.keys by its resetKeeping) when equal to it, else a new string.
func (st *decodeState) oldName(dec *msgpack.Decoder, s *string) error {
	b, err := st.read(dec)
	if err != nil {
		return err
	}
	*s = oldOr(b, st.keys[:st.nkeys])
	return nil
}
