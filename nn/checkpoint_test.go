package nn_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serket-go/serket/nn"
)

// model is a small network with an optimiser that has taken steps.
type model struct {
	seq *nn.Sequential
	ps  []*nn.Param
	opt *nn.Adam
}

func newModel(seed uint64, in int) *model {
	rng := newRNG(seed)
	seq := nn.NewSequential(nn.NewLinear("enc.0", in, 4, rng), nn.NewSiLU(4), nn.NewLinear("enc.2", 4, 3, rng))
	m := &model{seq: seq, ps: seq.Params()}
	m.opt = nn.NewAdam(m.ps, 0.01)
	return m
}

// train takes n steps with pseudo-random gradients.
func (m *model) train(seed uint64, n int) {
	rng := newRNG(seed)
	for range n {
		for _, p := range m.ps {
			for i := range p.G {
				p.G[i] = float32(rng.NormFloat64())
			}
		}
		m.opt.Step()
	}
}

// state serialises the params and optimiser state for comparison.
func (m *model) state(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := nn.Save(&buf, "vision", m.ps, m.opt, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheckpointRoundTrip(t *testing.T) {
	a := newModel(1, 5)
	a.train(2, 3)
	path := filepath.Join(t.TempDir(), "vision.ckpt")
	meta := map[string]string{"epoch": "7", "dataset": "fashion-mnist"}
	if err := nn.SaveFile(path, "vision", a.ps, a.opt, meta); err != nil {
		t.Fatal(err)
	}
	b := newModel(99, 5) // different init, fresh optimiser
	got, err := nn.LoadFile(path, "vision", b.ps, b.opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(meta) || got["epoch"] != "7" || got["dataset"] != "fashion-mnist" {
		t.Errorf("meta = %v, want %v", got, meta)
	}
	if b.opt.Steps() != 3 {
		t.Errorf("loaded optimiser at step %d, want 3", b.opt.Steps())
	}
	for i := range a.ps {
		if !equalFloats(a.ps[i].W, b.ps[i].W) {
			t.Fatalf("param %s differs after load", a.ps[i].Name)
		}
	}
	// A further step with the same gradients lands in the same place.
	a.train(3, 1)
	b.train(3, 1)
	for i := range a.ps {
		if !equalFloats(a.ps[i].W, b.ps[i].W) {
			t.Fatalf("param %s differs after a step from the loaded state", a.ps[i].Name)
		}
	}
	// Params only.
	c := newModel(5, 5)
	if _, err := nn.LoadFile(path, "vision", c.ps, nil); err != nil {
		t.Fatal(err)
	}
	// Save is deterministic.
	if !bytes.Equal(a.state(t), a.state(t)) {
		t.Error("two Saves of the same state differ")
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestCheckpointRefusals(t *testing.T) {
	src := newModel(1, 5)
	src.train(2, 2)
	var good bytes.Buffer
	if err := nn.Save(&good, "vision", src.ps, src.opt, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	saveOf := func(m *model, kind string, opt bool) []byte {
		var buf bytes.Buffer
		o := m.opt
		if !opt {
			o = nil
		}
		if err := nn.Save(&buf, kind, m.ps, o, nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	mutate := func(f func([]byte) []byte) []byte {
		return f(append([]byte(nil), good.Bytes()...))
	}
	nanModel := newModel(1, 5)
	nanModel.ps[2].W[1] = float32(math.NaN())
	infMoment := newModel(1, 5)
	infMoment.ps[0].G[0] = float32(math.Inf(1))
	infMoment.opt.Step()
	infMoment.ps[0].W[0] = 0 // keep the params finite: only the moment is bad
	renamed := newModel(1, 5)
	renamed.ps[1].Name = "enc.0.bias"
	short := nn.NewSequential(nn.NewLinear("enc.0", 5, 4, newRNG(1)))

	tests := []struct {
		name    string
		data    []byte
		noOpt   bool // load params only
		wantErr string
		corrupt bool // damaged (ErrCorruptCheckpoint), not merely another model's
	}{
		{"wrong kind", saveOf(src, "language", true), false, "checkpoint is of kind language, want vision", false},
		{"wrong shape", saveOf(newModel(1, 6), "vision", true), false, "param enc.0.W has shape [4 6], want [4 5]", false},
		{"wrong count", func() []byte {
			var buf bytes.Buffer
			nn.Save(&buf, "vision", short.Params(), nil, nil)
			return buf.Bytes()
		}(), true, "checkpoint has 2 params, want 4", false},
		{"wrong name", saveOf(renamed, "vision", false), true, "param 1 is named enc.0.bias, want enc.0.b", false},
		{"flipped payload byte", mutate(func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }), false, "checksum mismatch: the file is corrupt or truncated", true},
		{"flipped last byte", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), false, "checksum mismatch", true},
		{"flipped checksum", mutate(func(b []byte) []byte { b[21] ^= 1; return b }), false, "checksum mismatch", true},
		{"flipped magic", mutate(func(b []byte) []byte { b[0] ^= 1; return b }), false, "not a serket nn checkpoint", true},
		{"truncated", mutate(func(b []byte) []byte { return b[:len(b)-10] }), false, "corrupt or truncated", true},
		{"truncated header", mutate(func(b []byte) []byte { return b[:10] }), false, "too short", true},
		{"empty", nil, false, "too short", true},
		{"trailing bytes", mutate(func(b []byte) []byte { return append(b, 0) }), false, "corrupt or truncated", true},
		{"wrong version", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 2); return b }), false, "format version 2 is not supported", false},
		{"NaN param", saveOf(nanModel, "vision", true), false, "param enc.2.W has a non-finite value at index 1", true},
		{"Inf moment", saveOf(infMoment, "vision", true), false, "non-finite", true},
		{"no optimizer state", saveOf(src, "vision", false), false, "no optimizer state", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := newModel(42, 5)
			dst.train(43, 1)
			before := dst.state(t)
			opt := dst.opt
			if tt.noOpt {
				opt = nil
			}
			_, err := nn.Load(bytes.NewReader(tt.data), "vision", dst.ps, opt)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "nn: ") {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, nn.ErrBadCheckpoint) {
				t.Errorf("error %q does not match ErrBadCheckpoint", err)
			}
			if errors.Is(err, nn.ErrCorruptCheckpoint) != tt.corrupt {
				t.Errorf("error %q matches ErrCorruptCheckpoint: %v, want %v", err, !tt.corrupt, tt.corrupt)
			}
			if !bytes.Equal(dst.state(t), before) {
				t.Error("a refused Load changed the params or the optimiser state")
			}
		})
	}
	// The unmutated file loads.
	if _, err := nn.Load(bytes.NewReader(good.Bytes()), "vision", newModel(3, 5).ps, nil); err != nil {
		t.Errorf("good checkpoint refused: %v", err)
	}
}

func TestLoadFileErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lang.ckpt")
	m := newModel(1, 5)
	if err := nn.SaveFile(path, "language", m.ps, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, err := nn.LoadFile(path, "vision", m.ps, nil)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "kind language, want vision") {
		t.Errorf("LoadFile error %v, want it to name %s and the kinds", err, path)
	}
	if !errors.Is(err, nn.ErrBadCheckpoint) {
		t.Errorf("LoadFile error %v does not match ErrBadCheckpoint", err)
	}
	missing := filepath.Join(dir, "missing.ckpt")
	_, err = nn.LoadFile(missing, "vision", m.ps, nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) || errors.Is(err, nn.ErrBadCheckpoint) {
		t.Errorf("LoadFile of a missing file: %v", err)
	}
}

