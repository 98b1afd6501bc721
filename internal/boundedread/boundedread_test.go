package boundedread_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/internal/boundedread"
)

const limit = 1 << 20

func write(t *testing.T, name string, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, bytes.Repeat([]byte{'x'}, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFile: a file at the limit is read whole; one byte more is refused,
// naming the file and the limit.
func TestFile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		size    int
		wantErr error
	}{
		{"empty", 0, nil},
		{"small", 10, nil},
		{"at the limit", limit, nil},
		{"one byte over", limit + 1, boundedread.ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, "in", tt.size)
			b, err := boundedread.File(path, limit)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("File: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "1 MiB") {
					t.Errorf("error %q does not name the file and the limit", msg)
				}
				return
			}
			if len(b) != tt.size {
				t.Errorf("read %d bytes, want %d", len(b), tt.size)
			}
		})
	}
}

// TestRefusedFastAndFlat: what cannot be a bounded input (an endless
// device, a FIFO nobody writes to, a sparse file of 4 GiB, a directory) is
// refused at once, without reading it and without a FIFO's blocking open.
func TestRefusedFastAndFlat(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sparse := filepath.Join(dir, "sparse")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tt := range []struct {
		name, path string
		wantErr    error
	}{
		{"/dev/zero", "/dev/zero", boundedread.ErrNotRegular},
		{"a FIFO without a writer", fifo, boundedread.ErrNotRegular},
		{"a sparse 4 GiB file", sparse, boundedread.ErrTooLarge},
		{"a directory", dir, boundedread.ErrNotRegular},
		{"a missing file", filepath.Join(dir, "nothing"), fs.ErrNotExist},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, read := range []func() error{
				func() error { _, err := boundedread.File(tt.path, limit); return err },
				func() error {
					r, err := boundedread.Open(tt.path, limit)
					if err == nil {
						r.Close()
					}
					return err
				},
			} {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				done := make(chan error, 1)
				go func() { done <- read() }()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("still reading %s after 10 s", tt.path)
				}
				runtime.ReadMemStats(&after)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("%v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.path) {
					t.Errorf("error %q does not name %s", err, tt.path)
				}
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
					t.Errorf("allocated %d bytes to refuse it", grew)
				}
			}
		})
	}
}

// TestOpen: the reader gives the file whole at the limit, and refuses a
// file that grows past the limit after it was opened.
func TestOpen(t *testing.T) {
	path := write(t, "in", limit)
	r, err := boundedread.Open(path, limit)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The file grows after the size check: the reader stops at the limit.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("more"))
	f.Close()
	b, err := io.ReadAll(r)
	if !errors.Is(err, boundedread.ErrTooLarge) || len(b) > limit {
		t.Fatalf("read %d bytes of a file grown past the limit: %v", len(b), err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 1000: "1000 bytes", 4096: "4 KiB", 32 << 20: "32 MiB",
		32<<20 + 1: "32.0 MiB (33554433 bytes)",
	} {
		if got := boundedread.Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
