package speech_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

// chunk returns a RIFF chunk, padded to an even length.
func chunk(id string, body []byte) []byte {
	b := append([]byte(id), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(body)))
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// riff wraps chunks in a RIFF/WAVE header.
func riff(chunks ...[]byte) []byte {
	b := []byte("RIFF\x00\x00\x00\x00WAVE")
	for _, c := range chunks {
		b = append(b, c...)
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

// fmtBody is a plain fmt chunk body.
func fmtBody(tag uint16, channels, rate, bits int) []byte {
	b := make([]byte, 16)
	le := binary.LittleEndian
	align := channels * ((bits + 7) / 8)
	le.PutUint16(b[0:], tag)
	le.PutUint16(b[2:], uint16(channels))
	le.PutUint32(b[4:], uint32(rate))
	le.PutUint32(b[8:], uint32(rate*align))
	le.PutUint16(b[12:], uint16(align))
	le.PutUint16(b[14:], uint16(bits))
	return b
}

// extBody is a WAVE_FORMAT_EXTENSIBLE fmt chunk body wrapping sub.
func extBody(sub uint16, channels, rate, bits int) []byte {
	b := fmtBody(0xFFFE, channels, rate, bits)
	le := binary.LittleEndian
	b = le.AppendUint16(b, 22)           // cbSize
	b = le.AppendUint16(b, uint16(bits)) // valid bits
	b = le.AppendUint32(b, 0)            // channel mask
	b = le.AppendUint16(b, sub)
	return append(b, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71)
}

func le16(v ...int16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, uint16(x))
	}
	return b
}

func le32(v ...int32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

func f32(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// withSize overwrites the size field of the chunk whose header starts at
// offset off.
func withSize(b []byte, off int, size uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[off+4:], size)
	return b
}

// The offsets of the chunks in a plain file: fmt at 12, data at 36.
const fmtAt, dataAt = 12, 36

type wavCase struct {
	name     string
	file     []byte
	wantRate int
	want     []float32
}

func goodWAVs() []wavCase {
	list := chunk("LIST", []byte("INFOx")) // odd size: a pad byte follows
	return []wavCase{
		{"8-bit unsigned", riff(chunk("fmt ", fmtBody(1, 1, 8000, 8)), chunk("data", []byte{0, 128, 255, 64})),
			8000, []float32{-1, 0, 127.0 / 128, -0.5}},
		{"16-bit", riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)), chunk("data", le16(-32768, 0, 16384))),
			16000, []float32{-1, 0, 0.5}},
		{"24-bit", riff(chunk("fmt ", fmtBody(1, 1, 44100, 24)), chunk("data", []byte{0xFF, 0xFF, 0x7F, 0, 0, 0x80, 0, 0, 0x40, 0, 0, 0xC0})),
			44100, []float32{8388607.0 / 8388608, -1, 0.5, -0.5}},
		{"32-bit int", riff(chunk("fmt ", fmtBody(1, 1, 48000, 32)), chunk("data", le32(1<<30, math.MinInt32))),
			48000, []float32{0.5, -1}},
		{"float32, NaN as 0", riff(chunk("fmt ", fmtBody(3, 1, 22050, 32)), chunk("data", f32(0.25, -0.75, float32(math.NaN())))),
			22050, []float32{0.25, -0.75, 0}},
		{"float64", riff(chunk("fmt ", fmtBody(3, 1, 22050, 64)), chunk("data", binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.125)))),
			22050, []float32{0.125}},
		{"stereo mixed down", riff(chunk("fmt ", fmtBody(1, 2, 16000, 16)), chunk("data", le16(16384, 0, -32768, -32768))),
			16000, []float32{0.25, -1}},
		{"extensible PCM", riff(chunk("fmt ", extBody(1, 1, 16000, 16)), chunk("data", le16(16384))),
			16000, []float32{0.5}},
		{"extensible float stereo", riff(chunk("fmt ", extBody(3, 2, 96000, 32)), chunk("data", f32(0.5, 0.25))),
			96000, []float32{0.375}},
		{"µ-law", riff(chunk("fmt ", fmtBody(7, 1, 8000, 8)), chunk("data", []byte{0xFF, 0x00, 0x80})),
			8000, []float32{0, -32124.0 / 32768, 32124.0 / 32768}},
		{"A-law", riff(chunk("fmt ", fmtBody(6, 1, 8000, 8)), chunk("data", []byte{0xD5, 0x55, 0xAA})),
			8000, []float32{8.0 / 32768, -8.0 / 32768, 32256.0 / 32768}},
		{"LIST chunks of odd size around fmt", riff(list, chunk("fmt ", fmtBody(1, 1, 16000, 16)), list, chunk("data", le16(16384)), list),
			16000, []float32{0.5}},
		{"data before fmt, odd size", riff(chunk("data", []byte{255, 0, 128}), chunk("fmt ", fmtBody(1, 1, 8000, 8))),
			8000, []float32{127.0 / 128, -1, 0}},
		{"trailing partial frame dropped", riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)), chunk("data", []byte{0, 0x40, 0x12})),
			16000, []float32{0.5}},
		{"no samples", riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)), chunk("data", nil)),
			16000, []float32{}},
		{"unknown length from a pipe", withSize(riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)), chunk("data", le16(16384, -16384))), dataAt, 0xFFFFFFFF),
			16000, []float32{0.5, -0.5}},
		{"espeak-ng --stdout", withSize(riff(chunk("fmt ", fmtBody(1, 1, 22050, 16)), chunk("data", le16(16384))), dataAt, 0x7FFFF000),
			22050, []float32{0.5}},
	}
}

