package speech

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Limits on WAV input: a file a person gives is at most MaxWAVBytes long
// and MaxWAVSeconds of audio; [ReadWAV] refuses larger ones before reading
// them whole. MaxWAVBytes is what one inference request carries
// (bus.MaxObservationBytes, held equal by modules/audio's tests): a larger
// WAV could not reach the audio module.
const (
	MaxWAVBytes   = 32 << 20
	MaxWAVSeconds = 600
)

// floatClamp bounds float samples, so that absurd values (a float WAV may
// hold anything, 1e300 included) cannot overflow later float32 sums.
const floatClamp = 1000

// Sample rates [ReadWAV] accepts, in Hz.
const (
	minRate = 1000
	maxRate = 768000
)

// ErrInvalidWAV is wrapped by every error [ReadWAV] returns for input that is
// not a WAV file it can read (as opposed to an error of the reader).
var ErrInvalidWAV = errors.New("speech: invalid WAV")

// WAVE format tags.
const (
	wavPCM        = 0x0001
	wavFloat      = 0x0003
	wavALaw       = 0x0006
	wavMuLaw      = 0x0007
	wavExtensible = 0xFFFE
)

// Names of common tags ReadWAV does not decode, for its error message.
var wavFormatNames = map[uint16]string{
	0x0002: "Microsoft ADPCM",
	0x0011: "IMA ADPCM",
	0x0016: "G.723 ADPCM",
	0x0031: "GSM 6.10",
	0x0040: "G.721 ADPCM",
	0x0050: "MPEG",
	0x0055: "MP3",
	0x0161: "WMA",
	0x0162: "WMA Pro",
	0x0163: "WMA Lossless",
	0x00FF: "AAC",
	0x1610: "AAC",
	0x674F: "Ogg Vorbis",
	0x6750: "Ogg Vorbis",
	0x6751: "Ogg Vorbis",
	0xF1AC: "FLAC",
}

// guidTail is bytes 2..15 of the KSDATAFORMAT_SUBTYPE_* GUIDs
// (xxxxxxxx-0000-0010-8000-00aa00389b71) in their little-endian layout; the
// first two bytes are the format tag.
var guidTail = []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// Data sizes that writers to a pipe (espeak-ng --stdout, sox, ffmpeg) put in
// the header when they cannot know the length: read to the end instead.
const (
	sizeUnknown     = 0xFFFFFFFF
	sizeUnknownEspk = 0x7FFFF000
)

var errTooLarge = errors.New("too large")

// capReader fails with errTooLarge once more than left bytes are asked of it.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

type wavFormat struct {
	tag      uint16 // PCM, float, A-law or µ-law after unwrapping EXTENSIBLE
	channels int
	rate     int
	bytes    int // per sample of one channel
}

// ReadWAV reads a RIFF/WAVE file: PCM 8-bit unsigned, 16-, 24- and 32-bit
// signed; IEEE float 32- and 64-bit; A-law and µ-law; and
// WAVE_FORMAT_EXTENSIBLE wrapping any of those. It returns the samples in
// [-1, 1] (float files may exceed it: their samples are clamped to ±1000,
// NaN becomes 0), mixed
// down to mono by averaging the channels, and the sample rate in Hz. Chunks
// other than "fmt " and "data" are skipped; a data size a pipe writer left
// unknown (0xFFFFFFFF, or espeak-ng's 0x7FFFF000) means "to the end". A
// trailing partial frame is dropped. Input larger than [MaxWAVBytes] or
// [MaxWAVSeconds] is refused. Errors about the content wrap
// [ErrInvalidWAV] and say what is wrong; ReadWAV never panics.
func ReadWAV(r io.Reader) (samples []float32, rate int, err error) {
	return readWAV(r, MaxWAVBytes)
}

func readWAV(src io.Reader, limit int64) ([]float32, int, error) {
	r := &capReader{r: src, left: limit}
	if err := readRIFFHeader(r, limit); err != nil {
		return nil, 0, err
	}
	var c wavChunks
	for !(c.format != nil && c.hasData) {
		if err := c.next(r, limit); err != nil {
			return nil, 0, err
		}
	}
	return decodeWAV(*c.format, c.data, invalidWAV)
}