// TestLoadFileFallsBackToThePreviousGeneration: SaveFile keeps the
// checkpoint it replaces as .prev; LoadFile loads that one, and logs why,
// when the newest is damaged, but not when it is whole and of another
// model.
func TestLoadFileFallsBackToThePreviousGeneration(t *testing.T) {
	tests := []struct {
		name     string
		damage   func(t *testing.T, path string) // to the newest generation (and more)
		wantFrom string                          // the generation loaded: "new", "prev" or "" (an error)
		wantErr  []string                        // what the error says
		wantLog  []string                        // what the log says
	}{
		{"whole", func(*testing.T, string) {}, "new", nil, nil},
		{"truncated", func(t *testing.T, path string) { truncate(t, path, 0.5) }, "prev", nil,
			[]string{"damaged", "corrupt or truncated", "vision.ckpt ", "vision.ckpt.prev"}},
		{"truncated to nothing", func(t *testing.T, path string) { truncate(t, path, 0) }, "prev", nil,
			[]string{"too short", "vision.ckpt.prev"}},
		{"flipped byte", func(t *testing.T, path string) { flip(t, path, 0.6) }, "prev", nil,
			[]string{"checksum mismatch", "vision.ckpt.prev"}},
		{"both damaged", func(t *testing.T, path string) { flip(t, path, 0.6); truncate(t, path+".prev", 0.3) }, "",
			[]string{"vision.ckpt: checksum mismatch", "vision.ckpt.prev: checksum mismatch", "previous generation"}, nil},
		{"damaged, no previous generation", func(t *testing.T, path string) { flip(t, path, 0.6); os.Remove(path + ".prev") }, "",
			[]string{"vision.ckpt: checksum mismatch", "no previous generation"}, nil},
		{"another model's shape", func(t *testing.T, path string) {
			if err := nn.SaveFile(path, "vision", newModel(1, 6).ps, nil, nil); err != nil {
				t.Fatal(err)
			}
		}, "", []string{"vision.ckpt: param enc.0.W has shape [4 6], want [4 5]"}, nil},
		{"only a previous generation", func(t *testing.T, path string) { os.Remove(path) }, "",
			[]string{"no such file"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := captureDefaultLog(t)
			path := filepath.Join(t.TempDir(), "vision.ckpt")
			gens := map[string]*model{"prev": newModel(1, 5), "new": newModel(1, 5)}
			gens["prev"].train(2, 1)
			gens["new"].train(2, 2)
			for _, g := range []string{"prev", "new"} {
				if err := nn.SaveFile(path, "vision", gens[g].ps, gens[g].opt, map[string]string{"gen": g}); err != nil {
					t.Fatal(err)
				}
			}
			tt.damage(t, path)
			dst := newModel(42, 5)
			before := dst.state(t)
			meta, err := nn.LoadFile(path, "vision", dst.ps, dst.opt)
			if tt.wantFrom == "" {
				if err == nil {
					t.Fatalf("LoadFile succeeded with generation %q", meta["gen"])
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
				if !bytes.Equal(dst.state(t), before) {
					t.Error("a failed LoadFile changed the model")
				}
				if log.Len() > 0 {
					t.Errorf("a failed LoadFile logged %q", log)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if meta["gen"] != tt.wantFrom || !bytes.Equal(dst.state(t), gens[tt.wantFrom].state(t)) {
				t.Fatalf("loaded generation %q, want %q", meta["gen"], tt.wantFrom)
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(log.String(), want) {
					t.Errorf("log %q does not say %q", log, want)
				}
			}
			if tt.wantLog == nil && log.Len() > 0 {
				t.Errorf("a clean load logged %q", log)
			}
		})
	}
}

// SaveFile's previous generation is exactly the file it replaced.
func TestSaveFileKeepsThePreviousGeneration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vision.ckpt")
	var files [][]byte
	for i := range 3 {
		m := newModel(uint64(i), 5)
		if err := nn.SaveFile(path, "vision", m.ps, m.opt, nil); err != nil {
			t.Fatal(err)
		}
		files = append(files, m.state(t))
	}
	cur, _ := os.ReadFile(path)
	prev, _ := os.ReadFile(path + ".prev")
	if !bytes.Equal(cur, files[2]) || !bytes.Equal(prev, files[1]) {
		t.Fatal("after three saves the file is not the third and .prev not the second")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 {
		t.Fatalf("%d files beside the checkpoint, want only it and .prev", len(entries))
	}
}

// truncate cuts the file at path to frac of its size.
func truncate(t *testing.T, path string, frac float64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(frac*float64(fi.Size()))); err != nil {
		t.Fatal(err)
	}
}

// flip flips one bit of the byte at frac of the file at path, in place.
func flip(t *testing.T, path string, frac float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[int(frac*float64(len(b)))] ^= 0x04
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// captureDefaultLog sends slog's default logger to a buffer until the test ends.
func captureDefaultLog(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	if err := nn.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write([]byte("old"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := nn.WriteFileAtomic(path, func(w io.Writer) error {
		w.Write(bytes.Repeat([]byte("new"), 1<<20)) // more than the buffer
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want it to wrap the write func's", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("a failed write changed the file to %d bytes", len(got))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "out.bin" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only out.bin", names)
	}
	// Writing where a directory cannot be made fails and names the path.
	bad := filepath.Join(dir, "out.bin", "f")
	if err := nn.WriteFileAtomic(bad, func(io.Writer) error { return nil }); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("error %v, want one naming %s", err, bad)
	}
}

func FuzzLoad(f *testing.F) {
	m := newModel(1, 3)
	m.train(2, 1)
	var buf bytes.Buffer
	if err := nn.Save(&buf, "vision", m.ps, m.opt, map[string]string{"a": "b"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:30])
	f.Add([]byte("SRKT-NN\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := newModel(1, 3)
		before := dst.state(t)
		if _, err := nn.Load(bytes.NewReader(data), "vision", dst.ps, dst.opt); err != nil {
			if !bytes.Equal(dst.state(t), before) {
				t.Fatal("a refused Load changed the state")
			}
		}
	})
}
