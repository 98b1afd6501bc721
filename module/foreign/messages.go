package foreign

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/serket-go/serket/bus"
)

// head is what every request has (docs/foreign.md, "Frames").
type head struct {
	Op   string   `msgpack:"op"`
	Seq  uint64   `msgpack:"seq"`
	Free []uint64 `msgpack:"free,omitempty"`
}

// The requests, one type per shape of arguments.
type (
	helloReq struct {
		head
		Protocol int   `msgpack:"protocol"`
		Config   Hello `msgpack:"config"`
	}
	loadReq struct {
		head
		IDs  []byte `msgpack:"ids"`
		Keep []byte `msgpack:"keep"`
	}
	parseReq struct {
		head
		Raw []bus.Payload `msgpack:"raw"`
	}
	batchReq struct { // encode, features
		head
		Batch uint64 `msgpack:"batch"`
	}
	pickReq struct {
		head
		Batch uint64 `msgpack:"batch"`
		Rows  []byte `msgpack:"rows"`
	}
	decodeReq struct {
		head
		Z     []byte `msgpack:"z"`
		Batch uint64 `msgpack:"batch"`
		W     []byte `msgpack:"w"`
	}
	decodeManyReq struct {
		head
		Z     []byte `msgpack:"z"` // terms×B×W
		Batch uint64 `msgpack:"batch"`
		W     []byte `msgpack:"w"` // terms×B
		Terms int    `msgpack:"terms"`
	}
	loglikReq struct {
		head
		Z     []byte `msgpack:"z"`
		Batch uint64 `msgpack:"batch"`
	}
	learnReq struct {
		head
		DMu     []byte `msgpack:"dmu"`
		DLogVar []byte `msgpack:"dlogvar"`
	}
	latentReq struct { // means, render
		head
		Z []byte `msgpack:"z"`
		N int    `msgpack:"n"`
	}
	restoreReq struct {
		head
		State []byte `msgpack:"state"`
	}
)

// reply is every reply's keys; a call reads those it expects.
type reply struct {
	Seq   uint64  `msgpack:"seq"`
	Error *string `msgpack:"error"`
	// ComputeNS is the time the call spent in the program's own code, in
	// nanoseconds, if it says (the Python SDK does): the rest of the round
	// trip is the protocol's cost.
	ComputeNS int64 `msgpack:"compute_ns"`

	Protocol     int       `msgpack:"protocol"`
	Spec         specReply `msgpack:"spec"`
	Capabilities []string  `msgpack:"capabilities"`
	FeatureLen   int       `msgpack:"feature_len"`

	Batch   *uint64       `msgpack:"batch"`
	N       int           `msgpack:"n"`
	Present []byte        `msgpack:"present"`
	Mu      []byte        `msgpack:"mu"`
	LogVar  []byte        `msgpack:"logvar"`
	LL      []byte        `msgpack:"ll"`
	DZ      []byte        `msgpack:"dz"`
	X       []byte        `msgpack:"x"`
	Outputs []bus.Payload `msgpack:"outputs"`
	State   []byte        `msgpack:"state"`
}

type specReply struct {
	Name       string `msgpack:"name"`
	Latent     int    `msgpack:"latent"`
	Likelihood string `msgpack:"likelihood"`
	Private    int    `msgpack:"private"`
}

// floats appends src as little-endian float32 bytes to dst: never nil, so
// that an empty array is an empty bin on the wire.
func floats(dst []byte, src []float32) []byte {
	if dst == nil {
		dst = make([]byte, 0, 4*len(src))
	}
	for _, v := range src {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

// readFloats fills dst from b, which must hold exactly len(dst) finite
// little-endian float32s; key names the reply's key for the error.
func readFloats(dst []float32, b []byte, key string) error {
	if len(b) != 4*len(dst) {
		return fmt.Errorf("%w: %q holds %d bytes, want %d (%d float32s)", errShape, key, len(b), 4*len(dst), len(dst))
	}
	for i := range dst {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: %q[%d] is %v", errNotFinite, key, i, v)
		}
		dst[i] = v
	}
	return nil
}

// uint64s appends src as little-endian uint64 bytes to dst (never nil).
func uint64s(dst []byte, src []uint64) []byte {
	if dst == nil {
		dst = make([]byte, 0, 8*len(src))
	}
	for _, v := range src {
		dst = binary.LittleEndian.AppendUint64(dst, v)
	}
	return dst
}

// rowBytes appends src as little-endian uint32 bytes to dst (never nil).
func rowBytes(dst []byte, src []int) []byte {
	if dst == nil {
		dst = make([]byte, 0, 4*len(src))
	}
	for _, v := range src {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(v))
	}
	return dst
}

// flags reads n flags (bytes 0 or 1) from b.
func flags(b []byte, n int, key string) ([]bool, error) {
	if len(b) != n {
		return nil, fmt.Errorf("%w: %q holds %d bytes, want %d flags", errShape, key, len(b), n)
	}
	out := make([]bool, n)
	for i, v := range b {
		if v > 1 {
			return nil, fmt.Errorf("%w: %q[%d] is %d, want 0 or 1", errShape, key, i, v)
		}
		out[i] = v == 1
	}
	return out, nil
}
