package torchref_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bench/torchref"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/internal/python"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/poe"
)

// stepCase is one step the cross-check compares.
type stepCase struct {
	plan, agg string
	// clamped gives audio's posterior, in every row, mean 0 and
	// log-variance 25 in one dimension and −25 in another, past
	// ±poe.MaxLogVar (clampAudio), so that the clamp and its zero gradient
	// are compared too. MoPoE gets the upper one alone: at the lower, the
	// four products that share the clamped expert are near-identical
	// Gaussians of standard deviation e^−10 in that dimension, whose score
	// terms (about 1/σ = 2e4 each) cancel in the gradient, and float32
	// resolves what is left to about 1e-4 (serket 1.0e-4 from float64
	// PyTorch, float32 PyTorch 4.3e-4): past what a float32 comparison
	// can tell from an error.
	clamped bool
}

func (c stepCase) String() string {
	if c.clamped {
		return c.plan + "-clamped-" + c.agg
	}
	return c.plan + "-" + c.agg
}

// stepCases are every plan and aggregation serket ships, and the MVAE plan
// with clamped log-variances.
func stepCases() []stepCase {
	var cases []stepCase
	for _, clamped := range []bool{false, true} {
		for _, plan := range []string{"mvae", "cross", "joint"} {
			if clamped && plan != "mvae" {
				continue
			}
			for _, agg := range []string{"poe", "moe", "mopoe", "gpoe"} {
				cases = append(cases, stepCase{plan: plan, agg: agg, clamped: clamped})
			}
		}
	}
	return cases
}

// checkResult is what bench/torch_check.py prints for one step.
type checkResult struct {
	Dir       string                          `json:"dir"`
	Terms     int                             `json:"terms"`
	Objective struct{ Torch, Serket float64 } `json:"objective"`
	Tensors   []tensorResult                  `json:"tensors"`
	Forward   []tensorResult                  `json:"forward"`
	Failures  []string                        `json:"failures"`
	OK        bool                            `json:"ok"`
}

// tensorResult is one tensor's comparison: ‖torch − serket‖ / ‖torch‖,
// max |torch − serket| and ‖torch‖.
type tensorResult struct {
	Name   string  `json:"name"`
	Rel    float64 `json:"rel"`
	MaxAbs float64 `json:"max_abs"`
	Norm   float64 `json:"norm"`
}

// TestGradientsMatchPyTorch: one training step of the three modalities,
// for every plan and aggregation serket ships, recomputed by
// bench/torch_check.py in float64 PyTorch from its definition, from the
// same weights, batch and noise: the objective and every parameter's
// gradient agree within float32 tolerance. A step whose exported gradient
// is made wrong by 0.1% must fail the check, so that the check cannot pass
// by comparing nothing.
func TestGradientsMatchPyTorch(t *testing.T) {
	py, err := python.Interpreter("torch")
	if err != nil {
		t.Skipf("skipped: no PyTorch to recompute the step with: %v (Debian: apt-get install python3-torch)", err)
	}
	data := datasettest.Dir(t)
	root := t.TempDir()
	var dirs []string
	tensors := map[string]int{}
	for _, c := range stepCases() {
		dir := filepath.Join(root, c.String())
		tensors[dir] = exportStep(t, data, dir, c)
		dirs = append(dirs, dir)
	}
	wrong := filepath.Join(root, "wrong")
	exportStep(t, data, wrong, stepCase{plan: "cross", agg: "moe"})
	perturb(t, filepath.Join(wrong, "language", "dec.3.W.grad.npy"), 1e-3)
	results := runCheck(t, py, append(slices.Clone(dirs), wrong))
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			r, ok := results[dir]
			if !ok {
				t.Fatalf("torch_check.py printed nothing for %s", dir)
			}
			worst := slices.MaxFunc(r.Tensors, func(a, b tensorResult) int { return cmp.Compare(a.Rel, b.Rel) })
			t.Logf("%d terms; objective %.6g (serket %.6g); %d tensors, worst %s: relative %.2g, max abs %.2g",
				r.Terms, r.Objective.Torch, r.Objective.Serket, len(r.Tensors), worst.Name, worst.Rel, worst.MaxAbs)
			if len(r.Tensors) != tensors[dir] {
				t.Errorf("%d gradient tensors compared, want all %d of the step's parameters", len(r.Tensors), tensors[dir])
			}
			if !r.OK {
				t.Errorf("serket's step differs from PyTorch's, worst first:\n%s", strings.Join(r.Failures[:min(len(r.Failures), 8)], "\n"))
			}
		})
	}
	r := results[wrong]
	if r.OK || len(r.Failures) == 0 || !strings.HasPrefix(r.Failures[0], "language/dec.3.W:") {
		t.Errorf("a step whose language/dec.3.W gradient is 0.1%% off passed the check (failures %q): it proves nothing", r.Failures)
	}
}

