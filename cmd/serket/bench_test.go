package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/modules/vision"
)

func serketOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(serketBin, args...).CombinedOutput()
	return string(out), err
}

// writeNPY2D writes a float32 array of a shape as NumPy 1.0 does (what
// bench/torch_quality.py's np.save writes).
func writeNPY2D(t *testing.T, path string, shape []int, data []float32) {
	t.Helper()
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", s)
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	b.WriteString(hdr)
	binary.Write(&b, binary.LittleEndian, data)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The export holds what the modules read, and the pairing mask they draw.
func TestBenchExport(t *testing.T) {
	data := datasettest.Dir(t)
	out := t.TempDir()
	if msg, err := serketOut(t, "bench", "export", "--data", data, "--out", out, "--limit", "50", "--fractions", "0.5"); err != nil {
		t.Fatalf("serket bench export: %v\n%s", err, msg)
	}
	var meta struct {
		TrainItems int            `json:"train_items"`
		Sizes      map[string]int `json:"sizes"`
		Fractions  []string       `json:"fractions"`
	}
	b, err := os.ReadFile(filepath.Join(out, "meta.json"))
	if err == nil {
		err = json.Unmarshal(b, &meta)
	}
	if err != nil || meta.TrainItems != 50 || meta.Sizes["vision"] != 784 || len(meta.Fractions) != 1 || meta.Fractions[0] != "0.5" {
		t.Fatalf("meta.json %s (%v)", b, err)
	}
	m, err := fmnist3.Open(data, 64, 0)
	if err != nil {
		t.Fatal(err)
	}
	items := m.Manifest.InSplit(dataset.Train)[:50]
	ids := make([]uint64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	batch, _, err := m.Vision.LoadBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	var pix []float32
	readNPYFile(t, filepath.Join(out, "train_vision.npy"), &pix)
	if want := batch.(*vision.Images).Pix; len(pix) != len(want) || pix[400] != want[400] || pix[len(pix)-300] != want[len(want)-300] {
		t.Fatalf("train_vision.npy: %d values, want the %d the vision module reads", len(pix), len(want))
	}
	var mask []uint8
	readNPYFile(t, filepath.Join(out, "train_present_0.5.npy"), &mask)
	if len(mask) != 150 {
		t.Fatalf("a mask of %d values for 50 items × 3 modalities", len(mask))
	}
	paired := 0
	for i, id := range ids {
		all := true
		for k, name := range m.Names() {
			want := dataset.Present(id, dataset.Train, name, m.Names(), 0.5, 1)
			if (mask[3*i+k] == 1) != want {
				t.Fatalf("item %d %s: mask %d, the module's Present %v", id, name, mask[3*i+k], want)
			}
			all = all && want
		}
		if all {
			paired++
		}
	}
	if paired == 0 || paired == 50 {
		t.Fatalf("%d of 50 items fully paired at fraction 0.5", paired)
	}
}

func readNPYFile(t *testing.T, path string, ptr any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := npyio.Read(f, ptr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// Weights in PyTorch's layout become checkpoints that restore exactly; a
// file of the wrong shape or with a NaN is refused, naming it. The quality
// command then measures the imported model, as serket eval would.
func TestBenchImportAndQuality(t *testing.T) {
	data := datasettest.Dir(t)
	src, err := fmnist3.Open(data, 64, 0)
	if err != nil {
		t.Fatal(err)
	}
	weights := t.TempDir()
	for _, name := range src.Names() {
		for i, p := range src.Net(name).Params() {
			p.W[0] = float32(i) + 0.5 // a value no initialisation draws
			writeNPY2D(t, filepath.Join(weights, name, p.Name+".npy"), p.Shape, p.W)
		}
	}
	os.WriteFile(filepath.Join(weights, "metrics.jsonl"), []byte(`{"epoch": 1, "samples_per_sec": 400, "seconds": 10}`+"\n"), 0o644)
	ckpt := filepath.Join(t.TempDir(), "imported")
	if msg, err := serketOut(t, "bench", "import", "--data", data, "--from", weights, "--out", ckpt); err != nil {
		t.Fatalf("serket bench import: %v\n%s", err, msg)
	}
	dst, err := fmnist3.Open(data, 64, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Restore(ckpt); err != nil {
		t.Fatal(err)
	}
	for _, name := range src.Names() {
		ps, qs := src.Net(name).Params(), dst.Net(name).Params()
		for i := range ps {
			for k := range ps[i].W {
				if ps[i].W[k] != qs[i].W[k] {
					t.Fatalf("%s %s[%d]: imported %v, want %v", name, ps[i].Name, k, qs[i].W[k], ps[i].W[k])
				}
			}
		}
	}

	out, err := serketOut(t, "bench", "quality", "--data", data, "--items", "20", "--iwae-items", "10", "--iwae-k", "5", "--json", "ref="+ckpt)
	if err != nil {
		t.Fatalf("serket bench quality: %v\n%s", err, out)
	}
	var row struct {
		System        string             `json:"system"`
		SamplesPerSec float64            `json:"samples_per_sec"`
		Figures       map[string]float64 `json:"figures"`
		Result        struct {
			Coherence struct{ Items int } `json:"coherence"`
		} `json:"result"`
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &row); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if row.System != "ref" || row.SamplesPerSec != 400 || row.Result.Coherence.Items != 20 {
		t.Fatalf("quality row %+v", row)
	}
	if e, ok := row.Figures["log p(x)"]; !ok || !(e < 0) || math.IsInf(e, 0) {
		t.Fatalf("log p(x) %v in %v", e, row.Figures)
	}
	if c, ok := row.Figures["coherence vision → language"]; !ok || c < 0 || c > 1 {
		t.Fatalf("coherence vision → language %v in %v", c, row.Figures)
	}

	// Refusals name the file.
	bad := filepath.Join(weights, "audio", "dec.1.b.npy")
	writeNPY2D(t, bad, []int{3}, []float32{1, 2, 3})
	if msg, err := serketOut(t, "bench", "import", "--data", data, "--from", weights, "--out", t.TempDir()); err == nil || !strings.Contains(msg, "dec.1.b.npy") || !strings.Contains(msg, "shape") {
		t.Fatalf("importing a wrong shape: %v\n%s", err, msg)
	}
	nan := make([]float32, 512)
	nan[7] = float32(math.NaN())
	writeNPY2D(t, bad, []int{512}, nan)
	if msg, err := serketOut(t, "bench", "import", "--data", data, "--from", weights, "--out", t.TempDir()); err == nil || !strings.Contains(msg, "dec.1.b.npy") || !strings.Contains(msg, "NaN") {
		t.Fatalf("importing a NaN: %v\n%s", err, msg)
	}
}

// serket train hands --lr to every module (their checkpoints carry the
// learning rate they trained with) and refuses a pairing fraction outside
// (0, 1]. It runs --secure: every module and the integrator in this process
// under their own keys and permissions, with no violation logged.
func TestTrainPassesSettingsToModules(t *testing.T) {
	data := datasettest.Dir(t)
	ckpt := filepath.Join(t.TempDir(), "run")
	out, err := serketOut(t, "train", "--data", data, "--epochs", "1", "--eval-items", "0", "--lr", "0.0123",
		"--paired-fraction", "0.5", "--checkpoint-dir", ckpt, "--log-level", "warn", "--secure")
	if err != nil {
		t.Fatalf("serket train: %v\n%s", err, out)
	}
	if strings.Contains(out, "Permissions Violation") {
		t.Errorf("serket train --secure: a process was refused a subject it needs:\n%s", out)
	}
	for _, name := range []string{"vision", "language", "audio"} {
		b, err := os.ReadFile(filepath.Join(ckpt, name+".ckpt"))
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Adam struct {
				LR float32 `msgpack:"lr"`
			} `msgpack:"adam"`
		}
		if err := msgpack.Unmarshal(unlabelled(b)[24:], &f); err != nil {
			t.Fatalf("%s checkpoint: %v", name, err)
		}
		if f.Adam.LR != 0.0123 {
			t.Errorf("%s trained with learning rate %v, want --lr 0.0123", name, f.Adam.LR)
		}
	}
	if out, err := serketOut(t, "train", "--data", data, "--paired-fraction", "1.5", "--checkpoint-dir", t.TempDir()); err == nil || !strings.Contains(out, "paired-fraction") {
		t.Fatalf("--paired-fraction 1.5: %v\n%s", err, out)
	}
}

// unlabelled is a module checkpoint's bytes without the label the module
// SDK writes in front of the modality's own (see module.Label).
func unlabelled(b []byte) []byte {
	const magic = "serket-ckpt-1\n"
	if !bytes.HasPrefix(b, []byte(magic)) || len(b) < len(magic)+1 {
		return b
	}
	n := len(magic) + 1 + int(b[len(magic)]) + 8 + 4
	return b[min(n, len(b)):]
}
