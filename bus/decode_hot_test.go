package bus

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// The hand-written decoders of decode_hot.go are held to msgpack's
// reflection decoder: each message type has a mirror without methods of its
// own, which msgpack decodes by reflection, field by field, as it decoded
// the messages themselves before they had a DecodeMsgpack.
type (
	plainStepBegin  StepBegin
	plainPosterior  Posterior
	plainLatent     Latent
	plainZGrad      ZGrad
	plainExpertGrad ExpertGrad
	plainBelief     Belief
)

// hotTypes are the types of the messages with a hand-written decoder.
var hotTypes = []string{TypeStepBegin, TypePosterior, TypeLatent, TypeZGrad, TypeExpertGrad, TypeBelief}

// plainOf is m as its mirror type, over the same memory.
func plainOf(m Message) any {
	switch m := m.(type) {
	case *StepBegin:
		return (*plainStepBegin)(m)
	case *Posterior:
		return (*plainPosterior)(m)
	case *Latent:
		return (*plainLatent)(m)
	case *ZGrad:
		return (*plainZGrad)(m)
	case *ExpertGrad:
		return (*plainExpertGrad)(m)
	case *Belief:
		return (*plainBelief)(m)
	}
	panic(fmt.Sprintf("no mirror of %T", m))
}

// reflectDecode decodes data into m by msgpack's reflection, as decode did
// before the hand-written decoders.
func reflectDecode(data []byte, m Message) error { return msgpack.Unmarshal(data, plainOf(m)) }

// hotDecode decodes data into m as Unmarshal does, on a pooled decoder.
func hotDecode(data []byte, m Message) error {
	x := decoders.Get()
	defer x.release()
	return x.decode(data, m)
}

var customDecoderType = reflect.TypeFor[msgpack.CustomDecoder]()

// TestHotDecodersInPlace: the six messages have their own decoder; their
// mirrors, Header (whose methods every message inherits), Term, TermGrad
// and Source have none, so that the mirrors decode by reflection.
func TestHotDecodersInPlace(t *testing.T) {
	for _, typ := range hotTypes {
		if !reflect.TypeOf(New(typ)).Implements(customDecoderType) {
			t.Errorf("%s has no DecodeMsgpack", typ)
		}
		if p := reflect.TypeOf(plainOf(New(typ))); p.Implements(customDecoderType) {
			t.Errorf("the mirror %s has a DecodeMsgpack: it would not decode by reflection", p)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[*Header](), reflect.TypeFor[*Term](), reflect.TypeFor[*TermGrad](), reflect.TypeFor[*Source]()} {
		if typ.Implements(customDecoderType) {
			t.Errorf("%s has a DecodeMsgpack", typ)
		}
	}
}

// ---- comparing messages ----

// sameValue reports whether a and b are equal, NaN equal to NaN. Lenient
// makes a nil slice or map equal to an empty one: a reused message keeps
// empty storage where a fresh one has none.
func sameValue(a, b reflect.Value, lenient bool) bool {
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y && math.Signbit(x) == math.Signbit(y) || x != x && y != y
	case reflect.Int, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint64:
		return a.Uint() == b.Uint()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Slice:
		if a.Len() != b.Len() || !lenient && a.IsNil() != b.IsNil() {
			return false
		}
		for i := range a.Len() {
			if !sameValue(a.Index(i), b.Index(i), lenient) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() || !lenient && a.IsNil() != b.IsNil() {
			return false
		}
		for _, k := range a.MapKeys() {
			if v := b.MapIndex(k); !v.IsValid() || !sameValue(a.MapIndex(k), v, lenient) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i), lenient) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem(), lenient)
	}
	panic("sameValue: unhandled kind " + a.Kind().String())
}

func sameMessage(a, b Message, lenient bool) bool {
	return sameValue(reflect.ValueOf(a), reflect.ValueOf(b), lenient)
}

// ---- crafting messages ----

// omap is a msgpack map of its key, value pairs in order (keys may repeat).
type omap []any

func (m omap) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(m) / 2); err != nil {
		return err
	}
	for _, v := range m {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// bin is a value that travels as msgpack bin rather than str.
type bin string

func (b bin) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.EncodeBytes([]byte(b)) }

// rawBytes is a value that travels as the bytes it is.
type rawBytes []byte

func (r rawBytes) EncodeMsgpack(enc *msgpack.Encoder) error {
	_, err := enc.Writer().Write(r)
	return err
}

func enc(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tensorOf is a tensor as it travels.
func tensorOf(shape []int, vals ...float32) []any {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = append(b, byte(math.Float32bits(v)), byte(math.Float32bits(v)>>8), byte(math.Float32bits(v)>>16), byte(math.Float32bits(v)>>24))
	}
	return []any{shape, b}
}

func hdrPairs(typ, from string) omap { return omap{"type", typ, "v", WireVersion, "from", from} }

func cat(ms ...omap) omap {
	var out omap
	for _, m := range ms {
		out = append(out, m...)
	}
	return out
}

