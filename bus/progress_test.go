package bus

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// plainTrainProgress is TrainProgress without its EncodeMsgpack, which
// msgpack encodes by reflection.
type plainTrainProgress TrainProgress

// progressReport is a report as the integrator sends it mid-epoch.
func progressReport() *TrainProgress {
	return &TrainProgress{Header: Header{Sender: "integrator"}, ID: "0123456789abcdef0123456789abcdef",
		Step: 1 << 40, Epoch: 3, Epochs: 10, Progress: 0.35, Steps: 7, Items: 700,
		ELBO: -512.5, JointELBO: -300.25, KL: 12.5, LogLik: map[string]float64{"vision": -288.125}, Beta: 0.25,
		SamplesPerSec: 1234.5, Missed: map[string]int32{"language": 7}}
}

// TestTrainProgressEncodesAsReflection: the hand-written encoder writes
// the bytes msgpack's reflection writes for the same report (one key a
// map, so that reflection's order is the keys' order), for reports as
// sent and with the nil, empty and extreme fields a sender may leave.
func TestTrainProgressEncodesAsReflection(t *testing.T) {
	end := progressReport()
	end.Steps, end.EpochEnd, end.Tested, end.TestELBO, end.TestKL = 0, true, true, -190, 19.5
	end.TestLogLik, end.Missed, end.LogLik = map[string]float64{"a": math.SmallestNonzeroFloat64}, map[string]int32{}, map[string]float64{}
	extreme := &TrainProgress{Header: Header{Sender: "integrator", Run: "ff"}, Step: math.MaxUint64, Epoch: math.MaxInt32, Epochs: math.MaxInt32,
		Progress: 1, Steps: math.MaxInt32, Items: math.MaxInt64, ELBO: -math.MaxFloat64, KL: math.MaxFloat64, Beta: 1e6}
	for i, m := range []*TrainProgress{progressReport(), end, extreme, {Header: Header{Sender: "i"}, Epochs: 1, Steps: 1}} {
		got, err := MarshalAppend(nil, m, 0)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		want, err := msgpack.Marshal((*plainTrainProgress)(m)) // the header was filled by MarshalAppend
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d: the hand-written encoding differs from reflection's\n got %x\nwant %x", i, got, want)
		}
		var back TrainProgress
		if err := Unmarshal(got, &back, Expect{}); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

// TestTrainProgressMapsInKeyOrder: a report of many modules encodes one
// way only, and decodes back whole.
func TestTrainProgressMapsInKeyOrder(t *testing.T) {
	m := progressReport()
	m.LogLik, m.EpochEnd, m.Tested, m.TestLogLik = map[string]float64{}, true, true, map[string]float64{}
	for i := range MaxModules {
		name := fmt.Sprintf("m%02d", i)
		m.LogLik[name], m.TestLogLik[name] = -float64(i), float64(i)/8
	}
	first, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if b, _ := Marshal(m); !bytes.Equal(b, first) {
			t.Fatalf("two encodings of one report differ:\n%x\n%x", first, b)
		}
	}
	var back TrainProgress
	if err := Unmarshal(first, &back, Expect{}); err != nil || len(back.LogLik) != MaxModules || back.LogLik["m63"] != -63 || back.TestLogLik["m08"] != 1 {
		t.Fatalf("decoded %v, %v (%v); want the 64 modules' figures", back.LogLik, back.TestLogLik, err)
	}
}

