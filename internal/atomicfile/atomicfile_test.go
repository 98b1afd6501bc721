package atomicfile_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestWriteKeepNeverLeavesPathMissing: while WriteKeep replaces a file
// again and again, a reader always finds a whole file at path, and the
// previous generation is the file replaced.
func TestWriteKeepNeverLeavesPathMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckpt")
	content := func(i int) string { return strings.Repeat(strconv.Itoa(i%10), 1000+i) }
	write := func(i int) error {
		return atomicfile.WriteKeep(path, func(w io.Writer) error { _, err := io.WriteString(w, content(i)); return err })
	}
	if err := write(0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(atomicfile.Prev(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a first generation has a previous one: %v", err)
	}
	stop := make(chan struct{})
	bad := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err == nil && len(b) >= 1000 {
				i := len(b) - 1000
				if string(b) == content(i) {
					continue
				}
			}
			select {
			case bad <- fmt.Sprintf("read %d bytes, %v", len(b), err):
			default:
			}
			return
		}
	}()
	const n = 60
	for i := 1; i < n; i++ {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	select {
	case msg := <-bad:
		t.Fatalf("a reader found no whole file at path during the writes: %s", msg)
	default:
	}
	cur, _ := os.ReadFile(path)
	prev, _ := os.ReadFile(atomicfile.Prev(path))
	if string(cur) != content(n-1) || string(prev) != content(n-2) {
		t.Fatalf("after %d writes: path of %d bytes, .prev of %d, want generations %d and %d", n, len(cur), len(prev), n-1, n-2)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 {
		t.Fatalf("%d files, want the file and its previous generation only", len(entries))
	}
	// A failed write leaves both generations as they were.
	if err := atomicfile.WriteKeep(path, func(io.Writer) error { return errors.New("boom") }); err == nil {
		t.Fatal("a failing write succeeded")
	}
	cur2, _ := os.ReadFile(path)
	prev2, _ := os.ReadFile(atomicfile.Prev(path))
	if string(cur2) != string(cur) || string(prev2) != string(prev) {
		t.Fatal("a failed write changed a generation")
	}
}

// errDamaged is what the test reader returns for a file that says "bad".
var errDamaged = fmt.Errorf("checksum mismatch (%w)", atomicfile.ErrCorrupt)

// readTest reads a file that should say "good …"; "bad" is damage, any
// other content a whole file of the wrong kind.
func readTest(got *string) func(name string, r io.Reader) error {
	return func(name string, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		switch s := string(b); {
		case s == "bad":
			return fmt.Errorf("%s: %w", name, errDamaged)
		case strings.HasPrefix(s, "good"):
			*got = s
			return nil
		default:
			return fmt.Errorf("%s: of another kind", name)
		}
	}
}

func TestReadFallsBackOnlyForDamage(t *testing.T) {
	tests := []struct {
		name        string
		cur, prev   string // "" means no such file
		want        string // what was read; "" means an error
		wantDamaged bool
		wantErr     []string
	}{
		{"whole", "good new", "good old", "good new", false, nil},
		{"damaged", "bad", "good old", "good old", true, nil},
		{"both damaged", "bad", "bad", "", false, []string{"f: checksum mismatch", "f.prev: checksum mismatch", "previous generation"}},
		{"damaged, previous of another kind", "bad", "other", "", false, []string{"f: checksum mismatch", "f.prev: of another kind"}},
		{"damaged, no previous", "bad", "", "", false, []string{"f: checksum mismatch", "no previous generation"}},
		{"another kind", "other", "good old", "", false, []string{"f: of another kind"}},
		{"missing", "", "good old", "", false, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			for p, s := range map[string]string{path: tt.cur, atomicfile.Prev(path): tt.prev} {
				if s != "" {
					if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			var got string
			used, damaged, err := atomicfile.Read(path, readTest(&got))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("read %q from %s", got, used)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if tt.name == "missing" && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %q does not match fs.ErrNotExist", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantUsed := path
			if tt.wantDamaged {
				wantUsed = atomicfile.Prev(path)
			}
			if got != tt.want || used != wantUsed || (damaged != nil) != tt.wantDamaged {
				t.Fatalf("read %q from %s (damaged: %v), want %q from %s", got, used, damaged, tt.want, wantUsed)
			}
			if tt.wantDamaged && !errors.Is(damaged, atomicfile.ErrCorrupt) {
				t.Errorf("damaged %v does not match ErrCorrupt", damaged)
			}
		})
	}
}

// TestReadRefusesWhatIsNoFile: a checkpoint path that is a FIFO (opening
// it would wait for a writer forever) or a device (/dev/zero would be read
// without end) is refused at once, naming it, and not taken for damage.
func TestReadRefusesWhatIsNoFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "vision.ckpt")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero"} {
		done := make(chan error, 1)
		go func() {
			_, _, err := atomicfile.Read(path, func(string, io.Reader) error { return nil })
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a regular file") || errors.Is(err, atomicfile.ErrCorrupt) {
				t.Errorf("Read(%s): %v; want a refusal naming it", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Read(%s) still reading after 10 s", path) // a bound for a hang, not a synchronisation
		}
	}
}
