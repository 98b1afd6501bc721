// Package pythontouch_test holds the Go side's checks of the Python touch
// module (touch.py, numpy): the conformance suite every Go modality
// passes, run against it behind serket's exec adapter (module/foreign).
package pythontouch_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
	"github.com/serket-go/serket/internal/python"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/foreign"
	"github.com/serket-go/serket/module/moduletest"
)

// readings is a dataset directory holding touch.dat for the test dataset.
func readings(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	man, err := os.ReadFile(filepath.Join(datasettest.Dir(t), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), man, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := touchsim.Prepare(dir, 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConformance: the numpy module, as serket module exec runs it,
// passes the conformance suite (shapes, finite differences, learning,
// checkpoints and their refusal, parsing, rendering, the wire, bad
// messages), with and without a private latent, under partial pairing.
func TestConformance(t *testing.T) {
	py, err := python.Interpreter()
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, py, "touch.py")
}

// TestConformanceTorch: the PyTorch module, whose gradients come from
// autograd, passes it too, where python3-torch is installed (CI installs
// it).
func TestConformanceTorch(t *testing.T) {
	py, err := python.Interpreter("torch")
	if err != nil {
		t.Skipf("%v: apt-get install python3-torch to run the PyTorch module's suite", err)
	}
	conformance(t, py, "touch_torch.py")
}

func conformance(t *testing.T, py, script string) {
	data := readings(t)
	reading := touch.Format(touchsim.Reading(7, 9, 1<<62)) // a sneaker, as name=value text
	var numbers []string
	for _, v := range touchsim.Reading(3, 9, 1<<62) {
		numbers = append(numbers, strconv.FormatFloat(float64(v), 'g', -1, 32))
	}
	for _, private := range []int{0, 4} {
		t.Run(fmt.Sprintf("private=%d", private), func(t *testing.T) {
			moduletest.Run(t, moduletest.Config{
				New: func() (module.Modality, error) {
					m, err := foreign.Start(foreign.Config{
						Command: []string{py, script, "--hidden", "64"},
						Hello:   foreign.Hello{Name: "touchpy", Latent: 16, Private: private, Data: data, LR: 1e-3, Train: true},
						Keep:    func(id uint64) bool { return id%3 != 1 },
					})
					if err == nil {
						t.Cleanup(m.Close)
					}
					return m, err
				},
				IDs:    []uint64{0, 1, 2, 3, 4, 5, 6, 7, 60000, 60001},
				BadIDs: []uint64{59999, 1 << 40},
				Inputs: []bus.Payload{
					{Type: "text/plain; charset=utf-8", Data: []byte(reading)},
					{Type: "text/plain", Data: []byte(strings.Join(numbers, " "))},
					{Type: "application/json", Data: []byte("[" + strings.Join(numbers, ", ") + "]")},
				},
				BadInputs: []bus.Payload{
					{Type: "text/plain", Data: []byte(strings.Join(numbers[:15], " "))},                // too few
					{Type: "text/plain", Data: []byte(strings.Replace(reading, "mass=", "mass=-", 1))}, // a negative mass
					{Type: "text/plain", Data: []byte(strings.Replace(reading, "friction=", "friction=NaN", 1))},
					{Type: "text/plain", Data: []byte(strings.Replace(reading, "hardness=", "softness=", 1))}, // unknown feature
					{Type: "application/json", Data: []byte(`[1, 2, 3]`)},
					{Type: "image/png", Data: []byte(reading)},
				},
			})
		})
	}
}
