package eval

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// metricBlobs draws n items in d dimensions from k Gaussian blobs of
// standard deviation noise around centres drawn from N(0, spread²); item i
// belongs to blob i mod k. It also returns the smallest distance between two
// centres.
func metricBlobs(rng *rand.Rand, n, d, k int, spread, noise float64) (z []float32, y []int, centres []float64, minSep float64) {
	centres = make([]float64, k*d)
	for i := range centres {
		centres[i] = spread * rng.NormFloat64()
	}
	minSep = math.Inf(1)
	for a := range k {
		for b := range a {
			minSep = math.Min(minSep, math.Sqrt(sqDist(centres[a*d:(a+1)*d], centres[b*d:(b+1)*d])))
		}
	}
	z = make([]float32, n*d)
	y = make([]int, n)
	for i := range n {
		y[i] = i % k
		for j := range d {
			z[i*d+j] = float32(centres[y[i]*d+j] + noise*rng.NormFloat64())
		}
	}
	return z, y, centres, minSep
}

func metricsRandomLabels(rng *rand.Rand, n, k int) []int {
	y := make([]int, n)
	for i := range y {
		y[i] = rng.IntN(k)
	}
	return y
}

func metricsNear(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestAdjustedRandIndexKnownAnswers(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b []int
		want float64
	}{
		{"identical", []int{0, 0, 1, 1, 2, 2, 2}, []int{0, 0, 1, 1, 2, 2, 2}, 1},
		// The same partition under other names (−1 is a name like any other).
		{"renamed", []int{0, 0, 1, 1, 2, 2, 2}, []int{7, 7, -1, -1, 3, 3, 3}, 1},
		// scikit-learn's documented example, 0.57…: the contingency table
		// of a = [0,0,1,1] against b = [0,0,1,2] is
		//	a=0: [2 0 0]
		//	a=1: [0 1 1]
		// index = C(2) = 1; Σ C(a_i) = C(2)+C(2) = 2; Σ C(b_j) = C(2) = 1;
		// C(4) = 6; expected = 2·1/6 = 1/3; maximum = (2+1)/2 = 3/2;
		// ARI = (1 − 1/3) / (3/2 − 1/3) = (2/3)/(7/6) = 4/7 = 0.5714285714.
		{"sklearn 4/7", []int{0, 0, 1, 1}, []int{0, 0, 1, 2}, 4.0 / 7},
		{"sklearn 4/7 swapped", []int{0, 0, 1, 2}, []int{0, 0, 1, 1}, 4.0 / 7},
		// a = [0,0,1,1], b = [0,1,0,1]: every cell holds 1, index = 0;
		// Σ C(a_i) = Σ C(b_j) = 2; expected = 2·2/6 = 2/3; maximum = 2;
		// ARI = (0 − 2/3)/(2 − 2/3) = −1/2.
		{"sklearn -1/2", []int{0, 0, 1, 1}, []int{0, 1, 0, 1}, -0.5},
		// One cluster against singletons: index = 0, Σ C(b_j) = 0, so
		// expected = 0 and ARI = 0/3 = 0.
		{"one cluster vs singletons", []int{0, 0, 0, 0}, []int{0, 1, 2, 3}, 0},
		// One cluster against anything: index = Σ C(b_j) = expected: 0.
		{"one cluster vs two", []int{5, 5, 5, 5, 5}, []int{0, 0, 1, 1, 1}, 0},
		// A larger hand example: a = [0,0,0,1,1,1], b = [0,0,1,1,2,2]:
		//	a=0: [2 1 0]
		//	a=1: [0 1 2]
		// index = C(2)+C(2) = 2; Σ C(a_i) = 3+3 = 6; Σ C(b_j) = 1+1+1 = 3;
		// C(6) = 15; expected = 6·3/15 = 6/5; maximum = 9/2;
		// ARI = (2 − 6/5)/(9/2 − 6/5) = (4/5)/(33/10) = 8/33.
		{"8/33", []int{0, 0, 0, 1, 1, 1}, []int{0, 0, 1, 1, 2, 2}, 8.0 / 33},
		// The degenerate cases, where maximum = expected: defined as 1.
		{"both one cluster", []int{3, 3, 3}, []int{1, 1, 1}, 1},
		{"both singletons", []int{0, 1, 2, 3}, []int{3, 2, 1, 0}, 1},
		{"one item", []int{0}, []int{4}, 1},
		{"no items", nil, nil, 1},
	} {
		if got := AdjustedRandIndex(c.a, c.b); !metricsNear(got, c.want, 1e-12) {
			t.Errorf("%s: ARI(%v, %v) = %.10f, want %.10f", c.name, c.a, c.b, got, c.want)
		}
	}
}

func TestAdjustedRandIndexRandomNearZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := metricsRandomLabels(rng, 10000, 10), metricsRandomLabels(rng, 10000, 10)
	ari := AdjustedRandIndex(a, b)
	t.Logf("ARI of independent labelings of 10,000 items: %.5f", ari)
	if math.Abs(ari) >= 0.01 {
		t.Fatalf("ARI of independent labelings = %.5f, want |ARI| < 0.01", ari)
	}
	if back := AdjustedRandIndex(b, a); back != ari {
		t.Fatalf("ARI is not symmetric: %v against %v", ari, back)
	}
	perm := rng.Perm(10)
	renamed := make([]int, len(a))
	for i, v := range a {
		renamed[i] = perm[v]
	}
	if got := AdjustedRandIndex(a, renamed); !metricsNear(got, 1, 1e-12) {
		t.Fatalf("ARI of a labeling and its renaming = %v, want 1", got)
	}
}

func TestClusterAccuracyKnownAnswers(t *testing.T) {
	truth := []int{0, 0, 1, 1, 1, 2, 2, 3, 3, 3}
	perm := []int{2, 3, 0, 1}
	assign := make([]int, len(truth))
	for i, c := range truth {
		assign[i] = perm[c]
	}
	if got := ClusterAccuracy(assign, truth, 4, 4); got != 1 {
		t.Errorf("renamed perfect clustering: %v, want 1", got)
	}

	// A table where the greedy choice (the biggest cell first) is wrong:
	//	           class 0  class 1
	//	cluster 0     5        4
	//	cluster 1     4        0
	// Greedy takes 5 then 0 (5/13); the best matching, cluster 0 → class 1
	// and cluster 1 → class 0, takes 4 + 4 = 8 of the 13 items.
	assign, truth = nil, nil
	add := func(cluster, class, n int) {
		for range n {
			assign, truth = append(assign, cluster), append(truth, class)
		}
	}
	add(0, 0, 5)
	add(0, 1, 4)
	add(1, 0, 4)
	if got := ClusterAccuracy(assign, truth, 2, 2); !metricsNear(got, 8.0/13, 1e-15) {
		t.Errorf("greedy trap: %v, want 8/13 = %v", got, 8.0/13)
	}

	// More clusters than classes: cluster 2 matches nothing.
	//	           class 0  class 1
	//	cluster 0     3        1
	//	cluster 1     0        2
	//	cluster 2     2        2
	// Best: 0 → 0 (3) and 1 → 1 (2), or 0 → 0 and 2 → 1 (2): 5 of 10.
	assign, truth = nil, nil
	add(0, 0, 3)
	add(0, 1, 1)
	add(1, 1, 2)
	add(2, 0, 2)
	add(2, 1, 2)
	if got := ClusterAccuracy(assign, truth, 3, 2); !metricsNear(got, 0.5, 1e-15) {
		t.Errorf("3 clusters, 2 classes: %v, want 1/2", got)
	}
	// And the other way round (fewer clusters than classes): the transpose
	// of the table, the same 5 of 10.
	if got := ClusterAccuracy(truth, assign, 2, 3); !metricsNear(got, 0.5, 1e-15) {
		t.Errorf("2 clusters, 3 classes: %v, want 1/2", got)
	}
	// Items out of range count as wrong: 2 right of 4.
	if got := ClusterAccuracy([]int{1, 1, -1, 5}, []int{0, 0, 0, 0}, 2, 1); got != 0.5 {
		t.Errorf("out-of-range clusters: %v, want 1/2", got)
	}
	if got := ClusterAccuracy(nil, nil, 3, 3); got != 0 {
		t.Errorf("no items: %v, want 0", got)
	}
}