// invalidWAV is an error about the content of a WAV file: it wraps
// [ErrInvalidWAV] and says what is wrong.
func invalidWAV(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidWAV}, a...)...)
}

// wavTooLarge is the error for a file larger than limit bytes.
func wavTooLarge(limit int64) error {
	return invalidWAV("file larger than the %d MiB limit", limit>>20)
}

// readRIFFHeader reads the 12-byte header of r and refuses anything but a
// little-endian RIFF file of type WAVE.
func readRIFFHeader(r io.Reader, limit int64) error {
	var hdr [12]byte
	n, err := io.ReadFull(r, hdr[:])
	switch {
	case err == io.EOF:
		return invalidWAV("empty input, not a WAV file")
	case errors.Is(err, errTooLarge):
		return wavTooLarge(limit)
	case err == io.ErrUnexpectedEOF:
		if n >= 4 && string(hdr[:4]) == "RIFF" {
			return invalidWAV("truncated RIFF header (%d bytes)", n)
		}
		return invalidWAV("not a WAV file (no RIFF header; %d bytes)", n)
	case err != nil:
		return fmt.Errorf("speech: reading WAV: %w", err)
	}
	switch string(hdr[:4]) {
	case "RIFF":
	case "RIFX":
		return invalidWAV("big-endian RIFX files are not supported; convert to a little-endian PCM WAV")
	case "RF64", "BW64":
		return invalidWAV("%s (64-bit) WAV files are not supported; convert to a plain PCM WAV", hdr[:4])
	default:
		return invalidWAV("not a WAV file (no RIFF header)")
	}
	if string(hdr[8:12]) != "WAVE" {
		return invalidWAV("RIFF file of type %q, not WAVE", hdr[8:12])
	}
	return nil
}

// wavChunks is what readWAV has kept of the chunks read so far.
type wavChunks struct {
	format  *wavFormat
	data    []byte
	hasData bool
}

// next reads the next chunk of r: it keeps "fmt " and "data" and skips any
// other. r must fail with errTooLarge past limit bytes.
func (c *wavChunks) next(r io.Reader, limit int64) error {
	var ch [8]byte
	n, err := io.ReadFull(r, ch[:])
	switch {
	case err == io.EOF && c.format == nil:
		return invalidWAV("no fmt chunk")
	case err == io.EOF:
		return invalidWAV("no data chunk")
	case errors.Is(err, errTooLarge):
		return wavTooLarge(limit)
	case err == io.ErrUnexpectedEOF:
		return invalidWAV("truncated chunk header (%d of 8 bytes)", n)
	case err != nil:
		return fmt.Errorf("speech: reading WAV: %w", err)
	}
	id := string(ch[:4])
	size := int64(binary.LittleEndian.Uint32(ch[4:]))
	switch id {
	case "fmt ":
		return c.readFmt(r, size, limit)
	case "data":
		return c.readData(r, size, limit)
	default:
		return skipChunk(r, id, size, limit)
	}
}

// readFmt reads and parses the body of a fmt chunk of size bytes.
func (c *wavChunks) readFmt(r io.Reader, size, limit int64) error {
	if size < 16 {
		return invalidWAV("fmt chunk of %d bytes; need at least 16", size)
	}
	if size > 1024 {
		return invalidWAV("fmt chunk of %d bytes is absurdly large", size)
	}
	b := make([]byte, size+size&1)
	if n, err := io.ReadFull(r, b[:size]); err != nil {
		if errors.Is(err, errTooLarge) {
			return wavTooLarge(limit)
		}
		return invalidWAV("fmt chunk truncated (%d of %d bytes)", n, size)
	}
	if size&1 == 1 {
		io.ReadFull(r, b[size:]) // a missing pad byte at the end is harmless
	}
	if c.format != nil {
		return invalidWAV("two fmt chunks")
	}
	f, err := parseFmt(b[:size])
	if err != nil {
		return invalidWAV("%s", err)
	}
	c.format = &f
	return nil
}

