package eval

// Metrics on a shared latent space: vectors of dimension d, one per item,
// stored row-major in a flat []float32 (item i is z[i*d : (i+1)*d]), each
// item with a class label in [0, classes). They are pure functions with no
// model behind them, deterministic given their seed: every random choice
// comes from a math/rand/v2 PCG source seeded from it.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/optimize"
)

// ProbeConfig sets how LinearProbe trains its classifier.
type ProbeConfig struct {
	// L2 is the weight decay on the weights (not the biases), added to the
	// mean cross-entropy as L2/2·‖W‖²; default 1e-4 (negative: an error).
	L2 float64
	// MaxIter bounds the L-BFGS iterations; default 500.
	MaxIter int
}

// LinearProbe measures how linearly decodable the classes are from the
// latents: it fits a multinomial logistic regression (softmax over classes,
// with biases) on the training latents and returns its accuracy on the test
// latents.
//
// The features are standardised with the mean and standard deviation of the
// training latents (a constant feature is only centred), the test latents
// with the same statistics. The objective, the mean cross-entropy plus
// L2/2·‖W‖², is convex and minimised by full-batch L-BFGS from zero
// weights, so the result has no randomness. Stopping early (at MaxIter, or
// when a line search can no longer improve near the optimum) is not an
// error: the best point found is used. Ties between class
// scores go to the lowest class.
//
// trainZ holds len(trainY) rows of d values and testZ len(testY) rows; every
// label must be in [0, classes), every latent finite, both sets non-empty,
// d ≥ 1 and classes ≥ 2. The error says which requirement is broken.
func LinearProbe(trainZ []float32, trainY []int, testZ []float32, testY []int, d, classes int, cfg ProbeConfig) (acc float64, err error) {
	if err := checkProbeInputs(trainZ, trainY, testZ, testY, d, classes, cfg); err != nil {
		return 0, err
	}
	if cfg.L2 == 0 {
		cfg.L2 = 1e-4
	}
	if cfg.MaxIter == 0 {
		cfg.MaxIter = 500
	}
	n := len(trainY)
	mean, std := featureStats(trainZ, n, d)
	x := standardised(trainZ, n, d, mean, std)

	obj := softmaxObjective{x: x, y: trainY, n: n, d: d, classes: classes, l2: cfg.L2}
	w := make([]float64, classes*(d+1))
	lbfgs(obj.eval, w, cfg.MaxIter, 1e-7)
	for _, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, errors.New("eval: linear probe: the optimiser diverged")
		}
	}

	m := len(testY)
	xt := standardised(testZ, m, d, mean, std)
	logits := make([]float64, classes)
	right := 0
	for i := range m {
		obj.logits(logits, w, xt[i*d:(i+1)*d])
		best := 0
		for c, v := range logits {
			if v > logits[best] {
				best = c
			}
		}
		if best == testY[i] {
			right++
		}
	}
	return float64(right) / float64(m), nil
}

func checkProbeInputs(trainZ []float32, trainY []int, testZ []float32, testY []int, d, classes int, cfg ProbeConfig) error {
	switch {
	case d < 1:
		return fmt.Errorf("eval: linear probe: dimension %d, want at least 1", d)
	case classes < 2:
		return fmt.Errorf("eval: linear probe: %d classes, want at least 2", classes)
	case cfg.L2 < 0 || math.IsNaN(cfg.L2):
		return fmt.Errorf("eval: linear probe: L2 %v, want at least 0", cfg.L2)
	case cfg.MaxIter < 0:
		return fmt.Errorf("eval: linear probe: MaxIter %d, want at least 0", cfg.MaxIter)
	}
	for _, s := range []struct {
		name string
		z    []float32
		y    []int
	}{{"training", trainZ, trainY}, {"test", testZ, testY}} {
		if len(s.y) == 0 {
			return fmt.Errorf("eval: linear probe: no %s items", s.name)
		}
		if len(s.z) != len(s.y)*d {
			return fmt.Errorf("eval: linear probe: %d %s latent values for %d labels of dimension %d, want %d",
				len(s.z), s.name, len(s.y), d, len(s.y)*d)
		}
		for i, v := range s.z {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("eval: linear probe: %s item %d has the non-finite latent value %v (dimension %d)",
					s.name, i/d, v, i%d)
			}
		}
		for i, c := range s.y {
			if c < 0 || c >= classes {
				return fmt.Errorf("eval: linear probe: %s item %d has label %d, want one in [0, %d)", s.name, i, c, classes)
			}
		}
	}
	return nil
}

