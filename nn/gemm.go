package nn

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

// Gonum is gonum's pure-Go float32 BLAS with Sgemm rescheduled so that it
// does not allocate. It is the default implementation behind blas32 once nn
// is imported (unless built with the openblas tag).
//
// gonum.Implementation.Sgemm starts a goroutine and a channel per call once
// C has four or more 64×64 blocks, which costs dozens of allocations per
// product and would break the allocation-free training step. Gonum instead
// splits C into 64×64 tiles (and the inner dimension into 64-wide slabs, the
// same blocking gonum uses), hands each tile to gonum's serial kernel, and
// shares the tiles between the calling goroutine and GOMAXPROCS−1
// long-lived workers, started on first use. The arithmetic is gonum's; only
// the scheduling differs. All other methods are gonum.Implementation's.
type Gonum struct{ gonum.Implementation }

var _ blas.Float32 = Gonum{}

const (
	gemmTile = 64 // side of a C tile and depth of a k slab; one gonum block
	// gemmParWork is the number of multiply-adds below which a product is
	// done on the calling goroutine: waking a worker costs a few µs.
	gemmParWork = 1 << 18
)

// gemmJob is one Sgemm split into tiles of C.
type gemmJob struct {
	aTrans, bTrans bool
	tA, tB         blas.Transpose
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	tilesN         int // tiles per row of C
	tiles          int
}

// gemmShared is the job handed to the pool; only the goroutine holding the
// pool touches it.
var gemmShared gemmJob

// Sgemm computes C = alpha * op(A) * op(B) + beta * C as gonum does, without
// allocating.
func (Gonum) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	impl := gonum.Implementation{}
	aTrans := tA == blas.Trans || tA == blas.ConjTrans
	bTrans := tB == blas.Trans || tB == blas.ConjTrans
	if m <= gemmTile && n <= gemmTile && k <= gemmTile || m == 0 || n == 0 {
		// One gonum block: gonum stays serial. This also lets gonum
		// report bad arguments with its own panics.
		impl.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	checkGemm(aTrans, bTrans, tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	if k == 0 || alpha == 0 {
		if beta != 1 {
			for i := 0; i < m; i++ {
				row := c[i*ldc : i*ldc+n]
				if beta == 0 {
					clear(row)
					continue
				}
				for j := range row {
					row[j] *= beta
				}
			}
		}
		return
	}

	if m*n*k >= gemmParWork && poolAcquire() {
		j := &gemmShared
		j.set(aTrans, bTrans, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		poolRun(j, j.tiles)
		j.a, j.b, j.c = nil, nil, nil // don't pin the caller's memory
		poolRelease()
		return
	}
	var j gemmJob
	j.set(aTrans, bTrans, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	for t := range j.tiles {
		j.runChunk(t)
	}
}

func (j *gemmJob) set(aTrans, bTrans bool, tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	j.aTrans, j.bTrans, j.tA, j.tB = aTrans, bTrans, tA, tB
	j.m, j.n, j.k, j.alpha, j.beta = m, n, k, alpha, beta
	j.a, j.b, j.c, j.lda, j.ldb, j.ldc = a, b, c, lda, ldb, ldc
	j.tilesN = (n + gemmTile - 1) / gemmTile
	j.tiles = ((m + gemmTile - 1) / gemmTile) * j.tilesN
}

// runChunk computes tile t of C.
func (j *gemmJob) runChunk(t int) {
	impl := gonum.Implementation{}
	i0 := t / j.tilesN * gemmTile
	j0 := t % j.tilesN * gemmTile
	mt := min(gemmTile, j.m-i0)
	nt := min(gemmTile, j.n-j0)
	c := j.c[i0*j.ldc+j0:]
	beta := j.beta
	for l0 := 0; l0 < j.k; l0 += gemmTile {
		kt := min(gemmTile, j.k-l0)
		var a, b []float32
		if j.aTrans {
			a = j.a[l0*j.lda+i0:]
		} else {
			a = j.a[i0*j.lda+l0:]
		}
		if j.bTrans {
			b = j.b[j0*j.ldb+l0:]
		} else {
			b = j.b[l0*j.ldb+j0:]
		}
		impl.Sgemm(j.tA, j.tB, mt, nt, kt, j.alpha, a, j.lda, b, j.ldb, beta, c, j.ldc)
		beta = 1
	}
}

// checkGemm panics, as gonum would, on arguments that tiling could hide.
func checkGemm(aTrans, bTrans bool, tA, tB blas.Transpose, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	switch {
	case tA != blas.NoTrans && !aTrans, tB != blas.NoTrans && !bTrans:
		panic("blas: illegal transpose")
	case m < 0:
		panic("blas: m < 0")
	case n < 0:
		panic("blas: n < 0")
	case k < 0:
		panic("blas: k < 0")
	}
	ra, ca := m, k
	if aTrans {
		ra, ca = k, m
	}
	rb, cb := k, n
	if bTrans {
		rb, cb = n, k
	}
	switch {
	case lda < max(1, ca):
		panic("blas: bad leading dimension of A")
	case ldb < max(1, cb):
		panic("blas: bad leading dimension of B")
	case ldc < max(1, n):
		panic("blas: bad leading dimension of C")
	case ra > 0 && len(a) < (ra-1)*lda+ca:
		panic("blas: insufficient length of a")
	case rb > 0 && len(b) < (rb-1)*ldb+cb:
		panic("blas: insufficient length of b")
	case len(c) < (m-1)*ldc+n:
		panic("blas: insufficient length of c")
	}
}

// gemm is the one place nn multiplies matrices: C = alpha·op(A)·op(B) + beta·C
// through blas32, so blas32.Use swaps the implementation.
func gemm(tA, tB blas.Transpose, alpha float32, a blas32.General, b blas32.General, beta float32, c blas32.General) {
	blas32.Gemm(tA, tB, alpha, a, b, beta, c)
}