func TestClusterAccuracyRandomNearChance(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	acc := ClusterAccuracy(metricsRandomLabels(rng, 10000, 10), metricsRandomLabels(rng, 10000, 10), 10, 10)
	t.Logf("cluster accuracy of a random clustering of 10,000 items: %.4f", acc)
	// The best matching is never worse than the average one (exactly 1/10),
	// and it only picks noise above it.
	if acc < 0.1 || acc > 0.13 {
		t.Fatalf("cluster accuracy of a random clustering = %.4f, want in [0.1, 0.13]", acc)
	}
}

// maxMatching must find the best matching of every small matrix, square or
// not, as exhaustive search does.
func TestMaxMatchingAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 400 {
		rows, cols := 1+rng.IntN(6), 1+rng.IntN(6)
		w := make([][]int, rows)
		for i := range w {
			w[i] = make([]int, cols)
			for j := range w[i] {
				w[i][j] = rng.IntN(20)
			}
		}
		match := maxMatching(w)
		got := 0
		usedCol := map[int]bool{}
		for i, j := range match {
			if j < 0 {
				continue
			}
			if usedCol[j] {
				t.Fatalf("trial %d: column %d matched twice in %v", trial, j, match)
			}
			usedCol[j] = true
			got += w[i][j]
		}
		if want := metricsBruteMatching(w, 0, make([]bool, cols)); got != want {
			t.Fatalf("trial %d: matching %v of %v weighs %d, want %d", trial, match, w, got, want)
		}
		if n := len(usedCol); n != min(rows, cols) {
			t.Fatalf("trial %d: %d pairs matched of a %d×%d matrix", trial, n, rows, cols)
		}
	}
}

func metricsBruteMatching(w [][]int, row int, used []bool) int {
	if row == len(w) {
		return 0
	}
	best := metricsBruteMatching(w, row+1, used) // this row unmatched
	for j := range used {
		if !used[j] {
			used[j] = true
			best = max(best, w[row][j]+metricsBruteMatching(w, row+1, used))
			used[j] = false
		}
	}
	return best
}

func TestKMeansSeparatedBlobs(t *testing.T) {
	const n, d, k = 1000, 8, 10
	rng := rand.New(rand.NewPCG(7, 8))
	z, y, _, minSep := metricBlobs(rng, n, d, k, 10, 0.5)
	if minSep < 8 {
		t.Fatalf("the blobs are not well separated: centres %.2f apart", minSep)
	}
	assign, inertia := KMeans(z, n, d, k, 42, 5)
	if acc := ClusterAccuracy(assign, y, k, k); acc != 1 {
		t.Errorf("cluster accuracy on separated blobs = %v, want 1", acc)
	}
	if ari := AdjustedRandIndex(assign, y); !metricsNear(ari, 1, 1e-12) {
		t.Errorf("ARI on separated blobs = %v, want 1", ari)
	}
	// The inertia is that of the assignment about its own means: about
	// n·d·noise² = 1000·8·0.25 = 2000.
	if want := metricsInertia(z, assign, n, d, k); !metricsNear(inertia, want, 1e-9*want) {
		t.Errorf("inertia %v, the assignment's own is %v", inertia, want)
	}
	if inertia < 1600 || inertia > 2400 {
		t.Errorf("inertia %v, want about 2000", inertia)
	}

	again, in2 := KMeans(z, n, d, k, 42, 5)
	if !slices.Equal(assign, again) || in2 != inertia {
		t.Errorf("KMeans with the same seed differs: inertia %v then %v", inertia, in2)
	}
	// The best of 5 runs is no worse than the first of them alone.
	if _, one := KMeans(z, n, d, k, 42, 1); one < inertia {
		t.Errorf("one run reached inertia %v, below the best of five %v", one, inertia)
	}
}

