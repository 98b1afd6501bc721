package nntest_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/nn/nntest"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	panic("recorder: Fatalf")
}

// broken wraps a Linear with a deliberately wrong Backward.
type broken struct {
	*nn.Linear
	mode string
}

func (l *broken) Backward(dx, dy []float32, b int) {
	switch l.mode {
	case "scale dx":
		l.Linear.Backward(dx, dy, b)
		for i := range dx {
			dx[i] *= 1.1
		}
	case "drop bias":
		saved := append([]float32(nil), l.Bias.G...)
		l.Linear.Backward(dx, dy, b)
		copy(l.Bias.G, saved)
	case "overwrite G":
		nn.ZeroGrad(l.Params())
		l.Linear.Backward(dx, dy, b)
	case "accumulate dx":
		if dx == nil {
			l.Linear.Backward(nil, dy, b)
			return
		}
		tmp := make([]float32, len(dx))
		l.Linear.Backward(tmp, dy, b)
		for i := range dx {
			dx[i] += tmp[i]
		}
	case "ignore dx nil":
		// Computes the weight gradient only when dx is wanted.
		if dx == nil {
			return
		}
		l.Linear.Backward(dx, dy, b)
	case "scale W grad":
		saved := append([]float32(nil), l.Weight.G...)
		l.Linear.Backward(dx, dy, b)
		for i := range l.Weight.G {
			l.Weight.G[i] = saved[i] + 0.95*(l.Weight.G[i]-saved[i])
		}
	default:
		l.Linear.Backward(dx, dy, b)
	}
}

func TestGradCheckFailsOnBrokenBackward(t *testing.T) {
	tests := []struct {
		mode    string
		wantErr string // substring of the report, "" for a pass
	}{
		{mode: "correct"},
		{mode: "scale dx", wantErr: "in dx"},
		{mode: "drop bias", wantErr: "lin.b"},
		{mode: "overwrite G", wantErr: "lin.W"},
		{mode: "accumulate dx", wantErr: "in dx"},
		{mode: "ignore dx nil", wantErr: "nil dx"},
		{mode: "scale W grad", wantErr: "lin.W"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			l := &broken{Linear: nn.NewLinear("lin", 7, 5, rng), mode: tt.mode}
			rec := &recorder{TB: t}
			nntest.GradCheck(rec, l, 3, rng)
			if tt.wantErr == "" {
				if len(rec.errs) > 0 {
					t.Fatalf("GradCheck failed a correct layer: %v", rec.errs)
				}
				return
			}
			if len(rec.errs) == 0 {
				t.Fatalf("GradCheck passed a Backward with %q", tt.mode)
			}
			if !strings.Contains(rec.errs[0], tt.wantErr) {
				t.Errorf("report %q does not mention %q", rec.errs[0], tt.wantErr)
			}
		})
	}
}

func TestGradCheckRestoresParams(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := nn.NewLinear("lin", 4, 3, rng)
	for i := range l.Weight.G {
		l.Weight.G[i] = float32(i)
	}
	w := append([]float32(nil), l.Weight.W...)
	g := append([]float32(nil), l.Weight.G...)
	nntest.GradCheck(t, l, 2, rng)
	for i := range w {
		if l.Weight.W[i] != w[i] || l.Weight.G[i] != g[i] {
			t.Fatalf("W or G changed at %d: W %v→%v, G %v→%v", i, w[i], l.Weight.W[i], g[i], l.Weight.G[i])
		}
	}
}

func TestCheckGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	v := []float32{0.3, -1.2, 2.5, 0.7}
	f := func() float64 { // Σ v³
		var s float64
		for _, x := range v {
			s += float64(x) * float64(x) * float64(x)
		}
		return s
	}
	grad := make([]float32, len(v))
	for i, x := range v {
		grad[i] = 3 * x * x
	}
	if e := nntest.CheckGrad(t, "cube", f, v, grad, rng); e > 1e-3 {
		t.Errorf("relative error %g for an exact gradient", e)
	}
	grad[2] *= 1.05
	rec := &recorder{TB: t}
	nntest.CheckGrad(rec, "cube", f, v, grad, rng)
	if len(rec.errs) == 0 {
		t.Error("CheckGrad passed a gradient 5% off in its largest coordinate")
	}
}
