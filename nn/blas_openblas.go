//go:build openblas && cgo

package nn

// gonum.org/v1/netlib/blas/netlib declares no linker flags, so nn names the
// library here; cgo passes every package's LDFLAGS to the final link, which
// makes `go build -tags openblas` work without CGO_LDFLAGS. Debian's
// libopenblas-dev provides -lopenblas.

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/netlib/blas/netlib"
)

func defaultBLAS() blas.Float32 { return netlib.Implementation{} }

func isOpenBLAS(impl blas.Float32) bool {
	_, ok := impl.(netlib.Implementation)
	return ok
}
