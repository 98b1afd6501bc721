package dataset_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset"
)

func testShard() *dataset.Shard {
	return &dataset.Shard{
		Modality:   "vision",
		IDs:        []uint64{0, 3, 7, 60000},
		RecordSize: 3,
		Records:    []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		Meta:       map[string]string{"rows": "28", "vocab": "a\nb"},
		Tables:     map[string][]float32{"mean": {1.5, -2}, "std": {0.25}, "empty": {}},
	}
}

func writeTestShard(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vision.shard")
	if err := dataset.WriteShard(path, testShard()); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestShardRoundTrip(t *testing.T) {
	path := writeTestShard(t)
	got, err := dataset.ReadShard(path, "vision")
	if err != nil {
		t.Fatal(err)
	}
	want := testShard()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
	if _, err := dataset.ReadShard(path, ""); err != nil {
		t.Fatalf("any modality: %v", err)
	}
	// Same shard, same bytes; no temporary file left behind.
	path2 := filepath.Join(t.TempDir(), "again.shard")
	dataset.WriteShard(path2, testShard())
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(path2)
	if string(a) != string(b) {
		t.Fatal("two writes of one shard differ")
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("dir holds %d files, want 1", len(ents))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestShardRecord(t *testing.T) {
	s := testShard()
	for _, c := range []struct {
		id   uint64
		want []byte
	}{{0, []byte{1, 2, 3}}, {3, []byte{4, 5, 6}}, {7, []byte{7, 8, 9}}, {60000, []byte{10, 11, 12}}, {1, nil}, {8, nil}, {70000, nil}} {
		rec, ok := s.Record(c.id)
		if ok != (c.want != nil) || string(rec) != string(c.want) {
			t.Errorf("Record(%d) = %v, %v; want %v", c.id, rec, ok, c.want)
		}
	}
	empty := &dataset.Shard{}
	if _, ok := empty.Record(0); ok {
		t.Error("empty shard has id 0")
	}
}

func TestWriteShardRefusesBadShards(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		edit func(*dataset.Shard)
		want string
	}{
		{"unsorted ids", func(s *dataset.Shard) { s.IDs[1], s.IDs[2] = 7, 3 }, "not sorted"},
		{"duplicate ids", func(s *dataset.Shard) { s.IDs[1] = 0 }, "not sorted"},
		{"records short", func(s *dataset.Shard) { s.Records = s.Records[:11] }, "11 bytes of records"},
		{"no modality", func(s *dataset.Shard) { s.Modality = "" }, "modality"},
	} {
		s := testShard()
		c.edit(s)
		path := filepath.Join(dir, "x.shard")
		if err := dataset.WriteShard(path, s); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming the file and containing %q", c.name, err, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("refused writes left %d files", len(ents))
	}
}

// TestReadShardRefusals: every damage is caught, and the error names the
// file and, where preparing again fixes it, says so.
func TestReadShardRefusals(t *testing.T) {
	good, err := os.ReadFile(writeTestShard(t))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x10
		return b
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		data     []byte
		modality string
		wantErr  error
		want     string
	}{
		{"flipped record byte", flip(len(good) - 20), "vision", dataset.ErrCorruptShard, "checksum mismatch"},
		{"flipped checksum", flip(len(good) - 1), "vision", dataset.ErrCorruptShard, "checksum mismatch"},
		{"truncated", good[:len(good)-9], "vision", dataset.ErrCorruptShard, "truncated"},
		{"truncated to the magic", good[:14], "vision", dataset.ErrCorruptShard, "truncated"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), "vision", dataset.ErrCorruptShard, "trailing"},
		{"wrong magic", append([]byte("SERKETSHARX\n"), good[12:]...), "vision", dataset.ErrCorruptShard, "bad magic"},
		{"empty file", nil, "vision", dataset.ErrCorruptShard, "bad magic"},
		{"future version", flip(12), "vision", dataset.ErrCorruptShard, "version 17"},
		{"huge header", flip(19), "vision", dataset.ErrCorruptShard, "header of"},
		{"wrong modality", good, "audio", dataset.ErrShardModality, `holds the "vision" shard, not "audio"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".shard")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := dataset.ReadShard(path, c.modality)
			if !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("%v\nwant %v naming %s and containing %q", err, c.wantErr, path, c.want)
			}
			if hint := strings.Contains(err.Error(), "serket data prepare"); hint != (c.wantErr == dataset.ErrCorruptShard) {
				t.Fatalf("%v: says to prepare again: %v", err, hint)
			}
		})
	}
	_, err = dataset.ReadShard(filepath.Join(dir, "none.shard"), "vision")
	if !errors.Is(err, dataset.ErrNotPrepared) || !strings.Contains(err.Error(), "serket data prepare --dir "+dir) {
		t.Fatalf("missing shard: %v", err)
	}
}

func FuzzReadShard(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.shard")
	if err := dataset.WriteShard(path, testShard()); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte("SERKETSHARD\n\x01\x00\x00\x00\x00\x00\x00\x00"))
	// Each fuzzing worker is its own process with its own f.TempDir and
	// runs inputs one at a time, so one file will do.
	p := filepath.Join(dir, "fuzz.shard")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := dataset.ReadShard(p, "")
		if err != nil {
			return
		}
		if len(s.Records) != len(s.IDs)*s.RecordSize {
			t.Fatalf("%d records bytes for %d ids of %d", len(s.Records), len(s.IDs), s.RecordSize)
		}
	})
}
