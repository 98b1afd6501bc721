// Package kernel holds the vector kernels of package nn's hot loops, in
// Go assembly where the CPU allows: apart from nn because a package that
// uses cgo (nn with the openblas tag) cannot hold Go assembly. Each kernel
// does the same float32 operations in the same order as the loop it
// replaces, so its results are that loop's to the bit, and each reports
// how much it did, leaving the rest to the caller's loop.
package kernel

// AdamStep holds the constants of one Adam update, in the order
// adam_amd64.s reads them.
type AdamStep struct {
	Sign, B1, C1, B2, C2, RBC2, Eps, Step float32
}