// featureStats returns the mean and the standard deviation (the population
// one; 1 where it is 0) of each of the d features of n rows.
func featureStats(z []float32, n, d int) (mean, std []float64) {
	mean = make([]float64, d)
	std = make([]float64, d)
	for i := range n {
		for j, v := range z[i*d : (i+1)*d] {
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := range n {
		for j, v := range z[i*d : (i+1)*d] {
			e := float64(v) - mean[j]
			std[j] += e * e
		}
	}
	for j := range std {
		std[j] = math.Sqrt(std[j] / float64(n))
		if std[j] == 0 {
			std[j] = 1
		}
	}
	return mean, std
}

func standardised(z []float32, n, d int, mean, std []float64) []float64 {
	x := make([]float64, n*d)
	for i := range n {
		for j := range d {
			x[i*d+j] = (float64(z[i*d+j]) - mean[j]) / std[j]
		}
	}
	return x
}

// softmaxObjective is the L2-regularised mean cross-entropy of a softmax
// regression. Its parameters are the classes×d weights, row-major, then the
// classes biases.
type softmaxObjective struct {
	x       []float64 // n×d standardised features
	y       []int
	n, d    int
	classes int
	l2      float64
}

func (o *softmaxObjective) logits(dst, w, xi []float64) {
	bias := w[o.classes*o.d:]
	for c := range o.classes {
		s := bias[c]
		for j, v := range w[c*o.d : (c+1)*o.d] {
			s += v * xi[j]
		}
		dst[c] = s
	}
}

// eval returns the objective at w and, if grad is not nil, stores its
// gradient there.
func (o *softmaxObjective) eval(w, grad []float64) float64 {
	if grad != nil {
		clear(grad)
	}
	p, e := make([]float64, o.classes), make([]float64, o.classes)
	var loss float64
	for i := range o.n {
		xi := o.x[i*o.d : (i+1)*o.d]
		o.logits(p, w, xi)
		mx := math.Inf(-1)
		for _, v := range p {
			mx = math.Max(mx, v)
		}
		var s float64
		for c, v := range p {
			e[c] = math.Exp(v - mx) // kept for the gradient: exp is most of the probe's time
			s += e[c]
		}
		loss += mx + math.Log(s) - p[o.y[i]]
		if grad == nil {
			continue
		}
		gb := grad[o.classes*o.d:]
		for c := range p {
			r := e[c] / s // the probability of class c
			if c == o.y[i] {
				r--
			}
			gb[c] += r
			gw := grad[c*o.d : (c+1)*o.d]
			for j, v := range xi {
				gw[j] += r * v
			}
		}
	}
	inv := 1 / float64(o.n)
	loss *= inv
	var sq float64
	for _, v := range w[:o.classes*o.d] {
		sq += v * v
	}
	loss += o.l2 / 2 * sq
	if grad != nil {
		for k := range grad {
			grad[k] *= inv
		}
		for k, v := range w[:o.classes*o.d] {
			grad[k] += o.l2 * v
		}
	}
	return loss
}

// lbfgs minimises f from x, in place, with gonum's L-BFGS. f returns the
// value at x and stores the gradient in g. It stops when the gradient's
// largest component is below gtol or after maxIter iterations; running out
// of iterations is not an error (the best point so far is kept).
func lbfgs(f func(x, g []float64) float64, x []float64, maxIter int, gtol float64) {
	p := optimize.Problem{
		Func: func(x []float64) float64 { return f(x, make([]float64, len(x))) },
		Grad: func(g, x []float64) { f(x, g) },
	}
	res, _ := optimize.Minimize(p, x, &optimize.Settings{
		MajorIterations:   maxIter,
		GradientThreshold: gtol,
	}, &optimize.LBFGS{})
	if res != nil { // the best point found, also when err says why it stopped early
		copy(x, res.X)
	}
}

// kmeansMaxIter bounds the Lloyd iterations of one KMeans run; they stop
// earlier, as soon as no item changes cluster.
const kmeansMaxIter = 300

// KMeans clusters the n rows of d values in z into k clusters, minimising
// the inertia: the sum over items of the squared Euclidean distance to their
// cluster's mean. Each of restarts runs (at least one) starts from a
// k-means++ seeding and runs Lloyd iterations until no item changes cluster
// (at most 300); the run of lowest inertia wins (the first one on a tie).
// Ties between equally near centres go to the lowest cluster. A cluster that
// empties is moved onto the item farthest from its own centre.
//
// All random choices come from one PCG source seeded from seed, so the
// result is a function of the arguments. assign[i] in [0, k) is item i's
// cluster; inertia is computed in float64.
//
// KMeans panics on inconsistent arguments (len(z) ≠ n·d, n, d or k < 1,
// k > n) or non-finite values: they are the caller's bug.
func KMeans(z []float32, n, d, k int, seed uint64, restarts int) (assign []int, inertia float64) {
	switch {
	case n < 1 || d < 1 || k < 1:
		panic(fmt.Sprintf("eval: KMeans: n = %d, d = %d, k = %d, want all at least 1", n, d, k))
	case len(z) != n*d:
		panic(fmt.Sprintf("eval: KMeans: %d values for %d items of dimension %d", len(z), n, d))
	case k > n:
		panic(fmt.Sprintf("eval: KMeans: %d clusters of %d items", k, n))
	}
	x := make([]float64, n*d)
	for i, v := range z {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			panic(fmt.Sprintf("eval: KMeans: item %d has the non-finite value %v", i/d, v))
		}
		x[i] = float64(v)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b6d65616e73))
	inertia = math.Inf(1)
	for range max(restarts, 1) {
		a, in := lloyd(x, n, d, k, kmeansPlusPlus(x, n, d, k, rng))
		if in < inertia {
			assign, inertia = a, in
		}
	}
	return assign, inertia
}