func TestReadWAV(t *testing.T) {
	for _, tt := range goodWAVs() {
		t.Run(tt.name, func(t *testing.T) {
			got, rate, err := speech.ReadWAV(bytes.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if rate != tt.wantRate {
				t.Errorf("rate %d, want %d", rate, tt.wantRate)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("samples %v, want %v", got, tt.want)
			}
			if d := maxAbsDiff(got, tt.want); d > 1e-7 {
				t.Errorf("samples %v, want %v", got, tt.want)
			}
		})
	}
}

func badWAVs() []struct {
	name, wantErr string
	file          []byte
} {
	good := riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)), chunk("data", le16(1, 2, 3, 4)))
	hdr := riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)))
	big := make([]byte, 2*(600*1000+1))
	return []struct {
		name, wantErr string
		file          []byte
	}{
		{"empty", "empty input", nil},
		{"not RIFF", "not a WAV file (no RIFF header)", []byte("ID3\x04\x00 this is an mp3, honest")},
		{"short garbage", "not a WAV file (no RIFF header", []byte("hi")},
		{"RIFX", "big-endian RIFX", append([]byte("RIFX"), good[4:]...)},
		{"RF64", "RF64", append([]byte("RF64"), good[4:]...)},
		{"not WAVE", `type "AVI "`, append([]byte("RIFF\x04\x00\x00\x00AVI "), good[12:]...)},
		{"truncated RIFF header", "truncated RIFF header", good[:10]},
		{"truncated chunk header", "truncated chunk header", good[:16]},
		{"truncated fmt", "fmt chunk truncated", good[:24]},
		{"truncated data", "data chunk truncated (6 of 8 bytes)", good[:len(good)-2]},
		{"no fmt", "no fmt chunk", riff(chunk("LIST", []byte("xx")))},
		{"no data", "no data chunk", hdr},
		{"data of unknown length before fmt", "no fmt chunk before the data", withSize(riff(chunk("data", le16(1))), 12, 0xFFFFFFFF)},
		{"unsupported format", "unsupported WAV format 0x0055 (MP3); convert to PCM", riff(chunk("fmt ", fmtBody(0x55, 1, 16000, 16)), chunk("data", le16(1)))},
		{"unknown format", "unsupported WAV format 0x1234 (unknown)", riff(chunk("fmt ", fmtBody(0x1234, 1, 16000, 16)), chunk("data", le16(1)))},
		{"extensible MP3", "unsupported WAV format 0x0055", riff(chunk("fmt ", extBody(0x55, 1, 16000, 16)), chunk("data", le16(1)))},
		{"extensible bad GUID", "unknown sub-format GUID", riff(chunk("fmt ", append(extBody(1, 1, 16000, 16)[:39], 0)), chunk("data", le16(1)))},
		{"extensible too short", "need 40", riff(chunk("fmt ", extBody(1, 1, 16000, 16)[:30]), chunk("data", le16(1)))},
		{"12-bit float", "float with 12 bits", riff(chunk("fmt ", fmtBody(3, 1, 16000, 12)), chunk("data", le16(1)))},
		{"0-bit PCM", "PCM with 0 bits", riff(chunk("fmt ", fmtBody(1, 1, 16000, 0)), chunk("data", le16(1)))},
		{"zero channels", "zero channels", riff(chunk("fmt ", fmtBody(1, 0, 16000, 16)), chunk("data", le16(1)))},
		{"absurd channels", "1000 channels", riff(chunk("fmt ", fmtBody(1, 1000, 16000, 16)), chunk("data", le16(1)))},
		{"zero rate", "sample rate 0 Hz", riff(chunk("fmt ", fmtBody(1, 1, 0, 16)), chunk("data", le16(1)))},
		{"absurd rate", "sample rate 4000000000 Hz", riff(chunk("fmt ", fmtBody(1, 1, 4000000000, 16)), chunk("data", le16(1)))},
		{"bad block align", "block align 3", func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint16(b[fmtAt+8+12:], 3)
			return b
		}()},
		{"short fmt", "fmt chunk of 8 bytes", riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)[:8]), chunk("data", le16(1)))},
		{"absurd fmt size", "fmt chunk of 4294967295 bytes", withSize(good, fmtAt, 0xFFFFFFFF)},
		{"absurd data size", "exceeds the 32 MiB limit", withSize(good, dataAt, 0x7FFFFFFF)},
		{"truncated LIST", `"LIST" chunk truncated`, withSize(riff(chunk("LIST", []byte("abcd"))), 12, 1000)},
		{"two fmt chunks", "two fmt chunks", riff(chunk("fmt ", fmtBody(1, 1, 16000, 16)), chunk("fmt ", fmtBody(1, 1, 16000, 16)), chunk("data", le16(1)))},
		{"over 10 minutes", "exceeds the 600 s limit", riff(chunk("fmt ", fmtBody(1, 1, 1000, 16)), chunk("data", big))},
	}
}

