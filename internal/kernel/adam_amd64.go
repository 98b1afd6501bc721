package kernel

import "golang.org/x/sys/cpu"

// Vector is whether the kernels run vectors: the CPU and the OS run AVX
// (256-bit float vectors). Tests turn it off to compare with the loops.
var Vector = cpu.X86.HasAVX

// Adam updates the longest prefix of w, m and v whose length is a multiple
// of 8, eight lanes at a time, as nn.Adam's loop does with gradient g:
//
//	gj = Sign·g;  m = B1·m + C1·gj;  v = B2·v + (C2·gj)·gj
//	w = w − (Step·m) / (√v·RBC2 + Eps)
//
// and returns its length (0 when Vector is false). g, m and v must be at
// least as long as w.
func Adam(w, g, m, v []float32, s *AdamStep) int {
	n := len(w) &^ 7
	if !Vector || n == 0 {
		return 0
	}
	_, _, _ = g[n-1], m[n-1], v[n-1]
	adamAVX(&w[0], &g[0], &m[0], &v[0], n, s)
	return n
}

// adamAVX is in adam_amd64.s: n (a multiple of 8, > 0) elements from each
// pointer.
//
//go:noescape
func adamAVX(w, grad, m, v *float32, n int, s *AdamStep)
