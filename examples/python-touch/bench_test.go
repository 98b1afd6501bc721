package pythontouch_test

import (
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/internal/python"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/foreign"
	"github.com/serket-go/serket/modules/mvae"
)

// The step of BenchmarkTrainingStep: the demo's latent, the touch
// example's hidden layers, serket train's batch, and the two terms of the
// cross plan a module is a target of when paired with two others.
const (
	benchLatent = 64
	benchHidden = 128
	benchBatch  = 100
	benchTerms  = 2
)

// BenchmarkTrainingStep is one module's part of a training step (load a
// batch, encode it, decode it for each term, learn) of the touch modality:
// in Go (examples/custom-modality/touch, the same networks) and in Python
// behind serket module exec's adapter (touch.py in numpy; touch_torch.py
// in PyTorch, when it is installed). For the Python modules it reports
// the protocol's cost, the round trips' time outside the program's own
// code: overhead-µs/step, and overhead-% of the step.
//
//	go test ./examples/python-touch -run '^$' -bench TrainingStep -benchtime 200x
func BenchmarkTrainingStep(b *testing.B) {
	data := readings(b)
	ids := make([]uint64, benchBatch)
	rng := rand.New(rand.NewPCG(1, 2))
	b.Run("go", func(b *testing.B) {
		d, err := touch.ReadFile(touch.Path(data))
		if err != nil {
			b.Fatal(err)
		}
		m, err := touch.New(touch.Config{Name: "touch", Net: mvae.Config{Latent: benchLatent, Hidden: benchHidden, Seed: 1}, Data: d})
		if err != nil {
			b.Fatal(err)
		}
		runSteps(b, m, ids, rng)
	})
	for _, py := range []struct{ name, script, needs string }{{"numpy", "touch.py", ""}, {"torch", "touch_torch.py", "torch"}} {
		b.Run(py.name, func(b *testing.B) {
			interp, err := pythonFor(py.needs)
			if err != nil {
				b.Skip(err)
			}
			if _, err := os.Stat(py.script); err != nil {
				b.Skip(err)
			}
			m, err := foreign.Start(foreign.Config{
				Command: []string{interp, py.script, "--hidden", "128"},
				Hello:   foreign.Hello{Name: "touchpy", Latent: benchLatent, Data: data, LR: 1e-3, Train: true},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			runSteps(b, m, ids, rng)
			var rt, overhead time.Duration
			for _, t := range m.Timings() {
				rt += t.RoundTrip
				overhead += t.Overhead()
			}
			b.ReportMetric(float64(overhead.Microseconds())/float64(b.N), "overhead-µs/step")
			b.ReportMetric(100*float64(overhead)/float64(rt), "overhead-%")
		})
	}
}

func pythonFor(needs string) (string, error) {
	if needs == "" {
		return python.Interpreter()
	}
	return python.Interpreter(needs)
}

// runSteps times b.N steps of m on random training items (ids is their
// storage), after a few to warm up; the timings of the warm-up are reset.
func runSteps(b *testing.B, m module.Modality, ids []uint64, rng *rand.Rand) {
	b.Helper()
	d := m.Spec().Latent
	g := make([]float32, len(ids)*d)
	for i := range g {
		g[i] = float32(rng.NormFloat64()) * 0.01
	}
	step := func() {
		for i := range ids {
			ids[i] = uint64(rng.IntN(datasettest.Items)) // the test dataset's training items
		}
		x, present, err := m.(module.Loader).LoadBatch(ids)
		if err != nil {
			b.Fatal(err)
		}
		mu, lv := make([]float32, len(g)), make([]float32, len(g))
		if err := m.Encode(x, mu, lv); err != nil {
			b.Fatal(err)
		}
		w := make([]float32, len(ids))
		for i := range w {
			if present[i] {
				w[i] = 1
			}
		}
		// The terms as the SDK decodes them: one DecodeMany where the
		// module has it (decode_many over the pipe), else a Decode each.
		zs, ws, lls, dzs := make([][]float32, benchTerms), make([][]float32, benchTerms), make([][]float32, benchTerms), make([][]float32, benchTerms)
		for k := range benchTerms {
			zs[k], ws[k], lls[k], dzs[k] = mu, w, make([]float32, len(ids)), make([]float32, len(g))
		}
		if err := module.DecodeTerms(m, zs, x, ws, lls, dzs); err != nil {
			b.Fatal(err)
		}
		if err := m.(module.Learner).Learn(g, g); err != nil {
			b.Fatal(err)
		}
	}
	for range 5 {
		step()
	}
	if f, ok := m.(*foreign.Module); ok {
		f.Timings()
	}
	b.ResetTimer()
	for range b.N {
		step()
	}
}
