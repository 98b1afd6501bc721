package nn

import (
	"fmt"

	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

func init() { blas32.Use(defaultBLAS()) }

// Backend reports which float32 BLAS blas32 currently uses: "gonum" (the
// default, pure Go), "openblas" (built with -tags openblas), or the Go type
// of whatever other implementation was installed with blas32.Use.
func Backend() string {
	switch impl := blas32.Implementation().(type) {
	case Gonum, gonum.Implementation:
		return "gonum"
	default:
		if isOpenBLAS(impl) {
			return "openblas"
		}
		return fmt.Sprintf("%T", impl)
	}
}
