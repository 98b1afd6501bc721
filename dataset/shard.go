package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"math"
	"path/filepath"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/internal/boundedread"
)

// Shard is one modality's data: a fixed-size record per sample id, plus
// named float32 tables and string metadata shared by all records. A module
// reads its own shard and nothing else.
type Shard struct {
	Modality   string
	IDs        []uint64 // sorted ascending, unique
	RecordSize int      // bytes per record
	Records    []byte   // len(IDs)×RecordSize, in IDs order
	Meta       map[string]string
	Tables     map[string][]float32
}

// Record returns the record of id (aliasing Records), found by binary
// search, and whether the shard has it.
func (s *Shard) Record(id uint64) ([]byte, bool) {
	i, ok := slices.BinarySearch(s.IDs, id)
	if !ok {
		return nil, false
	}
	return s.Records[i*s.RecordSize : (i+1)*s.RecordSize : (i+1)*s.RecordSize], true
}

// Len is the number of records.
func (s *Shard) Len() int { return len(s.IDs) }

// The shard file format, little-endian throughout:
//
//	"SERKETSHARD\n"        12 bytes of magic
//	version                uint32
//	header length H        uint32
//	header                 H bytes of msgpack: shardHeader
//	ids                    count × uint64
//	records                count × record_size bytes
//	tables                 for each table, by name in sorted order: n × float32
//	checksum               uint32 CRC-32 (Castagnoli) of every byte before it
const (
	shardMagic = "SERKETSHARD\n"
	// maxShardHeader bounds the msgpack header (metadata is small: the
	// largest is the language vocabulary).
	maxShardHeader = 16 << 20
)

// ShardVersion is the shard file format version this build writes and
// reads.
const ShardVersion = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type shardHeader struct {
	Modality   string            `msgpack:"modality"`
	Count      int64             `msgpack:"count"`
	RecordSize int64             `msgpack:"record_size"`
	Meta       map[string]string `msgpack:"meta"`
	Tables     tableSizes        `msgpack:"tables"` // name → float32 count
}

// tableSizes encodes with sorted keys (msgpack's SortMapKeys covers only
// some map types), so that a shard's bytes are a function of its content.
type tableSizes map[string]int64

func (t tableSizes) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(t)); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if err := enc.EncodeString(k); err != nil {
			return err
		}
		if err := enc.EncodeInt(t[k]); err != nil {
			return err
		}
	}
	return nil
}

// ErrCorruptShard is wrapped by [ReadShard]'s error when a shard file is
// not a valid shard (bad magic, checksum, sizes, header).
var ErrCorruptShard = errors.New("corrupt shard")

// ErrShardModality is wrapped by [ReadShard]'s error when a valid shard
// holds another modality than the one asked for.
var ErrShardModality = errors.New("shard of another modality")

func (s *Shard) validate() error {
	switch {
	case s.Modality == "" || len(s.Modality) > 255:
		return fmt.Errorf("modality %q: want a name of 1 to 255 bytes", s.Modality)
	case s.RecordSize < 0:
		return fmt.Errorf("record size %d < 0", s.RecordSize)
	case len(s.Records) != len(s.IDs)*s.RecordSize:
		return fmt.Errorf("%d bytes of records for %d ids of %d bytes", len(s.Records), len(s.IDs), s.RecordSize)
	}
	for i := 1; i < len(s.IDs); i++ {
		if s.IDs[i] <= s.IDs[i-1] {
			return fmt.Errorf("ids not sorted and unique: %d after %d", s.IDs[i], s.IDs[i-1])
		}
	}
	return nil
}

// WriteShard writes s to path atomically: a temporary file in the same
// directory, synced, then renamed over path, so a reader sees the old file
// or the new one, never a part. The same shard always gives the same bytes.
func WriteShard(path string, s *Shard) (err error) {
	if err := s.validate(); err != nil {
		return fmt.Errorf("%s: writing the %s shard: %w", path, s.Modality, err)
	}
	h := shardHeader{
		Modality: s.Modality, Count: int64(len(s.IDs)), RecordSize: int64(s.RecordSize),
		Meta: s.Meta, Tables: tableSizes{},
	}
	names := make([]string, 0, len(s.Tables))
	for name, t := range s.Tables {
		names = append(names, name)
		h.Tables[name] = int64(len(t))
	}
	slices.Sort(names)
	var hb bytes.Buffer
	enc := msgpack.NewEncoder(&hb)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(&h); err != nil {
		return fmt.Errorf("%s: encoding the shard header: %w", path, err)
	}
	if hb.Len() > maxShardHeader {
		return fmt.Errorf("%s: shard header of %d bytes exceeds %d (too much metadata)", path, hb.Len(), maxShardHeader)
	}

	err = atomicfile.Write(path, func(out io.Writer) error {
		crc := crc32.New(crcTable)
		bw := io.MultiWriter(out, crc)
		var word [8]byte
		io.WriteString(bw, shardMagic)
		bw.Write(binary.LittleEndian.AppendUint32(word[:0], ShardVersion))
		bw.Write(binary.LittleEndian.AppendUint32(word[:0], uint32(hb.Len())))
		bw.Write(hb.Bytes())
		for _, id := range s.IDs {
			bw.Write(binary.LittleEndian.AppendUint64(word[:0], id))
		}
		bw.Write(s.Records)
		for _, name := range names {
			for _, x := range s.Tables[name] {
				bw.Write(binary.LittleEndian.AppendUint32(word[:0], math.Float32bits(x)))
			}
		}
		_, err := out.Write(binary.LittleEndian.AppendUint32(word[:0], crc.Sum32()))
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: writing the %s shard: %w", path, s.Modality, err)
	}
	return nil
}

// MaxShardBytes bounds a shard file, which is read whole: the largest
// that `serket data prepare` writes, vision's, is 55 MB for all 70,000
// items; a larger file is refused from its size, before it is read.
const MaxShardBytes = 1 << 30

// ReadShard reads and verifies the shard file at path: magic, format
// version, checksum, sizes, and that it holds modality (any modality if
// modality is ""). A missing file wraps [ErrNotPrepared]; a damaged one,
// one over [MaxShardBytes] or anything but a regular file
// [ErrCorruptShard]; another modality's [ErrShardModality]. Every error
// names the file and, where preparing again is the fix, says so.
func ReadShard(path, modality string) (*Shard, error) {
	b, err := boundedread.File(path, MaxShardBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: %w: %s", path, ErrNotPrepared, prepareHint(filepath.Dir(path)))
	case errors.Is(err, boundedread.ErrTooLarge) || errors.Is(err, boundedread.ErrNotRegular):
		return nil, fmt.Errorf("%w: %w: %s", ErrCorruptShard, err, prepareHint(filepath.Dir(path)))
	case err != nil:
		return nil, err
	}
	s, err := decodeShard(b, modality)
	if err != nil {
		if errors.Is(err, ErrShardModality) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, fmt.Errorf("%s: %w: %s", path, err, prepareHint(filepath.Dir(path)))
	}
	return s, nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptShard, fmt.Sprintf(format, args...))
}

