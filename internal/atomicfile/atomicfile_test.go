package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/serket-go/serket/internal/atomicfile"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "f")
	if err := atomicfile.Write(path, func(w io.Writer) error { _, err := io.WriteString(w, "one"); return err }); err != nil {
		t.Fatal(err)
	}
	// A failing writer leaves the old contents and no temporary file.
	boom := errors.New("boom")
	err := atomicfile.Write(path, func(w io.Writer) error { io.WriteString(w, "two, half"); return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("contents %q after a failed write, want %q", b, "one")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory, want only f", len(entries))
	}
}

func TestWriteDirReplacesWholeOrNotAtAll(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	write := func(content string, fail bool) error {
		return atomicfile.WriteDir(dir, func(tmp string) error {
			if err := os.WriteFile(filepath.Join(tmp, "a.txt"), []byte(content), 0o644); err != nil {
				return err
			}
			if fail {
				return errors.New("boom")
			}
			return os.WriteFile(filepath.Join(tmp, content+".txt"), nil, 0o644)
		})
	}
	if err := write("one", false); err != nil {
		t.Fatal(err)
	}
	if err := write("two", true); err == nil || err.Error() != "boom" {
		t.Fatalf("a failing fill: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "one" {
		t.Fatalf("after a failed replace the directory holds %q, want the old %q", b, "one")
	}
	if err := write("three", false); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "three" || len(entries) != 2 {
		t.Fatalf("replaced directory holds %q and %d files, want %q and 2 (nothing of the old one)", b, len(entries), "three")
	}
	siblings, _ := os.ReadDir(parent)
	if len(siblings) != 1 {
		t.Fatalf("%d entries beside the directory, want none left behind: %v", len(siblings)-1, siblings)
	}
}