func TestReadWAVErrors(t *testing.T) {
	for _, tt := range badWAVs() {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := speech.ReadWAV(bytes.NewReader(tt.file))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, speech.ErrInvalidWAV) {
				t.Errorf("error %q does not wrap ErrInvalidWAV", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWAVRoundTrip(t *testing.T) {
	x := sine(1000, 440, 0.9, 22050)
	x = append(x, 1.5, -2, float32(math.NaN())) // clipped, and NaN as 0
	var b bytes.Buffer
	if err := speech.WriteWAV(&b, x, 22050); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 44+2*len(x) {
		t.Errorf("%d bytes, want %d", b.Len(), 44+2*len(x))
	}
	got, rate, err := speech.ReadWAV(&b)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 22050 || len(got) != len(x) {
		t.Fatalf("rate %d and %d samples, want 22050 and %d", rate, len(got), len(x))
	}
	want := append(x[:1000:1000], 1, -1, 0)
	if d := maxAbsDiff(got, want); d > 1.0/32767 {
		t.Errorf("round trip off by up to %v", d)
	}
	if err := speech.WriteWAV(&b, x, 0); err == nil {
		t.Error("no error for a rate of 0 Hz")
	}
}

func FuzzReadWAV(f *testing.F) {
	for _, c := range goodWAVs() {
		f.Add(c.file)
	}
	for _, c := range badWAVs() {
		if len(c.file) < 1<<16 {
			f.Add(c.file)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x, rate, err := speech.ReadWAV(bytes.NewReader(b))
		if err != nil {
			return
		}
		if rate < 1000 || rate > 768000 {
			t.Errorf("accepted rate %d Hz", rate)
		}
		if len(x) > len(b) {
			t.Errorf("%d samples from %d bytes", len(x), len(b))
		}
		if !finite(x) {
			t.Error("non-finite samples")
		}
		if len(x) == 0 || len(x) > 1<<14 {
			return
		}
		// The rest of a person's WAV's path must cope too.
		e := speech.NewExtractor(speech.DefaultConfig())
		feats := make([]float32, e.Config().Size())
		if err := e.FromWAV(feats, bytes.NewReader(b)); err != nil {
			t.Fatalf("ReadWAV accepts what FromWAV refuses: %v", err)
		}
		if !finite(feats) {
			t.Error("non-finite features")
		}
	})
}
