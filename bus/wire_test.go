package bus_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/vmihailenco/msgpack/v5"
)

// ---- crafting messages by hand ----

// rawTensor is a tensor as it travels, built without the package's encoder,
// so that it can carry what Marshal would refuse (NaN, a wrong length).
func rawTensor(shape []int, vals ...float32) []any {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return []any{shape, b}
}

// craft encodes key/value pairs, in order, as a msgpack map.
func craft(t testing.TB, pairs ...any) []byte {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("craft: odd number of arguments")
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := enc.EncodeMapLen(len(pairs) / 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(pairs); i += 2 {
		if err := enc.EncodeString(pairs[i].(string)); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(pairs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// with returns pairs with key set to v (replaced in place, else appended).
func with(pairs []any, key string, v any) []any {
	out := append([]any(nil), pairs...)
	for i := 0; i < len(out); i += 2 {
		if out[i] == key {
			out[i+1] = v
			return out
		}
	}
	return append(out, key, v)
}

// without returns pairs without key.
func without(pairs []any, key string) []any {
	var out []any
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i] != key {
			out = append(out, pairs[i], pairs[i+1])
		}
	}
	return out
}

func header(typ, from string) []any { return []any{"type", typ, "v", bus.WireVersion, "from", from} }

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// posteriorPairs is a valid 2×3 posterior from "vision".
func posteriorPairs() []any {
	return append(header(bus.TypePosterior, "vision"),
		"step", uint64(42), "t", int64(0),
		"mu", rawTensor([]int{2, 3}, 1, 2, 3, 4, 5, 6),
		"logvar", rawTensor([]int{2, 3}, 0, 0, 0, 0, 0, 0),
		"present", []bool{true, true})
}

// zgradPairs is a valid ZGrad from "vision" whose only term is term.
func zgradPairs(term map[string]any) []any {
	return append(header(bus.TypeZGrad, "vision"), "step", uint64(1), "terms", []any{term})
}

func termGrad(dz, ll []any) map[string]any {
	return map[string]any{"term": 0, "dz": dz, "ll": ll}
}

func stepPairs() []any {
	return append(header(bus.TypeStepBegin, "integrator"),
		"step", uint64(1), "epoch", 0, "train", true, "ids", []uint64{1, 2},
		"plan", []any{map[string]any{"s": []string{"vision"}, "r": []string{"vision"}}})
}

// checkDecodeError asserts that err is a *DecodeError of message type typ
// wrapping want, that names field, and that names sender (when the header
// decoded) in its text.
func checkDecodeError(t *testing.T, err error, typ string, want error, field, sender string) *bus.DecodeError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	var de *bus.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *bus.DecodeError", err, err)
	}
	if want != nil && !errors.Is(err, want) {
		t.Errorf("error %q is not %q", err, want)
	}
	if de.Type != typ {
		t.Errorf("DecodeError.Type = %q, want %q", de.Type, typ)
	}
	if de.Field != field {
		t.Errorf("DecodeError.Field = %q, want %q (error %q)", de.Field, field, err)
	}
	if field != "" && !strings.Contains(err.Error(), "field "+field) {
		t.Errorf("error %q does not name field %s", err, field)
	}
	if de.Sender != sender {
		t.Errorf("DecodeError.Sender = %q, want %q", de.Sender, sender)
	}
	if sender != "" && !strings.Contains(err.Error(), strconv.Quote(sender)) {
		t.Errorf("error %q does not name the sender %q", err, sender)
	}
	return de
}

// ---- round trips ----

func TestRoundTrip(t *testing.T) {
	for _, ex := range examples() {
		t.Run(ex.name, func(t *testing.T) {
			b := mustMarshal(t, ex.msg)
			got := newOf(t, ex.msg)
			if err := bus.Unmarshal(b, got, bus.Expect{}); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, ex.msg) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, ex.msg)
			}
		})
	}
}

// TestMarshalFillsHeader: Marshal sets the type and version whatever the
// caller left in the header.
func TestMarshalFillsHeader(t *testing.T) {
	m := &bus.Posterior{Header: bus.Header{Type: "junk", Version: 9, Sender: "vision"}, Mu: mat(1, 2, 0, 1), LogVar: mat(1, 2, 0, 0)}
	b := mustMarshal(t, m)
	h, err := bus.PeekHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := hdr(bus.TypePosterior, "vision"); h != want {
		t.Errorf("header on the wire = %+v, want %+v", h, want)
	}
	if _, err := bus.PeekHeader([]byte{0xc1}); !errors.Is(err, bus.ErrMalformed) {
		t.Errorf("PeekHeader(garbage) = %v, want ErrMalformed", err)
	}
}

