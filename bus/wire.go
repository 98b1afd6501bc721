package bus

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// WireVersion is the version of the wire messages this package speaks. It is
// also part of every subject (serket.v2.…), so two versions never meet on the
// same subject by accident; a message of another version that does arrive is
// refused with ErrVersion.
const WireVersion = 2

// Limits of what a message may carry.
//
// MaxObservationBytes is the raw input one inference request may carry, all
// its observations together: a photo or a WAV a person gives is sent whole
// and fitted by its module, so this is also the largest file `serket infer`
// and `serket generate` take. DefaultMaxBytes is a message: that much input
// and room for its envelope (names, types, the wanted modules: under 16 KiB
// at MaxModules). It is the embedded server's max_payload (StartServer);
// against a server of one's own, the smaller of the two holds (the client
// reads the server's from its INFO). 32 MiB, because nats-server buffers at
// most 64 MiB for one client (max_pending, which max_payload may not
// exceed) and nats.go as much for one subscription, dropping what comes on
// top: a message of about half that leaves a service room for the next
// request while it works on one. (nats-server also logs a warning for a
// max_payload over 8 MiB; the embedded one logs only with Debug.)
const (
	MaxObservationBytes = 32 << 20                     // 32 MiB
	DefaultMaxBytes     = MaxObservationBytes + 64<<10 // 32 MiB + 64 KiB
	MaxElements         = 1 << 24                      // per tensor
	MaxRank             = 4
	MaxBatch            = 1 << 16 // rows in a batch
	MaxModules          = 64      // modules named in one message
	MaxTerms            = 256     // terms of one fusion plan
	MaxSamples          = 1024    // latent samples one inference may ask for
)

// Errors that wire decoding wraps; test with errors.Is.
var (
	ErrMalformed = errors.New("malformed message")
	ErrType      = errors.New("wrong message type")
	ErrVersion   = errors.New("unsupported wire version")
	ErrShape     = errors.New("bad shape")
	ErrNotFinite = errors.New("value is NaN or Inf")
	ErrTooLarge  = errors.New("message too large")
	ErrField     = errors.New("bad field")
)

// DecodeError is the error of a message that cannot be accepted. It names the
// message type, who sent it (from the header when that much decoded, else
// the subject it came on) and the field at fault.
type DecodeError struct {
	Type    string // the message type that was expected
	Sender  string // the header's sender, "" if unknown
	Subject string // the subject it arrived on, "" if unknown
	Field   string // "" when the message as a whole is bad
	Err     error
}

func (e *DecodeError) Error() string {
	s := "bus: rejected " + e.Type
	switch {
	case e.Sender != "" && e.Subject != "":
		s += fmt.Sprintf(" from %q on %s", e.Sender, e.Subject)
	case e.Sender != "":
		s += fmt.Sprintf(" from %q", e.Sender)
	case e.Subject != "":
		s += " on " + e.Subject
	}
	if e.Field != "" {
		s += ": field " + e.Field
	}
	return s + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Header is the envelope of every message.
type Header struct {
	Type    string `msgpack:"type"`
	Version int    `msgpack:"v"`
	Sender  string `msgpack:"from"`
	// Run is the training session a training message belongs to (see
	// Control): the token the integrator handed the module when it
	// enrolled it. Empty outside training (inference, streaming); a
	// module takes part only in the session it was enrolled in.
	Run string `msgpack:"run"`
}

func (h *Header) header() *Header { return h }

// Message is implemented by every wire message of this package.
type Message interface {
	// MessageType is the type string that goes in the header, e.g. "serket.posterior".
	MessageType() string
	header() *Header
	// check validates the decoded fields against what the receiver expects;
	// it returns a *fieldError.
	check(e Expect) error
}

// Expect is what a receiver knows and a message must agree with. Zero fields
// are not checked.
type Expect struct {
	Latent   int // D, the latent size of the pipeline
	Batch    int // B, the rows of the step being run
	Terms    int // the number of terms of the step's plan
	MaxBytes int // 0 means DefaultMaxBytes
}

type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }

