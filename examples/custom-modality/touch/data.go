package touch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Dim is the number of values in one touch reading.
const Dim = 16

// Feature describes one value of a reading.
type Feature struct {
	Name string // the name Parse accepts and Render writes (name=value)
	Unit string
	// Log: the value is positive and spans orders of magnitude, so the
	// model sees its logarithm.
	Log bool
}

// Features are the values of a reading, in order: what a fingertip with a
// force sensor, a thermistor and a vibration pickup reports after pressing
// on, lifting and stroking an object.
var Features = [Dim]Feature{
	{"hardness", "Shore A", false}, // indentation hardness, 0–100
	{"stiffness", "N/mm", true},    // bending stiffness of the whole item
	{"thickness", "mm", true},      // material under the fingertip
	{"mass", "g", true},            // lifted
	{"stretch", "%", true},         // elongation under a 5 N pull
	{"friction", "", false},        // sliding friction coefficient
	{"coolness", "", false},        // heat drawn from the fingertip, 0–1
	{"damping", "", false},         // how fast a tap dies out, 0–1
	{"vib-16hz", "dB", false},      // power of the sliding vibration, per octave band
	{"vib-32hz", "dB", false},
	{"vib-64hz", "dB", false},
	{"vib-128hz", "dB", false},
	{"vib-256hz", "dB", false},
	{"vib-512hz", "dB", false},
	{"vib-1khz", "dB", false},
	{"vib-2khz", "dB", false},
}

// FileName is the touch data file in a dataset directory.
const FileName = "touch.dat"

// Path is the touch data file of dataset directory dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Data is the content of the touch data file: one reading per sample id,
// in physical units, and the normalisation the model uses (the mean and
// standard deviation of Transform(reading) over the training items). It
// holds no labels.
type Data struct {
	Seed      uint64    // the simulator's seed
	IDs       []uint64  // sorted, unique
	Readings  []float32 // len(IDs)×Dim, physical units
	Mean, Std [Dim]float32
}

// Reading returns the reading of id (aliasing Readings) and whether the
// file has it.
func (d *Data) Reading(id uint64) ([]float32, bool) {
	i, ok := slices.BinarySearch(d.IDs, id)
	if !ok {
		return nil, false
	}
	return d.Readings[i*Dim : (i+1)*Dim : (i+1)*Dim], true
}

// Transform writes the model's view of a reading in physical units into
// dst, before normalisation: the logarithm of the Log features, the others
// as they are. A non-finite value, or a Log feature that is not positive,
// is an error naming the feature.
func Transform(dst, raw []float32) error {
	if len(raw) != Dim || len(dst) != Dim {
		return fmt.Errorf("a reading has %d values, want %d", len(raw), Dim)
	}
	for j, v := range raw {
		f := Features[j]
		switch {
		case math.IsNaN(float64(v)) || math.IsInf(float64(v), 0):
			return fmt.Errorf("%s is %v, want a finite number", f.Name, v)
		case f.Log && v <= 0:
			return fmt.Errorf("%s is %v, want a positive number", f.Name, v)
		case f.Log:
			dst[j] = float32(math.Log(float64(v)))
		default:
			dst[j] = v
		}
	}
	return nil
}

// Normalise writes raw (physical units) as the model sees it into dst:
// transformed, then standardised with the file's mean and std.
func (d *Data) Normalise(dst, raw []float32) error {
	if err := Transform(dst, raw); err != nil {
		return err
	}
	for j := range dst {
		dst[j] = (dst[j] - d.Mean[j]) / d.Std[j]
	}
	return nil
}

// Denormalise undoes Normalise: physical units from the model's values.
func (d *Data) Denormalise(dst, x []float32) {
	for j, v := range x[:Dim] {
		v = v*d.Std[j] + d.Mean[j]
		if Features[j].Log {
			v = float32(math.Exp(float64(v)))
		}
		dst[j] = v
	}
}

// The file, little-endian throughout:
//
//	magic "SERKET-TOUCH\n"   13 bytes
//	version, dim             uint32, uint32
//	seed, count              uint64, uint64
//	mean, std                dim float32 each
//	ids                      count uint64
//	readings                 count×dim float32
//	checksum                 uint32 CRC-32 (IEEE) of every byte before it
const (
	magic   = "SERKET-TOUCH\n"
	version = 1
)

// ErrNotPrepared is wrapped by ReadFile's error when the file is missing.
var ErrNotPrepared = errors.New("touch data not prepared")