func mustMarshalHot(t testing.TB, m Message) []byte {
	t.Helper()
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hotOf is the message of type typ among ms.
func hotOf(ms []Message, typ string) Message {
	for _, m := range ms {
		if m.MessageType() == typ {
			return m
		}
	}
	panic("no " + typ)
}

// craftedCases are inputs for every hot type, valid or not: field orders,
// the "Header" key, structs as arrays, nil where msgpack takes nil, keys
// given twice, bin strings, wrong types, long strings and keys.
func craftedCases(t testing.TB) []struct {
	name string
	data []byte
} {
	nan := float32(math.NaN())
	long := strings.Repeat("x", 100)
	longer := strings.Repeat("y", 70)
	mu := tensorOf([]int{2, 3}, 1, 2, 3, 4, 5, 6)
	lv := tensorOf([]int{2, 3}, 0, nan, 0, 0, 0, 0)
	post := cat(hdrPairs(TypePosterior, "vision"), omap{"step", 7, "t", -3, "mu", mu, "logvar", lv, "present", []bool{true, false}})
	term := omap{"s", []string{"vision", "audio"}, "r", []string{"audio"}}
	step := cat(hdrPairs(TypeStepBegin, "integrator"), omap{"step", uint64(9), "epoch", 2, "train", true, "ids", []uint64{4, 5},
		"plan", []any{term, omap{"s", []string{"audio"}, "r", nil}}, "lambda", omap{"vision", float32(0.5), "audio", 2}, "ckpt", true})
	latent := cat(hdrPairs(TypeLatent, "integrator"), omap{"step", 3, "members", []string{"audio", "vision"}, "z", []any{mu, nil, mu}})
	tg := omap{"term", 1, "dz", mu, "ll", tensorOf([]int{2}, -1, -2)}
	zgrad := cat(hdrPairs(TypeZGrad, "vision"), omap{"step", 3, "terms", []any{tg, []any{0, mu, tensorOf([]int{2}, 0, 0)}, nil}})
	egrad := cat(hdrPairs(TypeExpertGrad, "integrator"), omap{"step", 3, "dmu", mu, "dlogvar", lv})
	cases := []struct {
		name string
		v    any
	}{
		{"posterior", post},
		{"step", step},
		{"latent", latent},
		{"zgrad", zgrad},
		{"egrad", egrad},
		{"reversed", omap{"present", nil, "logvar", lv, "mu", mu, "from", "vision", "v", WireVersion, "type", TypePosterior}},
		{"Header key", cat(omap{"Header", omap{"type", TypeExpertGrad, "v", WireVersion, "from", "integrator"}}, egrad[6:])},
		{"Header key after the header", cat(egrad, omap{"Header", omap{"from", "other"}})},
		{"Header nil", cat(egrad, omap{"Header", nil})},
		{"Header array", cat(omap{"Header", []any{TypeLatent, 1, "integrator"}}, latent[6:])},
		{"Header array too short", cat(omap{"Header", []any{TypeLatent, 1}}, latent[6:])},
		// An array of two items, then one more: read as three, it would be
		// a whole header.
		{"Header array too short, then a string", cat(omap{"Header", rawBytes(append(enc(t, []any{TypeExpertGrad, 1}), enc(t, "integrator")...))}, egrad[6:])},
		{"Header not a struct", cat(egrad, omap{"Header", 3})},
		{"header as bin", cat(omap{"type", bin(TypeZGrad), "v", WireVersion, "from", bin("vision")}, zgrad[6:])},
		{"version nil", cat(omap{"type", TypeZGrad, "v", nil, "from", "vision"}, zgrad[6:])},
		{"version float", cat(omap{"type", TypeZGrad, "v", float64(WireVersion), "from", "vision"}, zgrad[6:])},
		{"sender nil", cat(omap{"type", TypeZGrad, "v", WireVersion, "from", nil}, zgrad[6:])},
		{"sender a number", cat(omap{"type", TypeZGrad, "v", WireVersion, "from", 5}, zgrad[6:])},
		{"sender long", cat(omap{"type", TypeZGrad, "v", WireVersion, "from", long}, zgrad[6:])},
		{"type long", cat(omap{"type", long, "v", WireVersion, "from", "vision"}, zgrad[6:])},
		{"posterior as array", []any{TypePosterior, 1, "vision", 7, -3, mu, lv, []bool{true, true}}},
		{"posterior as short array", []any{TypePosterior, 1, "vision", 7, -3, mu, lv}},
		{"egrad as array", []any{TypeExpertGrad, 1, "integrator", 3, mu, mu}},
		{"latent as array", []any{TypeLatent, 1, "integrator", 3, []string{"a"}, []any{mu}}},
		{"zgrad as array", []any{TypeZGrad, 1, "vision", 3, []any{tg}}},
		{"step as array", []any{TypeStepBegin, 1, "integrator", 1, 2, true, []int{1}, []any{term}, nil, false}},
		{"empty slices", omap{"ids", []int{}, "plan", []any{}, "present", []bool{}, "members", []string{}, "z", []any{}, "terms", []any{}, "lambda", omap{}}},
		{"nil slices", omap{"ids", nil, "plan", nil, "present", nil, "members", nil, "z", nil, "terms", nil, "lambda", nil}},
		{"empty array", []any{}},
		{"nil", nil},
		{"empty map", omap{}},
		{"a number", 42},
		{"ext", rawBytes{0xd4, 0x01, 0x80}},
		{"unknown keys", cat(omap{"x", []any{1, omap{"a", 2}}, nil, 3, "", "z", bin("dmu"), mu, long, 1}, egrad)},
		{"key a number", cat(omap{1, 2}, egrad)},
		{"key an array", cat(omap{[]int{1}, 2}, egrad)},
		{"keys twice", cat(step, omap{"plan", []any{omap{"r", []string{"text"}}}, "lambda", omap{"text", 1}, "ids", []int{-1}, "ckpt", nil})},
		{"plan twice, longer", cat(step, omap{"plan", []any{omap{"s", nil}, omap{}, term}})},
		{"plan nil", cat(step, omap{"plan", nil})},
		{"plan empty", cat(step[:len(step)-2], omap{"plan", []any{}})},
		{"plan term nil", cat(step, omap{"plan", []any{nil}})},
		{"plan term array", cat(step, omap{"plan", []any{[]any{[]string{"a"}, []string{"b", "c"}}}})},
		{"plan term array too long", cat(step, omap{"plan", []any{[]any{[]string{"a"}, []string{"b"}, 1}}})},
		{"plan term empty array", cat(step, omap{"plan", []any{[]any{}}})},
		{"plan names bin and nil", cat(step, omap{"plan", []any{omap{"s", []any{bin("vision"), nil, ""}}}})},
		{"plan name long", cat(step, omap{"plan", []any{omap{"s", []string{"vision", longer}}}})},
		{"plan name a number", cat(step, omap{"plan", []any{omap{"s", []any{"vision", 3}}}})},
		{"plan not an array", cat(step, omap{"plan", "x"})},
		{"ids of every integer", cat(step, omap{"ids", []any{nil, -1, int8(-5), uint8(200), uint16(60000), int32(-7), uint64(math.MaxUint64), int64(math.MinInt64)}})},
		{"ids nil", cat(step, omap{"ids", nil})},
		{"ids empty", cat(step, omap{"ids", []int{}})},
		{"ids a string", cat(step, omap{"ids", []any{1, "2"}})},
		{"ids a float", cat(step, omap{"ids", []any{1.5}})},
		{"epoch nil, train nil", cat(step, omap{"epoch", nil, "train", nil})},
		{"train a number", cat(step, omap{"train", 1})},
		{"lambda nil", cat(step, omap{"lambda", nil})},
		{"lambda empty", cat(step, omap{"lambda", omap{}})},
		{"lambda merged", cat(step, omap{"lambda", omap{"text", float32(3), "vision", nil}})},
		{"lambda keys bin, nil, long", cat(step, omap{"lambda", omap{bin("vision"), float32(1), nil, float32(2), long, float32(3)}})},
		{"lambda NaN", cat(step, omap{"lambda", omap{"vision", nan}})},
		{"lambda a double", cat(step, omap{"lambda", omap{"vision", 0.5}})},
		{"lambda a string", cat(step, omap{"lambda", omap{"vision", "1"}})},
		{"lambda key a number", cat(step, omap{"lambda", omap{1, float32(1)}})},
		{"lambda as ext", cat(step, omap{"lambda", rawBytes{0xd4, 0x01, 0x80}})},
		{"members nil", cat(latent, omap{"members", nil})},
		{"members twice", cat(latent, omap{"members", []string{"text"}})},
		{"members empty", cat(latent[:8], latent[10:], omap{"members", []string{}})},
		{"members bin", cat(latent, omap{"members", []any{bin("audio"), "vision", bin("")}})},
		{"z nil", cat(latent, omap{"z", nil})},
		{"z shorter", cat(latent, omap{"z", []any{mu}})},
		{"z not a tensor", cat(latent, omap{"z", []any{mu, 3}})},
		{"terms nil", cat(zgrad, omap{"terms", nil})},
		{"terms twice", cat(zgrad, omap{"terms", []any{omap{"term", 2}}})},
		{"term nil", cat(zgrad, omap{"terms", []any{omap{"term", nil, "dz", nil, "ll", nil}}})},
		{"term a string", cat(zgrad, omap{"terms", []any{omap{"term", "1"}}})},
		{"term array short", cat(zgrad, omap{"terms", []any{[]any{1, mu}}})},
		{"present nil", cat(post, omap{"present", nil})},
		{"present empty", cat(post, omap{"present", []bool{}})},
		{"present nils", cat(post, omap{"present", []any{nil, true}})},
		{"present a number", cat(post, omap{"present", []any{1}})},
		{"present shorter", cat(post, omap{"present", []bool{false}})},
		{"tensor nil", cat(post, omap{"mu", nil})},
		{"tensor bad dims", cat(post, omap{"mu", []any{[]any{2, "3"}, []byte{}}})},
		{"tensor not an array", cat(post, omap{"mu", "x"})},
		{"step negative", cat(post, omap{"step", -1, "t", uint64(math.MaxUint64)})},
		{"step a float", cat(post, omap{"step", 1.5})},
		{"step a string", cat(post, omap{"step", "1"})},
	}
	out := make([]struct {
		name string
		data []byte
	}, 0, len(cases)+12)
	for _, c := range cases {
		out = append(out, struct {
			name string
			data []byte
		}{c.name, enc(t, c.v)})
	}
	for i, ms := range [][]Message{hotMessages(1), hotMessages(2)} {
		for _, m := range ms {
			out = append(out, struct {
				name string
				data []byte
			}{fmt.Sprintf("%s %d", m.MessageType(), i+1), mustMarshalHot(t, m)})
		}
	}
	return out
}

// hotSeeds are valid messages of every hot type, golden and realistic, and
// the crafted cases.
func hotSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, typ := range hotTypes {
		if b, err := os.ReadFile(filepath.Join("testdata", typ+".golden")); err == nil {
			seeds = append(seeds, b)
		} else {
			t.Fatalf("golden %s: %v", typ, err)
		}
	}
	for _, c := range craftedCases(t) {
		seeds = append(seeds, c.data)
	}
	return seeds
}