func sqDist(a, b []float64) float64 {
	var s float64
	for j, v := range a {
		e := v - b[j]
		s += e * e
	}
	return s
}

// kmeansPlusPlus picks k initial centres (k×d, row-major) among the items:
// the first uniformly, each next one with probability proportional to its
// squared distance to the nearest centre already picked (uniformly if every
// item sits on a centre).
func kmeansPlusPlus(x []float64, n, d, k int, rng *rand.Rand) []float64 {
	centres := make([]float64, 0, k*d)
	near := make([]float64, n) // squared distance to the nearest centre
	for i := range near {
		near[i] = math.Inf(1)
	}
	pick := rng.IntN(n)
	for {
		c := x[pick*d : (pick+1)*d]
		centres = append(centres, c...)
		if len(centres) == k*d {
			return centres
		}
		var total float64
		for i := range n {
			near[i] = math.Min(near[i], sqDist(x[i*d:(i+1)*d], c))
			total += near[i]
		}
		if total == 0 {
			pick = rng.IntN(n)
			continue
		}
		r := rng.Float64() * total
		pick = -1
		var cum float64
		for i, v := range near {
			if v == 0 {
				continue
			}
			pick = i // the last candidate, should rounding leave r beyond cum
			if cum += v; cum > r {
				break
			}
		}
	}
}