// TestTrainProgressEncodingDoesNotAllocate: a report encodes into a
// reused buffer without allocating.
func TestTrainProgressEncodingDoesNotAllocate(t *testing.T) {
	m := progressReport()
	m.LogLik = map[string]float64{"audio": -1, "language": -2, "vision": -3}
	buf, err := MarshalAppend(nil, m, DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(50, func() { buf, _ = MarshalAppend(buf[:0], m, DefaultMaxBytes) }); n != 0 {
		t.Errorf("%v allocations per MarshalAppend, want 0", n)
	}
}

// TestTrainProgressCheck: a report that would draw a false curve (or
// break a reader) is refused, naming the field at fault, on both sides.
func TestTrainProgressCheck(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tooMany := map[string]float64{}
	for i := range MaxModules + 1 {
		tooMany[fmt.Sprintf("m%d", i)] = 0
	}
	tests := []struct {
		name      string
		edit      func(m *TrainProgress)
		wantField string // "" if valid
		wantErr   error
	}{
		{name: "as sent", edit: func(m *TrainProgress) {}},
		{name: "no run id", edit: func(m *TrainProgress) { m.ID = "" }},
		{name: "epoch end of no step", edit: func(m *TrainProgress) { m.Steps, m.Items, m.EpochEnd, m.Missed = 0, 0, true, nil }},
		{name: "evaluated", edit: func(m *TrainProgress) {
			m.EpochEnd, m.Tested, m.TestELBO, m.TestLogLik = true, true, -3, map[string]float64{"vision": -2}
		}},
		{name: "progress 0 and 1", edit: func(m *TrainProgress) { m.Progress = 1 }},
		{name: "run id not a token", edit: func(m *TrainProgress) { m.ID = "RUN" }, wantField: "id", wantErr: ErrField},
		{name: "no epochs", edit: func(m *TrainProgress) { m.Epochs = 0 }, wantField: "epochs", wantErr: ErrField},
		{name: "negative epoch", edit: func(m *TrainProgress) { m.Epoch = -1 }, wantField: "epoch", wantErr: ErrField},
		{name: "progress over 1", edit: func(m *TrainProgress) { m.Progress = 1.5 }, wantField: "p", wantErr: ErrField},
		{name: "progress NaN", edit: func(m *TrainProgress) { m.Progress = nan }, wantField: "p", wantErr: ErrField},
		{name: "no step mid-epoch", edit: func(m *TrainProgress) { m.Steps = 0 }, wantField: "steps", wantErr: ErrField},
		{name: "negative steps", edit: func(m *TrainProgress) { m.Steps, m.EpochEnd = -1, true }, wantField: "steps", wantErr: ErrField},
		{name: "negative items", edit: func(m *TrainProgress) { m.Items = -1 }, wantField: "items", wantErr: ErrField},
		{name: "ELBO NaN", edit: func(m *TrainProgress) { m.ELBO = nan }, wantField: "elbo", wantErr: ErrNotFinite},
		{name: "joint ELBO -Inf", edit: func(m *TrainProgress) { m.JointELBO = -inf }, wantField: "joint", wantErr: ErrNotFinite},
		{name: "KL Inf", edit: func(m *TrainProgress) { m.KL = inf }, wantField: "kl", wantErr: ErrNotFinite},
		{name: "samples/s Inf", edit: func(m *TrainProgress) { m.SamplesPerSec = inf }, wantField: "sps", wantErr: ErrNotFinite},
		{name: "negative samples/s", edit: func(m *TrainProgress) { m.SamplesPerSec = -1 }, wantField: "sps", wantErr: ErrField},
		{name: "test ELBO NaN", edit: func(m *TrainProgress) { m.TestELBO = nan }, wantField: "test_elbo", wantErr: ErrNotFinite},
		{name: "test KL Inf", edit: func(m *TrainProgress) { m.TestKL = inf }, wantField: "test_kl", wantErr: ErrNotFinite},
		{name: "beta NaN", edit: func(m *TrainProgress) { m.Beta = float32(nan) }, wantField: "beta", wantErr: ErrField},
		{name: "negative beta", edit: func(m *TrainProgress) { m.Beta = -1 }, wantField: "beta", wantErr: ErrField},
		{name: "log-likelihood of a bad name", edit: func(m *TrainProgress) { m.LogLik["Vision"] = 1 }, wantField: "ll", wantErr: ErrField},
		{name: "log-likelihood NaN", edit: func(m *TrainProgress) { m.LogLik["audio"], m.LogLik["zz"] = nan, inf }, wantField: "ll.audio", wantErr: ErrNotFinite},
		{name: "log-likelihoods of too many", edit: func(m *TrainProgress) { m.LogLik = tooMany }, wantField: "ll", wantErr: ErrTooLarge},
		{name: "test log-likelihood Inf", edit: func(m *TrainProgress) {
			m.EpochEnd, m.Tested, m.TestLogLik = true, true, map[string]float64{"vision": -inf}
		}, wantField: "test_ll.vision", wantErr: ErrNotFinite},
		{name: "missed more steps than it has", edit: func(m *TrainProgress) { m.Missed = map[string]int32{"audio": 8} }, wantField: "missed.audio", wantErr: ErrField},
		{name: "missed no step", edit: func(m *TrainProgress) { m.Missed = map[string]int32{"audio": 0} }, wantField: "missed.audio", wantErr: ErrField},
		{name: "missed by a bad name", edit: func(m *TrainProgress) { m.Missed = map[string]int32{"a.b": 1} }, wantField: "missed", wantErr: ErrField},
		{name: "evaluated mid-epoch", edit: func(m *TrainProgress) { m.Tested = true }, wantField: "tested", wantErr: ErrField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := progressReport()
			tt.edit(m)
			_, err := Marshal(m)
			checkFieldError(t, "Marshal", err, tt.wantField, tt.wantErr)

			// The receiver refuses what a sender without the check sends.
			m.Header = Header{Type: TypeTrainProgress, Version: WireVersion, Sender: "integrator"}
			data, merr := msgpack.Marshal((*plainTrainProgress)(m))
			if merr != nil {
				t.Fatal(merr)
			}
			var back TrainProgress
			checkFieldError(t, "Unmarshal", UnmarshalFrom("serket.v2.default.train.progress", data, &back, Expect{}), tt.wantField, tt.wantErr)
		})
	}
}

func checkFieldError(t *testing.T, op string, err error, field string, sentinel error) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Errorf("%s: %v, want no error", op, err)
		}
		return
	}
	var de *DecodeError
	if !errors.As(err, &de) || de.Field != field || !errors.Is(err, sentinel) || de.Type != TypeTrainProgress {
		t.Errorf("%s: %v, want a %s error of field %s", op, err, sentinel, field)
	}
}
