package foreign_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/foreign"
	"github.com/serket-go/serket/module/moduletest"
	"github.com/serket-go/serket/modules/toy"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(serveChild())
	}
	os.Exit(m.Run())
}

// startToy starts the test binary as a child serving the toy, with extra
// environment (a misbehaviour), closed when t ends.
func startToy(t *testing.T, cfg foreign.Config, env ...string) (*foreign.Module, error) {
	t.Helper()
	cfg.Command = []string{os.Args[0], "-test.run=^$"}
	cfg.Env = append(append(os.Environ(), envChild+"=1"), env...)
	if cfg.Hello.Name == "" {
		cfg.Hello = foreign.Hello{Name: "left", Latent: 3}
	}
	m, err := foreign.Start(cfg)
	if err == nil {
		t.Cleanup(m.Close)
	}
	return m, err
}

var toyInputs = []bus.Payload{
	{Type: "text/plain", Data: []byte("1, 2, 3, 4, 5")},
	{Type: "text/plain; charset=utf-8", Data: []byte("[0 0 0 0 -1.5e0]")},
}

// TestConformance: the toy behind the adapter passes the conformance
// suite every Go modality passes: shapes, finite differences, learning,
// checkpoints, parsing, the wire.
func TestConformance(t *testing.T) {
	moduletest.Run(t, moduletest.Config{
		New: func() (module.Modality, error) {
			return startToy(t, foreign.Config{})
		},
		BadIDs: []uint64{100, 1 << 40},
		Inputs: toyInputs,
		BadInputs: []bus.Payload{
			{Type: "text/plain", Data: []byte("1, 2, 3")},
			{Type: "text/plain", Data: []byte("1, 2, x, 4, 5")},
		},
	})
}

