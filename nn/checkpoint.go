package nn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/serket-go/serket/internal/atomicfile"
)

// A checkpoint file is a 24-byte header followed by a msgpack payload:
//
//	magic   [8]byte  "SRKT-NN\x00"
//	version uint32   little-endian, CheckpointVersion
//	length  uint64   little-endian, payload bytes
//	crc     uint32   little-endian, CRC-32C (Castagnoli) of the payload
//	payload          msgpack of ckptFile
//
// Tensors are stored as little-endian float32 bytes.

// CheckpointVersion is the checkpoint format version Save writes and the
// only one Load accepts.
const CheckpointVersion = 1

const ckptHeaderLen = 24

var ckptMagic = [8]byte{'S', 'R', 'K', 'T', '-', 'N', 'N', 0}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrBadCheckpoint is matched (with errors.Is) by every error Load returns
// because the checkpoint itself is unusable: wrong magic, version, kind,
// checksum, parameter names or shapes, or non-finite values.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// ErrCorruptCheckpoint is matched, besides ErrBadCheckpoint, by the errors
// of a damaged checkpoint: truncated, a checksum mismatch, a payload that
// does not decode, non-finite values or an impossible optimizer state. Not
// by a whole checkpoint that does not fit (another kind, format version,
// parameter names or shapes): that is a mismatch to fix, not damage, and
// LoadFile does not fall back to the previous generation for it. It is the
// same error as module.ErrCorruptCheckpoint.
var ErrCorruptCheckpoint = atomicfile.ErrCorrupt

// loadError is why Load failed, optionally naming the file.
type loadError struct {
	path    string
	reason  string
	err     error // underlying read error, if any
	bad     bool  // the checkpoint's content is at fault
	corrupt bool  // and it is damaged, not merely of another model
}

func (e *loadError) Error() string {
	s := "nn: "
	if e.path != "" {
		s += "load " + e.path + ": "
	}
	s += e.reason
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *loadError) Is(target error) bool {
	return e.bad && target == ErrBadCheckpoint || e.corrupt && target == ErrCorruptCheckpoint
}

func (e *loadError) Unwrap() error { return e.err }

// badCheckpoint is a checkpoint that does not fit what is loaded.
func badCheckpoint(format string, args ...any) error {
	return &loadError{reason: fmt.Sprintf(format, args...), bad: true}
}

// corruptCheckpoint is a damaged checkpoint.
func corruptCheckpoint(format string, args ...any) error {
	return &loadError{reason: fmt.Sprintf(format, args...), bad: true, corrupt: true}
}

func readError(err error) error {
	return &loadError{reason: "reading checkpoint", err: err}
}

type ckptFile struct {
	Kind   string            `msgpack:"kind"`
	Meta   map[string]string `msgpack:"meta"`
	Params []ckptParam       `msgpack:"params"`
	Adam   *ckptAdam         `msgpack:"adam"`
}

type ckptParam struct {
	Name  string `msgpack:"name"`
	Shape []int  `msgpack:"shape"`
	W     []byte `msgpack:"w"`
}

type ckptAdam struct {
	LR       float32  `msgpack:"lr"`
	Beta1    float32  `msgpack:"beta1"`
	Beta2    float32  `msgpack:"beta2"`
	Eps      float32  `msgpack:"eps"`
	Maximize bool     `msgpack:"maximize"`
	Step     int64    `msgpack:"step"`
	M        [][]byte `msgpack:"m"`
	V        [][]byte `msgpack:"v"`
}

