package bus_test

import (
	"bytes"
	"encoding/binary"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/serket-go/serket/bus"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// hdr is a complete header as Marshal fills it in, so that an example
// compares deep-equal with its decoding.
func hdr(typ, sender string) bus.Header {
	return bus.Header{Type: typ, Version: bus.WireVersion, Sender: sender}
}

// session is the session token of the training messages' examples.
const session = "5e55104a0123456789abcdef00000001"

// trainHdr is hdr of a training message of the example session.
func trainHdr(typ, sender string) bus.Header {
	h := hdr(typ, sender)
	h.Run = session
	return h
}

// mat is a rows×cols tensor whose elements are start, start+step, ….
func mat(rows, cols int, start, step float32) bus.Tensor {
	d := make([]float32, rows*cols)
	for i := range d {
		d[i] = start + float32(i)*step
	}
	return bus.Matrix(rows, cols, d)
}

// example is one fully populated message of a type.
type example struct {
	name string // the message type string, also the golden file's name
	msg  bus.Message
}

// examples returns a fresh, fully populated example of every message type.
// Every value is deterministic and every map has a single key, so the
// encoding is deterministic. Tensors are 2×3 (B=2, D=3) unless the message
// needs one row.
func examples() []example {
	ms := []bus.Message{
		&bus.StepBegin{
			Header: trainHdr(bus.TypeStepBegin, "integrator"),
			Step:   42, Epoch: 3, Train: true,
			IDs: []uint64{7, 9},
			Plan: []bus.Term{
				{Subset: []string{"vision", "audio"}, Targets: []string{"vision"}, From: []string{"audio"}},
				{Subset: []string{"audio"}, Targets: []string{"audio", "vision"}},
			},
			Lambda: map[string]float32{"audio": 0.5},
			Beta:   0.75,
		},
		&bus.Posterior{
			Header: trainHdr(bus.TypePosterior, "vision"),
			Step:   42, Time: 1_700_000_000_000_000_000,
			Mu:      mat(2, 3, 1, 1),       // 1 2 3 / 4 5 6
			LogVar:  mat(2, 3, -0.5, 0.25), // -0.5 … 0.75
			Present: []bool{true, false},
		},
		&bus.Latent{
			Header:  trainHdr(bus.TypeLatent, "integrator"),
			Step:    42,
			Members: []string{"audio", "vision"},
			Z:       []bus.Tensor{mat(2, 3, 0.5, 0.5), mat(2, 3, -1, -0.125)},
			W:       []bus.Tensor{bus.Vector([]float32{0.5, 0}), bus.Vector([]float32{1, 0.25})},
		},
		&bus.ZGrad{
			Header: trainHdr(bus.TypeZGrad, "vision"),
			Step:   42,
			Terms: []bus.TermGrad{
				{Term: 0, DZ: mat(2, 3, 0.01, 0.01), LogLik: bus.Vector([]float32{-12.5, -7.25})},
				{Term: 1, DZ: mat(2, 3, -0.02, 0.005), LogLik: bus.Vector([]float32{-3, -4})},
			},
		},
		&bus.ExpertGrad{
			Header:  trainHdr(bus.TypeExpertGrad, "integrator"),
			Step:    42,
			DMu:     mat(2, 3, 0.1, 0.1),
			DLogVar: mat(2, 3, -0.3, 0.05),
		},
		&bus.InferRequest{
			Header:       hdr(bus.TypeInferRequest, "client"),
			Observations: map[string]bus.Payload{"vision": {Type: "image/png", Data: []byte{0x89, 'P', 'N', 'G'}}},
			Want:         []string{"audio", "text"},
			Samples:      4,
			Seed:         -17,
		},
		&bus.InferReply{
			Header:       hdr(bus.TypeInferReply, "integrator"),
			Mu:           mat(1, 3, 0.25, 0.25),
			LogVar:       mat(1, 3, -2, 0.5),
			Z:            mat(2, 3, 1.5, -0.5),
			Contributors: []string{"vision"},
			Missing:      map[string]string{"audio": "no observation"},
			Outputs: map[string][]bus.Payload{"text": {
				{Type: "text/plain; charset=utf-8", Data: []byte("a cat")},
				{Type: "text/plain; charset=utf-8", Data: []byte("a dog")},
			}},
			Prior:   "concept",
			Concept: []int32{7, 3},
		},
		&bus.EncodeRequest{
			Header: hdr(bus.TypeEncodeRequest, "integrator"),
			Observations: []bus.Payload{
				{Type: "image/png", Data: []byte{1, 2, 3}},
			},
			IDs: []uint64{70001},
		},
		&bus.EncodeReply{
			Header:  hdr(bus.TypeEncodeReply, "vision"),
			Mu:      mat(2, 3, 3, -1),
			LogVar:  mat(2, 3, 0, -0.25),
			Present: []bool{true, false},
		},
		&bus.DecodeRequest{
			Header: hdr(bus.TypeDecodeRequest, "integrator"),
			Z:      mat(2, 3, 0.75, 0.125),
		},
		&bus.DecodeReply{
			Header: hdr(bus.TypeDecodeReply, "text"),
			Outputs: []bus.Payload{
				{Type: "text/plain; charset=utf-8", Data: []byte("one")},
				{Type: "text/plain; charset=utf-8", Data: []byte("two")},
			},
		},
		&bus.Belief{
			Header: hdr(bus.TypeBelief, "integrator"),
			Seq:    1001, Time: 1_700_000_000_500_000_000,
			Mu:      mat(1, 3, -1, 1),
			LogVar:  mat(1, 3, -3, 1),
			Sources: []bus.Source{{Module: "vision", AgeNs: 1_500_000}, {Module: "audio", AgeNs: 0}},
			Prior:   "concept", Concept: 7,
		},
		&bus.FeatureRequest{
			Header: hdr(bus.TypeFeatureRequest, "eval"),
			IDs:    []uint64{3, 60001},
			Z:      mat(1, 3, 0.5, -0.25),
		},
		&bus.FeatureReply{
			Header:  hdr(bus.TypeFeatureReply, "vision"),
			X:       mat(3, 4, 0, 0.125),
			Present: []bool{true, false, true},
		},
		&bus.ScoreRequest{
			Header: hdr(bus.TypeScoreRequest, "eval"),
			IDs:    []uint64{11},
			Z:      mat(2, 3, 1, 0.5),
		},
		&bus.ScoreReply{
			Header:  hdr(bus.TypeScoreReply, "vision"),
			LL:      bus.Vector([]float32{-541.5, -538.25}),
			Present: []bool{true},
		},
		&bus.Control{
			Header: trainHdr(bus.TypeControl, "integrator"),
			Op:     bus.OpRestore, ID: "00112233445566778899aabbccddeeff", Step: 400, Adopt: true, Frozen: true,
		},
		&bus.RunState{
			Header: hdr(bus.TypeRunState, "vision"),
			ID:     "00112233445566778899aabbccddeeff", Step: 400, Instance: "Zq3xGvJHa1bO0LUWqz9xCd", Keeps: true, Err: "no checkpoint of that step",
		},
		&bus.PriorRequest{
			Header: trainHdr(bus.TypePriorRequest, "integrator"),
			Step:   42, Train: true,
			Terms: []bus.Evidence{{Prec: mat(2, 3, 0, 0.5), Shift: mat(2, 3, -1, 0.25)}},
		},
		&bus.PriorReply{
			Header: trainHdr(bus.TypePriorReply, "concept"),
			Step:   42,
			Terms: []bus.PriorTerm{{Mu: mat(2, 3, 0.5, 0.5), LogVar: mat(2, 3, -2, 0.25),
				Concept: []int32{7, -1}, Prob: bus.Vector([]float32{0.875, 0.5})}},
			Learned: true,
		},
		&bus.TrainProgress{
			Header: hdr(bus.TypeTrainProgress, "integrator"),
			ID:     "00112233445566778899aabbccddeeff", Step: 360, Epoch: 2, Epochs: 5, Progress: 0.6,
			Steps: 12, Items: 1200, ELBO: -512.25, JointELBO: -180.5, KL: 20.125,
			LogLik: map[string]float64{"vision": -150.75}, Beta: 0.5, SamplesPerSec: 1150.5,
			Missed:   map[string]int32{"audio": 3},
			EpochEnd: true, Tested: true, TestELBO: -190.25, TestKL: 19.5,
			TestLogLik: map[string]float64{"vision": -160.125},
		},
	}
	out := make([]example, len(ms))
	for i, m := range ms {
		out[i] = example{name: m.MessageType(), msg: m}
	}
	return out
}

// exampleOf returns the example of one message type.
func exampleOf(t testing.TB, typ string) bus.Message {
	t.Helper()
	for _, ex := range examples() {
		if ex.name == typ {
			return ex.msg
		}
	}
	t.Fatalf("no example of %s", typ)
	return nil
}

// mustMarshal encodes m or fails the test.
func mustMarshal(t testing.TB, m bus.Message) []byte {
	t.Helper()
	b, err := bus.Marshal(m)
	if err != nil {
		t.Fatalf("Marshal(%s): %v", m.MessageType(), err)
	}
	return b
}

// newOf returns an empty message of the type of m.
func newOf(t testing.TB, m bus.Message) bus.Message {
	t.Helper()
	n := bus.New(m.MessageType())
	if n == nil {
		t.Fatalf("New(%q) = nil", m.MessageType())
	}
	return n
}

// headerOf returns the header embedded in m.
func headerOf(m bus.Message) bus.Header {
	return reflect.ValueOf(m).Elem().FieldByName("Header").Interface().(bus.Header)
}

func goldenPath(typ string) string { return filepath.Join("testdata", typ+".golden") }

func TestExamplesCoverEveryType(t *testing.T) {
	types := []string{
		bus.TypeStepBegin, bus.TypePosterior, bus.TypeLatent, bus.TypeZGrad,
		bus.TypeExpertGrad, bus.TypeInferRequest, bus.TypeInferReply,
		bus.TypeEncodeRequest, bus.TypeEncodeReply, bus.TypeDecodeRequest,
		bus.TypeDecodeReply, bus.TypeBelief, bus.TypeControl, bus.TypeRunState,
		bus.TypeFeatureRequest, bus.TypeFeatureReply, bus.TypeScoreRequest, bus.TypeScoreReply,
		bus.TypePriorRequest, bus.TypePriorReply, bus.TypeTrainProgress,
	}
	seen := map[string]bool{}
	for _, ex := range examples() {
		if seen[ex.name] {
			t.Errorf("two examples of %s", ex.name)
		}
		seen[ex.name] = true
		if got := bus.New(ex.name); reflect.TypeOf(got) != reflect.TypeOf(ex.msg) {
			t.Errorf("New(%q) = %T, want %T", ex.name, got, ex.msg)
		}
	}
	for _, typ := range types {
		if !seen[typ] {
			t.Errorf("no example of %s", typ)
		}
	}
	if len(seen) != len(types) {
		t.Errorf("%d examples, want %d", len(seen), len(types))
	}
	if got := bus.New("serket.nonsense"); got != nil {
		t.Errorf("New(unknown) = %T, want nil", got)
	}
}

// TestExamplesFullyPopulated: every field of every example is set, so the
// golden files pin the encoding of every field (a field added to a message
// must be added to its example too).
func TestExamplesFullyPopulated(t *testing.T) {
	for _, ex := range examples() {
		v := reflect.ValueOf(ex.msg).Elem()
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Errorf("%s: field %s of the example is zero", ex.name, v.Type().Field(i).Name)
			}
		}
	}
}