// readData reads the body of a data chunk of size bytes, or to the end of
// r if size is one a pipe writer puts for "unknown".
func (c *wavChunks) readData(r io.Reader, size, limit int64) error {
	if c.hasData {
		return invalidWAV("two data chunks")
	}
	if size == sizeUnknown || size == sizeUnknownEspk {
		data, err := io.ReadAll(r)
		if errors.Is(err, errTooLarge) {
			return wavTooLarge(limit)
		}
		if err != nil {
			return fmt.Errorf("speech: reading WAV: %w", err)
		}
		c.data, c.hasData = data, true
		if c.format == nil {
			return invalidWAV("no fmt chunk before the data of unknown length")
		}
		return nil
	}
	if size > limit {
		return invalidWAV("data chunk of %d bytes exceeds the %d MiB limit", size, limit>>20)
	}
	// Read as it comes: a lying header must not make us allocate.
	data, err := io.ReadAll(io.LimitReader(r, size))
	if errors.Is(err, errTooLarge) {
		return wavTooLarge(limit)
	}
	if err != nil {
		return fmt.Errorf("speech: reading WAV: %w", err)
	}
	if int64(len(data)) < size {
		return invalidWAV("data chunk truncated (%d of %d bytes)", len(data), size)
	}
	c.data, c.hasData = data, true
	if c.format == nil && size&1 == 1 {
		var pad [1]byte
		io.ReadFull(r, pad[:])
	}
	return nil
}

// skipChunk reads past the body of a chunk of size bytes readWAV has no use
// for.
func skipChunk(r io.Reader, id string, size, limit int64) error {
	skip := size + size&1
	m, err := io.CopyN(io.Discard, r, skip)
	if errors.Is(err, errTooLarge) {
		return wavTooLarge(limit)
	}
	if err != nil && m < size { // only the pad byte may be missing
		return invalidWAV("%q chunk truncated (%d of %d bytes)", id, m, size)
	}
	return nil
}

// parseFmt reads the fmt chunk and unwraps WAVE_FORMAT_EXTENSIBLE.
func parseFmt(b []byte) (wavFormat, error) {
	le := binary.LittleEndian
	tag := le.Uint16(b[0:])
	f := wavFormat{
		channels: int(le.Uint16(b[2:])),
		rate:     int(le.Uint32(b[4:])),
	}
	align := int(le.Uint16(b[12:]))
	bits := int(le.Uint16(b[14:]))
	if tag == wavExtensible {
		if len(b) < 40 || le.Uint16(b[16:]) < 22 {
			return f, fmt.Errorf("WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes; need 40", len(b))
		}
		if !bytes.Equal(b[26:40], guidTail) {
			return f, fmt.Errorf("WAVE_FORMAT_EXTENSIBLE with an unknown sub-format GUID; convert to PCM")
		}
		tag = le.Uint16(b[24:])
	}
	f.tag = tag
	switch tag {
	case wavPCM:
		if bits < 1 || bits > 32 {
			return f, fmt.Errorf("PCM with %d bits per sample; supported: 8, 16, 24, 32", bits)
		}
	case wavFloat:
		if bits != 32 && bits != 64 {
			return f, fmt.Errorf("float with %d bits per sample; supported: 32, 64", bits)
		}
	case wavALaw, wavMuLaw:
		if bits != 8 {
			return f, fmt.Errorf("%s with %d bits per sample; need 8", map[uint16]string{wavALaw: "A-law", wavMuLaw: "µ-law"}[tag], bits)
		}
	default:
		name := wavFormatNames[tag]
		if name == "" {
			name = "unknown"
		}
		return f, fmt.Errorf("unsupported WAV format 0x%04X (%s); convert to PCM", tag, name)
	}
	f.bytes = (bits + 7) / 8
	switch {
	case f.channels == 0:
		return f, fmt.Errorf("zero channels")
	case f.channels > 64:
		return f, fmt.Errorf("%d channels is absurd (at most 64)", f.channels)
	case f.rate < minRate || f.rate > maxRate:
		return f, fmt.Errorf("sample rate %d Hz outside [%d, %d]", f.rate, minRate, maxRate)
	case align != f.channels*f.bytes:
		return f, fmt.Errorf("block align %d bytes does not match %d channels × %d bytes", align, f.channels, f.bytes)
	}
	return f, nil
}

