package bus_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/serket-go/serket/bus"
)

// seed is one seed input of a fuzz target.
type seed struct {
	name     string
	data     []byte
	mustFail bool // Unmarshal must refuse it
}

// fuzzSeeds is the golden encoding of typ and corrupted variants of it.
func fuzzSeeds(t testing.TB, typ string) []seed {
	t.Helper()
	good, err := os.ReadFile(goldenPath(typ))
	if err != nil {
		good = mustMarshal(t, exampleOf(t, typ))
	}
	seeds := []seed{
		{name: "golden", data: good},
		{name: "empty", data: []byte{}, mustFail: true},
		{name: "half", data: good[:len(good)/2], mustFail: true},
		{name: "last byte missing", data: good[:len(good)-1], mustFail: true},
	}

	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 0xff
	seeds = append(seeds, seed{name: "middle byte flipped", data: flip})

	if i := bytes.Index(good, []byte{0xa1, 'v', bus.WireVersion}); i >= 0 {
		other := bytes.Clone(good)
		other[i+2] = bus.WireVersion + 1
		seeds = append(seeds, seed{name: "another version", data: other, mustFail: true})
	}
	if i := bytes.Index(good, []byte{0xc4}); i >= 0 && i+6 <= len(good) && good[i+1] >= 4 {
		// A NaN in the first tensor, or in the first payload's data.
		nan := bytes.Clone(good)
		copy(nan[i+2:], []byte{0x00, 0x00, 0xc0, 0x7f})
		seeds = append(seeds, seed{name: "first bin NaN", data: nan})
	}
	if i := bytes.Index(good, []byte{0xc4}); i >= 0 && i+2 <= len(good) && good[i+1] > 0 {
		short := bytes.Clone(good)
		short[i+1]--
		seeds = append(seeds, seed{name: "first bin a byte short", data: short, mustFail: true})
	}
	more := bytes.Clone(good)
	more[0]++
	seeds = append(seeds, seed{name: "map claims one more entry", data: more, mustFail: true})
	return seeds
}

// fuzzMessage is the property every decodable type must have: Unmarshal
// never panics and either fails with a *DecodeError or yields a message that
// Marshal accepts and that survives another round trip unchanged.
func fuzzMessage(f *testing.F, typ string) {
	if bus.New(typ) == nil {
		f.Fatalf("New(%q) = nil", typ)
	}
	for _, s := range fuzzSeeds(f, typ) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := bus.New(typ)
		if err := bus.Unmarshal(data, m, bus.Expect{}); err != nil {
			var de *bus.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Unmarshal error %v (%T) is not a *DecodeError", err, err)
			}
			if de.Type != typ {
				t.Fatalf("DecodeError.Type = %q, want %q", de.Type, typ)
			}
			return
		}
		b, err := bus.Marshal(m)
		if err != nil {
			t.Fatalf("Unmarshal accepted %x as %+v, but Marshal refuses it: %v", data, m, err)
		}
		m2 := bus.New(typ)
		if err := bus.Unmarshal(b, m2, bus.Expect{}); err != nil {
			t.Fatalf("re-encoding %x of %+v refused: %v", b, m, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\nfirst  %+v\nsecond %+v", m, m2)
		}
		b2, err := bus.Marshal(m2)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not stable: %x then %x (%v)", b, b2, err)
		}
	})
}

func FuzzStepBegin(f *testing.F)      { fuzzMessage(f, bus.TypeStepBegin) }
func FuzzPosterior(f *testing.F)      { fuzzMessage(f, bus.TypePosterior) }
func FuzzLatent(f *testing.F)         { fuzzMessage(f, bus.TypeLatent) }
func FuzzZGrad(f *testing.F)          { fuzzMessage(f, bus.TypeZGrad) }
func FuzzExpertGrad(f *testing.F)     { fuzzMessage(f, bus.TypeExpertGrad) }
func FuzzInferRequest(f *testing.F)   { fuzzMessage(f, bus.TypeInferRequest) }
func FuzzInferReply(f *testing.F)     { fuzzMessage(f, bus.TypeInferReply) }
func FuzzEncodeRequest(f *testing.F)  { fuzzMessage(f, bus.TypeEncodeRequest) }
func FuzzEncodeReply(f *testing.F)    { fuzzMessage(f, bus.TypeEncodeReply) }
func FuzzDecodeRequest(f *testing.F)  { fuzzMessage(f, bus.TypeDecodeRequest) }
func FuzzDecodeReply(f *testing.F)    { fuzzMessage(f, bus.TypeDecodeReply) }
func FuzzBelief(f *testing.F)         { fuzzMessage(f, bus.TypeBelief) }
func FuzzControl(f *testing.F)        { fuzzMessage(f, bus.TypeControl) }
func FuzzRunState(f *testing.F)       { fuzzMessage(f, bus.TypeRunState) }
func FuzzFeatureRequest(f *testing.F) { fuzzMessage(f, bus.TypeFeatureRequest) }
func FuzzFeatureReply(f *testing.F)   { fuzzMessage(f, bus.TypeFeatureReply) }
func FuzzScoreRequest(f *testing.F)   { fuzzMessage(f, bus.TypeScoreRequest) }
func FuzzScoreReply(f *testing.F)     { fuzzMessage(f, bus.TypeScoreReply) }
func FuzzPriorRequest(f *testing.F)   { fuzzMessage(f, bus.TypePriorRequest) }
func FuzzPriorReply(f *testing.F)     { fuzzMessage(f, bus.TypePriorReply) }
func FuzzTrainProgress(f *testing.F)  { fuzzMessage(f, bus.TypeTrainProgress) }

// TestFuzzSeeds makes sure the seeds are what they claim: the golden
// encoding is accepted and the corrupted ones that must fail do.
func TestFuzzSeeds(t *testing.T) {
	for _, ex := range examples() {
		t.Run(ex.name, func(t *testing.T) {
			seeds := fuzzSeeds(t, ex.name)
			if len(seeds) < 7 {
				t.Errorf("only %d seeds", len(seeds))
			}
			if err := bus.Unmarshal(seeds[0].data, newOf(t, ex.msg), bus.Expect{}); err != nil {
				t.Errorf("golden seed refused: %v", err)
			}
			for _, s := range seeds[1:] {
				if err := bus.Unmarshal(s.data, newOf(t, ex.msg), bus.Expect{}); s.mustFail && err == nil {
					t.Errorf("seed %q (%x) accepted", s.name, s.data)
				}
			}
		})
	}
}