// lloyd runs Lloyd iterations from the given centres and returns the
// assignment and its inertia.
func lloyd(x []float64, n, d, k int, centres []float64) ([]int, float64) {
	assign := make([]int, n)
	for i := range assign {
		assign[i] = -1
	}
	dist := make([]float64, n)
	sizes := make([]int, k)
	var inertia float64
	for range kmeansMaxIter {
		changed := false
		inertia = 0
		for i := range n {
			xi := x[i*d : (i+1)*d]
			best, bd := 0, math.Inf(1)
			for c := range k {
				if e := sqDist(xi, centres[c*d:(c+1)*d]); e < bd {
					best, bd = c, e
				}
			}
			if assign[i] != best {
				assign[i] = best
				changed = true
			}
			dist[i] = bd
			inertia += bd
		}
		if !changed {
			break
		}
		clear(centres)
		clear(sizes)
		for i, c := range assign {
			sizes[c]++
			for j, v := range x[i*d : (i+1)*d] {
				centres[c*d+j] += v
			}
		}
		for c, s := range sizes {
			if s > 0 {
				for j := range d {
					centres[c*d+j] /= float64(s)
				}
			}
		}
		for c, s := range sizes {
			if s > 0 {
				continue
			}
			// An empty cluster takes the item farthest from its centre,
			// among clusters that would not empty in turn.
			far := -1
			for i, e := range dist {
				if e > 0 && sizes[assign[i]] > 1 && (far < 0 || e > dist[far]) {
					far = i
				}
			}
			if far < 0 {
				continue // fewer distinct items than clusters: it stays where it was
			}
			copy(centres[c*d:(c+1)*d], x[far*d:(far+1)*d])
			dist[far] = 0
			sizes[assign[far]]--
			sizes[c] = 1
		}
	}
	return assign, inertia
}

// ClusterAccuracy is the fraction of items that agree with their class once
// each of the k clusters is matched to at most one of the classes, one to
// one, by the matching that agrees the most (the Hungarian algorithm on the
// k×classes contingency table). With k > classes some clusters match no
// class and their items count as wrong; so do items whose cluster is not in
// [0, k) or whose class is not in [0, classes).
//
// It is 1 for a clustering equal to the classes up to renaming, and at least
// 1/max(k, classes) for any clustering with every entry in range (the
// average over all matchings). It is 0 for no items and panics if
// the lengths differ.
func ClusterAccuracy(assign, truth []int, k, classes int) float64 {
	if len(assign) != len(truth) {
		panic(fmt.Sprintf("eval: ClusterAccuracy: %d assignments for %d labels", len(assign), len(truth)))
	}
	if len(truth) == 0 || k < 1 || classes < 1 {
		return 0
	}
	table := make([][]int, k)
	for c := range table {
		table[c] = make([]int, classes)
	}
	for i, c := range assign {
		if t := truth[i]; c >= 0 && c < k && t >= 0 && t < classes {
			table[c][t]++
		}
	}
	matched := 0
	for c, t := range maxMatching(table) {
		if t >= 0 {
			matched += table[c][t]
		}
	}
	return float64(matched) / float64(len(truth))
}