// TestSameAnswersAsInProcess: through the pipe, the toy encodes, decodes
// and learns to the same bits as the toy called directly.
func TestSameAnswersAsInProcess(t *testing.T) {
	m, err := startToy(t, foreign.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := toy.New(toy.Config{Name: "left", Dim: 5, Latent: 3, Seed: 1, DataSeed: 7, Items: 100, Missing: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	ids := []uint64{3, 1, 4, 1, 5, 9, 2, 6}
	for step := range 3 {
		got, want := encodeDecodeLearn(t, m, ids), encodeDecodeLearn(t, ref, ids)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("step %d: value %d is %v through the pipe, %v in process", step, i, got[i], want[i])
			}
		}
	}
}

// encodeDecodeLearn runs one training step's calls and returns what they
// gave: the posterior, the log-likelihoods and dz.
func encodeDecodeLearn(t *testing.T, m module.Modality, ids []uint64) []float32 {
	t.Helper()
	x, present, err := m.(module.Loader).LoadBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	b, d := len(ids), m.Spec().Latent
	mu, lv := make([]float32, b*d), make([]float32, b*d)
	if err := m.Encode(x, mu, lv); err != nil {
		t.Fatal(err)
	}
	w, ll, dz := make([]float32, b), make([]float32, b), make([]float32, b*d)
	for i := range w {
		if present[i] {
			w[i] = 1
		}
	}
	if err := m.Decode(mu, x, w, ll, dz); err != nil {
		t.Fatal(err)
	}
	if err := m.(module.Learner).Learn(dz, lv); err != nil {
		t.Fatal(err)
	}
	return append(append(append(mu, lv...), ll...), dz...)
}

// TestCapabilitiesAreTheChildsOwn: a child that declares only some
// capabilities has only those, as module.As sees it.
func TestCapabilitiesAreTheChildsOwn(t *testing.T) {
	m, err := startToy(t, foreign.Config{}, "FOREIGN_CAPS=load,save")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := module.As[module.Loader](m); !ok {
		t.Error("a child serving load is no Loader")
	}
	if _, ok := module.As[module.Saver](m); !ok {
		t.Error("a child serving save is no Saver")
	}
	for name, has := range map[string]bool{
		"Learner":  is[module.Learner](m),
		"Parser":   is[module.Parser](m),
		"Renderer": is[module.Renderer](m),
		"Featurer": is[module.Featurer](m),
		"Scorer":   is[module.Scorer](m),
	} {
		if has {
			t.Errorf("a child that does not declare it is a %s", name)
		}
	}
	x, _, err := m.LoadBatch([]uint64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := x.(module.Picker); ok {
		t.Error("a batch of a child that does not serve pick is a Picker")
	}
}

func is[T any](m any) bool { _, ok := module.As[T](m); return ok }

// TestKeepWithholdsRows: a row the pairing mask withholds is absent, even
// when the child ignores the mask.
func TestKeepWithholdsRows(t *testing.T) {
	m, err := startToy(t, foreign.Config{Keep: func(id uint64) bool { return id%2 == 0 }}, "FOREIGN_IGNORE_KEEP=1")
	if err != nil {
		t.Fatal(err)
	}
	ids := []uint64{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	_, present, err := m.LoadBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i, id := range ids {
		if present[i] && id%2 == 1 {
			t.Errorf("item %d is present though the mask withholds it", id)
		}
		if present[i] {
			kept++
		}
	}
	if kept == 0 {
		t.Error("no item is present: the check proves nothing")
	}
}

// TestErrorRepliesFailOnlyTheCall: a call the child refuses, or answers
// with NaN, fails with an error naming the module, and the child serves
// the next call.
func TestErrorRepliesFailOnlyTheCall(t *testing.T) {
	for _, how := range []string{"error", "nan"} {
		t.Run(how, func(t *testing.T) {
			m, err := startToy(t, foreign.Config{}, envMisbehave+"="+how+":encode")
			if err != nil {
				t.Fatal(err)
			}
			x, _, err := m.LoadBatch([]uint64{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			mu, lv := make([]float32, 6), make([]float32, 6)
			err = m.Encode(x, mu, lv)
			if err == nil || !strings.Contains(err.Error(), "module left") || !strings.Contains(err.Error(), "encode") {
				t.Fatalf("encode: %v, want an error naming the module and the call", err)
			}
			if _, _, err := m.LoadBatch([]uint64{3}); err != nil {
				t.Errorf("after a failed call the child serves no more: %v", err)
			}
			if m.Err() != nil {
				t.Errorf("the module failed: %v", m.Err())
			}
		})
	}
}

// TestDecodeManyRefusesBadReplies: a decode_many reply of the wrong size
// fails the module, like any reply of the wrong shape; one with a NaN is
// refused (the step cannot use it) with the module left serving.
func TestDecodeManyRefusesBadReplies(t *testing.T) {
	for _, tc := range []struct {
		how, want string
		fails     bool
	}{
		{"short", "wrong shape", true},
		{"nan", "not finite", false},
	} {
		t.Run(tc.how, func(t *testing.T) {
			m, err := startToy(t, foreign.Config{}, envMisbehave+"="+tc.how+":decode_many")
			if err != nil {
				t.Fatal(err)
			}
			x, _, err := m.LoadBatch([]uint64{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			const n, d, terms = 2, 3, 2
			var zs, ws, lls, dzs [][]float32
			for range terms {
				zs, ws = append(zs, make([]float32, n*d)), append(ws, []float32{1, 1})
				lls, dzs = append(lls, make([]float32, n)), append(dzs, make([]float32, n*d))
			}
			err = module.DecodeTerms(m, zs, x, ws, lls, dzs)
			if err == nil || !strings.Contains(err.Error(), "decode_many") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode_many: %v, want an error naming the call and %q", err, tc.want)
			}
			if failed := m.Err() != nil; failed != tc.fails {
				t.Errorf("after the reply the module has failed: %v (%v), want %v", failed, m.Err(), tc.fails)
			}
		})
	}
}

// TestBrokenChildFails: a child that breaks the protocol, exits or hangs
// fails the module: the call and every later one return an error naming
// the module and saying what it did, Done is closed, and Err says why.
func TestBrokenChildFails(t *testing.T) {
	for _, tc := range []struct{ how, want string }{
		{"garbage", "not a msgpack map"},
		{"huge", "frame of 2147483647 bytes"},
		{"exit", "exiting on purpose"}, // its stderr, quoted
		{"hang", "no reply to encode within"},
		{"seq", "a reply to request 999"},
		{"short", "wrong shape"},
	} {
		t.Run(tc.how, func(t *testing.T) {
			m, err := startToy(t, foreign.Config{CallTimeout: 2 * time.Second}, envMisbehave+"="+tc.how+":encode")
			if err != nil {
				t.Fatal(err)
			}
			x, _, err := m.LoadBatch([]uint64{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			err = m.Encode(x, make([]float32, 6), make([]float32, 6))
			if err == nil || !strings.Contains(err.Error(), "module left") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("encode: %v, want an error naming the module and %q", err, tc.want)
			}
			select {
			case <-m.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("Done is not closed")
			}
			if m.Err() == nil {
				t.Error("Err is nil after the child failed")
			}
			if _, _, err := m.LoadBatch([]uint64{1}); err == nil {
				t.Error("a failed child still answers")
			}
		})
	}
}

// TestHandshakeRefusesAWrongSpec: a child whose spec is not the one the
// pipeline asks for, or a program that is not there, does not start.
func TestHandshakeRefusesAWrongSpec(t *testing.T) {
	if _, err := startToy(t, foreign.Config{Hello: foreign.Hello{Name: "left", Latent: 3, Private: 4}}); err == nil || !strings.Contains(err.Error(), "private latent") {
		t.Errorf("a private latent the child does not keep: %v", err)
	}
	if _, err := startToy(t, foreign.Config{Hello: foreign.Hello{Name: "Left", Latent: 3}}); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("an invalid name: %v", err)
	}
	_, err := foreign.Start(foreign.Config{Command: []string{"/nonexistent/program"}, Hello: foreign.Hello{Name: "x", Latent: 2}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/program") {
		t.Errorf("a missing program: %v", err)
	}
}

// TestCheckpointRoundTrip: Save then Restore through the pipe gives the
// same parameters; garbage is refused and changes nothing.
func TestCheckpointRoundTrip(t *testing.T) {
	a, err := startToy(t, foreign.Config{})
	if err != nil {
		t.Fatal(err)
	}
	encodeDecodeLearn(t, a, []uint64{1, 2, 3})
	var state bytes.Buffer
	if err := a.Save(&state); err != nil {
		t.Fatal(err)
	}
	b, err := startToy(t, foreign.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(bytes.NewReader([]byte("garbage"))); err == nil {
		t.Error("garbage restored")
	}
	if err := b.Restore(bytes.NewReader(state.Bytes())); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := b.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(state.Bytes(), again.Bytes()) {
		t.Error("the restored child saves other parameters")
	}
	if b.Err() != nil {
		t.Errorf("the child failed: %v", b.Err())
	}
}

// TestOversizedRequestFailsOnlyTheCall: a request over the frame limit is
// never written; the call fails, naming the limit, and the child serves on.
func TestOversizedRequestFailsOnlyTheCall(t *testing.T) {
	m, err := startToy(t, foreign.Config{MaxFrame: 4096})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Parse([]bus.Payload{{Type: "text/plain", Data: bytes.Repeat([]byte("1 "), 4096)}})
	if err == nil || !strings.Contains(err.Error(), "frame limit") || !strings.Contains(err.Error(), "module left") {
		t.Fatalf("parse of 8 KiB with a 4 KiB frame limit: %v, want an error naming the module and the limit", err)
	}
	if _, _, err := m.LoadBatch([]uint64{1, 2}); err != nil || m.Err() != nil {
		t.Errorf("after a refused request the child serves no more: %v, %v", err, m.Err())
	}
}