// ---- the properties ----

// checkLikeReflection decodes data as a message of type typ with the
// hand-written decoder (on the pooled decoder and on a foreign one) and
// with msgpack's reflection, each into a fresh value: both must succeed or
// both fail, and succeeding they must agree exactly.
func checkLikeReflection(t *testing.T, typ string, data []byte) {
	t.Helper()
	if scan(data) != nil {
		return // Unmarshal refuses it before decoding; msgpack might allocate without bound
	}
	want := New(typ)
	werr := reflectDecode(data, want)
	for _, way := range []string{"pooled", "foreign"} {
		got := New(typ)
		var err error
		if way == "pooled" {
			err = hotDecode(data, got)
		} else {
			err = msgpack.Unmarshal(data, got)
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("%s, %s decoder: %x: error %v, reflection's %v", typ, way, data, err, werr)
		}
		if err == nil && !sameMessage(got, want, false) {
			t.Fatalf("%s, %s decoder: %x decodes to\n%#v\nreflection decodes it to\n%#v", typ, way, data, got, want)
		}
	}

	// Unmarshal accepts exactly what decodes and passes the checks.
	got := New(typ)
	err := Unmarshal(data, got, Expect{})
	ok := werr == nil && checkHeader(want.header(), typ) == nil && want.check(Expect{}) == nil
	if ok != (err == nil) {
		t.Fatalf("%s: Unmarshal(%x) = %v; reflection decodes it with %v, it checks %v", typ, data, err, werr, ok)
	}
	if err == nil && !sameMessage(got, want, false) {
		t.Fatalf("%s: Unmarshal(%x) gives\n%#v\nreflection\n%#v", typ, data, got, want)
	}
	var de *DecodeError
	if err != nil && !errors.As(err, &de) {
		t.Fatalf("%s: Unmarshal error %v is not a *DecodeError", typ, err)
	}
}