func bad(field string, err error) error { return &fieldError{field, err} }

func badf(field string, sentinel error, format string, args ...any) error {
	return &fieldError{field, fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}

// inElem puts err, found in element i of the list named list, under that
// element: "plan" 2 and the field ".s[1]" make "plan[2].s[1]". Checks run
// on every message, so an element's name is formatted only on failure.
func inElem(list string, i int, err error) error {
	if fe, ok := err.(*fieldError); ok {
		fe.field = fmt.Sprintf("%s[%d]%s", list, i, fe.field)
	}
	return err
}

// ValidName reports whether s can name a module or a pipeline: lower-case
// letters, digits and '-', starting with a letter, at most 32 bytes. Such a
// name is a single subject token and a valid micro service name.
func ValidName(s string) bool {
	// ^[a-z][a-z0-9-]{0,31}$ as a loop: it runs for every message's
	// sender and every belief's sources.
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Marshal encodes m, filling its header's type and version. It refuses a
// message that its receiver would refuse (bad shapes, NaN or Inf, too large
// for DefaultMaxBytes), so a module learns of its own fault where it happens.
func Marshal(m Message) ([]byte, error) {
	return MarshalLimit(m, DefaultMaxBytes)
}

// MarshalLimit is Marshal with a payload limit (the server's max_payload).
func MarshalLimit(m Message, maxBytes int) ([]byte, error) {
	return MarshalAppend(nil, m, maxBytes)
}

// MarshalAppend is MarshalLimit that appends the encoding to dst and
// returns the extended slice: a sender that reuses its buffer (dst[:0]
// once the previous message is published; nats.Conn.Publish copies) sends
// every step without allocating one. maxBytes ≤ 0 means no limit.
func MarshalAppend(dst []byte, m Message, maxBytes int) ([]byte, error) {
	h := m.header()
	h.Type = m.MessageType()
	h.Version = WireVersion
	if err := checkHeader(h, m.MessageType()); err != nil {
		return dst, encodeError(m, err)
	}
	if err := m.check(Expect{}); err != nil {
		return dst, encodeError(m, err)
	}
	orig, start := dst, len(dst)
	if dst == nil {
		dst = make([]byte, 0, sizeHint(m))
	}
	x := encoders.Get()
	x.b = dst
	x.e.Reset(x)
	err := x.e.Encode(m)
	b := x.b
	x.b = nil
	x.e.Reset(nil)
	encoders.Put(x)
	if err != nil {
		return orig, encodeError(m, fmt.Errorf("%w: %v", ErrMalformed, err))
	}
	if n := len(b) - start; maxBytes > 0 && n > maxBytes {
		return orig, encodeError(m, fmt.Errorf("%w: %d bytes, the limit is %d (split the batch or raise the server's max_payload)", ErrTooLarge, n, maxBytes))
	}
	return b, nil
}

// encoder is a pooled msgpack encoder that appends to a slice (msgpack's
// writer: Write and WriteByte), so that encoding into a reused buffer
// allocates nothing.
type encoder struct {
	b []byte
	e *msgpack.Encoder
}

var encoders = newFreeList(func() *encoder { return &encoder{e: msgpack.NewEncoder(nil)} })

func (x *encoder) Write(p []byte) (int, error) { x.b = append(x.b, p...); return len(p), nil }
func (x *encoder) WriteByte(c byte) error      { x.b = append(x.b, c); return nil }

// sizeHint is about the encoded size of m: its tensors' bytes and a little,
// so that a fresh buffer is allocated once, not grown by doubling.
func sizeHint(m Message) int {
	n := 256
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i).Interface().(type) {
		case Tensor:
			n += 4*len(f.Data) + 16
		case []Tensor:
			for _, t := range f {
				n += 4*len(t.Data) + 16
			}
		case []bool:
			n += len(f)
		case []uint64:
			n += 9 * len(f)
		}
	}
	return n
}

