package bus

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// hotEncodeCases are step begins, latents, posteriors and beliefs as they
// are sent, and with the nil and empty fields a sender may leave (one
// lambda key at most, so that the encoding is deterministic).
func hotEncodeCases() []Message {
	ids := make([]uint64, 100)
	for i := range ids {
		ids[i] = uint64(i) * 1e9 // beyond the short forms too
	}
	z := Matrix(100, 32, make([]float32, 3200))
	present := make([]bool, 100)
	for i := range present {
		present[i] = i%3 != 0
	}
	return []Message{
		&StepBegin{Header: Header{Sender: "integrator", Run: "0123456789abcdef0123456789abcdef"}, Step: 1 << 40, Epoch: 300, Train: true, IDs: ids,
			Plan: []Term{{Subset: []string{"audio", "language", "vision"}, Targets: []string{"audio", "language", "vision"}, From: []string{"language"}},
				{Subset: []string{"vision"}, Targets: []string{"vision"}}},
			Lambda: map[string]float32{"language": 0.5}, Beta: 0.25},
		&StepBegin{Header: Header{Sender: "integrator"}, IDs: []uint64{7}, Plan: []Term{{Subset: []string{"a"}}}},
		&StepBegin{Header: Header{Sender: "integrator"}, IDs: []uint64{7}, Plan: []Term{{Subset: []string{"a"}, Targets: []string{}}}, Lambda: map[string]float32{}},
		&Latent{Header: Header{Sender: "integrator", Run: "ff"}, Step: 12, Members: []string{"audio", "vision"}, Z: []Tensor{z, z}},
		&Latent{Header: Header{Sender: "integrator"}, Step: 12},
		&Latent{Header: Header{Sender: "integrator"}, Step: 12, Members: []string{}, Z: []Tensor{}},
		&Posterior{Header: Header{Sender: "vision", Run: "ff"}, Step: 1 << 40, Time: -5, Mu: z, LogVar: z, Present: present},
		&Posterior{Header: Header{Sender: "vision"}, Time: 1 << 62, Mu: Matrix(1, 2, []float32{1, 2}), LogVar: Matrix(1, 2, []float32{0, -1})},
		&Posterior{Header: Header{Sender: "vision"}, Mu: Matrix(1, 1, []float32{3}), LogVar: Matrix(1, 1, []float32{0}), Present: []bool{false}},
		&Belief{Header: Header{Sender: "integrator"}, Seq: 3, Time: 1<<40 + 1, Mu: Matrix(1, 2, []float32{1, 2}), LogVar: Matrix(1, 2, []float32{0, -1}),
			Sources: []Source{{Module: "audio", AgeNs: 12}, {Module: "vision", AgeNs: 1 << 40}}, Prior: "concept", Concept: 7},
		&Belief{Header: Header{Sender: "integrator"}, Mu: Matrix(1, 1, []float32{1}), LogVar: Matrix(1, 1, []float32{0}), Concept: -1, Sources: []Source{}},
		&Belief{Header: Header{Sender: "integrator"}, Mu: Matrix(1, 1, []float32{1}), LogVar: Matrix(1, 1, []float32{0}), Prior: "concept"},
	}
}

// plainOfEncoded is m as its mirror type (no EncodeMsgpack of its own).
func plainOfEncoded(m Message) any {
	switch m := m.(type) {
	case *StepBegin:
		return (*plainStepBegin)(m)
	case *Latent:
		return (*plainLatent)(m)
	case *Posterior:
		return (*plainPosterior)(m)
	case *Belief:
		return (*plainBelief)(m)
	}
	panic("no mirror")
}

// TestHotEncodersMatchReflection: the hand-written encoders write exactly
// the bytes msgpack's reflection writes for the same message.
func TestHotEncodersMatchReflection(t *testing.T) {
	for i, m := range hotEncodeCases() {
		got, err := MarshalAppend(nil, m, 0)
		if err != nil {
			t.Fatalf("case %d (%T): %v", i, m, err)
		}
		want, err := msgpack.Marshal(plainOfEncoded(m)) // the header was filled by MarshalAppend
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d (%T): the hand-written encoding differs from reflection's\n got %x\nwant %x", i, m, got, want)
		}
	}
}

// TestStepBeginEncodingIsStable: the weights go in key order, so one step
// begin always encodes to the same bytes.
func TestStepBeginEncodingIsStable(t *testing.T) {
	m := &StepBegin{Header: Header{Sender: "integrator"}, IDs: []uint64{1}, Plan: []Term{{Subset: []string{"a"}}},
		Lambda: map[string]float32{"vision": 1, "audio": 2, "language": 3, "touch": 4, "a": 5}}
	first, err := MarshalAppend(nil, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if b, _ := MarshalAppend(nil, m, 0); !bytes.Equal(b, first) {
			t.Fatalf("two encodings of one step begin differ:\n%x\n%x", first, b)
		}
	}
	var back StepBegin
	if err := Unmarshal(first, &back, Expect{}); err != nil || len(back.Lambda) != 5 || back.Lambda["touch"] != 4 {
		t.Fatalf("decoded %v (%v), want the five weights", back.Lambda, err)
	}
}

// TestHotEncodersDoNotAllocate: sending a step's begin, latents or a
// posterior, or a belief, into a reused buffer allocates nothing.
func TestHotEncodersDoNotAllocate(t *testing.T) {
	for i, m := range hotEncodeCases() {
		buf, err := MarshalAppend(nil, m, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(50, func() { buf, _ = MarshalAppend(buf[:0], m, 0) }); n != 0 {
			t.Errorf("case %d (%T): %v allocations per MarshalAppend, want 0", i, m, n)
		}
	}
}