// checkReuse decodes data into reused (which holds an earlier message)
// with UnmarshalReuse and into a fresh value with Unmarshal: the two must
// agree, failing or not, but for nil against empty slices and maps, and
// reused must show nothing of what it held, not even its sender when the
// decoding fails.
func checkReuse(t *testing.T, reused Message, data []byte) {
	t.Helper()
	typ := reused.MessageType()
	before := reused.header().Sender
	fresh := New(typ)
	ferr := Unmarshal(data, fresh, Expect{})
	err := UnmarshalReuse("", data, reused, Expect{})
	if (err == nil) != (ferr == nil) {
		t.Fatalf("%s: %x: reusing a value: %v; a fresh one: %v", typ, data, err, ferr)
	}
	if err != nil {
		var de, fde *DecodeError
		if !errors.As(err, &de) || !errors.As(ferr, &fde) || *de != *fde && err.Error() != ferr.Error() {
			t.Fatalf("%s: %x: reusing a value: %v; a fresh one: %v", typ, data, err, ferr)
		}
		if de.Sender != fde.Sender {
			t.Fatalf("%s: %x: the error names %q reusing a value that held a message of %q, %q decoding fresh", typ, data, de.Sender, before, fde.Sender)
		}
	}
	if !sameMessage(reused, fresh, true) {
		t.Fatalf("%s: %x (error %v): decoding into a value that held a message of %q gives\n%#v\ninto a fresh one\n%#v", typ, data, err, before, reused, fresh)
	}
}

// TestHotDecodeMatchesReflection: every crafted input, as every hot type.
func TestHotDecodeMatchesReflection(t *testing.T) {
	cases := craftedCases(t)
	for _, typ := range hotTypes {
		for _, c := range cases {
			t.Run(typ+"/"+c.name, func(t *testing.T) { checkLikeReflection(t, typ, c.data) })
		}
	}
	// And the crafted cases decode as meant: those of the right type
	// and valid are accepted.
	for _, c := range cases {
		h, err := PeekHeader(c.data)
		if err != nil || New(h.Type) == nil {
			continue
		}
		if strings.HasPrefix(c.name, "serket.") || c.name == "Header key" || c.name == "reversed" || c.name == "posterior as array" {
			if err := Unmarshal(c.data, New(h.Type), Expect{}); err != nil && !errors.Is(err, ErrNotFinite) {
				t.Errorf("%s refused: %v", c.name, err)
			}
		}
	}
}