func metricsInertia(z []float32, assign []int, n, d, k int) float64 {
	mean := make([]float64, k*d)
	size := make([]int, k)
	for i, c := range assign {
		size[c]++
		for j := range d {
			mean[c*d+j] += float64(z[i*d+j])
		}
	}
	for c := range k {
		for j := range d {
			mean[c*d+j] /= float64(max(size[c], 1))
		}
	}
	var s float64
	for i, c := range assign {
		for j := range d {
			e := float64(z[i*d+j]) - mean[c*d+j]
			s += e * e
		}
	}
	return s
}

func TestKMeansSmallKnownAnswers(t *testing.T) {
	// {0, 1} and {10, 11}: means 0.5 and 10.5, inertia 4·0.25 = 1.
	assign, inertia := KMeans([]float32{10, 0, 11, 1}, 4, 1, 2, 1, 3)
	if assign[0] != assign[2] || assign[1] != assign[3] || assign[0] == assign[1] || inertia != 1 {
		t.Errorf("KMeans of 10, 0, 11, 1 into 2: %v, inertia %v; want {10, 11} {0, 1}, inertia 1", assign, inertia)
	}
	// Fewer distinct items than clusters: no panic, every item on a centre.
	assign, inertia = KMeans([]float32{2, 2, 2, 2, 2, 2, 5, 5}, 4, 2, 3, 1, 2)
	if inertia != 0 || assign[0] != assign[1] || assign[0] != assign[2] || assign[3] == assign[0] {
		t.Errorf("KMeans of 3 copies of (2, 2) and one (5, 5) into 3: %v, inertia %v", assign, inertia)
	}
	// k = n: every item its own cluster.
	assign, inertia = KMeans([]float32{0, 1, 2, 3, 4}, 5, 1, 5, 9, 1)
	if s := slices.Sorted(slices.Values(assign)); !slices.Equal(s, []int{0, 1, 2, 3, 4}) || inertia != 0 {
		t.Errorf("KMeans of 5 items into 5: %v, inertia %v", assign, inertia)
	}
}

func TestKMeansPanicsOnBadArguments(t *testing.T) {
	for name, f := range map[string]func(){
		"length":     func() { KMeans(make([]float32, 5), 3, 2, 2, 1, 1) },
		"k > n":      func() { KMeans(make([]float32, 6), 3, 2, 4, 1, 1) },
		"k = 0":      func() { KMeans(make([]float32, 6), 3, 2, 0, 1, 1) },
		"non-finite": func() { KMeans([]float32{0, float32(math.NaN())}, 2, 1, 1, 1, 1) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "KMeans") {
					t.Errorf("%s: recovered %v, want a KMeans panic", name, r)
				}
			}()
			f()
		}()
	}
}

