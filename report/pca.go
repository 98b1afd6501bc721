package report

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// PCA2 projects n points of dimension d (z row-major: point i is
// z[i*d:(i+1)*d]) onto their first two principal components, for a 2-D
// picture of a latent space.
//
// The points are centred on their mean and the principal directions are
// the top two right singular vectors of the centred n×d matrix (a thin
// SVD, computed in float64 whatever T is). xy holds the coordinates
// interleaved, x0, y0, x1, y1, …, as Scatter.XY wants them; since the
// directions are orthonormal, distances between points that lie in a 2-D
// plane are kept exactly. frac is the fraction of the total variance
// each component explains (0 when there is no variance), for axis labels.
//
// An SVD fixes each direction only up to its sign; PCA2 makes the
// direction's component of largest magnitude positive (the first such
// component on a tie), so the same input always gives the same picture.
// With d = 1, or points of rank below 2, the missing coordinates are 0.
//
// It returns an error if n < 1, d < 1, len(z) != n*d or a value is NaN or
// infinite.
func PCA2[T float32 | float64](z []T, n, d int) (xy []float64, frac [2]float64, err error) {
	if n < 1 || d < 1 || len(z) != n*d {
		return nil, frac, fmt.Errorf("report: PCA2: %d values for %d points of dimension %d", len(z), n, d)
	}
	mean := make([]float64, d)
	for i, v := range z {
		x := float64(v)
		if !finite(x) {
			return nil, frac, fmt.Errorf("report: PCA2: point %d, coordinate %d is %v", i/d, i%d, x)
		}
		mean[i%d] += x
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	c := mat.NewDense(n, d, nil)
	for i := range n {
		row := c.RawRowView(i)
		for j := range d {
			row[j] = float64(z[i*d+j]) - mean[j]
		}
	}
	xy = make([]float64, 2*n)
	var svd mat.SVD
	if !svd.Factorize(c, mat.SVDThinV) {
		return nil, frac, fmt.Errorf("report: PCA2: the SVD of the %d×%d centred points did not converge", n, d)
	}
	var v mat.Dense
	svd.VTo(&v)
	sv := svd.Values(nil)
	var total float64
	for _, s := range sv {
		total += s * s
	}
	k := min(2, len(sv))
	for comp := range k {
		dir := make([]float64, d)
		mat.Col(dir, comp, &v)
		best := 0
		for j, x := range dir {
			if math.Abs(x) > math.Abs(dir[best]) {
				best = j
			}
		}
		if dir[best] < 0 {
			for j := range dir {
				dir[j] = -dir[j]
			}
		}
		for i := range n {
			var dot float64
			for j, x := range c.RawRowView(i) {
				dot += x * dir[j]
			}
			xy[2*i+comp] = dot
		}
		if total > 0 {
			frac[comp] = sv[comp] * sv[comp] / total
		}
	}
	return xy, frac, nil
}