func encodeError(m Message, err error) error {
	de := &DecodeError{Type: m.MessageType(), Sender: m.header().Sender, Err: err}
	var fe *fieldError
	if errors.As(err, &fe) {
		de.Field, de.Err = fe.field, fe.err
	}
	return fmt.Errorf("bus: cannot send: %w", de)
}

// Unmarshal decodes data into m and validates it against e. m is zeroed
// first, so one message value can be reused for message after message. It
// never panics; on any fault it returns a *DecodeError and m is left in an
// unspecified state that must not be used.
func Unmarshal(data []byte, m Message, e Expect) error {
	return UnmarshalFrom("", data, m, e)
}

// UnmarshalFrom is Unmarshal for a message that arrived on subject, which
// the error names when the sender is unknown.
func UnmarshalFrom(subject string, data []byte, m Message, e Expect) error {
	// Start from the zero message: msgpack decodes into what is there, so a
	// reused m would keep map entries, fields and slice storage of the last
	// message, and an early error would name the last message's sender.
	reflect.ValueOf(m).Elem().SetZero()
	x := decoders.Get()
	err := unmarshal(x, subject, data, m, e)
	x.release()
	return err
}

// UnmarshalReuse is UnmarshalFrom that decodes a StepBegin, Posterior,
// ZGrad, Latent, ExpertGrad or Belief into the storage m holds from the
// last message, when it is large enough: its tensors, the presence mask,
// the sample ids, the plan and its names' slices, the members, the lambda
// map (emptied first), a belief's sources. A string equal to the one m
// held at the same place (the sender, a name of the plan or of the members
// at the same index, a lambda key, a belief's module or prior) is kept
// rather than allocated again. A receiver that keeps one message value per
// sender thus decodes step after step without allocating. Nothing of the
// last message shows in m after the call, even when decoding fails; as
// with UnmarshalFrom, m is then unspecified. The caller must no longer use
// the slices and maps m held (strings, being immutable, stay valid); other
// message types are simply zeroed.
func UnmarshalReuse(subject string, data []byte, m Message, e Expect) error {
	x := decoders.Get()
	if k, ok := m.(storageKeeper); ok {
		k.resetKeeping(&x.r.st)
	} else {
		reflect.ValueOf(m).Elem().SetZero()
	}
	err := unmarshal(x, subject, data, m, e)
	x.release()
	return err
}

// storageKeeper is a message that can reset itself but for its storage
// (slices of length 0, their capacity kept, maps emptied), for
// UnmarshalReuse. It leaves the strings it held where its hand-written
// decoder looks for them (see decode_hot.go): those of its kept []string
// in their spare capacity, its sender and lambda keys in st.
type storageKeeper interface{ resetKeeping(st *decodeState) }

// kept is t emptied but for its storage.
func kept(t Tensor) Tensor { return Tensor{Shape: t.Shape[:0], Data: t.Data[:0]} }

func (m *StepBegin) resetKeeping(st *decodeState) {
	st.from, st.run = m.Sender, m.Run
	st.keepKeys(m.Lambda)
	clear(m.Lambda)
	plan := m.Plan[:cap(m.Plan)]
	for i := range plan {
		plan[i] = Term{Subset: plan[i].Subset[:0], Targets: plan[i].Targets[:0]}
	}
	*m = StepBegin{IDs: m.IDs[:0], Plan: plan[:0], Lambda: m.Lambda}
}

func (m *Posterior) resetKeeping(st *decodeState) {
	st.from, st.run = m.Sender, m.Run
	*m = Posterior{Mu: kept(m.Mu), LogVar: kept(m.LogVar), Present: m.Present[:0]}
}

func (m *ExpertGrad) resetKeeping(st *decodeState) {
	st.from, st.run = m.Sender, m.Run
	*m = ExpertGrad{DMu: kept(m.DMu), DLogVar: kept(m.DLogVar)}
}

func (m *Latent) resetKeeping(st *decodeState) {
	st.from, st.run = m.Sender, m.Run
	z, w := m.Z[:cap(m.Z)], m.W[:cap(m.W)]
	for i := range z {
		z[i] = kept(z[i])
	}
	for i := range w {
		w[i] = kept(w[i])
	}
	*m = Latent{Members: m.Members[:0], Z: z[:0], W: w[:0]}
}

