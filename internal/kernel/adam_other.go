//go:build !amd64

package kernel

// Vector is false: no kernel here runs vectors.
var Vector = false

// Adam leaves every element to the caller's loop.
func Adam(w, g, m, v []float32, s *AdamStep) int { return 0 }

// SiLU leaves every element to the caller's loops.
func SiLU(y, sig, x []float32) int { return 0 }
