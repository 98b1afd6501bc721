package concept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"github.com/serket-go/serket/internal/atomicfile"
)

// A checkpoint is a header, a payload and a checksum, little-endian:
//
//	magic    [8]byte  "SRKT-GMM"
//	version  uint32   CheckpointVersion
//	K, D     uint32   the mixture's shape
//	length   uint64   payload bytes, 8·(11 + K + 4·K·D)
//	payload           config (Alpha0, Beta0, A0, B0, M0, Tau0, Kappa, Rho
//	                  as float64, Seed uint64, flags uint64: bit 0 NoMerge),
//	                  steps t uint64, then α (K), m, β, a, b (K×D each) as
//	                  float64
//	crc      uint32   CRC-32C (Castagnoli) of the header and payload
//
// Floats are stored as their IEEE 754 bits, so that a restored mixture
// continues exactly as the saved one would have.

// CheckpointVersion is the format version Save writes and Restore reads.
const CheckpointVersion = 1

const headerLen = 28

const flagNoMerge = 1 << 0

var (
	ckptMagic = [8]byte{'S', 'R', 'K', 'T', '-', 'G', 'M', 'M'}
	crcTable  = crc32.MakeTable(crc32.Castagnoli)
)

// ErrBadCheckpoint is wrapped by every error Restore returns because of the
// checkpoint's content: damaged, or whole but of another shape or version.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// ErrCorruptCheckpoint is wrapped, besides ErrBadCheckpoint, by the errors
// of a damaged checkpoint (empty, truncated, wrong magic, checksum mismatch,
// impossible values), not by a whole one of another K, D or version: the
// module runner falls back to the previous generation for damage only. It is
// module.ErrCorruptCheckpoint.
var ErrCorruptCheckpoint = atomicfile.ErrCorrupt

func corrupt(format string, args ...any) error {
	return fmt.Errorf("concept: restore: %w (%w): %s", ErrBadCheckpoint, ErrCorruptCheckpoint, fmt.Sprintf(format, args...))
}

func mismatch(format string, args ...any) error {
	return fmt.Errorf("concept: restore: %w: %s", ErrBadCheckpoint, fmt.Sprintf(format, args...))
}

func payloadLen(K, D int) int { return 8 * (11 + K + 4*K*D) }

// Save writes a checkpoint of the config, the step count and every global
// variational parameter to w.
func (m *Mixture) Save(w io.Writer) error {
	c := &m.cfg
	buf := make([]byte, 0, headerLen+payloadLen(c.K, c.D)+4)
	buf = append(buf, ckptMagic[:]...)
	buf = binary.LittleEndian.AppendUint32(buf, CheckpointVersion)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(c.K))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(c.D))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(payloadLen(c.K, c.D)))
	for _, f := range []float64{c.Alpha0, c.Beta0, c.A0, c.B0, c.M0, c.Tau0, c.Kappa, c.Rho} {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(f))
	}
	buf = binary.LittleEndian.AppendUint64(buf, c.Seed)
	flags := uint64(0)
	if c.NoMerge {
		flags |= flagNoMerge
	}
	buf = binary.LittleEndian.AppendUint64(buf, flags)
	buf = binary.LittleEndian.AppendUint64(buf, m.t)
	for _, s := range [][]float64{m.alpha, m.mean, m.beta, m.shape, m.rate} {
		for _, f := range s {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(f))
		}
	}
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("concept: save: %w", err)
	}
	return nil
}

// Restore replaces the mixture's config, step count and parameters with a
// checkpoint's from r. It reads exactly one checkpoint and nothing after it,
// at most the size a checkpoint of the receiver's K and D has, so a huge
// input or an endless one (/dev/zero) is refused after its header. It
// checks the magic, the version, that K and D are the receiver's, the
// length, the checksum, the config, and that every parameter is finite and
// positive where it must be; on any error the receiver is unchanged.
func (m *Mixture) Restore(r io.Reader) error {
	var hdr [headerLen]byte
	if err := readFull(r, hdr[:], "header"); err != nil {
		return err
	}
	if err := m.checkHeader(hdr[:]); err != nil {
		return err
	}
	body := make([]byte, payloadLen(m.cfg.K, m.cfg.D)+4)
	if err := readFull(r, body, "payload"); err != nil {
		return err
	}
	payload, sum := body[:len(body)-4], binary.LittleEndian.Uint32(body[len(body)-4:])
	if crc32.Update(crc32.Checksum(hdr[:], crcTable), crcTable, payload) != sum {
		return corrupt("checksum mismatch")
	}
	s, err := m.decode(payload)
	if err != nil {
		return err
	}
	m.cfg, m.t = s.cfg, s.t
	copy(m.alpha, s.alpha)
	copy(m.mean, s.mean)
	copy(m.beta, s.beta)
	copy(m.shape, s.shape)
	copy(m.rate, s.rate)
	m.refresh()
	return nil
}