// TestUnmarshalReuseSequence decodes messages of changing shapes, names and
// faults into one value per type: each decoding gives what decoding into a
// fresh value gives.
func TestUnmarshalReuseSequence(t *testing.T) {
	const B, D = 6, 4
	step := func(from string, ids int, lambda map[string]float32, plan ...Term) *StepBegin {
		m := &StepBegin{Header: Header{Sender: from, Run: runOf(ids)}, Step: uint64(ids), Epoch: ids % 3, Train: ids%2 == 0, Lambda: lambda, Plan: plan}
		for i := range ids {
			m.IDs = append(m.IDs, uint64(i*ids))
		}
		return m
	}
	term := func(s, r string) Term {
		t := Term{Subset: strings.Fields(s)}
		if r != "" {
			t.Targets = strings.Fields(r)
		}
		return t
	}
	post := func(from string, b int, present bool) *Posterior {
		m := &Posterior{Header: Header{Sender: from}, Step: uint64(b), Time: int64(b), Mu: hotMat(b, D, float32(b), 1), LogVar: hotMat(b, D, 0, -1)}
		if present {
			for i := range b {
				m.Present = append(m.Present, i%2 == 0)
			}
		}
		return m
	}
	zgrad := func(from string, b int, terms ...int) *ZGrad {
		m := &ZGrad{Header: Header{Sender: from}, Step: uint64(b)}
		for _, i := range terms {
			m.Terms = append(m.Terms, TermGrad{Term: i, DZ: hotMat(b, D, float32(i), 1), LogLik: Vector(hotMat(1, b, -1, -1).Data)})
		}
		return m
	}
	egrad := func(b int) *ExpertGrad {
		return &ExpertGrad{Header: Header{Sender: "integrator"}, Step: uint64(b), DMu: hotMat(b, D, 1, 1), DLogVar: hotMat(b, D, -1, 1)}
	}
	three := []Term{term("vision audio language", "vision audio language"), term("vision", "vision language"), term("audio language", "audio")}
	sequences := map[string][]any{
		TypeStepBegin: {
			step("integrator", B, map[string]float32{"vision": 0.5, "language": 2}, three...),
			step("integrator", B, map[string]float32{"vision": 0.25, "language": 1}, three...),
			step("integrator", 2, map[string]float32{"audio": 1}, three[:1]...),                        // smaller, other keys, fewer terms
			step("integrator", 9, nil, term("text", ""), term("a b c d e", "e d c b a"), three[2]),     // no lambda, names change
			step("other", 1, map[string]float32{"text": 3, "vision": 0.5, "audio": 1}, term("x", "y")), // another sender
			step("integrator", B, map[string]float32{"vision": 0.5, "language": 2}, three...),
			step("integrator", B, map[string]float32{"visiom": 0.5, "languagf": 2}, // names of the same lengths
				term("visiom audio languagf", "vision audix language"), term("vision", "visiom language"), term("audio languagf", "audio")),
			omap{"type", TypeStepBegin, "v", WireVersion, "from", "integrator", "plan", []any{omap{"s", []string{"vision"}}}, "ids", []int{1}},
			[]byte{0xc1},                // refused by the scan
			omap{"type", TypeStepBegin}, // no sender
			step("integrator", B, map[string]float32{"vision": 0.5, "language": 2}, three...),
			omap{"type", TypeStepBegin, "v", WireVersion, "from", "integrator", "ids", []any{1, "x", 3}, "plan", []any{omap{"s", []string{"vision"}}}}, // fails in ids
			step("integrator", B, map[string]float32{"vision": 0.5, "language": 2}, three...),
			omap{"type", TypeStepBegin, "v", WireVersion, "from", "integrator", "ids", []int{1}, "plan", []any{omap{"s", []any{"a", 1}}, omap{}, omap{}}}, // fails in a name
			step("integrator", B, map[string]float32{"vision": 0.5, "language": 2}, three...),
			omap{"type", TypeStepBegin, "v", WireVersion, "from", "integrator", "ids", []int{1}, "plan", []any{omap{"r", []string{"vision"}}, omap{"s", nil}, nil}}, // no subsets
			step("integrator", B, map[string]float32{"vision": 0.5, "language": 2}, three...),
			omap{"type", TypeStepBegin, "v", 2, "from", "integrator", "ids", []int{1}}, // wrong version
			omap{"type", TypeStepBegin, "v", WireVersion, "from", "integrator", "ids", []int{1, 2}, "plan", []any{omap{"s", []string{"vision"}}}, "lambda", omap{"vision", "x"}},
		},
		TypePosterior: {
			post("vision", B, true), post("vision", B, true), post("vision", 2, false), post("audio", 9, true), post("audio", 1, true),
			omap{"type", TypePosterior, "v", WireVersion, "from", "vision", "present", []any{true, 3}},
			post("vision", B, true),
			omap{"type", TypePosterior, "v", WireVersion, "from", "vision", "mu", []any{[]any{2, "x"}, []byte{}}},
			post("vision", B, true),
			[]byte{0x81, 0xa4, 'f', 'r', 'o', 'm'}, // truncated
		},
		TypeLatent: latentSequence(B, D),
		TypeZGrad: {
			zgrad("vision", B, 0, 1, 2), zgrad("vision", B, 0, 1, 2), zgrad("vision", 2, 1), zgrad("audio", 9, 0, 1, 2, 3), zgrad("audio", 1),
			zgrad("vision", B, 0, 1, 2),
			omap{"type", TypeZGrad, "v", WireVersion, "from", "vision", "terms", []any{omap{"term", 1}, omap{"term", "x"}}},
		},
		TypeExpertGrad: {egrad(B), egrad(B), egrad(2), egrad(9), egrad(1), omap{"dmu", nil}, egrad(B), []byte{}},
		TypeBelief:     beliefSequence(D),
	}
	for _, typ := range hotTypes {
		t.Run(typ, func(t *testing.T) {
			reused := New(typ)
			for i, v := range sequences[typ] {
				var data []byte
				switch v := v.(type) {
				case Message:
					data = mustMarshalHot(t, v)
				case []byte:
					data = v
				default:
					data = enc(t, v)
				}
				t.Logf("message %d", i)
				checkReuse(t, reused, data)
				checkLikeReflection(t, typ, data)
			}
		})
	}
}

