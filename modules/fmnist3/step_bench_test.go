package fmnist3_test

import (
	"testing"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/modules/mvae"
)

// BenchmarkModalityStep is one training step of each built-in modality on
// the calling goroutine, as its module process runs it: LoadBatch of 100
// items, Encode, the mvae plan's three decodes in one DecodeMany, Learn.
// It reports the GFLOP/s of the step's matrix products, to set beside the
// SGEMM ceiling (docs/performance.md); run it on one core, as a module
// runs, with
//
//	OPENBLAS_NUM_THREADS=1 go test -tags openblas -run '^$' -bench ModalityStep -cpu 1 ./modules/fmnist3
func BenchmarkModalityStep(b *testing.B) {
	m, err := fmnist3.Open(datasettest.Dir(b), 64, 0)
	if err != nil {
		b.Fatal(err)
	}
	const batch, terms = 100, 3
	ids := make([]uint64, batch)
	for i := range ids {
		ids[i] = uint64(i * 2)
	}
	for _, name := range m.Names() {
		b.Run(name, func(b *testing.B) {
			mod := m.Modality(name)
			d := m.Net(name).Config().Width()
			mu, lv := make([]float32, batch*d), make([]float32, batch*d)
			var zs, ws, lls, dzs [][]float32
			for t := range terms {
				z, w := make([]float32, batch*d), make([]float32, batch)
				for i := range z {
					z[i] = float32((i+t)%13)/13 - 0.5
				}
				for i := range w {
					w[i] = 1
				}
				zs, ws = append(zs, z), append(ws, w)
				lls, dzs = append(lls, make([]float32, batch)), append(dzs, make([]float32, batch*d))
			}
			grad := make([]float32, batch*d)
			for b.Loop() {
				x, _, err := mod.(module.Loader).LoadBatch(ids)
				if err == nil {
					err = mod.Encode(x, mu, lv)
				}
				if err == nil {
					err = module.DecodeTerms(mod, zs, x, ws, lls, dzs)
				}
				if err == nil {
					err = mod.(module.Learner).Learn(grad, grad)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(stepFlops(m.Net(name).Config(), terms)*batch*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// stepFlops are the GEMM flops per sample of a step that encodes once and
// decodes terms times, as bench/torch_mvae.py --flops counts them: a layer
// in→out costs 2·in·out forward, as much again for its weight gradient,
// and again for its input gradient but in the encoder's first layer.
func stepFlops(c mvae.Config, terms int) float64 {
	layers := func(dims ...int) (f, firstless float64) {
		for i := 1; i < len(dims); i++ {
			f += 2 * float64(dims[i-1]*dims[i])
			if i > 1 {
				firstless += 2 * float64(dims[i-1]*dims[i])
			}
		}
		return f, firstless
	}
	enc, encRest := layers(c.In, c.Hidden, c.Hidden, 2*c.Width())
	dec, _ := layers(c.Width(), c.Hidden, c.Hidden, c.Hidden, c.Out)
	return 2*enc + encRest + float64(terms)*3*dec
}
