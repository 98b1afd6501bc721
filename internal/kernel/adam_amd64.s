#include "textflag.h"

// func adamAVX(w, grad, m, v *float32, n int, s *AdamStep)
//
// Eight lanes at a time, the operations of Adam.runChunk's loop in its
// order, each rounded to float32 (no fused multiply-add):
//
//	gj = sign·g
//	m  = b1·m + c1·gj
//	v  = b2·v + (c2·gj)·gj
//	w  = w − (step·m) / (√v·rbc2 + eps)
//
// s points to sign, b1, c1, b2, c2, rbc2, eps, step (float32 each).
TEXT ·adamAVX(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ s+40(FP), AX
	VBROADCASTSS 0(AX), Y8   // sign
	VBROADCASTSS 4(AX), Y9   // b1
	VBROADCASTSS 8(AX), Y10  // c1
	VBROADCASTSS 12(AX), Y11 // b2
	VBROADCASTSS 16(AX), Y12 // c2
	VBROADCASTSS 20(AX), Y13 // rbc2
	VBROADCASTSS 24(AX), Y14 // eps
	VBROADCASTSS 28(AX), Y15 // step
	XORQ BX, BX

loop:
	VMOVUPS (SI)(BX*4), Y0
	VMULPS  Y8, Y0, Y0       // gj
	VMOVUPS (R8)(BX*4), Y1
	VMULPS  Y9, Y1, Y1       // b1·m
	VMULPS  Y10, Y0, Y2      // c1·gj
	VADDPS  Y2, Y1, Y1       // m
	VMOVUPS Y1, (R8)(BX*4)
	VMOVUPS (R9)(BX*4), Y3
	VMULPS  Y11, Y3, Y3      // b2·v
	VMULPS  Y12, Y0, Y4      // c2·gj
	VMULPS  Y0, Y4, Y4       // (c2·gj)·gj
	VADDPS  Y4, Y3, Y3       // v
	VMOVUPS Y3, (R9)(BX*4)
	VSQRTPS Y3, Y5
	VMULPS  Y13, Y5, Y5      // √v·rbc2
	VADDPS  Y14, Y5, Y5      // + eps
	VMULPS  Y15, Y1, Y6      // step·m
	VDIVPS  Y5, Y6, Y6       // (step·m) / (√v·rbc2 + eps)
	VMOVUPS (DI)(BX*4), Y7
	VSUBPS  Y6, Y7, Y7
	VMOVUPS Y7, (DI)(BX*4)
	ADDQ    $8, BX
	CMPQ    BX, CX
	JLT     loop

	VZEROUPPER
	RET