// WriteFile writes d to path atomically: readers see the old file or the
// new one, never a part.
func WriteFile(path string, d *Data) error {
	if len(d.Readings) != len(d.IDs)*Dim {
		return fmt.Errorf("%s: %d readings values for %d ids", path, len(d.Readings), len(d.IDs))
	}
	for i := 1; i < len(d.IDs); i++ {
		if d.IDs[i] <= d.IDs[i-1] {
			return fmt.Errorf("%s: ids not sorted and unique: %d after %d", path, d.IDs[i], d.IDs[i-1])
		}
	}
	var b bytes.Buffer
	b.WriteString(magic)
	for _, v := range []any{uint32(version), uint32(Dim), d.Seed, uint64(len(d.IDs)), d.Mean, d.Std, d.IDs, d.Readings} {
		binary.Write(&b, binary.LittleEndian, v) // a bytes.Buffer does not fail
	}
	binary.Write(&b, binary.LittleEndian, crc32.ChecksumIEEE(b.Bytes()))
	return writeAtomic(path, b.Bytes())
}

// MaxFileBytes bounds the touch data file, which is read whole: the
// readings of all 70,000 items of Fashion-MNIST-3 take 5 MB.
const MaxFileBytes = 64 << 20

// ReadFile reads and checks the touch data file at path. A file over
// MaxFileBytes, or one that is not a regular file, is refused before it is
// read.
func ReadFile(path string) (*Data, error) {
	raw, err := readBounded(path, MaxFileBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: run `touch prepare --data %s` first", path, ErrNotPrepared, filepath.Dir(path))
	}
	if err != nil {
		return nil, err
	}
	d, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; prepare it again", path, err)
	}
	return d, nil
}

// readBounded reads the regular file at path if it holds at most limit
// bytes. Its size is checked before a byte is read, so a huge (or sparse)
// file costs nothing, and it is opened non-blocking, so that a FIFO is
// refused rather than waited on; /dev/zero, having no size, is refused as
// well. (serket's internal/boundedread does the same for serket's files.)
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%v): want a touch data file of at most %d MiB", path, st.Mode().Type(), limit>>20)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d MiB limit of a touch data file", path, st.Size(), limit>>20)
	}
	raw, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(raw)) > limit {
		err = fmt.Errorf("%s: grew past the %d MiB limit of a touch data file while it was read", path, limit>>20)
	}
	return raw, err
}

func decode(raw []byte) (*Data, error) {
	const head = len(magic) + 4 + 4 + 8 + 8 + 2*Dim*4
	if len(raw) < head+4 || !bytes.HasPrefix(raw, []byte(magic)) {
		return nil, errors.New("not a touch data file (bad magic or truncated)")
	}
	body, sum := raw[:len(raw)-4], binary.LittleEndian.Uint32(raw[len(raw)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errors.New("checksum mismatch: the file is damaged")
	}
	r := bytes.NewReader(body[len(magic):])
	var hdr struct {
		Version, Dim uint32
		Seed, Count  uint64
	}
	binary.Read(r, binary.LittleEndian, &hdr)
	if hdr.Version != version || hdr.Dim != Dim {
		return nil, fmt.Errorf("format %d with %d values per reading; this build reads format %d with %d", hdr.Version, hdr.Dim, version, Dim)
	}
	if want := uint64(head) + hdr.Count*(8+Dim*4); uint64(len(body)) != want {
		return nil, fmt.Errorf("%d bytes for %d readings, want %d", len(body), hdr.Count, want)
	}
	d := &Data{Seed: hdr.Seed, IDs: make([]uint64, hdr.Count), Readings: make([]float32, hdr.Count*Dim)}
	for _, v := range []any{&d.Mean, &d.Std, d.IDs, d.Readings} {
		if err := binary.Read(r, binary.LittleEndian, v); err != nil {
			return nil, err
		}
	}
	for j, s := range d.Std {
		if !(s > 0) || math.IsInf(float64(s), 0) || math.IsNaN(float64(d.Mean[j])) {
			return nil, fmt.Errorf("normalisation of %s: mean %v, std %v", Features[j].Name, d.Mean[j], s)
		}
	}
	for i := 1; i < len(d.IDs); i++ {
		if d.IDs[i] <= d.IDs[i-1] {
			return nil, fmt.Errorf("ids not sorted and unique: %d after %d", d.IDs[i], d.IDs[i-1])
		}
	}
	tmp := make([]float32, Dim)
	for i, id := range d.IDs {
		if err := Transform(tmp, d.Readings[i*Dim:(i+1)*Dim]); err != nil {
			return nil, fmt.Errorf("item %d: %w", id, err)
		}
	}
	return d, nil
}

// writeAtomic writes data to a temporary file beside path, syncs it and
// renames it over path. (serket's own internal/atomicfile does the same,
// but a package outside serket's module cannot import it.)
func writeAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// FeatureIndex returns the index of the named feature, or -1.
func FeatureIndex(name string) int {
	name = strings.ToLower(strings.TrimSpace(name))
	for j, f := range Features {
		if f.Name == name {
			return j
		}
	}
	return -1
}
