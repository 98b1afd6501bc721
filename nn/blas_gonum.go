//go:build !(openblas && cgo)

package nn

import "gonum.org/v1/gonum/blas"

func defaultBLAS() blas.Float32 { return Gonum{} }

func isOpenBLAS(blas.Float32) bool { return false }
