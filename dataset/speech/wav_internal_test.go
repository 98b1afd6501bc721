package speech

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestReadWAVLimit checks the size limit on input that never says how
// long it is.
func TestReadWAVLimit(t *testing.T) {
	var b bytes.Buffer
	if err := WriteWAV(&b, make([]float32, 1000), 16000); err != nil {
		t.Fatal(err)
	}
	file := b.Bytes()
	if _, _, err := readWAV(bytes.NewReader(file), 4096); err != nil {
		t.Fatalf("under the limit: %v", err)
	}
	copy(file[40:], []byte{0xFF, 0xFF, 0xFF, 0xFF}) // data of unknown length
	_, _, err := readWAV(bytes.NewReader(file), 1024)
	if !errors.Is(err, ErrInvalidWAV) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("over the limit: error %v, want one about the size", err)
	}
	// A LIST chunk that would take the file over the limit.
	list := append([]byte("RIFF\x00\x00\x00\x00WAVELIST\x00\x10\x00\x00"), make([]byte, 4096)...)
	_, _, err = readWAV(bytes.NewReader(list), 1024)
	if !errors.Is(err, ErrInvalidWAV) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("large LIST chunk: error %v, want one about the size", err)
	}
}
