package touch_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/moduletest"
	"github.com/serket-go/serket/modules/mvae"
)

// prepared returns a directory holding touch.dat, and only touch.dat,
// simulated for the small test dataset (datasettest.Dir).
func prepared(t *testing.T) string {
	t.Helper()
	sim := t.TempDir()
	man, err := os.ReadFile(filepath.Join(datasettest.Dir(t), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sim, "manifest.json"), man, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := touchsim.Prepare(sim, 1); err != nil {
		t.Fatal(err)
	}
	only := t.TempDir()
	if err := os.Rename(touch.Path(sim), touch.Path(only)); err != nil {
		t.Fatal(err)
	}
	return only
}

func load(t *testing.T, dir string) *touch.Data {
	t.Helper()
	d, err := touch.ReadFile(touch.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformance(t *testing.T) {
	d := load(t, prepared(t))
	reading := touch.Format(touchsim.Reading(7, 9, 1<<62)) // a fresh sneaker, as name=value text
	var numbers []string
	for _, v := range touchsim.Reading(3, 9, 1<<62) {
		numbers = append(numbers, strconv.FormatFloat(float64(v), 'g', -1, 32))
	}
	// With a private latent too, as --private asks: the SDK keeps it, and
	// the module's own code only sizes its networks for it.
	for _, private := range []int{0, 4} {
		t.Run(fmt.Sprintf("private=%d", private), func(t *testing.T) { conformance(t, d, private, reading, numbers) })
	}
}

func conformance(t *testing.T, d *touch.Data, private int, reading string, numbers []string) {
	moduletest.Run(t, moduletest.Config{
		New: func() (module.Modality, error) {
			return touch.New(touch.Config{Net: mvae.Config{Latent: 16, Private: private, Hidden: 64, Seed: 1}, Data: d,
				Pairing: mvae.Pairing{Fraction: 0.5, Seed: 3}})
		},
		IDs:    []uint64{0, 1, 2, 3, 4, 5, 6, 7, 60000, 60001},
		BadIDs: []uint64{59999, 1 << 40},
		Inputs: []bus.Payload{
			{Type: "text/plain; charset=utf-8", Data: []byte(reading)},
			{Type: "text/plain", Data: []byte(strings.Join(numbers, " "))},
			{Type: "application/json", Data: []byte("[" + strings.Join(numbers, ", ") + "]")},
			{Type: "application/json", Data: []byte(`{"hardness": 50, "stiffness": 3, "thickness": 25, "mass": 700, "stretch": 3, "friction": 0.9,
				"coolness": 0.4, "damping": 0.4, "vib-16hz": 30, "vib-32hz": 40, "vib-64hz": 45, "vib-128hz": 45, "vib-256hz": 38,
				"vib-512hz": 28, "vib-1khz": 18, "vib-2khz": 13}`)},
		},
		BadInputs: []bus.Payload{
			{Type: "text/plain", Data: []byte(strings.Join(numbers[:15], " "))},                // too few
			{Type: "text/plain", Data: []byte(strings.Replace(reading, "mass=", "mass=-", 1))}, // a negative mass
			{Type: "text/plain", Data: []byte(strings.Replace(reading, "friction=", "friction=NaN", 1))},
			{Type: "text/plain", Data: []byte(strings.Replace(reading, "hardness=", "softness=", 1))}, // unknown feature
			{Type: "text/plain", Data: []byte(reading[strings.Index(reading, " ")+1:])},               // hardness missing
			{Type: "application/json", Data: []byte(`[1, 2, 3]`)},
			{Type: "text/plain", Data: []byte("")},
			{Type: "image/png", Data: []byte(reading)},
		},
	})
}

// The module reads only its data file: with touch.dat alone in a directory
// (no manifest, no shards) it loads every item, and the package's code
// never names the manifest, a class or the simulator.
func TestReadsOnlyItsDataFile(t *testing.T) {
	dir := prepared(t)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("the directory holds %d files, want touch.dat alone", len(entries))
	}
	d := load(t, dir)
	m, err := touch.New(touch.Config{Net: mvae.Config{Latent: 8, Hidden: 16}, Data: d})
	if err != nil {
		t.Fatal(err)
	}
	x, present, err := m.LoadBatch(d.IDs)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(d.IDs) || slices.Contains(present, false) {
		t.Fatalf("loaded %d rows of %d items, present %v", x.Len(), len(d.IDs), present)
	}

	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if strings.Contains(imp.Path.Value, "touchsim") {
				t.Errorf("%s imports the simulator", name)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				switch sel.Sel.Name {
				case "ReadManifest", "Manifest", "ManifestPath", "Class", "ClassNames", "SpokenNames", "ReadShard":
					t.Errorf("%s: %s uses %s: the module must not read labels", name, fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
	}
}

// What Render writes, Parse reads back to the same normalised values.
func TestRenderParsesBack(t *testing.T) {
	d := load(t, prepared(t))
	m, err := touch.New(touch.Config{Net: mvae.Config{Latent: 4, Hidden: 16, Seed: 2}, Data: d})
	if err != nil {
		t.Fatal(err)
	}
	z := []float32{0.5, -1, 0, 2, 1, 1, -0.5, 0}
	out, err := m.Render(z, 2)
	if err != nil {
		t.Fatal(err)
	}
	x, err := m.Parse(out)
	if err != nil {
		t.Fatalf("parsing %q: %v", out[0].Data, err)
	}
	mean := m.Net().Forward(z, 2)
	for i, v := range x.(*touch.Readings).X {
		if diff := v - mean[i]; diff > 0.01 || diff < -0.01 {
			t.Fatalf("value %d: rendered and parsed back %v, the decoder said %v (%s)", i, v, mean[i], out[i/touch.Dim].Data)
		}
	}
}

// The data file is refused when damaged, and says how to make it when missing.
func TestDataFileErrors(t *testing.T) {
	dir := prepared(t)
	good, err := os.ReadFile(touch.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := touch.ReadFile(filepath.Join(t.TempDir(), "touch.dat")); err == nil || !strings.Contains(err.Error(), "touch prepare") {
		t.Errorf("missing file: %v", err)
	}
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)-9],
		"flipped":   append(slices.Clone(good[:200]), append([]byte{good[200] ^ 1}, good[201:]...)...),
		"other":     bytes.Repeat([]byte("x"), 100),
	} {
		path := filepath.Join(t.TempDir(), "touch.dat")
		os.WriteFile(path, b, 0o644)
		if _, err := touch.ReadFile(path); err == nil {
			t.Errorf("%s file accepted", name)
		}
	}
}

// TestDataFileBounded: a data file over MaxFileBytes (a sparse one: no disk
// spent), an endless device and a FIFO nobody writes to are refused at
// once, naming the file.
func TestDataFileBounded(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		make       func(path string) error
	}{
		{"over MaxFileBytes", "more than the 64 MiB limit", func(path string) error {
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(touch.MaxFileBytes + 1)
		}},
		{"/dev/zero", "not a regular file", func(path string) error { return os.Symlink("/dev/zero", path) }},
		{"a FIFO", "not a regular file", func(path string) error { return syscall.Mkfifo(path, 0o644) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "touch.dat")
			if err := tt.make(path); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := touch.ReadFile(path); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("ReadFile: %v, want an error naming the file and %q", err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ReadFile still reading after 10 s")
			}
		})
	}
}
