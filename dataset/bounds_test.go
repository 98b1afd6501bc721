package dataset_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/dataset"
)

// TestReadersAreBounded: every reader of a dataset file (shards, the
// manifest, Fashion-MNIST's IDX files) refuses at once, without reading it
// and with flat memory, a file larger than its limit (a sparse one: no
// disk spent), an endless device and a FIFO nobody writes to, naming the
// file (and the limit, for the large one).
func TestReadersAreBounded(t *testing.T) {
	for _, r := range []struct {
		name  string
		file  string // the file the reader opens in its directory
		limit int64
		read  func(dir string) error
	}{
		{"ReadShard", "vision.shard", dataset.MaxShardBytes, func(dir string) error {
			_, err := dataset.ReadShard(filepath.Join(dir, "vision.shard"), "vision")
			return err
		}},
		{"ReadManifest", "manifest.json", dataset.MaxManifestBytes, func(dir string) error {
			_, err := dataset.ReadManifest(dir)
			return err
		}},
		{"ReadIDXFile", "images.idx", dataset.MaxIDXBytes + 1<<20, func(dir string) error {
			_, _, err := dataset.ReadIDXFile(filepath.Join(dir, "images.idx"))
			return err
		}},
		{"LoadFashionMNIST", "train-images-idx3-ubyte.gz", dataset.MaxIDXBytes + 1<<20, func(dir string) error {
			_, err := dataset.LoadFashionMNIST(dir)
			return err
		}},
	} {
		for _, attack := range []string{"sparse", "/dev/zero", "fifo"} {
			t.Run(r.name+"/"+attack, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, r.file)
				want := path
				switch attack {
				case "sparse":
					sparseFile(t, path, r.limit+1)
					want = fmt.Sprintf("%s: file too large: %d.0 MiB (%d bytes), the limit is %d MiB", path, r.limit>>20, r.limit+1, r.limit>>20)
				case "/dev/zero":
					if err := os.Symlink("/dev/zero", path); err != nil {
						t.Fatal(err)
					}
				case "fifo":
					if err := syscall.Mkfifo(path, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				done := make(chan error, 1)
				go func() { done <- r.read(dir) }()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("%s of %s: still reading after 10 s", r.name, attack)
				}
				runtime.ReadMemStats(&after)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("%s of %s: %v, want an error naming %q", r.name, attack, err, want)
				}
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
					t.Errorf("%s allocated %d bytes to refuse %s", r.name, grew, attack)
				}
			})
		}
	}
}

// sparseFile makes a file of size bytes that takes no disk.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}