func floatsToBytes(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// bytesToFloats decodes b into dst, which must have len(b)/4 elements.
func bytesToFloats(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// finiteBytes reports whether every float32 in b is finite, and the index
// of the first that is not.
func finiteBytes(b []byte) (int, bool) {
	for i := 0; i+4 <= len(b); i += 4 {
		// Exponent all ones means Inf or NaN.
		if binary.LittleEndian.Uint32(b[i:])&0x7f800000 == 0x7f800000 {
			return i / 4, false
		}
	}
	return 0, true
}

// Save writes a checkpoint of kind (the module it belongs to, such as
// "vision") holding ps, the state of opt if it is not nil, and meta.
// It writes non-finite values as they are; Load refuses them.
func Save(w io.Writer, kind string, ps []*Param, opt *Adam, meta map[string]string) error {
	f := ckptFile{Kind: kind, Meta: meta, Params: make([]ckptParam, len(ps))}
	for i, p := range ps {
		if len(p.W) != shapeLen(p.Shape) {
			return fmt.Errorf("nn: save: param %s has %d values for shape %v", p.Name, len(p.W), p.Shape)
		}
		f.Params[i] = ckptParam{Name: p.Name, Shape: p.Shape, W: floatsToBytes(p.W)}
	}
	if opt != nil {
		if !samePtrs(opt.params, ps) {
			return errors.New("nn: save: the optimizer does not hold exactly the params being saved, in order")
		}
		a := &ckptAdam{LR: opt.LR, Beta1: opt.Beta1, Beta2: opt.Beta2, Eps: opt.Eps,
			Maximize: opt.Maximize, Step: int64(opt.t),
			M: make([][]byte, len(ps)), V: make([][]byte, len(ps))}
		for i := range ps {
			a.M[i] = floatsToBytes(opt.m[i])
			a.V[i] = floatsToBytes(opt.v[i])
		}
		f.Adam = a
	}
	var payload bytes.Buffer
	enc := msgpack.NewEncoder(&payload)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(&f); err != nil {
		return fmt.Errorf("nn: save: encoding checkpoint: %w", err)
	}
	var hdr [ckptHeaderLen]byte
	copy(hdr[:8], ckptMagic[:])
	binary.LittleEndian.PutUint32(hdr[8:], CheckpointVersion)
	binary.LittleEndian.PutUint64(hdr[12:], uint64(payload.Len()))
	binary.LittleEndian.PutUint32(hdr[20:], crc32.Checksum(payload.Bytes(), crcTable))
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("nn: save: %w", err)
	}
	if _, err := w.Write(payload.Bytes()); err != nil {
		return fmt.Errorf("nn: save: %w", err)
	}
	return nil
}

func samePtrs(a, b []*Param) bool {
	return slices.Equal(a, b)
}

// Load reads a checkpoint written by Save into ps and, if opt is not nil,
// into opt's state (moments and step count; opt's hyperparameters stay as
// they are). It checks the magic, the format version, the kind, the
// checksum, that the file holds exactly len(ps) params with the same names
// and shapes in the same order, that opt's state is present when opt is not
// nil, and that every value is finite; it changes nothing unless all of it
// holds. Gradients are left alone. It returns the checkpoint's meta.
//
// Errors about the checkpoint's content match ErrBadCheckpoint; read errors
// are wrapped as they come.
func Load(r io.Reader, kind string, ps []*Param, opt *Adam) (map[string]string, error) {
	if opt != nil && !samePtrs(opt.params, ps) {
		return nil, &loadError{reason: "the optimizer does not hold exactly the params being loaded, in order"}
	}
	var hdr [ckptHeaderLen]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, corruptCheckpoint("file of %d bytes is too short for a checkpoint header", n)
		}
		return nil, readError(err)
	}
	if !bytes.Equal(hdr[:8], ckptMagic[:]) {
		return nil, corruptCheckpoint("not a serket nn checkpoint (magic %q)", hdr[:8])
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != CheckpointVersion {
		return nil, badCheckpoint("checkpoint format version %d is not supported, want %d", v, CheckpointVersion)
	}
	length := binary.LittleEndian.Uint64(hdr[12:])
	sum := binary.LittleEndian.Uint32(hdr[20:])
	// Read at most one byte past the promised length, so a corrupt length
	// cannot make us allocate more than the file holds.
	payload, err := io.ReadAll(io.LimitReader(r, int64(min(length, math.MaxInt64-1))+1))
	if err != nil {
		return nil, readError(err)
	}
	if uint64(len(payload)) != length {
		return nil, corruptCheckpoint("checksum mismatch: the file is corrupt or truncated (header promises %d payload bytes, found %d)", length, len(payload))
	}
	if crc32.Checksum(payload, crcTable) != sum {
		return nil, corruptCheckpoint("checksum mismatch: the file is corrupt or truncated")
	}
	var f ckptFile
	if err := msgpack.Unmarshal(payload, &f); err != nil {
		return nil, corruptCheckpoint("decoding checkpoint: %v", err)
	}
	if f.Kind != kind {
		return nil, badCheckpoint("checkpoint is of kind %s, want %s", f.Kind, kind)
	}
	if len(f.Params) != len(ps) {
		return nil, badCheckpoint("checkpoint has %d params, want %d", len(f.Params), len(ps))
	}
	for i, p := range ps {
		fp := &f.Params[i]
		if fp.Name != p.Name {
			return nil, badCheckpoint("param %d is named %s, want %s", i, fp.Name, p.Name)
		}
		if !slices.Equal(fp.Shape, p.Shape) {
			return nil, badCheckpoint("param %s has shape %v, want %v", p.Name, fp.Shape, p.Shape)
		}
		if n := shapeLen(p.Shape); len(p.W) != n || len(fp.W) != 4*n {
			return nil, badCheckpoint("param %s holds %d bytes for shape %v (destination has %d values)", p.Name, len(fp.W), p.Shape, len(p.W))
		}
		if j, ok := finiteBytes(fp.W); !ok {
			return nil, corruptCheckpoint("param %s has a non-finite value at index %d", p.Name, j)
		}
	}
	if opt != nil {
		a := f.Adam
		if a == nil {
			return nil, badCheckpoint("checkpoint has no optimizer state; pass a nil *Adam to load the params only")
		}
		if len(a.M) != len(ps) || len(a.V) != len(ps) {
			return nil, badCheckpoint("optimizer state covers %d/%d params, want %d", len(a.M), len(a.V), len(ps))
		}
		if a.Step < 0 {
			return nil, corruptCheckpoint("optimizer step count %d is negative", a.Step)
		}
		for i, p := range ps {
			if len(a.M[i]) != 4*len(p.W) || len(a.V[i]) != 4*len(p.W) {
				return nil, badCheckpoint("optimizer state of param %s has the wrong size", p.Name)
			}
			if j, ok := finiteBytes(a.M[i]); !ok {
				return nil, corruptCheckpoint("optimizer first moment of param %s has a non-finite value at index %d", p.Name, j)
			}
			if j, ok := finiteBytes(a.V[i]); !ok {
				return nil, corruptCheckpoint("optimizer second moment of param %s has a non-finite value at index %d", p.Name, j)
			}
		}
	}
	// All checks passed: commit.
	for i, p := range ps {
		bytesToFloats(p.W, f.Params[i].W)
	}
	if opt != nil {
		for i := range ps {
			bytesToFloats(opt.m[i], f.Adam.M[i])
			bytesToFloats(opt.v[i], f.Adam.V[i])
		}
		opt.t = int(f.Adam.Step)
	}
	if f.Meta == nil {
		f.Meta = map[string]string{}
	}
	return f.Meta, nil
}