// A belief's names (its sources' modules and its prior) are kept in st.keys:
// its Source elements are zeroed, so that no age of the last belief shows.
func (m *Belief) resetKeeping(st *decodeState) {
	st.from, st.run = m.Sender, m.Run
	n := 0
	for _, s := range m.Sources {
		if n < len(st.keys) {
			st.keys[n], n = s.Module, n+1
		}
	}
	if m.Prior != "" && n < len(st.keys) {
		st.keys[n], n = m.Prior, n+1
	}
	st.nkeys = n
	src := m.Sources[:cap(m.Sources)]
	clear(src)
	*m = Belief{Mu: kept(m.Mu), LogVar: kept(m.LogVar), Sources: src[:0]}
}

func (m *ZGrad) resetKeeping(st *decodeState) {
	st.from, st.run = m.Sender, m.Run
	terms := m.Terms[:cap(m.Terms)]
	for i := range terms {
		terms[i] = TermGrad{DZ: kept(terms[i].DZ), LogLik: kept(terms[i].LogLik)}
	}
	*m = ZGrad{Terms: terms[:0]}
}

func unmarshal(x *decoder, subject string, data []byte, m Message, e Expect) (err error) {
	typ := m.MessageType()
	fail := func(field string, err error) error {
		return &DecodeError{Type: typ, Sender: m.header().Sender, Subject: subject, Field: field, Err: err}
	}
	max := e.MaxBytes
	if max <= 0 {
		max = DefaultMaxBytes
	}
	if len(data) > max {
		return fail("", fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), max))
	}
	defer func() {
		// msgpack should not panic, but a panic here would cross a process
		// boundary's worth of trust: turn it into an error.
		if r := recover(); r != nil {
			err = fail("", fmt.Errorf("%w: decoder panic: %v", ErrMalformed, r))
		}
	}()
	if err := scan(data); err != nil {
		return fail("", err)
	}
	// One pass decodes the whole message. A wrong type or version is
	// reported as such rather than as whatever field failed to decode: when
	// the pass fails, the header alone is decoded and checked first.
	if derr := x.decode(data, m); derr != nil {
		var h Header
		if err := x.decode(data, &h); err != nil {
			return fail("", fmt.Errorf("%w: %v", ErrMalformed, err))
		}
		*m.header() = h
		if err := checkHeader(&h, typ); err != nil {
			return failField(fail, err)
		}
		return fail("", fmt.Errorf("%w: %v", ErrMalformed, derr))
	}
	if err := checkHeader(m.header(), typ); err != nil {
		return failField(fail, err)
	}
	if err := m.check(e); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return fail(fe.field, fe.err)
		}
		return fail("", err)
	}
	return nil
}

// failField reports err through fail, at its field if it names one.
func failField(fail func(string, error) error, err error) error {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fail(fe.field, fe.err)
	}
	return fail("", err)
}

// decoder is a pooled msgpack decoder with its own reader, so that
// decoding a message allocates only what the message holds. The reader
// carries the state of the hand-written decoders (decode_hot.go).
type decoder struct {
	r msgReader
	d *msgpack.Decoder
}

var decoders = newFreeList(func() *decoder { return &decoder{d: msgpack.NewDecoder(nil)} })

// freeList keeps up to freeListSize values for reuse. Unlike a sync.Pool,
// a garbage collection does not empty it: the codec's encoders and
// decoders (and the buffers msgpack grows inside them) outlive
// collections, and a steady stream of messages is coded without
// allocating.
type freeList[T any] struct {
	free  chan *T
	fresh func() *T
}

// freeListSize bounds the idle encoders (or decoders) kept: more than the
// goroutines that code messages at once in a serket process.
const freeListSize = 32

func newFreeList[T any](fresh func() *T) *freeList[T] {
	return &freeList[T]{free: make(chan *T, freeListSize), fresh: fresh}
}