func TestLinearProbeSeparableBlobs(t *testing.T) {
	const n, d, k = 2000, 8, 10
	rng := rand.New(rand.NewPCG(9, 10))
	z, y, _, _ := metricBlobs(rng, 2*n, d, k, 5, 0.5)
	trainZ, trainY, testZ, testY := z[:n*d], y[:n], z[n*d:], y[n:]
	acc, err := LinearProbe(trainZ, trainY, testZ, testY, d, k, ProbeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe accuracy on separable blobs: %.4f", acc)
	if acc < 0.99 {
		t.Errorf("probe accuracy on separable blobs = %.4f, want at least 0.99", acc)
	}

	// The same latents on wildly different scales and offsets per
	// dimension: standardisation must make it the same problem.
	scaled := func(z []float32) []float32 {
		out := make([]float32, len(z))
		for i, v := range z {
			j := i % d
			out[i] = v*float32(math.Pow(10, float64(j-4))) + float32(1000*j)
		}
		return out
	}
	acc, err = LinearProbe(scaled(trainZ), trainY, scaled(testZ), testY, d, k, ProbeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.99 {
		t.Errorf("probe accuracy on rescaled separable blobs = %.4f, want at least 0.99", acc)
	}
}

// The test latents must be standardised with the training statistics: a
// test set of one class only, standardised by its own mean and deviation,
// would straddle the boundary and be half wrong.
func TestLinearProbeStandardisesWithTrainingStatistics(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var trainZ, testZ []float32
	var trainY, testY []int
	for i := range 400 {
		c := i % 2
		trainZ, trainY = append(trainZ, float32(10+10*c)+float32(rng.NormFloat64())), append(trainY, c)
	}
	for range 400 {
		testZ, testY = append(testZ, 20+float32(rng.NormFloat64())), append(testY, 1)
	}
	acc, err := LinearProbe(trainZ, trainY, testZ, testY, 1, 2, ProbeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.99 {
		t.Fatalf("probe accuracy on a one-class test set = %.4f, want at least 0.99", acc)
	}
}

func TestLinearProbeRandomLabelsAtChance(t *testing.T) {
	const n, d, k = 2000, 16, 10
	rng := rand.New(rand.NewPCG(13, 14))
	z := make([]float32, 2*n*d)
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	y := metricsRandomLabels(rng, 2*n, k)
	acc, err := LinearProbe(z[:n*d], y[:n], z[n*d:], y[n:], d, k, ProbeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe accuracy with labels independent of the latents: %.4f (chance 0.1)", acc)
	// On 2000 test items chance is 0.1 ± 0.007.
	if acc < 0.05 || acc >= 0.2 {
		t.Fatalf("probe accuracy with random labels = %.4f, want near 0.1 (in [0.05, 0.2))", acc)
	}
}

// The probe's own predictions: a perfect predictor agrees with the truth, a
// uniformly random one about a tenth of the time.
func TestAgreementPerfectAndRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	truth := metricsRandomLabels(rng, 5000, 10)
	if got := Agreement(truth, truth); got != 1 {
		t.Errorf("perfect predictor: %v, want 1", got)
	}
	random := Agreement(metricsRandomLabels(rng, 5000, 10), truth)
	t.Logf("random predictor: %.4f", random)
	if math.Abs(random-0.1) > 0.02 {
		t.Errorf("random predictor: %.4f, want 0.1 ± 0.02", random)
	}
	if got := Agreement([]int{0, -1, 2, -1}, []int{0, 1, 2, -1}); got != 0.5 {
		t.Errorf("with −1 answers: %v, want 1/2 (−1 is never right)", got)
	}
	if got := Agreement(nil, nil); got != 0 {
		t.Errorf("no items: %v, want 0", got)
	}
}

func TestConfusionMatrix(t *testing.T) {
	pred := []int{0, 1, 1, 2, 2, 2, -1, 0}
	truth := []int{0, 1, 2, 2, 2, 0, 1, 0}
	want := [][]int{
		{2, 0, 1}, // class 0: predicted 0, 2, 0
		{0, 1, 0}, // class 1: 1 (and −1, left out)
		{0, 1, 2}, // class 2: 1, 2, 2
	}
	got := ConfusionMatrix(pred, truth, 3)
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("confusion matrix %v, want %v", got, want)
	}
}

func TestLinearProbeRejectsBadInputs(t *testing.T) {
	z := []float32{0, 1, 2, 3, 4, 5} // 3 items of dimension 2
	y := []int{0, 1, 0}
	nan := []float32{0, 1, float32(math.NaN()), 3, 4, 5}
	inf := []float32{0, 1, 2, 3, 4, float32(math.Inf(-1))}
	for _, c := range []struct {
		name       string
		trainZ     []float32
		trainY     []int
		testZ      []float32
		testY      []int
		d, classes int
		cfg        ProbeConfig
		want       string
	}{
		{"d", z, y, z, y, 0, 2, ProbeConfig{}, "dimension 0"},
		{"classes", z, y, z, y, 2, 1, ProbeConfig{}, "1 classes"},
		{"L2", z, y, z, y, 2, 2, ProbeConfig{L2: -1}, "L2"},
		{"MaxIter", z, y, z, y, 2, 2, ProbeConfig{MaxIter: -1}, "MaxIter"},
		{"no training items", nil, nil, z, y, 2, 2, ProbeConfig{}, "no training items"},
		{"no test items", z, y, nil, nil, 2, 2, ProbeConfig{}, "no test items"},
		{"training length", z[:5], y, z, y, 2, 2, ProbeConfig{}, "5 training latent values for 3 labels"},
		{"test length", z, y, z, y[:2], 2, 2, ProbeConfig{}, "6 test latent values for 2 labels"},
		{"NaN", nan, y, z, y, 2, 2, ProbeConfig{}, "training item 1 has the non-finite"},
		{"Inf", z, y, inf, y, 2, 2, ProbeConfig{}, "test item 2 has the non-finite"},
		{"label too big", z, []int{0, 2, 1}, z, y, 2, 2, ProbeConfig{}, "training item 1 has label 2"},
		{"negative label", z, y, z, []int{0, -1, 1}, 2, 2, ProbeConfig{}, "test item 1 has label -1"},
	} {
		_, err := LinearProbe(c.trainZ, c.trainY, c.testZ, c.testY, c.d, c.classes, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	if _, err := LinearProbe(z, y, z, y, 2, 2, ProbeConfig{}); err != nil {
		t.Errorf("valid inputs: %v", err)
	}
}

// The probe's optimiser must find known minima: of Rosenbrock's valley
// (at (1, 1), from the classic start (−1.2, 1)) and of a badly conditioned
// quadratic Σ c_i (x_i − i)², c_i = 10^(i−3), at x_i = i.
func TestLBFGSFindsKnownMinima(t *testing.T) {
	rosen := func(x, g []float64) float64 {
		a, b := 1-x[0], x[1]-x[0]*x[0]
		g[0] = -2*a - 400*x[0]*b
		g[1] = 200 * b
		return a*a + 100*b*b
	}
	x := []float64{-1.2, 1}
	lbfgs(rosen, x, 500, 1e-10)
	if !metricsNear(x[0], 1, 1e-6) || !metricsNear(x[1], 1, 1e-6) {
		t.Errorf("Rosenbrock: minimum found at %v, want (1, 1)", x)
	}
	quad := func(x, g []float64) float64 {
		var f float64
		for i, v := range x {
			c := math.Pow(10, float64(i-3))
			e := v - float64(i)
			f += c * e * e
			g[i] = 2 * c * e
		}
		return f
	}
	x = make([]float64, 7)
	lbfgs(quad, x, 500, 1e-12)
	for i, v := range x {
		if !metricsNear(v, float64(i), 1e-6) {
			t.Errorf("quadratic: x[%d] = %v, want %d", i, v, i)
		}
	}
}

// A class absent from the training items is never predicted and breaks
// nothing: its bias only sinks.
func TestLinearProbeClassAbsentFromTraining(t *testing.T) {
	const n, d, k = 1800, 8, 10
	rng := rand.New(rand.NewPCG(17, 18))
	z, y, _, _ := metricBlobs(rng, 2*n, d, k, 5, 0.5)
	var trainZ []float32
	var trainY []int
	for i, c := range y[:n] {
		if c != 9 {
			trainZ, trainY = append(trainZ, z[i*d:(i+1)*d]...), append(trainY, c)
		}
	}
	acc, err := LinearProbe(trainZ, trainY, z[n*d:], y[n:], d, k, ProbeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Class 9 is a tenth of the test items, all wrong; the rest right.
	if acc < 0.89 || acc > 0.9 {
		t.Fatalf("probe accuracy without class 9 in training = %.4f, want 0.9 less a hair", acc)
	}
}