// TestGolden pins the wire encoding of every message type: the encoding of
// each example must equal its golden file byte for byte, and the golden file
// must decode to the example. Run with -update to rewrite the files after a
// deliberate change of the wire format (which is a wire version bump).
func TestGolden(t *testing.T) {
	for _, ex := range examples() {
		t.Run(ex.name, func(t *testing.T) {
			got := mustMarshal(t, ex.msg)
			path := goldenPath(ex.name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./bus -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoding differs from %s:\n got %x\nwant %x", path, got, want)
			}

			// The other direction: the golden bytes decode to the example.
			dec := newOf(t, ex.msg)
			if err := bus.Unmarshal(want, dec, bus.Expect{}); err != nil {
				t.Fatalf("Unmarshal(%s): %v", path, err)
			}
			if !reflect.DeepEqual(dec, ex.msg) {
				t.Errorf("%s decodes to\n%+v\nwant\n%+v", path, dec, ex.msg)
			}
			if h, err := bus.PeekHeader(want); err != nil || h != headerOf(ex.msg) {
				t.Errorf("PeekHeader = %+v, %v; want %+v", h, err, headerOf(ex.msg))
			}
		})
	}
}

// TestTensorWireBytes checks, against bytes written out by hand, that a
// tensor travels as [shape, little-endian float32 bytes] inside the message.
func TestTensorWireBytes(t *testing.T) {
	golden, err := os.ReadFile(goldenPath(bus.TypePosterior))
	if err != nil {
		t.Fatal(err)
	}
	// "mu": fixstr 2, then fixarray 2 [fixarray 2 [2, 3], bin8 24 bytes].
	mu := []byte{
		0xa2, 'm', 'u',
		0x92, 0x92, 0x02, 0x03, 0xc4, 0x18,
		0x00, 0x00, 0x80, 0x3f, // 1.0
		0x00, 0x00, 0x00, 0x40, // 2.0
		0x00, 0x00, 0x40, 0x40, // 3.0
		0x00, 0x00, 0x80, 0x40, // 4.0
		0x00, 0x00, 0xa0, 0x40, // 5.0
		0x00, 0x00, 0xc0, 0x40, // 6.0
	}
	if !bytes.Contains(golden, mu) {
		t.Errorf("posterior encoding %x\ndoes not hold mu as %x", golden, mu)
	}

	// The same for logvar, built with encoding/binary rather than by hand.
	lv := []byte{0xa6, 'l', 'o', 'g', 'v', 'a', 'r', 0x92, 0x92, 0x02, 0x03, 0xc4, 0x18}
	for _, v := range []float32{-0.5, -0.25, 0, 0.25, 0.5, 0.75} {
		lv = binary.LittleEndian.AppendUint32(lv, math.Float32bits(v))
	}
	if !bytes.Contains(golden, lv) {
		t.Errorf("posterior encoding %x\ndoes not hold logvar as %x", golden, lv)
	}

	// A single known value in a fresh message: -1.5 is 0xbfc00000.
	b := mustMarshal(t, &bus.DecodeRequest{Header: bus.Header{Sender: "integrator"}, Z: bus.Matrix(1, 1, []float32{-1.5})})
	z := []byte{0xa1, 'z', 0x92, 0x92, 0x01, 0x01, 0xc4, 0x04, 0x00, 0x00, 0xc0, 0xbf}
	if !bytes.HasSuffix(b, z) {
		t.Errorf("decode request %x does not end in z as %x", b, z)
	}
}

// TestMarshalDeterministic guards the golden files: encoding one message
// many times gives the same bytes (maps hold a single key).
func TestMarshalDeterministic(t *testing.T) {
	for _, ex := range examples() {
		t.Run(ex.name, func(t *testing.T) {
			first := mustMarshal(t, ex.msg)
			for range 20 {
				if b := mustMarshal(t, ex.msg); !bytes.Equal(b, first) {
					t.Fatalf("encodings differ:\n%x\n%x", first, b)
				}
			}
		})
	}
}