// TestUnmarshalReusesValue decodes message after message into one value:
// nothing of an earlier message may survive into a later one.
func TestUnmarshalReusesValue(t *testing.T) {
	first := &bus.InferRequest{Header: bus.Header{Sender: "client"}, Want: []string{"text"}, Samples: 3,
		Observations: map[string]bus.Payload{"vision": {Type: "image/png", Data: []byte{1}}}}
	second := &bus.InferRequest{Header: bus.Header{Sender: "other"},
		Observations: map[string]bus.Payload{"audio": {Type: "audio/wav", Data: []byte{2}}}}
	b1, b2 := mustMarshal(t, first), mustMarshal(t, second)

	var m bus.InferRequest
	if err := bus.Unmarshal(b1, &m, bus.Expect{}); err != nil {
		t.Fatal(err)
	}
	kept := m.Want
	if err := bus.Unmarshal(b2, &m, bus.Expect{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&m, second) {
		t.Errorf("second decoding into a used value = %+v, want %+v", m, *second)
	}
	if !reflect.DeepEqual(kept, []string{"text"}) {
		t.Errorf("decoding overwrote a slice of the earlier message: %v", kept)
	}

	// An error before the header decodes must not name the earlier sender.
	const subject = "serket.v2.default.infer"
	err := bus.UnmarshalFrom(subject, []byte{0xc1, 0xc1}, &m, bus.Expect{})
	de := checkDecodeError(t, err, bus.TypeInferRequest, bus.ErrMalformed, "", "")
	if de.Subject != subject || !strings.Contains(err.Error(), subject) {
		t.Errorf("error %q does not name the subject %s", err, subject)
	}
}

// TestExpect checks every kind of Expect against the examples (B=2, D=3,
// two plan terms): right values are accepted, wrong ones refused.
func TestExpect(t *testing.T) {
	tests := []struct {
		name      string
		typ       string
		expect    bus.Expect
		wantErr   error
		wantField string
	}{
		{name: "posterior right", typ: bus.TypePosterior, expect: bus.Expect{Latent: 3, Batch: 2}},
		{name: "posterior wrong latent", typ: bus.TypePosterior, expect: bus.Expect{Latent: 4, Batch: 2}, wantErr: bus.ErrShape, wantField: "mu"},
		{name: "posterior wrong batch", typ: bus.TypePosterior, expect: bus.Expect{Latent: 3, Batch: 3}, wantErr: bus.ErrShape, wantField: "mu"},
		{name: "posterior terms not checked", typ: bus.TypePosterior, expect: bus.Expect{Terms: 7}},
		{name: "latent right", typ: bus.TypeLatent, expect: bus.Expect{Latent: 3, Batch: 2, Terms: 2}},
		{name: "latent wrong terms", typ: bus.TypeLatent, expect: bus.Expect{Terms: 3}, wantErr: bus.ErrShape, wantField: "z"},
		{name: "latent too few terms", typ: bus.TypeLatent, expect: bus.Expect{Terms: 1}, wantErr: bus.ErrShape, wantField: "z"},
		{name: "latent wrong latent", typ: bus.TypeLatent, expect: bus.Expect{Latent: 2}, wantErr: bus.ErrShape, wantField: "z[0]"},
		{name: "latent wrong batch", typ: bus.TypeLatent, expect: bus.Expect{Batch: 1}, wantErr: bus.ErrShape, wantField: "z[0]"},
		{name: "step right", typ: bus.TypeStepBegin, expect: bus.Expect{Batch: 2}},
		{name: "step wrong batch", typ: bus.TypeStepBegin, expect: bus.Expect{Batch: 5}, wantErr: bus.ErrShape, wantField: "ids"},
		{name: "zgrad right", typ: bus.TypeZGrad, expect: bus.Expect{Latent: 3, Batch: 2, Terms: 2}},
		{name: "zgrad wrong latent", typ: bus.TypeZGrad, expect: bus.Expect{Latent: 4}, wantErr: bus.ErrShape, wantField: "terms[0].dz"},
		{name: "zgrad wrong batch", typ: bus.TypeZGrad, expect: bus.Expect{Batch: 4}, wantErr: bus.ErrShape, wantField: "terms[0].dz"},
		{name: "zgrad term beyond plan", typ: bus.TypeZGrad, expect: bus.Expect{Terms: 1}, wantErr: bus.ErrField, wantField: "terms[1].term"},
		{name: "egrad right", typ: bus.TypeExpertGrad, expect: bus.Expect{Latent: 3, Batch: 2}},
		{name: "egrad wrong latent", typ: bus.TypeExpertGrad, expect: bus.Expect{Latent: 1}, wantErr: bus.ErrShape, wantField: "dmu"},
		{name: "encode reply right", typ: bus.TypeEncodeReply, expect: bus.Expect{Latent: 3, Batch: 2}},
		{name: "encode reply wrong batch", typ: bus.TypeEncodeReply, expect: bus.Expect{Batch: 1}, wantErr: bus.ErrShape, wantField: "mu"},
		{name: "decode request right", typ: bus.TypeDecodeRequest, expect: bus.Expect{Latent: 3}},
		{name: "decode request wrong latent", typ: bus.TypeDecodeRequest, expect: bus.Expect{Latent: 2}, wantErr: bus.ErrShape, wantField: "z"},
		{name: "decode reply right", typ: bus.TypeDecodeReply, expect: bus.Expect{Batch: 2}},
		{name: "decode reply wrong batch", typ: bus.TypeDecodeReply, expect: bus.Expect{Batch: 3}, wantErr: bus.ErrShape, wantField: "out"},
		{name: "infer reply right", typ: bus.TypeInferReply, expect: bus.Expect{Latent: 3, Batch: 9}},
		{name: "infer reply wrong latent", typ: bus.TypeInferReply, expect: bus.Expect{Latent: 4}, wantErr: bus.ErrShape, wantField: "mu"},
		{name: "belief right", typ: bus.TypeBelief, expect: bus.Expect{Latent: 3}},
		{name: "belief wrong latent", typ: bus.TypeBelief, expect: bus.Expect{Latent: 2}, wantErr: bus.ErrShape, wantField: "mu"},
		{name: "max bytes right", typ: bus.TypePosterior, expect: bus.Expect{MaxBytes: 1000}},
		{name: "max bytes wrong", typ: bus.TypePosterior, expect: bus.Expect{MaxBytes: 100}, wantErr: bus.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := exampleOf(t, tt.typ)
			b := mustMarshal(t, ex)
			err := bus.Unmarshal(b, newOf(t, ex), tt.expect)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Unmarshal with %+v: %v", tt.expect, err)
				}
				return
			}
			sender := headerOf(ex).Sender
			if tt.wantErr == bus.ErrTooLarge {
				sender = "" // refused before the header is read
			}
			checkDecodeError(t, err, tt.typ, tt.wantErr, tt.wantField, sender)
		})
	}
}

// ---- bad input ----