// WriteFileAtomic writes path through write: it writes a temporary file in
// the same directory, syncs it, and renames it over path, so readers see the
// old file or the complete new one, never a partial one. If write or any
// step fails, the temporary file is removed and path is untouched. The file
// is created with mode 0644.
func WriteFileAtomic(path string, write func(io.Writer) error) error {
	if err := atomicfile.Write(path, write); err != nil {
		return fmt.Errorf("nn: write %s: %w", path, err)
	}
	return nil
}

// SaveFile writes a checkpoint to path atomically (see Save and
// WriteFileAtomic), keeping the checkpoint it replaces as path+".prev", the
// previous generation LoadFile falls back on.
func SaveFile(path, kind string, ps []*Param, opt *Adam, meta map[string]string) error {
	err := atomicfile.WriteKeep(path, func(w io.Writer) error {
		return Save(w, kind, ps, opt, meta)
	})
	if err != nil {
		return fmt.Errorf("nn: write %s: %w", path, err)
	}
	return nil
}

// LoadFile reads the checkpoint at path (see Load). Its errors name path.
// If path is damaged (the error matches ErrCorruptCheckpoint) it loads the
// previous generation SaveFile kept, path+".prev", instead, and logs (with
// slog's default logger) what was wrong with path and which file it
// loaded; if that fails too, the error names both files. A missing path is
// an error matching fs.ErrNotExist, whatever generation is left.
func LoadFile(path, kind string, ps []*Param, opt *Adam) (map[string]string, error) {
	var meta map[string]string
	used, damaged, err := atomicfile.Read(path, func(name string, r io.Reader) error {
		m, err := Load(r, kind, ps, opt)
		if err != nil {
			var le *loadError
			if errors.As(err, &le) {
				le.path = name
				return le
			}
			return fmt.Errorf("nn: load %s: %w", name, err)
		}
		meta = m
		return nil
	})
	if err != nil {
		var le *loadError
		if !errors.As(err, &le) {
			// The file could not be opened; say what it was for.
			return nil, fmt.Errorf("nn: load checkpoint: %w", err)
		}
		return nil, err
	}
	if damaged != nil {
		slog.Default().Error("checkpoint is damaged; loaded the previous generation instead", "path", path, "err", damaged, "loaded", used)
	}
	return meta, nil
}
