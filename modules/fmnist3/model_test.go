package fmnist3

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/internal/boundedread"
)

// TestRestoreIsBounded: a checkpoint file larger than a checkpoint of the
// model can be (a sparse one), an endless device and a FIFO nobody writes
// to are refused at once, naming the file (and the limit for the large
// one), whichever modality's checkpoint it stands in for; the checkpoints
// Save writes fit the bound.
func TestRestoreIsBounded(t *testing.T) {
	m := openSmall(t)
	good := t.TempDir()
	if err := m.Save(good); err != nil {
		t.Fatal(err)
	}
	for _, name := range m.Names() {
		st, err := os.Stat(filepath.Join(good, name+".ckpt"))
		if err != nil {
			t.Fatal(err)
		}
		if limit := maxCheckpointBytes(m.Net(name)); st.Size() > limit {
			t.Errorf("%s: a checkpoint of %d bytes, over the bound of %d", name, st.Size(), limit)
		}
		for _, attack := range []string{"sparse", "/dev/zero", "fifo"} {
			t.Run(name+"/"+attack, func(t *testing.T) {
				dir := t.TempDir()
				for _, other := range m.Names() {
					if err := os.Link(filepath.Join(good, other+".ckpt"), filepath.Join(dir, other+".ckpt")); err != nil {
						t.Fatal(err)
					}
				}
				path := filepath.Join(dir, name+".ckpt")
				os.Remove(path)
				want := path + ": not a regular file"
				switch attack {
				case "sparse":
					limit := maxCheckpointBytes(m.Net(name))
					f, err := os.Create(path)
					if err == nil {
						err = f.Truncate(limit + 1)
						f.Close()
					}
					if err != nil {
						t.Fatal(err)
					}
					want = fmt.Sprintf("%s: file too large: %s, the limit is %s", path, boundedread.Size(limit+1), boundedread.Size(limit))
				case "/dev/zero":
					if err := os.Symlink("/dev/zero", path); err != nil {
						t.Fatal(err)
					}
				case "fifo":
					if err := syscall.Mkfifo(path, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				done := make(chan error, 1)
				go func() { done <- m.Restore(dir) }()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("Restore with %s as %s.ckpt: %v, want an error naming %q", attack, name, err, want)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("Restore with %s as %s.ckpt: still reading after 10 s", attack, name)
				}
			})
		}
	}
}

func openSmall(t *testing.T) *Model {
	t.Helper()
	m, err := Open(datasettest.Dir(t), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A model restored from the checkpoints Save wrote is the same model, and
// restoring from a directory without them names the missing one.
func TestSaveRestore(t *testing.T) {
	m := openSmall(t)
	dir := t.TempDir()
	ps := m.Vision.Net().Dec.Params()
	ps[len(ps)-2].W[3] = 0.125
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	m2 := openSmall(t)
	if err := m2.Restore(dir); err != nil {
		t.Fatal(err)
	}
	ps2 := m2.Vision.Net().Dec.Params()
	if got := ps2[len(ps2)-2].W[3]; got != 0.125 {
		t.Fatalf("restored %v, want 0.125", got)
	}
	if err := m2.Restore(t.TempDir()); err == nil || !strings.Contains(err.Error(), "vision") {
		t.Fatalf("restoring from an empty directory: %v, want an error naming the vision checkpoint", err)
	}
}