// beliefSequence is TestUnmarshalReuseSequence's Beliefs: changing sources
// (more, fewer, renamed, of the same lengths), a prior and a concept on and
// off, and faults.
func beliefSequence(D int) []any {
	belief := func(seq int, prior string, concept int32, sources string) *Belief {
		m := &Belief{Header: Header{Sender: "integrator"}, Seq: uint64(seq), Time: int64(seq) * 1e6, Mu: hotMat(1, D, float32(seq), 0.5),
			LogVar: hotMat(1, D, -1, 0.01), Prior: prior, Concept: concept}
		for i, s := range strings.Fields(sources) {
			m.Sources = append(m.Sources, Source{Module: s, AgeNs: int64(seq*1000 + i)})
		}
		return m
	}
	return []any{
		belief(1, "", 0, "audio language vision"), belief(2, "", 0, "audio language vision"), belief(3, "concept", 4, "audio vision"),
		belief(4, "concept", -1, "audix languagf vision touch"), belief(5, "", 0, ""), belief(6, "concepu", 2, "vision"),
		omap{"type", TypeBelief, "v", WireVersion, "from", "integrator", "src", []any{omap{"m", "vision"}, omap{"age", 5}}}, // a source without a module, one without an age
		belief(7, "", 0, "audio language vision"),
		omap{"type", TypeBelief, "v", WireVersion, "from", "integrator", "src", []any{omap{"m", "vision", "age", "x"}}}, // fails in an age
		belief(8, "concept", 1, "audio language vision"),
		omap{"type", TypeBelief, "v", WireVersion, "from", "integrator", "src", []any{nil, omap{"m", 3}}}, // a nil source, then a bad name
		omap{"type", TypeBelief, "v", WireVersion, "from", "integrator", "c", int64(1) << 40},             // a concept past int32
		[]byte{0x81, 0xa3, 's', 'r', 'c'},                                                                 // truncated
	}
}

// latentSequence is TestUnmarshalReuseSequence's Latents: changing members,
// batches and terms, row weights on and off, and faults.
func latentSequence(B, D int) []any {
	latent := func(members string, b, terms int) *Latent {
		m := &Latent{Header: Header{Sender: "integrator"}, Step: uint64(b), Members: strings.Fields(members)}
		for i := range terms {
			m.Z = append(m.Z, hotMat(b, D, float32(i), 0.5))
		}
		return m
	}
	weighed := func(m *Latent) *Latent { // row weights for every term but the last
		for i := range m.Z {
			w := Tensor{}
			if i < len(m.Z)-1 {
				w = Vector(hotMat(1, m.Z[i].Rows(), 0, 1/float32(m.Z[i].Rows())).Data)
			}
			m.W = append(m.W, w)
		}
		return m
	}
	return []any{
		latent("audio language vision", B, 3), latent("audio language vision", B, 3), latent("audix languagf vision", B, 3),
		latent("vision", 2, 1),
		latent("text audio language vision", 9, 4), latent("", 1, 0),
		latent("audio language vision", B, 3),
		omap{"type", TypeLatent, "v", WireVersion, "from", "integrator", "members", []any{"a", 2}},
		latent("audio language vision", B, 3),
		omap{"type", TypeLatent, "v", WireVersion, "from", "integrator", "z", []any{tensorOf([]int{1, 1}, 0), "x"}},
		weighed(latent("audio language vision", B, 3)), latent("audio language vision", B, 3), // weights, then none
		weighed(latent("audio language vision", B, 3)), weighed(latent("vision", 2, 2)),
		omap{"type", TypeLatent, "v", WireVersion, "from", "integrator", "z", []any{tensorOf([]int{1, 1}, 0)}, "w", []any{"x"}},
	}
}