// maxMatching returns, for each row of the rows×cols matrix w, the column
// matched to it (-1 for none) by a one-to-one matching of rows to columns of
// the largest total weight. It pads w to a square matrix and runs the O(m³)
// Hungarian algorithm (shortest augmenting paths with potentials) on the
// costs −w.
func maxMatching(w [][]int) []int {
	rows := len(w)
	cols := 0
	if rows > 0 {
		cols = len(w[0])
	}
	m := max(rows, cols)
	cost := func(i, j int) int64 { // 1-based
		if i-1 < rows && j-1 < cols {
			return -int64(w[i-1][j-1])
		}
		return 0
	}
	const inf = math.MaxInt64 / 4
	u := make([]int64, m+1)
	v := make([]int64, m+1)
	p := make([]int, m+1) // p[j]: the row matched to column j (0: none)
	way := make([]int, m+1)
	minv := make([]int64, m+1)
	used := make([]bool, m+1)
	for i := 1; i <= m; i++ {
		p[0] = i
		j0 := 0
		for j := range minv {
			minv[j] = inf
			used[j] = false
		}
		for {
			used[j0] = true
			i0, delta, j1 := p[j0], int64(inf), 0
			for j := 1; j <= m; j++ {
				if used[j] {
					continue
				}
				if cur := cost(i0, j) - u[i0] - v[j]; cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= m; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if p[j0] == 0 {
				break
			}
		}
		for j0 != 0 {
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
		}
	}
	match := make([]int, rows)
	for i := range match {
		match[i] = -1
	}
	for j := 1; j <= m; j++ {
		if i := p[j]; i >= 1 && i <= rows && j <= cols {
			match[i-1] = j - 1
		}
	}
	return match
}

// AdjustedRandIndex is the Rand index of two partitions of the same items
// adjusted for chance (Hubert & Arabie, 1985): with n_ij the contingency
// table of labels a against labels b, a_i and b_j its row and column sums,
// and C(m) = m(m−1)/2,
//
//	index    = Σ_ij C(n_ij)
//	expected = Σ_i C(a_i) · Σ_j C(b_j) / C(n)
//	maximum  = (Σ_i C(a_i) + Σ_j C(b_j)) / 2
//	ARI      = (index − expected) / (maximum − expected)
//
// It is 1 for identical partitions (whatever the label values), about 0 for
// independent ones, and can be negative (down to −1/2). Labels are any ints
// (−1 is a label like any other), only their equality matters.
//
// The denominator is 0 exactly when both partitions put every item in one
// cluster, or both put every item in a cluster of its own, or there are
// fewer than 2 items: the partitions are then identical and the result is
// 1, as in scikit-learn. One partition of a single cluster against any
// other one gives 0. It panics if the lengths differ.
func AdjustedRandIndex(a, b []int) float64 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("eval: AdjustedRandIndex: %d labels against %d", len(a), len(b)))
	}
	type pair struct{ a, b int }
	cells := map[pair]int{}
	rowSums := map[int]int{}
	colSums := map[int]int{}
	for i, x := range a {
		cells[pair{x, b[i]}]++
		rowSums[x]++
		colSums[b[i]]++
	}
	c2 := func(m int) float64 { return float64(m) * float64(m-1) / 2 }
	var index, sa, sb float64
	for _, m := range cells {
		index += c2(m)
	}
	for _, m := range rowSums {
		sa += c2(m)
	}
	for _, m := range colSums {
		sb += c2(m)
	}
	total := c2(len(a))
	if total == 0 {
		return 1
	}
	expected := sa * sb / total
	maximum := (sa + sb) / 2
	if maximum == expected {
		return 1
	}
	return (index - expected) / (maximum - expected)
}

// Agreement is the fraction of items whose prediction equals the truth: a
// perfect predictor scores 1, a uniformly random one about 1/classes. A
// negative entry (−1: no answer) on either side counts as wrong. It is 0 for
// no items and panics if the lengths differ.
func Agreement(pred, truth []int) float64 {
	if len(pred) != len(truth) {
		panic(fmt.Sprintf("eval: Agreement: %d predictions for %d labels", len(pred), len(truth)))
	}
	if len(truth) == 0 {
		return 0
	}
	right := 0
	for i, p := range pred {
		if p >= 0 && p == truth[i] {
			right++
		}
	}
	return float64(right) / float64(len(truth))
}

// ConfusionMatrix counts the items of each true class (rows) by predicted
// class (columns): m[t][p]. Items whose prediction or truth is not in
// [0, classes) (such as −1 for no answer) are left out, so a row sums to the
// items of that class that got an answer. It panics if the lengths differ.
func ConfusionMatrix(pred, truth []int, classes int) [][]int {
	if len(pred) != len(truth) {
		panic(fmt.Sprintf("eval: ConfusionMatrix: %d predictions for %d labels", len(pred), len(truth)))
	}
	m := make([][]int, max(classes, 0))
	for t := range m {
		m[t] = make([]int, classes)
	}
	for i, p := range pred {
		if t := truth[i]; p >= 0 && p < classes && t >= 0 && t < classes {
			m[t][p]++
		}
	}
	return m
}