// Get returns an idle value, or a new one.
func (l *freeList[T]) Get() *T {
	select {
	case x := <-l.free:
		return x
	default:
		return l.fresh()
	}
}

// Put keeps x for reuse, unless freeListSize are kept already.
func (l *freeList[T]) Put(x *T) {
	select {
	case l.free <- x:
	default:
	}
}

// release forgets what x held (the data too, should a recovered panic
// have cut decode short) and puts it back in the pool.
func (x *decoder) release() {
	x.r.Reset(nil)
	x.r.st.forget()
	decoders.Put(x)
}

// decode is msgpack.Unmarshal (with preallocated slices, as it has) on the
// pooled decoder; a message with a hand-written decoder is decoded by it
// directly (as msgpack would call it).
func (x *decoder) decode(data []byte, v any) error {
	x.r.Reset(data)
	x.d.Reset(&x.r)
	x.d.UsePreallocateValues(true)
	var err error
	if cd, ok := v.(msgpack.CustomDecoder); ok {
		err = cd.DecodeMsgpack(x.d)
	} else {
		err = x.d.Decode(v)
	}
	x.r.Reset(nil)
	return err
}

// PeekHeader decodes only the header of a message, for tools that print
// messages of any type (serket echo).
func PeekHeader(data []byte) (Header, error) {
	var h Header
	if err := msgpack.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return h, nil
}

func checkHeader(h *Header, typ string) error {
	if h.Type != typ {
		return badf("type", ErrType, "got %q, want %q", h.Type, typ)
	}
	if h.Version != WireVersion {
		return badf("v", ErrVersion, "got version %d, this build speaks %d", h.Version, WireVersion)
	}
	if !ValidName(h.Sender) {
		return badf("from", ErrField, "sender %q is not a valid module name", h.Sender)
	}
	if h.Run != "" && !ValidToken(h.Run) {
		return badf("run", ErrField, "session %q is not a token (hex digits, at most %d)", h.Run, MaxTokenLen)
	}
	return nil
}

// NewToken returns a fresh random token: 32 hex digits (128 bits from
// crypto/rand), for run ids and session tokens.
func NewToken() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand's Read never fails
	return hex.EncodeToString(b[:])
}

// MaxTokenLen is the longest a run id or a session token may be.
const MaxTokenLen = 64

// ValidToken reports whether s can be a run id or a session token: 1 to
// MaxTokenLen lower-case hex digits (NewToken makes 32).
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > MaxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func checkNames(field string, names []string) error {
	if len(names) > MaxModules {
		return badf(field, ErrTooLarge, "%d names, at most %d", len(names), MaxModules)
	}
	for i, n := range names {
		if err := checkName(field, names, i, n); err != nil {
			return err
		}
	}
	return nil
}

// checkName checks the i-th of names, n: valid, and not among names[:i]
// (a pairwise search: there are at most MaxModules, and no map to allocate).
func checkName(field string, names []string, i int, n string) error {
	if !ValidName(n) {
		return inElem(field, i, badf("", ErrField, "%q is not a valid module name", n))
	}
	if slices.Contains(names[:i], n) {
		return inElem(field, i, badf("", ErrField, "%q appears twice", n))
	}
	return nil
}

// checkBatch checks a B×D tensor against e and, if rows > 0, against rows.
func checkMatrix(field string, t Tensor, rows int, e Expect) error {
	if err := t.check(); err != nil {
		return bad(field, err)
	}
	if rows == 0 {
		rows = e.Batch
	}
	if err := t.is2D(rows, e.Latent); err != nil {
		return bad(field, err)
	}
	if t.Shape[0] > MaxBatch {
		return badf(field, ErrTooLarge, "%d rows, at most %d", t.Shape[0], MaxBatch)
	}
	return nil
}

func checkPayloads(field string, ps []Payload) error {
	for i, p := range ps {
		if p.Type == "" || len(p.Type) > 128 {
			return badf(fmt.Sprintf("%s[%d].type", field, i), ErrField, "content type %q must be 1 to 128 bytes", p.Type)
		}
	}
	return nil
}