// TestUnmarshalReuseNoAllocs: once a value has held a message of the same
// shape, decoding a realistic step's message into it allocates nothing,
// whether the message is the same or has other values.
func TestUnmarshalReuseNoAllocs(t *testing.T) {
	first, second := hotMessages(1), hotMessages(2)
	for _, typ := range hotTypes {
		t.Run(typ, func(t *testing.T) {
			a, b := mustMarshalHot(t, hotOf(first, typ)), mustMarshalHot(t, hotOf(second, typ))
			m := New(typ)
			if err := UnmarshalReuse("", a, m, Expect{Latent: 32, Batch: 100}); err != nil {
				t.Fatal(err)
			}
			for _, data := range [][]byte{a, b} {
				n := testing.AllocsPerRun(100, func() {
					if err := UnmarshalReuse("", data, m, Expect{Latent: 32, Batch: 100}); err != nil {
						t.Fatal(err)
					}
				})
				if n != 0 {
					t.Errorf("UnmarshalReuse: %v allocations per message, want 0", n)
				}
			}
			alternate := 0
			n := testing.AllocsPerRun(100, func() {
				alternate ^= 1
				if err := UnmarshalReuse("", [][]byte{a, b}[alternate], m, Expect{}); err != nil {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Errorf("UnmarshalReuse of alternating messages: %v allocations per message, want 0", n)
			}
			want := New(typ)
			if err := Unmarshal(b, want, Expect{}); err != nil {
				t.Fatal(err)
			}
			if !sameMessage(m, want, false) {
				t.Errorf("decoding reusing the value gave\n%+v\nwant\n%+v", m, want)
			}
		})
	}
}

// TestUnmarshalReuseKeepsStrings: the strings of a reused message are those
// it held where equal, new ones where not.
func TestUnmarshalReuseKeepsStrings(t *testing.T) {
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	first := hotMessages(1)
	step := New(TypeStepBegin).(*StepBegin)
	if err := UnmarshalReuse("", mustMarshalHot(t, hotOf(first, TypeStepBegin)), step, Expect{}); err != nil {
		t.Fatal(err)
	}
	if step.Type != TypeStepBegin || !same(step.Type, TypeStepBegin) {
		t.Errorf("type %q is not the constant", step.Type)
	}
	sender, name, target := step.Sender, step.Plan[1].Subset[0], step.Plan[2].Targets[0]
	var key string
	for k := range step.Lambda {
		key = k
	}
	next := hotOf(hotMessages(2), TypeStepBegin).(*StepBegin)
	next.Plan[2].Subset[1] = "langwich" // the length of "language"
	if err := UnmarshalReuse("", mustMarshalHot(t, next), step, Expect{}); err != nil {
		t.Fatal(err)
	}
	var key2 string
	for k := range step.Lambda {
		if k == key {
			key2 = k
		}
	}
	if !same(step.Sender, sender) || !same(step.Plan[1].Subset[0], name) || !same(step.Plan[2].Targets[0], target) || !same(key2, key) {
		t.Errorf("equal strings were allocated again")
	}
	if step.Plan[2].Subset[1] != "langwich" || !sameMessage(step, next, false) {
		t.Errorf("decoded %+v, want %+v", step, next)
	}

	lat := New(TypeLatent).(*Latent)
	msg := hotOf(first, TypeLatent).(*Latent)
	if err := UnmarshalReuse("", mustMarshalHot(t, msg), lat, Expect{}); err != nil {
		t.Fatal(err)
	}
	kept := lat.Members[2]
	msg.Members[1] = "langwich"
	if err := UnmarshalReuse("", mustMarshalHot(t, msg), lat, Expect{}); err != nil {
		t.Fatal(err)
	}
	if !same(lat.Members[2], kept) || lat.Members[1] != "langwich" {
		t.Errorf("members %q", lat.Members)
	}
}

// TestUnmarshalReuseNoStaleSender: an error names the sender of the message
// refused, never that of the message the value held.
func TestUnmarshalReuseNoStaleSender(t *testing.T) {
	long := strings.Repeat("z", 1<<20+100) // read in more than one piece
	for _, typ := range hotTypes {
		t.Run(typ, func(t *testing.T) {
			good := mustMarshalHot(t, hotOf(hotMessages(1), typ))
			m := New(typ)
			for _, tt := range []struct {
				name   string
				data   []byte
				max    int
				sender string
				field  string
			}{
				{"garbage", []byte{0xc1}, 0, "", ""},
				{"too large", make([]byte, DefaultMaxBytes+1), 0, "", ""},
				{"not a map", []byte{0x93, 1, 2, 3}, 0, "", ""},
				{"no sender", enc(t, omap{"type", typ, "v", WireVersion}), 0, "", "from"},
				{"wrong version", enc(t, omap{"type", typ, "v", 3, "from", "vision"}), 0, "vision", "v"},
				{"sender too long", enc(t, omap{"type", typ, "v", WireVersion, "from", strings.Repeat("a", 33)}), 0, strings.Repeat("a", 33), "from"},
				{"sender of a megabyte", enc(t, omap{"type", typ, "v", WireVersion, "from", long}), 2 << 20, long, "from"},
				{"bad field", enc(t, omap{"type", typ, "v", WireVersion, "from", "text", numberKey(typ), "x"}), 0, "text", ""},
			} {
				if err := UnmarshalReuse("", good, m, Expect{}); err != nil {
					t.Fatal(err)
				}
				err := UnmarshalReuse("subj", tt.data, m, Expect{MaxBytes: tt.max})
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("%s: error %v", tt.name, err)
				}
				if de.Sender != tt.sender || de.Field != tt.field || m.header().Sender != tt.sender {
					t.Errorf("%s: error from %.40q field %q, message from %.40q; want %.40q, %q", tt.name, de.Sender, de.Field, m.header().Sender, tt.sender, tt.field)
				}
			}
		})
	}
}

// numberKey is the key of a number field of a message of type typ.
func numberKey(typ string) string {
	if typ == TypeBelief {
		return "seq"
	}
	return "step"
}

// TestHotLongStrings: a name longer than a valid one is decoded (by
// allocating) and refused by the checks, at its field.
func TestHotLongStrings(t *testing.T) {
	long := strings.Repeat("n", 100)
	plan := func(name string) omap {
		return omap{"type", TypeStepBegin, "v", WireVersion, "from", "integrator", "ids", []int{1}, "plan", []any{omap{"s", []string{"vision", name}}}}
	}
	tests := []struct {
		name  string
		data  []byte
		msg   Message
		field string
	}{
		{"plan name", enc(t, plan(long)), &StepBegin{}, "plan[0].s[1]"},
		{"plan name of 64 bytes", enc(t, plan(strings.Repeat("n", 64))), &StepBegin{}, "plan[0].s[1]"},
		{"plan name of 65 bytes", enc(t, plan(strings.Repeat("n", 65))), &StepBegin{}, "plan[0].s[1]"},
		{"member", enc(t, omap{"type", TypeLatent, "v", WireVersion, "from", "integrator", "members", []string{long}}), &Latent{}, "members[0]"},
		{"lambda key", enc(t, cat(plan("audio"), omap{"lambda", omap{long, float32(1)}})), &StepBegin{}, "lambda"},
		{"type", enc(t, omap{"type", long, "v", WireVersion, "from", "vision"}), &Posterior{}, "type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLikeReflection(t, tt.msg.MessageType(), tt.data)
			err := UnmarshalReuse("", tt.data, tt.msg, Expect{})
			var de *DecodeError
			if !errors.As(err, &de) || de.Field != tt.field || !errors.Is(err, ErrField) && !errors.Is(err, ErrType) {
				t.Fatalf("error %v, want one at field %s", err, tt.field)
			}
		})
	}
	// A key too long for any field is skipped.
	egrad := hotOf(hotMessages(1), TypeExpertGrad).(*ExpertGrad)
	data := enc(t, omap{long, []int{1}, "type", TypeExpertGrad, "v", WireVersion, "from", "integrator", "dmu", tensorOf([]int{1, 1}, 1), "dlogvar", tensorOf([]int{1, 1}, 1)})
	if err := UnmarshalReuse("", data, egrad, Expect{}); err != nil {
		t.Fatalf("a long unknown key: %v", err)
	}
}

