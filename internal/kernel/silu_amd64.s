#include "textflag.h"

// func siluAVX2(y, sig, x *float32, n int, c *[16]float32)
//
// Eight lanes at a time, what nn.SiLU.Forward's loops and nn.expfSlice do,
// in their order, each operation rounded to float32 (no fused
// multiply-add):
//
//	t = −x, clamped to [−87, 88]
//	k = (t·log2e + round) − round
//	r = (t − k·ln2hi) − k·ln2lo
//	p = ((((c0·r + c1)·r + c2)·r + c3)·r + c4)·r + c5
//	p = ((p·r)·r + r) + 1
//	e = p · 2^k            (the exponent built from int32(k) + 127)
//	sig = 1 / (1 + e);  y = x·sig
//
// c holds −87, 88, log2e, round, ln2hi, ln2lo, c0…c5, 1, −0 (the sign
// bit), and the int32 127, in that order (see siluConsts).
TEXT ·siluAVX2(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ sig+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ c+32(FP), AX
	VBROADCASTSS 0(AX), Y15  // −87
	VBROADCASTSS 4(AX), Y14  // 88
	VBROADCASTSS 8(AX), Y13  // log2e
	VBROADCASTSS 12(AX), Y12 // round
	VBROADCASTSS 16(AX), Y11 // ln2hi
	VBROADCASTSS 20(AX), Y10 // ln2lo
	VBROADCASTSS 48(AX), Y9  // 1
	VPBROADCASTD 56(AX), Y8  // 127
	XORQ BX, BX

loop:
	VMOVUPS      (DX)(BX*4), Y0 // x
	VBROADCASTSS 52(AX), Y7
	VXORPS       Y7, Y0, Y1     // t = −x
	VMAXPS       Y1, Y15, Y1    // max(−87, t), t where t is NaN
	VMINPS       Y1, Y14, Y1    // min(88, t), t where t is NaN
	VMULPS       Y13, Y1, Y2
	VADDPS       Y12, Y2, Y2
	VSUBPS       Y12, Y2, Y2    // k
	VMULPS       Y11, Y2, Y3
	VSUBPS       Y3, Y1, Y3     // t − k·ln2hi
	VMULPS       Y10, Y2, Y4
	VSUBPS       Y4, Y3, Y3     // r
	VBROADCASTSS 24(AX), Y4
	VMULPS       Y3, Y4, Y4     // c0·r
	VBROADCASTSS 28(AX), Y5
	VADDPS       Y5, Y4, Y4
	VMULPS       Y3, Y4, Y4
	VBROADCASTSS 32(AX), Y5
	VADDPS       Y5, Y4, Y4
	VMULPS       Y3, Y4, Y4
	VBROADCASTSS 36(AX), Y5
	VADDPS       Y5, Y4, Y4
	VMULPS       Y3, Y4, Y4
	VBROADCASTSS 40(AX), Y5
	VADDPS       Y5, Y4, Y4
	VMULPS       Y3, Y4, Y4
	VBROADCASTSS 44(AX), Y5
	VADDPS       Y5, Y4, Y4     // p
	VMULPS       Y3, Y4, Y4
	VMULPS       Y3, Y4, Y4
	VADDPS       Y3, Y4, Y4
	VADDPS       Y9, Y4, Y4     // p·r·r + r + 1
	VCVTTPS2DQ   Y2, Y5
	VPADDD       Y8, Y5, Y5
	VPSLLD       $23, Y5, Y5    // 2^k
	VMULPS       Y5, Y4, Y4     // e
	VADDPS       Y4, Y9, Y4     // 1 + e
	VDIVPS       Y4, Y9, Y6     // sig
	VMOVUPS      Y6, (SI)(BX*4)
	VMULPS       Y6, Y0, Y7     // x·sig
	VMOVUPS      Y7, (DI)(BX*4)
	ADDQ         $8, BX
	CMPQ         BX, CX
	JLT          loop

	VZEROUPPER
	RET