func decodeWAV(f wavFormat, data []byte, bad func(string, ...any) error) ([]float32, int, error) {
	frame := f.channels * f.bytes
	frames := len(data) / frame
	if int64(frames) > int64(MaxWAVSeconds)*int64(f.rate) {
		return nil, 0, bad("%.0f s of audio exceeds the %d s limit", float64(frames)/float64(f.rate), MaxWAVSeconds)
	}
	out := make([]float32, frames)
	inv := 1 / float64(f.channels)
	le := binary.LittleEndian
	for i := range out {
		var s float64
		for c := range f.channels {
			p := data[i*frame+c*f.bytes:]
			var v float64
			switch {
			case f.tag == wavPCM && f.bytes == 1:
				v = (float64(p[0]) - 128) / 128
			case f.tag == wavPCM && f.bytes == 2:
				v = float64(int16(le.Uint16(p))) / (1 << 15)
			case f.tag == wavPCM && f.bytes == 3:
				v = float64(int32(uint32(p[0])<<8|uint32(p[1])<<16|uint32(p[2])<<24)>>8) / (1 << 23)
			case f.tag == wavPCM:
				v = float64(int32(le.Uint32(p))) / (1 << 31)
			case f.tag == wavFloat && f.bytes == 4:
				v = float64(math.Float32frombits(le.Uint32(p)))
			case f.tag == wavFloat:
				v = math.Float64frombits(le.Uint64(p))
			case f.tag == wavALaw:
				v = float64(alaw(p[0])) / (1 << 15)
			default:
				v = float64(mulaw(p[0])) / (1 << 15)
			}
			if math.IsNaN(v) {
				v = 0
			}
			s += max(-floatClamp, min(floatClamp, v))
		}
		out[i] = float32(s * inv)
	}
	return out, f.rate, nil
}

// alaw decodes one G.711 A-law byte to 16-bit linear.
func alaw(b byte) int16 {
	b ^= 0x55
	t := int16(b&0x0F) << 4
	seg := (b & 0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if b&0x80 != 0 {
		return t
	}
	return -t
}

// mulaw decodes one G.711 µ-law byte to 16-bit linear.
func mulaw(b byte) int16 {
	b = ^b
	t := (int16(b&0x0F)<<3 + 0x84) << ((b & 0x70) >> 4)
	if b&0x80 != 0 {
		return 0x84 - t
	}
	return t - 0x84
}

// WriteWAV writes samples (nominally in [-1, 1]; clipped, NaN as 0) as a
// 16-bit PCM mono WAV file at rate Hz. Samples ReadWAV read from a 16-bit
// file are written back unchanged.
func WriteWAV(w io.Writer, samples []float32, rate int) error {
	if rate <= 0 || rate > maxRate {
		return fmt.Errorf("speech: WriteWAV: sample rate %d Hz", rate)
	}
	if int64(len(samples))*2 > math.MaxUint32-36 {
		return fmt.Errorf("speech: WriteWAV: %d samples do not fit a WAV file", len(samples))
	}
	size := uint32(len(samples) * 2)
	bw := bufio.NewWriter(w)
	le := binary.LittleEndian
	var h [44]byte
	copy(h[0:], "RIFF")
	le.PutUint32(h[4:], 36+size)
	copy(h[8:], "WAVEfmt ")
	le.PutUint32(h[16:], 16)
	le.PutUint16(h[20:], wavPCM)
	le.PutUint16(h[22:], 1)
	le.PutUint32(h[24:], uint32(rate))
	le.PutUint32(h[28:], uint32(rate*2))
	le.PutUint16(h[32:], 2)
	le.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	le.PutUint32(h[40:], size)
	bw.Write(h[:])
	var b [2]byte
	for _, v := range samples {
		x := float64(v)
		if math.IsNaN(x) {
			x = 0
		}
		// ×32768 like ReadWAV, so that 16-bit samples survive a round trip.
		x = math.Max(-32768, math.Min(32767, math.Round(x*32768)))
		le.PutUint16(b[:], uint16(int16(x)))
		bw.Write(b[:])
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("speech: writing WAV: %w", err)
	}
	return nil
}