// FuzzHotDecode holds the hand-written decoders to msgpack's reflection
// decoder on any input, as every hot type, and decoding into a value that
// held a message to decoding into a fresh one.
func FuzzHotDecode(f *testing.F) {
	for _, s := range hotSeeds(f) {
		f.Add(s)
	}
	var held [][]byte
	for _, typ := range hotTypes {
		held = append(held, mustMarshalHot(f, hotOf(hotMessages(1), typ)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for i, typ := range hotTypes {
			checkLikeReflection(t, typ, data)
			m := New(typ)
			if err := UnmarshalReuse("", held[i], m, Expect{}); err != nil {
				t.Fatal(err)
			}
			checkReuse(t, m, data)
			checkReuse(t, m, bytes.Clone(held[i])) // and back
		}
	})
}

// ---- realistic messages, and the benchmark ----

// hotMat is a rows×cols tensor whose elements are start, start+step, ….
func hotMat(rows, cols int, start, step float32) Tensor {
	d := make([]float32, rows*cols)
	for i := range d {
		d[i] = start + float32(i)*step
	}
	return Matrix(rows, cols, d)
}

// hotMessages are realistic messages of a training step (batch 100, latent
// 32, a plan of 3 terms, a lambda of 2 entries, 3 members) and a belief of
// three sources; v varies the values, not the shapes or names.
func hotMessages(v int) []Message {
	const B, D = 100, 32
	f := float32(v)
	ids := make([]uint64, B)
	present := make([]bool, B)
	for i := range ids {
		ids[i] = uint64(1000*v + i)
		present[i] = (i+v)%5 != 0
	}
	return []Message{
		&StepBegin{Header: Header{Sender: "integrator", Run: runOf(v)}, Step: uint64(v), Epoch: v / 10, Train: v%2 == 0, IDs: ids,
			Plan: []Term{
				{Subset: []string{"vision", "audio", "language"}, Targets: []string{"vision", "audio", "language"}},
				{Subset: []string{"vision"}, Targets: []string{"vision", "language"}},
				{Subset: []string{"audio", "language"}, Targets: []string{"audio"}},
			},
			Lambda: map[string]float32{"vision": 0.01 * f, "language": 0.5}},
		&Posterior{Header: Header{Sender: "vision", Run: runOf(v)}, Step: uint64(v), Time: int64(v) * 1e9,
			Mu: hotMat(B, D, f, 0.001), LogVar: hotMat(B, D, -f, 0.0005), Present: present},
		&Latent{Header: Header{Sender: "integrator", Run: runOf(v + 1)}, Step: uint64(v), Members: []string{"audio", "language", "vision"},
			Z: []Tensor{hotMat(B, D, f, 0.01), hotMat(B, D, -f, 0.01), hotMat(B, D, f, -0.01)}},
		&ZGrad{Header: Header{Sender: "vision"}, Step: uint64(v), Terms: []TermGrad{
			{Term: 0, DZ: hotMat(B, D, f, 0.001), LogLik: Vector(hotMat(1, B, -f, 0.1).Data)},
			{Term: 1, DZ: hotMat(B, D, -f, 0.001), LogLik: Vector(hotMat(1, B, -f, 0.2).Data)},
		}},
		&ExpertGrad{Header: Header{Sender: "integrator"}, Step: uint64(v), DMu: hotMat(B, D, f, 0.002), DLogVar: hotMat(B, D, f, -0.002)},
		&Belief{Header: Header{Sender: "integrator"}, Seq: uint64(v), Time: int64(v) * 1e9, Mu: hotMat(1, D, f, 0.01), LogVar: hotMat(1, D, -f, 0.01),
			Sources: []Source{{Module: "audio", AgeNs: int64(v)}, {Module: "language", AgeNs: 2 * int64(v)}, {Module: "vision", AgeNs: 3}}, Prior: "concept", Concept: int32(v % 5)},
	}
}

// BenchmarkUnmarshalReuse decodes each training-step message into the value
// the previous one of its type was decoded into.
func BenchmarkUnmarshalReuse(b *testing.B) {
	first, second := hotMessages(1), hotMessages(2)
	for i := range first {
		name := first[i].MessageType()
		data := [2][]byte{}
		for j, m := range []Message{first[i], second[i]} {
			var err error
			if data[j], err = Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name[len("serket."):], func(b *testing.B) {
			into := New(name)
			if err := UnmarshalReuse("", data[1], into, Expect{}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data[0])))
			b.ReportAllocs()
			j := 0
			for b.Loop() {
				if err := UnmarshalReuse("", data[j], into, Expect{}); err != nil {
					b.Fatal(err)
				}
				j ^= 1
			}
		})
	}
}

// runOf is the session token of message v: one session, as in a run,
// and none for every third v (messages outside training have none).
func runOf(v int) string {
	if v%3 == 0 {
		return ""
	}
	return "0123456789abcdef0123456789abcdef"
}