// TestUnmarshalBadInput feeds Unmarshal what it must refuse and checks the
// error's sentinel, field and sender.
func TestUnmarshalBadInput(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	goodPost := craft(t, posteriorPairs()...) // ends in "present": [true, true]
	if !bytes.HasSuffix(goodPost, []byte{0xa7, 'p', 'r', 'e', 's', 'e', 'n', 't', 0x92, 0xc3, 0xc3}) {
		t.Fatalf("crafted posterior %x does not end in present", goodPost)
	}
	latent := mustMarshal(t, exampleOf(t, bus.TypeLatent))
	tests := []struct {
		name       string
		data       []byte
		msg        bus.Message // what to decode into
		expect     bus.Expect
		wantErr    error
		wantField  string
		wantSender string // "" when the header does not decode
	}{
		// Size, header, structure.
		{name: "over max bytes", data: goodPost, msg: &bus.Posterior{}, expect: bus.Expect{MaxBytes: len(goodPost) - 1}, wantErr: bus.ErrTooLarge},
		{name: "over default max bytes", data: make([]byte, bus.DefaultMaxBytes+1), msg: &bus.Posterior{}, wantErr: bus.ErrTooLarge},
		{name: "empty", data: nil, msg: &bus.Posterior{}, wantErr: bus.ErrMalformed},
		{name: "not a map", data: []byte{0x93, 1, 2, 3}, msg: &bus.Posterior{}, wantErr: bus.ErrMalformed},
		{name: "garbage", data: []byte("hello, world"), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed},
		{name: "wrong version", data: craft(t, with(posteriorPairs(), "v", 1)...), msg: &bus.Posterior{}, wantErr: bus.ErrVersion, wantField: "v", wantSender: "vision"},
		{name: "no version", data: craft(t, without(posteriorPairs(), "v")...), msg: &bus.Posterior{}, wantErr: bus.ErrVersion, wantField: "v", wantSender: "vision"},
		{name: "version not a number", data: craft(t, with(posteriorPairs(), "v", "1")...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed},
		{name: "latent as posterior", data: latent, msg: &bus.Posterior{}, wantErr: bus.ErrType, wantField: "type", wantSender: "integrator"},
		{name: "no type", data: craft(t, without(posteriorPairs(), "type")...), msg: &bus.Posterior{}, wantErr: bus.ErrType, wantField: "type", wantSender: "vision"},
		{name: "sender upper case", data: craft(t, with(posteriorPairs(), "from", "Vision")...), msg: &bus.Posterior{}, wantErr: bus.ErrField, wantField: "from", wantSender: "Vision"},
		{name: "session not a token", data: craft(t, append(posteriorPairs(), "run", "Not-A-Token")...), msg: &bus.Posterior{}, wantErr: bus.ErrField, wantField: "run", wantSender: "vision"},
		{name: "session too long", data: craft(t, append(posteriorPairs(), "run", strings.Repeat("a", bus.MaxTokenLen+1))...), msg: &bus.Posterior{}, wantErr: bus.ErrField, wantField: "run", wantSender: "vision"},
		{name: "sender with a dot", data: craft(t, with(posteriorPairs(), "from", "vi.sion")...), msg: &bus.Posterior{}, wantErr: bus.ErrField, wantField: "from", wantSender: "vi.sion"},
		{name: "no sender", data: craft(t, without(posteriorPairs(), "from")...), msg: &bus.Posterior{}, wantErr: bus.ErrField, wantField: "from"},
		{name: "array claims 4G items", data: append(bytes.Clone(goodPost[:len(goodPost)-3]), 0xdd, 0xff, 0xff, 0xff, 0xff), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed},
		{name: "step not a number", data: craft(t, with(posteriorPairs(), "step", "x")...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed, wantSender: "vision"},

		// Tensors.
		{name: "mu NaN", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{2, 3}, 1, 2, nan, 4, 5, 6))...), msg: &bus.Posterior{}, wantErr: bus.ErrNotFinite, wantField: "mu", wantSender: "vision"},
		{name: "mu +Inf", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{2, 3}, inf, 2, 3, 4, 5, 6))...), msg: &bus.Posterior{}, wantErr: bus.ErrNotFinite, wantField: "mu", wantSender: "vision"},
		{name: "mu -Inf", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{2, 3}, 1, 2, 3, 4, 5, -inf))...), msg: &bus.Posterior{}, wantErr: bus.ErrNotFinite, wantField: "mu", wantSender: "vision"},
		{name: "logvar NaN", data: craft(t, with(posteriorPairs(), "logvar", rawTensor([]int{2, 3}, 0, 0, 0, 0, nan, 0))...), msg: &bus.Posterior{}, wantErr: bus.ErrNotFinite, wantField: "logvar", wantSender: "vision"},
		{name: "logvar +Inf", data: craft(t, with(posteriorPairs(), "logvar", rawTensor([]int{2, 3}, 0, inf, 0, 0, 0, 0))...), msg: &bus.Posterior{}, wantErr: bus.ErrNotFinite, wantField: "logvar", wantSender: "vision"},
		{name: "logvar -Inf", data: craft(t, with(posteriorPairs(), "logvar", rawTensor([]int{2, 3}, -inf, 0, 0, 0, 0, 0))...), msg: &bus.Posterior{}, wantErr: bus.ErrNotFinite, wantField: "logvar", wantSender: "vision"},
		{name: "dz NaN", data: craft(t, zgradPairs(termGrad(rawTensor([]int{1, 2}, nan, 0), rawTensor([]int{1}, -1)))...), msg: &bus.ZGrad{}, wantErr: bus.ErrNotFinite, wantField: "terms[0].dz", wantSender: "vision"},
		{name: "dz +Inf", data: craft(t, zgradPairs(termGrad(rawTensor([]int{1, 2}, 0, inf), rawTensor([]int{1}, -1)))...), msg: &bus.ZGrad{}, wantErr: bus.ErrNotFinite, wantField: "terms[0].dz", wantSender: "vision"},
		{name: "dz -Inf", data: craft(t, zgradPairs(termGrad(rawTensor([]int{1, 2}, -inf, 0), rawTensor([]int{1}, -1)))...), msg: &bus.ZGrad{}, wantErr: bus.ErrNotFinite, wantField: "terms[0].dz", wantSender: "vision"},
		{name: "ll -Inf", data: craft(t, zgradPairs(termGrad(rawTensor([]int{1, 2}, 0, 0), rawTensor([]int{1}, -inf)))...), msg: &bus.ZGrad{}, wantErr: bus.ErrNotFinite, wantField: "terms[0].ll", wantSender: "vision"},
		{name: "ll wrong shape", data: craft(t, zgradPairs(termGrad(rawTensor([]int{1, 2}, 0, 0), rawTensor([]int{2}, -1, -2)))...), msg: &bus.ZGrad{}, wantErr: bus.ErrShape, wantField: "terms[0].ll", wantSender: "vision"},
		{name: "negative term", data: craft(t, zgradPairs(map[string]any{"term": -1, "dz": rawTensor([]int{1, 1}, 0), "ll": rawTensor([]int{1}, 0)})...), msg: &bus.ZGrad{}, wantErr: bus.ErrField, wantField: "terms[0].term", wantSender: "vision"},
		{name: "dlogvar NaN", data: craft(t, append(header(bus.TypeExpertGrad, "integrator"), "dmu", rawTensor([]int{1, 1}, 0), "dlogvar", rawTensor([]int{1, 1}, nan))...), msg: &bus.ExpertGrad{}, wantErr: bus.ErrNotFinite, wantField: "dlogvar", wantSender: "integrator"},
		{name: "second latent Inf", data: craft(t, append(header(bus.TypeLatent, "integrator"), "members", []string{"vision"}, "z", []any{rawTensor([]int{1, 1}, 0), rawTensor([]int{1, 1}, inf)})...), msg: &bus.Latent{}, wantErr: bus.ErrNotFinite, wantField: "z[1]", wantSender: "integrator"},
		{name: "latents of different batches", data: craft(t, append(header(bus.TypeLatent, "integrator"), "members", []string{"vision"}, "z", []any{rawTensor([]int{1, 1}, 0), rawTensor([]int{2, 1}, 0, 0)})...), msg: &bus.Latent{}, wantErr: bus.ErrShape, wantField: "z[1]", wantSender: "integrator"},
		{name: "shape and data disagree", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{2, 3}, 1, 2, 3, 4, 5))...), msg: &bus.Posterior{}, wantErr: bus.ErrShape, wantField: "mu", wantSender: "vision"},
		{name: "logvar shape not mu's", data: craft(t, with(posteriorPairs(), "logvar", rawTensor([]int{3, 2}, 0, 0, 0, 0, 0, 0))...), msg: &bus.Posterior{}, wantErr: bus.ErrShape, wantField: "logvar", wantSender: "vision"},
		{name: "mu not 2-D", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{6}, 1, 2, 3, 4, 5, 6))...), msg: &bus.Posterior{}, wantErr: bus.ErrShape, wantField: "mu", wantSender: "vision"},
		{name: "mu missing", data: craft(t, without(posteriorPairs(), "mu")...), msg: &bus.Posterior{}, wantErr: bus.ErrShape, wantField: "mu", wantSender: "vision"},
		{name: "batch too large", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{bus.MaxBatch + 1, 0}))...), msg: &bus.Posterior{}, wantErr: bus.ErrTooLarge, wantField: "mu", wantSender: "vision"},
		{name: "too many elements", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{1 << 13, 1 << 12}))...), msg: &bus.Posterior{}, wantErr: bus.ErrTooLarge, wantField: "mu", wantSender: "vision"},
		{name: "dimension too large", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{bus.MaxElements + 1, 0}))...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed, wantSender: "vision"},
		{name: "negative dimension", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{-1, 3}))...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed, wantSender: "vision"},
		{name: "rank too high", data: craft(t, with(posteriorPairs(), "mu", rawTensor([]int{1, 1, 1, 1, 1}, 1))...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed, wantSender: "vision"},
		{name: "data not whole floats", data: craft(t, with(posteriorPairs(), "mu", []any{[]int{1, 1}, []byte{0, 0, 0x80, 0x3f, 0}})...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed, wantSender: "vision"},
		{name: "tensor of three items", data: craft(t, with(posteriorPairs(), "mu", []any{[]int{1, 1}, []byte{0, 0, 0x80, 0x3f}, 1})...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed, wantSender: "vision"},
		{name: "tensor not an array", data: craft(t, with(posteriorPairs(), "mu", "tensor")...), msg: &bus.Posterior{}, wantErr: bus.ErrMalformed, wantSender: "vision"},
		{name: "present too long", data: craft(t, with(posteriorPairs(), "present", []bool{true, false, true})...), msg: &bus.Posterior{}, wantErr: bus.ErrShape, wantField: "present", wantSender: "vision"},
		{name: "present too short", data: craft(t, with(posteriorPairs(), "present", []bool{true})...), msg: &bus.Posterior{}, wantErr: bus.ErrShape, wantField: "present", wantSender: "vision"},
		{name: "infer reply of two rows", data: craft(t, append(header(bus.TypeInferReply, "integrator"), "mu", rawTensor([]int{2, 1}, 0, 0), "logvar", rawTensor([]int{2, 1}, 0, 0), "z", rawTensor([]int{1, 1}, 0))...), msg: &bus.InferReply{}, wantErr: bus.ErrShape, wantField: "mu", wantSender: "integrator"},
		{name: "decode request of no rows", data: craft(t, append(header(bus.TypeDecodeRequest, "integrator"), "z", rawTensor([]int{0, 3}))...), msg: &bus.DecodeRequest{}, wantErr: bus.ErrShape, wantField: "z", wantSender: "integrator"},

		// Plans, names, counts.
		{name: "empty plan", data: craft(t, with(stepPairs(), "plan", []any{})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "plan", wantSender: "integrator"},
		{name: "no plan", data: craft(t, without(stepPairs(), "plan")...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "plan", wantSender: "integrator"},
		{name: "empty subset", data: craft(t, with(stepPairs(), "plan", []any{map[string]any{"s": []string{}, "r": []string{"vision"}}})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "plan[0].s", wantSender: "integrator"},
		{name: "duplicate target", data: craft(t, with(stepPairs(), "plan", []any{map[string]any{"s": []string{"audio"}, "r": []string{"vision", "vision"}}})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "plan[0].r[1]", wantSender: "integrator"},
		{name: "bad subset name", data: craft(t, with(stepPairs(), "plan", []any{map[string]any{"s": []string{"vision", "9lives"}, "r": []string{}}})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "plan[0].s[1]", wantSender: "integrator"},
		{name: "lambda of a bad module name", data: craft(t, with(stepPairs(), "lambda", map[string]float32{"Vision": 1})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "lambda", wantSender: "integrator"},
		{name: "negative lambda", data: craft(t, with(stepPairs(), "lambda", map[string]float32{"vision": -1})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "lambda.vision", wantSender: "integrator"},
		{name: "NaN lambda", data: craft(t, with(stepPairs(), "lambda", map[string]float32{"vision": nan})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "lambda.vision", wantSender: "integrator"},
		{name: "+Inf lambda", data: craft(t, with(stepPairs(), "lambda", map[string]float32{"vision": inf})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "lambda.vision", wantSender: "integrator"},
		{name: "no sample ids", data: craft(t, with(stepPairs(), "ids", []uint64{})...), msg: &bus.StepBegin{}, wantErr: bus.ErrField, wantField: "ids", wantSender: "integrator"},
		{name: "duplicate members", data: craft(t, append(header(bus.TypeLatent, "integrator"), "members", []string{"audio", "vision", "audio"}, "z", []any{})...), msg: &bus.Latent{}, wantErr: bus.ErrField, wantField: "members[2]", wantSender: "integrator"},
		{name: "duplicate sources", data: craft(t, append(header(bus.TypeBelief, "integrator"), "mu", rawTensor([]int{1, 1}, 0), "logvar", rawTensor([]int{1, 1}, 0), "src", []any{map[string]any{"m": "vision", "age": 0}, map[string]any{"m": "vision", "age": 1}})...), msg: &bus.Belief{}, wantErr: bus.ErrField, wantField: "src[1]", wantSender: "integrator"},
		{name: "negative age", data: craft(t, append(header(bus.TypeBelief, "integrator"), "mu", rawTensor([]int{1, 1}, 0), "logvar", rawTensor([]int{1, 1}, 0), "src", []any{map[string]any{"m": "vision", "age": -1}})...), msg: &bus.Belief{}, wantErr: bus.ErrField, wantField: "src[0].age", wantSender: "integrator"},
		{name: "negative sample count", data: craft(t, append(header(bus.TypeInferRequest, "client"), "n", -1)...), msg: &bus.InferRequest{}, wantErr: bus.ErrField, wantField: "n", wantSender: "client"},
		{name: "too many samples", data: craft(t, append(header(bus.TypeInferRequest, "client"), "n", bus.MaxSamples+1)...), msg: &bus.InferRequest{}, wantErr: bus.ErrField, wantField: "n", wantSender: "client"},
		{name: "duplicate wanted module", data: craft(t, append(header(bus.TypeInferRequest, "client"), "want", []string{"text", "text"})...), msg: &bus.InferRequest{}, wantErr: bus.ErrField, wantField: "want[1]", wantSender: "client"},
		{name: "bad observation module", data: craft(t, append(header(bus.TypeInferRequest, "client"), "obs", map[string]any{"Vision": map[string]any{"type": "image/png", "data": []byte{1}}})...), msg: &bus.InferRequest{}, wantErr: bus.ErrField, wantField: "obs", wantSender: "client"},
		{name: "observation without media type", data: craft(t, append(header(bus.TypeInferRequest, "client"), "obs", map[string]any{"vision": map[string]any{"data": []byte{1}}})...), msg: &bus.InferRequest{}, wantErr: bus.ErrField, wantField: "obs.vision[0].type", wantSender: "client"},
		{name: "no observations", data: craft(t, append(header(bus.TypeEncodeRequest, "integrator"), "obs", []any{})...), msg: &bus.EncodeRequest{}, wantErr: bus.ErrField, wantField: "obs", wantSender: "integrator"},
		{name: "media type too long", data: craft(t, append(header(bus.TypeEncodeRequest, "integrator"), "obs", []any{map[string]any{"type": "a", "data": []byte{}}, map[string]any{"type": strings.Repeat("x", 129)}})...), msg: &bus.EncodeRequest{}, wantErr: bus.ErrField, wantField: "obs[1].type", wantSender: "integrator"},
		{name: "bad output module", data: craft(t, append(header(bus.TypeInferReply, "integrator"), "mu", rawTensor([]int{1, 1}, 0), "logvar", rawTensor([]int{1, 1}, 0), "z", rawTensor([]int{1, 1}, 0), "out", map[string]any{"-x": []any{}})...), msg: &bus.InferReply{}, wantErr: bus.ErrField, wantField: "out", wantSender: "integrator"},
		{name: "decode reply without media type", data: craft(t, append(header(bus.TypeDecodeReply, "text"), "out", []any{map[string]any{"data": []byte("x")}})...), msg: &bus.DecodeReply{}, wantErr: bus.ErrField, wantField: "out[0].type", wantSender: "text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := bus.Unmarshal(tt.data, tt.msg, tt.expect)
			checkDecodeError(t, err, tt.msg.MessageType(), tt.wantErr, tt.wantField, tt.wantSender)
		})
	}
}

// TestCraftedValid makes sure the crafted bases of TestUnmarshalBadInput are
// themselves accepted, so each case fails for the one fault it adds.
func TestCraftedValid(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		msg  bus.Message
	}{
		{"posterior", craft(t, posteriorPairs()...), &bus.Posterior{}},
		{"zgrad", craft(t, zgradPairs(termGrad(rawTensor([]int{1, 2}, 0, 0), rawTensor([]int{1}, -1)))...), &bus.ZGrad{}},
		{"step", craft(t, stepPairs()...), &bus.StepBegin{}},
		{"infer request", craft(t, append(header(bus.TypeInferRequest, "client"), "n", bus.MaxSamples)...), &bus.InferRequest{}},
		{"belief", craft(t, append(header(bus.TypeBelief, "integrator"), "mu", rawTensor([]int{1, 1}, 0), "logvar", rawTensor([]int{1, 1}, 0), "src", []any{map[string]any{"m": "vision", "age": 0}})...), &bus.Belief{}},
		{"empty tensor in batch", craft(t, with(posteriorPairs(), "mu", rawTensor([]int{bus.MaxBatch, 0}))...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.msg == nil {
				// A MaxBatch×0 mu with the 2×3 logvar is refused for logvar,
				// not for mu: MaxBatch rows are allowed.
				err := bus.Unmarshal(tt.data, &bus.Posterior{}, bus.Expect{})
				checkDecodeError(t, err, bus.TypePosterior, bus.ErrShape, "logvar", "vision")
				return
			}
			if err := bus.Unmarshal(tt.data, tt.msg, bus.Expect{}); err != nil {
				t.Fatalf("crafted %s refused: %v", tt.name, err)
			}
		})
	}
	var p bus.Posterior
	if err := bus.Unmarshal(craft(t, posteriorPairs()...), &p, bus.Expect{Latent: 3, Batch: 2}); err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, 2, 3, 4, 5, 6}; !reflect.DeepEqual(p.Mu.Data, want) || p.Sender != "vision" {
		t.Errorf("crafted posterior decodes to %+v", p)
	}
}

// TestUnmarshalTruncated: every proper prefix of a valid encoding is
// refused, with a *DecodeError and without a panic.
func TestUnmarshalTruncated(t *testing.T) {
	for _, ex := range examples() {
		t.Run(ex.name, func(t *testing.T) {
			b := mustMarshal(t, ex.msg)
			for n := range len(b) {
				err := bus.Unmarshal(b[:n], newOf(t, ex.msg), bus.Expect{})
				var de *bus.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("prefix of %d/%d bytes: error %v, want a *DecodeError", n, len(b), err)
				}
			}
			if err := bus.Unmarshal(b, newOf(t, ex.msg), bus.Expect{}); err != nil {
				t.Fatalf("whole message refused: %v", err)
			}
		})
	}
}

// TestUnmarshalFromSubject: the error names the subject, and the sender too
// once the header has decoded.
func TestUnmarshalFromSubject(t *testing.T) {
	const subject = "serket.v2.default.post.vision"
	tests := []struct {
		name       string
		data       []byte
		wantErr    error
		wantField  string
		wantSender string
	}{
		{name: "garbage", data: []byte{0xde, 0xad, 0xbe, 0xef}, wantErr: bus.ErrMalformed},
		{name: "text", data: []byte("not msgpack at all"), wantErr: bus.ErrMalformed},
		{name: "sender known", data: craft(t, with(posteriorPairs(), "v", 7)...), wantErr: bus.ErrVersion, wantField: "v", wantSender: "vision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := bus.UnmarshalFrom(subject, tt.data, &bus.Posterior{}, bus.Expect{})
			de := checkDecodeError(t, err, bus.TypePosterior, tt.wantErr, tt.wantField, tt.wantSender)
			if de.Subject != subject {
				t.Errorf("DecodeError.Subject = %q, want %q", de.Subject, subject)
			}
			if !strings.Contains(err.Error(), " on "+subject) {
				t.Errorf("error %q does not name the subject", err)
			}
		})
	}
}

func TestDecodeErrorText(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  bus.DecodeError
		want string
	}{
		{name: "bare", err: bus.DecodeError{Type: "serket.latent", Err: base}, want: "bus: rejected serket.latent: boom"},
		{name: "sender", err: bus.DecodeError{Type: "serket.latent", Sender: "integrator", Err: base}, want: `bus: rejected serket.latent from "integrator": boom`},
		{name: "subject", err: bus.DecodeError{Type: "serket.latent", Subject: "serket.v2.default.latent", Err: base}, want: "bus: rejected serket.latent on serket.v2.default.latent: boom"},
		{name: "all", err: bus.DecodeError{Type: "serket.latent", Sender: "integrator", Subject: "s.x", Field: "z[0]", Err: base}, want: `bus: rejected serket.latent from "integrator" on s.x: field z[0]: boom`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(&tt.err, base) {
				t.Errorf("Unwrap does not reach the cause")
			}
		})
	}
}

// ---- Marshal refuses what must not be sent ----

func TestMarshalRefuses(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	// weighed is a latent of two 2×1 terms with the given row weights.
	weighed := func(w ...bus.Tensor) *bus.Latent {
		return &bus.Latent{Header: bus.Header{Sender: "integrator"}, Members: []string{"a"}, Z: []bus.Tensor{mat(2, 1, 0, 0), mat(2, 1, 0, 0)}, W: w}
	}
	post := func(mu, lv bus.Tensor, present []bool) *bus.Posterior {
		return &bus.Posterior{Header: bus.Header{Sender: "vision"}, Mu: mu, LogVar: lv, Present: present}
	}
	big := mat(100, 64, 0, 0.001) // 25.6 kB of floats
	evidence := func(prec bus.Tensor) *bus.PriorRequest {
		return &bus.PriorRequest{Header: bus.Header{Sender: "integrator"}, Terms: []bus.Evidence{{Prec: prec, Shift: mat(1, 2, 0, 0)}}}
	}
	prior := func(lv bus.Tensor, concept []int32, prob bus.Tensor) *bus.PriorReply {
		return &bus.PriorReply{Header: bus.Header{Sender: "concept"}, Terms: []bus.PriorTerm{{Mu: mat(1, 2, 0, 0), LogVar: lv, Concept: concept, Prob: prob}}}
	}
	one := bus.Vector([]float32{1})
	tests := []struct {
		name      string
		msg       bus.Message
		limit     int // 0: Marshal
		wantErr   error
		wantField string
	}{
		{name: "mu NaN", msg: post(bus.Matrix(1, 2, []float32{nan, 0}), mat(1, 2, 0, 0), nil), wantErr: bus.ErrNotFinite, wantField: "mu"},
		{name: "mu +Inf", msg: post(bus.Matrix(1, 2, []float32{0, inf}), mat(1, 2, 0, 0), nil), wantErr: bus.ErrNotFinite, wantField: "mu"},
		{name: "logvar -Inf", msg: post(mat(1, 2, 0, 0), bus.Matrix(1, 2, []float32{-inf, 0}), nil), wantErr: bus.ErrNotFinite, wantField: "logvar"},
		{name: "logvar NaN", msg: post(mat(1, 2, 0, 0), bus.Matrix(1, 2, []float32{0, nan}), nil), wantErr: bus.ErrNotFinite, wantField: "logvar"},
		{name: "dz +Inf", msg: &bus.ZGrad{Header: bus.Header{Sender: "vision"}, Terms: []bus.TermGrad{{DZ: bus.Matrix(1, 1, []float32{inf}), LogLik: bus.Vector([]float32{0})}}}, wantErr: bus.ErrNotFinite, wantField: "terms[0].dz"},
		{name: "dz -Inf", msg: &bus.ZGrad{Header: bus.Header{Sender: "vision"}, Terms: []bus.TermGrad{{DZ: bus.Matrix(1, 1, []float32{-inf}), LogLik: bus.Vector([]float32{0})}}}, wantErr: bus.ErrNotFinite, wantField: "terms[0].dz"},
		{name: "dz NaN", msg: &bus.ZGrad{Header: bus.Header{Sender: "vision"}, Terms: []bus.TermGrad{{DZ: bus.Matrix(1, 1, []float32{nan}), LogLik: bus.Vector([]float32{0})}}}, wantErr: bus.ErrNotFinite, wantField: "terms[0].dz"},
		{name: "dmu NaN", msg: &bus.ExpertGrad{Header: bus.Header{Sender: "vision"}, DMu: bus.Matrix(1, 1, []float32{nan}), DLogVar: mat(1, 1, 0, 0)}, wantErr: bus.ErrNotFinite, wantField: "dmu"},
		{name: "shape and data disagree", msg: post(bus.Tensor{Shape: []int{2, 3}, Data: make([]float32, 5)}, mat(2, 3, 0, 0), nil), wantErr: bus.ErrShape, wantField: "mu"},
		{name: "present mask mismatch", msg: post(mat(2, 3, 0, 0), mat(2, 3, 0, 0), []bool{true}), wantErr: bus.ErrShape, wantField: "present"},
		{name: "empty sender", msg: &bus.Posterior{Mu: mat(1, 1, 0, 0), LogVar: mat(1, 1, 0, 0)}, wantErr: bus.ErrField, wantField: "from"},
		{name: "empty plan", msg: &bus.StepBegin{Header: bus.Header{Sender: "integrator"}, IDs: []uint64{1}}, wantErr: bus.ErrField, wantField: "plan"},
		{name: "duplicate members", msg: &bus.Latent{Header: bus.Header{Sender: "integrator"}, Members: []string{"a", "a"}}, wantErr: bus.ErrField, wantField: "members[1]"},
		{name: "row weights for fewer latents", msg: weighed(bus.Vector([]float32{1})), wantErr: bus.ErrShape, wantField: "w"},
		{name: "row weights of another batch", msg: weighed(bus.Vector([]float32{1, 1}), bus.Vector([]float32{1, 1, 1})), wantErr: bus.ErrShape, wantField: "w[1]"},
		{name: "row weights as a matrix", msg: weighed(mat(2, 1, 0, 0), bus.Tensor{}), wantErr: bus.ErrShape, wantField: "w[0]"},
		{name: "row weight NaN", msg: weighed(bus.Tensor{}, bus.Vector([]float32{0, nan})), wantErr: bus.ErrNotFinite, wantField: "w[1]"},
		{name: "row weight negative", msg: weighed(bus.Vector([]float32{1, -0.5}), bus.Tensor{}), wantErr: bus.ErrField, wantField: "w[0]"},
		{name: "row weight over 1", msg: weighed(bus.Vector([]float32{1.5, 1}), bus.Tensor{}), wantErr: bus.ErrField, wantField: "w[0]"},
		{name: "control without session", msg: &bus.Control{Header: bus.Header{Sender: "integrator"}, Op: bus.OpSave, ID: "ab"}, wantErr: bus.ErrField, wantField: "run"},
		{name: "control of no run", msg: &bus.Control{Header: bus.Header{Sender: "integrator", Run: "ab"}, Op: bus.OpSave}, wantErr: bus.ErrField, wantField: "id"},
		{name: "control unknown op", msg: &bus.Control{Header: bus.Header{Sender: "integrator", Run: "ab"}, Op: "train", ID: "ab"}, wantErr: bus.ErrField, wantField: "op"},
		{name: "negative precision", msg: evidence(bus.Matrix(1, 2, []float32{1, -0.5})), wantErr: bus.ErrField, wantField: "terms[0].prec"},
		{name: "precision NaN", msg: evidence(bus.Matrix(1, 2, []float32{nan, 1})), wantErr: bus.ErrNotFinite, wantField: "terms[0].prec"},
		{name: "evidence of another size", msg: evidence(mat(1, 3, 0, 0)), wantErr: bus.ErrShape, wantField: "terms[0].shift"},
		{name: "no evidence", msg: &bus.PriorRequest{Header: bus.Header{Sender: "integrator"}}, wantErr: bus.ErrShape, wantField: "terms"},
		{name: "prior logvar NaN", msg: prior(bus.Matrix(1, 2, []float32{0, nan}), nil, one), wantErr: bus.ErrNotFinite, wantField: "terms[0].logvar"},
		{name: "prior variance 0", msg: prior(bus.Matrix(1, 2, []float32{0, -1e6}), nil, one), wantErr: bus.ErrField, wantField: "terms[0].logvar"},
		{name: "prior of another size", msg: prior(mat(1, 3, 0, 0), nil, one), wantErr: bus.ErrShape, wantField: "terms[0].logvar"},
		{name: "concept out of range", msg: prior(mat(1, 2, 0, 0), []int32{-2}, one), wantErr: bus.ErrField, wantField: "terms[0].c"},
		{name: "concepts for other rows", msg: prior(mat(1, 2, 0, 0), []int32{1, 2}, one), wantErr: bus.ErrShape, wantField: "terms[0].c"},
		{name: "probability over 1", msg: prior(mat(1, 2, 0, 0), []int32{1}, bus.Vector([]float32{1.5})), wantErr: bus.ErrField, wantField: "terms[0].p"},
		{name: "negative samples", msg: &bus.InferRequest{Header: bus.Header{Sender: "client"}, Samples: -1}, wantErr: bus.ErrField, wantField: "n"},
		{name: "over the given limit", msg: post(big, big, nil), limit: 40_000, wantErr: bus.ErrTooLarge},
		{name: "over the default limit", msg: &bus.DecodeRequest{Header: bus.Header{Sender: "integrator"}, Z: mat(1024, bus.DefaultMaxBytes/4/1024+1, 0, 0)}, wantErr: bus.ErrTooLarge},
		{name: "too many elements", msg: &bus.DecodeRequest{Header: bus.Header{Sender: "integrator"}, Z: bus.Tensor{Shape: []int{1 << 13, 1 << 12}}}, wantErr: bus.ErrTooLarge, wantField: "z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			var err error
			if tt.limit > 0 {
				b, err = bus.MarshalLimit(tt.msg, tt.limit)
			} else {
				b, err = bus.Marshal(tt.msg)
			}
			if b != nil {
				t.Errorf("got %d bytes along with the error", len(b))
			}
			checkDecodeError(t, err, tt.msg.MessageType(), tt.wantErr, tt.wantField, headerOf(tt.msg).Sender)
			if !strings.Contains(err.Error(), "cannot send") {
				t.Errorf("error %q does not say it is the sender's fault", err)
			}
		})
	}

	// The same big posterior passes a limit that fits it.
	if _, err := bus.MarshalLimit(post(big, big, nil), 60_000); err != nil {
		t.Errorf("MarshalLimit 60 kB: %v", err)
	}
}

// ---- benchmarks ----

func benchPosterior() *bus.Posterior {
	const B, D = 100, 64
	present := make([]bool, B)
	for i := range present {
		present[i] = i%7 != 0
	}
	return &bus.Posterior{
		Header: bus.Header{Sender: "vision"}, Step: 1, Time: 1,
		Mu: mat(B, D, -1, 0.0003), LogVar: mat(B, D, -2, 0.0001), Present: present,
	}
}

func BenchmarkMarshalPosterior(b *testing.B) {
	m := benchPosterior()
	enc := mustMarshal(b, m)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bus.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalPosterior(b *testing.B) {
	enc := mustMarshal(b, benchPosterior())
	e := bus.Expect{Latent: 64, Batch: 100}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		var m bus.Posterior
		if err := bus.Unmarshal(enc, &m, e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUnmarshalRefusesAllocationBombs: a message within the size limit that
// declares far more values than it could hold, or a million tiny ones, is
// refused before msgpack allocates for it.
func TestUnmarshalRefusesAllocationBombs(t *testing.T) {
	header := []byte{0x84, 0xa4, 't', 'y', 'p', 'e', 0xac}
	header = append(header, "serket.zgrad"...)
	header = append(header, 0xa1, 'v', 0x01, 0xa4, 'f', 'r', 'o', 'm', 0xa1, 'a', 0xa5, 't', 'e', 'r', 'm', 's')
	million := append(append([]byte{}, header...), 0xdd, 0x00, 0x0f, 0x42, 0x40) // array32 of 1e6
	million = append(million, make([]byte, 1_000_000)...)                        // 1e6 zeros (fixint 0)
	for i := range million[len(header)+5:] {
		million[len(header)+5+i] = 0xc0 // nil
	}
	claims := append(append([]byte{}, header...), 0xdd, 0xff, 0xff, 0xff, 0xff) // 4G items, no bytes
	for _, tt := range []struct {
		name string
		data []byte
		want error
	}{
		{"a million nils", million, bus.ErrTooLarge},
		{"four billion items claimed", claims, bus.ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var m bus.ZGrad
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := bus.Unmarshal(tt.data, &m, bus.Expect{MaxBytes: 2 << 20})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
				t.Errorf("refusing a %d-byte message allocated %d MB; want the refusal before decoding", len(tt.data), got>>20)
			}
		})
	}
}

// MarshalAppend appends the same encoding Marshal returns, leaves dst's
// contents before it alone, and reuses dst's storage.
func TestMarshalAppend(t *testing.T) {
	m := benchPosterior()
	want := mustMarshal(t, m)
	buf := append(make([]byte, 0, len(want)+10), "prefix"...)
	got, err := bus.MarshalAppend(buf, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[:6]) != "prefix" || !bytes.Equal(got[6:], want) || &got[0] != &buf[:1][0] {
		t.Fatalf("MarshalAppend: prefix %q, encoding equal %v, same storage %v", got[:6], bytes.Equal(got[6:], want), &got[0] == &buf[:1][0])
	}
	bad := benchPosterior()
	bad.Mu.Data[3] = float32(math.NaN())
	if out, err := bus.MarshalAppend(buf[:6], bad, 0); err == nil || string(out) != "prefix" {
		t.Fatalf("a NaN posterior: %q, %v; want dst back unchanged and an error", out, err)
	}
}

func BenchmarkMarshalAppendPosterior(b *testing.B) {
	m := benchPosterior()
	buf := mustMarshal(b, m)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = bus.MarshalAppend(buf[:0], m, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// UnmarshalReuse decodes exactly what Unmarshal does, into the storage the
// message held, growing it when the new message is larger.
func TestUnmarshalReuse(t *testing.T) {
	posterior := func(b, d int, start float32) bus.Message {
		present := make([]bool, b)
		for i := range present {
			present[i] = i%3 != 0
		}
		return &bus.Posterior{Header: bus.Header{Sender: "vision"}, Step: uint64(b), Mu: mat(b, d, start, 0.5), LogVar: mat(b, d, -start, 0.25), Present: present}
	}
	zgrad := func(b, d int, start float32) bus.Message {
		return &bus.ZGrad{Header: bus.Header{Sender: "vision"}, Step: 3, Terms: []bus.TermGrad{
			{Term: 0, DZ: mat(b, d, start, 1), LogLik: bus.Vector(mat(b, 1, start, 2).Data)},
			{Term: 2, DZ: mat(b, d, -start, 1), LogLik: bus.Vector(mat(b, 1, -start, 2).Data)},
		}}
	}
	latent := func(b, d int, start float32) bus.Message {
		return &bus.Latent{Header: bus.Header{Sender: "integrator"}, Step: 4, Members: []string{"audio", "vision"}, Z: []bus.Tensor{mat(b, d, start, 1), mat(b, d, start+1, 1)}}
	}
	egrad := func(b, d int, start float32) bus.Message {
		return &bus.ExpertGrad{Header: bus.Header{Sender: "integrator"}, Step: 5, DMu: mat(b, d, start, 1), DLogVar: mat(b, d, start, -1)}
	}
	for _, tt := range []struct {
		name string
		make func(b, d int, start float32) bus.Message
	}{{"posterior", posterior}, {"zgrad", zgrad}, {"latent", latent}, {"expert gradient", egrad}} {
		t.Run(tt.name, func(t *testing.T) {
			into := tt.make(1, 1, 0)                                                  // what a receiver keeps
			for _, size := range [][2]int{{8, 4}, {8, 4}, {2, 4}, {16, 4}, {16, 4}} { // same, smaller, larger
				src := tt.make(size[0], size[1], float32(size[0]))
				data := mustMarshal(t, src)
				want := reflect.New(reflect.TypeOf(src).Elem()).Interface().(bus.Message)
				if err := bus.Unmarshal(data, want, bus.Expect{}); err != nil {
					t.Fatal(err)
				}
				if err := bus.UnmarshalReuse("", data, into, bus.Expect{}); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(into, want) {
					t.Fatalf("%v: UnmarshalReuse gave %+v, Unmarshal %+v", size, into, want)
				}
			}
			// The same size again reuses everything: no allocation for the tensors.
			data := mustMarshal(t, tt.make(16, 4, 3))
			fresh := testing.AllocsPerRun(20, func() {
				m := reflect.New(reflect.TypeOf(into).Elem()).Interface().(bus.Message)
				bus.Unmarshal(data, m, bus.Expect{})
			})
			reused := testing.AllocsPerRun(20, func() { bus.UnmarshalReuse("", data, into, bus.Expect{}) })
			t.Logf("allocations: %.0f fresh, %.0f reusing", fresh, reused)
			if reused >= fresh {
				t.Errorf("UnmarshalReuse allocates %.0f times, Unmarshal %.0f", reused, fresh)
			}
		})
	}
	// A bad message is refused as by Unmarshal.
	bad := posterior(4, 2, 1).(*bus.Posterior)
	raw := mustMarshal(t, bad)
	var into bus.Posterior
	if err := bus.UnmarshalReuse("", raw, &into, bus.Expect{Latent: 3}); err == nil {
		t.Error("a posterior of latent 2 was accepted where 3 is expected")
	}
}
