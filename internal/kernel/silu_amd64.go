package kernel

import (
	"math"

	"golang.org/x/sys/cpu"
)

// vectorInt is whether the CPU runs 256-bit integer vectors too (AVX2),
// which SiLU's exponent needs.
var vectorInt = cpu.X86.HasAVX2

// siluConsts are siluAVX2's constants as float32, rounded as Go rounds them
// in nn.expfSlice's float32 expressions (see silu_amd64.s for the order).
var siluConsts = [16]float32{
	-87, 88, ExpLog2e, ExpRound, ExpLn2Hi, ExpLn2Lo,
	ExpC0, ExpC1, ExpC2, ExpC3, ExpC4, ExpC5,
	1, float32(math.Copysign(0, -1)), math.Float32frombits(127),
}

// SiLU sets, for the longest prefix of x whose length is a multiple of 8,
// sig = σ(x) = 1/(1 + e^−x) and y = x·σ(x) as nn.SiLU.Forward does, eight
// lanes at a time, and returns its length (0 without AVX2 or when Vector
// is false). y and sig must be at least as long as x.
func SiLU(y, sig, x []float32) int {
	n := len(x) &^ 7
	if !Vector || !vectorInt || n == 0 {
		return 0
	}
	_, _ = y[n-1], sig[n-1]
	siluAVX2(&y[0], &sig[0], &x[0], n, &siluConsts)
	return n
}

// siluAVX2 is in silu_amd64.s: n (a multiple of 8, > 0) elements.
//
//go:noescape
func siluAVX2(y, sig, x *float32, n int, c *[16]float32)