// exportStep exports step c of the three modalities (latent 8, hidden 24,
// half the items paired) on the test dataset; a gated product's gates are
// random, not the 0 that is PoE. It returns how many parameter tensors
// the step has.
func exportStep(t *testing.T, data, dir string, c stepCase) int {
	t.Helper()
	const latent, step, seed = 8, 1, 3
	mods := map[string]torchref.Modality{}
	for _, name := range []string{"vision", "language", "audio"} {
		mods[name] = newModality(t, data, name, mvae.Config{Latent: latent, Hidden: 24, Seed: 1})
	}
	if c.clamped {
		clampAudio(t, mods["audio"].Net(), c.agg != "mopoe")
	}
	names := []string{"audio", "language", "vision"}
	pf, err := integrator.ParsePlan(c.plan, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, err := aggregate.Parse(c.agg)
	if err != nil {
		t.Fatal(err)
	}
	var params int
	for _, m := range mods {
		params += len(m.Net().Params())
	}
	if l, ok := a.(aggregate.Learned); ok {
		l.Bind(names, latent)
		params += len(l.Params())
		rng := rand.New(rand.NewPCG(5, 6))
		for _, p := range l.Params() {
			for i := range p.W {
				p.W[i] = float32(0.5 * rng.NormFloat64())
			}
		}
	}
	ids := make([]uint64, 12)
	for i := range ids {
		ids[i] = uint64(3 * i)
	}
	err = torchref.ExportStep(torchref.StepConfig{Dir: dir, Modalities: mods, IDs: ids, PlanName: c.plan, Agg: a,
		Plan: pf(nil, names, rand.New(rand.NewPCG(seed, step))), Lambda: map[string]float32{"language": 2.5, "audio": 0.5},
		Beta: 0.7, Seed: seed, Step: step})
	if err != nil {
		t.Fatal(err)
	}
	requireMixedPairing(t, dir, names, len(ids))
	if c.clamped {
		requireClamped(t, filepath.Join(dir, "audio", "logvar.npy"), c.agg != "mopoe")
	}
	return params
}

// requireClamped fails unless the log-variances in path go past the
// clamp: above it, and if lower, below it too.
func requireClamped(t *testing.T, path string, lower bool) {
	t.Helper()
	lv := readNPY[float32](t, path)
	if slices.Max(lv) <= poe.MaxLogVar || lower && slices.Min(lv) >= -poe.MaxLogVar {
		t.Fatalf("%s: log-variances from %v to %v: the clamp at ±%v is not reached", path, slices.Min(lv), slices.Max(lv), poe.MaxLogVar)
	}
}

// clampAudio makes the encoder's output in dimension 0 mean 0 and
// log-variance 25 in every row, and if lower, in dimension 1 mean 0 and
// log-variance −25: the last layer's rows for them zero, their biases
// those values. A mean of order 1 would do for the clamp, but beside a
// standard deviation of e^−10 its float32 spacing would leave z − μ to
// rounding.
func clampAudio(t *testing.T, net *mvae.Net, lower bool) {
	t.Helper()
	last := fmt.Sprintf("enc.%d.", net.Config().EncLayers)
	d := net.Config().Latent
	i := slices.IndexFunc(net.Params(), func(p *nn.Param) bool { return p.Name == last+"W" })
	if i < 0 || net.Params()[i+1].Name != last+"b" {
		t.Fatalf("no %sW and %sb among audio's parameters", last, last)
	}
	w, b := net.Params()[i], net.Params()[i+1]
	in := w.Shape[1]
	set := map[int]float32{0: 0, d: 25} // a mean's row, then its log-variance's
	if lower {
		set[1], set[d+1] = 0, -25
	}
	for k, v := range set {
		clear(w.W[k*in : (k+1)*in])
		b.W[k] = v
	}
}

// requireMixedPairing fails unless the batch has a row with every module
// and a row without some: what the step weighs by presence is then tested.
func requireMixedPairing(t *testing.T, dir string, names []string, b int) {
	t.Helper()
	count := make([]int, b)
	for _, name := range names {
		for r, p := range readNPY[uint8](t, filepath.Join(dir, name, "present.npy")) {
			count[r] += int(p)
		}
	}
	if !slices.Contains(count, len(names)) || slices.Min(count) == len(names) {
		t.Fatalf("modules present per row %v: want a fully paired row and a partial one", count)
	}
}

func newModality(t *testing.T, data, name string, net mvae.Config) torchref.Modality {
	t.Helper()
	m, err := fmnist3.NewModality(data, name, net, mvae.Pairing{Fraction: 0.5, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	return m.(torchref.Modality)
}

// perturb adds frac·‖g‖ to the first value of the gradient in path.
func perturb(t *testing.T, path string, frac float64) {
	t.Helper()
	g := readNPY[float32](t, path)
	var norm float64
	for _, v := range g {
		norm += float64(v) * float64(v)
	}
	g[0] += float32(frac * math.Sqrt(norm))
	var buf bytes.Buffer
	if err := npyio.Write(&buf, g); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readNPY[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v []T
	if err := npyio.Read(f, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// runCheck runs bench/torch_check.py on dirs and returns its result for
// each. Its exit status 1 (some comparison failed) is the results' to
// say; any other failure is the test's.
func runCheck(t *testing.T, py string, dirs []string) map[string]checkResult {
	t.Helper()
	cmd := exec.Command(py, append([]string{filepath.Join("..", "torch_check.py")}, dirs...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.Output()
	if ee := (*exec.ExitError)(nil); err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("torch_check.py: %v\n%s", err, stderr.String())
	}
	t.Logf("torch_check.py:\n%s", stderr.String())
	results := map[string]checkResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r checkResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("torch_check.py printed %q: %v", sc.Text(), err)
		}
		results[r.Dir] = r
	}
	return results
}