func readFull(r io.Reader, dst []byte, what string) error {
	n, err := io.ReadFull(r, dst)
	switch {
	case err == io.EOF && what == "header":
		return corrupt("empty input")
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return corrupt("truncated: %s has %d of %d bytes", what, n, len(dst))
	case err != nil:
		return fmt.Errorf("concept: restore: reading %s: %w", what, err)
	}
	return nil
}

func (m *Mixture) checkHeader(hdr []byte) error {
	if [8]byte(hdr[:8]) != ckptMagic {
		return corrupt("not a concept checkpoint (magic %q, want %q)", hdr[:8], ckptMagic[:])
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != CheckpointVersion {
		return mismatch("format version %d, this build reads %d", v, CheckpointVersion)
	}
	K, D := binary.LittleEndian.Uint32(hdr[12:]), binary.LittleEndian.Uint32(hdr[16:])
	if uint64(K) != uint64(m.cfg.K) {
		return mismatch("checkpoint has K = %d components, this mixture K = %d", K, m.cfg.K)
	}
	if uint64(D) != uint64(m.cfg.D) {
		return mismatch("checkpoint has latent size D = %d, this mixture D = %d", D, m.cfg.D)
	}
	if n := binary.LittleEndian.Uint64(hdr[20:]); n != uint64(payloadLen(m.cfg.K, m.cfg.D)) {
		return corrupt("payload length %d, want %d for K = %d, D = %d", n, payloadLen(m.cfg.K, m.cfg.D), K, D)
	}
	return nil
}

// state is a decoded checkpoint, checked before it replaces anything.
type state struct {
	cfg                            Config
	t                              uint64
	alpha, mean, beta, shape, rate []float64
}

func (m *Mixture) decode(p []byte) (*state, error) {
	next := func() uint64 {
		u := binary.LittleEndian.Uint64(p)
		p = p[8:]
		return u
	}
	f := func() float64 { return math.Float64frombits(next()) }
	var h [8]float64
	for i := range h {
		h[i] = f()
	}
	c := Config{K: m.cfg.K, D: m.cfg.D, Alpha0: h[0], Beta0: h[1], A0: h[2], B0: h[3], M0: h[4],
		Tau0: h[5], Kappa: h[6], Rho: h[7], Seed: next()}
	flags := next()
	c.NoMerge = flags&flagNoMerge != 0
	cfg, err := c.withDefaults()
	if flags&^flagNoMerge != 0 {
		return nil, corrupt("unknown flags %#x", flags)
	}
	if err != nil || cfg != c {
		return nil, corrupt("config %+v is not valid", c)
	}
	s := &state{cfg: cfg, t: next()}
	if s.t > math.MaxInt64 {
		return nil, corrupt("step count %d", s.t)
	}
	arrays := []struct {
		name string
		dst  *[]float64
		n    int
		pos  bool
	}{{"alpha", &s.alpha, c.K, true}, {"m", &s.mean, c.K * c.D, false},
		{"beta", &s.beta, c.K * c.D, true}, {"a", &s.shape, c.K * c.D, true}, {"b", &s.rate, c.K * c.D, true}}
	for _, a := range arrays {
		*a.dst = make([]float64, a.n)
		for i := range *a.dst {
			v := f()
			if math.IsNaN(v) || math.IsInf(v, 0) || (a.pos && !(v > 0)) {
				return nil, corrupt("%s[%d] = %v, want a finite%s number", a.name, i, v, map[bool]string{true: " positive"}[a.pos])
			}
			(*a.dst)[i] = v
		}
	}
	return s, nil
}