func decodeShard(b []byte, modality string) (s *Shard, err error) {
	const fixed = len(shardMagic) + 4 + 4
	if len(b) < fixed+4 || string(b[:len(shardMagic)]) != shardMagic {
		if len(b) < len(shardMagic) || string(b[:len(shardMagic)]) != shardMagic {
			return nil, corrupt("bad magic: not a serket shard file")
		}
		return nil, corrupt("truncated: %d bytes", len(b))
	}
	if v := binary.LittleEndian.Uint32(b[len(shardMagic):]); v != ShardVersion {
		return nil, corrupt("shard format version %d, this build reads version %d", v, ShardVersion)
	}
	hlen := uint64(binary.LittleEndian.Uint32(b[len(shardMagic)+4:]))
	if hlen > maxShardHeader || uint64(fixed)+hlen+4 > uint64(len(b)) {
		return nil, corrupt("header of %d bytes does not fit in the %d-byte file", hlen, len(b))
	}
	var h shardHeader
	if err := decodeHeader(b[fixed:fixed+int(hlen)], &h); err != nil {
		return nil, corrupt("header: %v", err)
	}
	// Every size is checked against the file's length before it is
	// multiplied, so a forged header can neither overflow nor allocate.
	n := uint64(len(b))
	if h.Count < 0 || h.RecordSize < 0 || uint64(h.Count) > n || uint64(h.RecordSize) > n {
		return nil, corrupt("header: %d records of %d bytes", h.Count, h.RecordSize)
	}
	count, rs := int(h.Count), int(h.RecordSize)
	want := uint64(fixed) + hlen + 8*uint64(count) + uint64(count)*uint64(rs)
	names := make([]string, 0, len(h.Tables))
	for name, l := range h.Tables {
		if l < 0 || uint64(l) > n {
			return nil, corrupt("header: table %q of %d floats", name, l)
		}
		names = append(names, name)
		want += 4 * uint64(l)
	}
	slices.Sort(names)
	want += 4 // checksum
	if n < want {
		return nil, corrupt("truncated: %d bytes, the header says %d", n, want)
	}
	if n > want {
		return nil, corrupt("%d trailing bytes after the %d the header says", n-want, want)
	}
	body := b[:n-4]
	if got, stored := crc32.Checksum(body, crcTable), binary.LittleEndian.Uint32(b[n-4:]); got != stored {
		return nil, corrupt("checksum mismatch (stored %#08x, computed %#08x)", stored, got)
	}
	if modality != "" && h.Modality != modality {
		return nil, fmt.Errorf("%w: holds the %q shard, not %q", ErrShardModality, h.Modality, modality)
	}

	s = &Shard{Modality: h.Modality, RecordSize: rs, Meta: h.Meta, Tables: make(map[string][]float32, len(names))}
	if s.Meta == nil {
		s.Meta = map[string]string{}
	}
	off := fixed + int(hlen)
	s.IDs = make([]uint64, count)
	for i := range s.IDs {
		s.IDs[i] = binary.LittleEndian.Uint64(b[off+8*i:])
		if i > 0 && s.IDs[i] <= s.IDs[i-1] {
			return nil, corrupt("ids not sorted and unique: %d after %d", s.IDs[i], s.IDs[i-1])
		}
	}
	off += 8 * count
	s.Records = b[off : off+count*rs : off+count*rs]
	off += count * rs
	for _, name := range names {
		t := make([]float32, h.Tables[name])
		for i := range t {
			t[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[off+4*i:]))
		}
		s.Tables[name] = t
		off += 4 * len(t)
	}
	return s, nil
}

func decodeHeader(b []byte, h *shardHeader) (err error) {
	defer func() {
		// The checksum is checked after the header (to report a truncated
		// file as such), so the header may be garbage: never panic on it.
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack decoder panic: %v", r)
		}
	}()
	r := bytes.NewReader(b)
	if err := msgpack.NewDecoder(r).Decode(h); err != nil {
		return err
	}
	if r.Len() != 0 {
		return errors.New("trailing bytes")
	}
	return nil
}
