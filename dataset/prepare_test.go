package dataset

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func needEspeak(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Skip("skipping: espeak-ng is not on PATH (Debian package espeak-ng; CI installs it), and the audio shard needs it")
	}
}

// TestPrepare builds a small real dataset (600 train and 100 test items,
// 3 and 2 utterances per class) and checks what every module will read,
// then what Prepare does when asked again for it or for another.
func TestPrepare(t *testing.T) {
	needEspeak(t)
	ctx := context.Background()
	var progress bytes.Buffer
	cfg := PrepareConfig{Dir: filepath.Join(t.TempDir(), "a"), Seed: 7, Limit: 600, AudioTrain: 3, AudioTest: 2, Workers: 2, Progress: &progress}
	start := time.Now()
	m, err := Prepare(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	t.Logf("prepared in %v:\n%s", first, progress.String())
	for _, phase := range []string{"reading Fashion-MNIST", "captions", "audio", "writing"} {
		if !strings.Contains(progress.String(), phase+": ") {
			t.Errorf("no progress line for %q in\n%s", phase, progress.String())
		}
	}
	fm, err := LoadFashionMNIST(FashionMNISTDir)
	if err != nil {
		t.Fatal(err)
	}
	checkPreparedManifest(t, cfg.Dir, m, fm)
	shards := readPreparedShards(t, cfg.Dir, m)
	t.Run("vision", func(t *testing.T) { checkVisionShard(t, shards[Vision], fm) })
	t.Run("language", func(t *testing.T) { checkLanguageShard(t, shards[Language], m) })
	t.Run("audio", func(t *testing.T) { checkAudioShard(t, shards[Audio], m) })

	// The subtests below run in order: each prepares cfg.Dir again from
	// what the one before left, and compares it with cfg2.Dir.
	cfg2 := cfg
	cfg2.Dir, cfg2.Workers, cfg2.Progress = filepath.Join(t.TempDir(), "b"), 1, nil
	t.Run("deterministic", func(t *testing.T) {
		// Another dir, one worker, no progress: the same bytes.
		if _, err := Prepare(ctx, cfg2); err != nil {
			t.Fatal(err)
		}
		sameShards(t, cfg.Dir, cfg2.Dir, true)
	})
	t.Run("up to date", func(t *testing.T) {
		progress.Reset()
		checkUpToDate(t, cfg, m, &progress, first)
	})
	t.Run("damaged shard", func(t *testing.T) { checkDamagedShardRebuilt(t, cfg, cfg2.Dir) })
	t.Run("force", func(t *testing.T) { checkForceRebuilds(t, cfg, cfg2.Dir) })
	t.Run("another seed", func(t *testing.T) {
		// Other captions and utterances, another config hash.
		cfg3 := cfg2
		cfg3.Dir, cfg3.Seed = filepath.Join(t.TempDir(), "c"), 8
		m3, err := Prepare(ctx, cfg3)
		if err != nil {
			t.Fatal(err)
		}
		if m3.Config == m.Config {
			t.Error("seeds 7 and 8 have the same config hash")
		}
		sameShards(t, cfg.Dir, cfg3.Dir, false)
	})
}

// checkPreparedManifest checks the manifest TestPrepare's Prepare returned
// and the one it wrote to dir: its counts, and every item in the order of
// Fashion-MNIST.
func checkPreparedManifest(t *testing.T, dir string, m *Manifest, fm *FashionMNIST) {
	t.Helper()
	if m.Counts[Train] != 600 || m.Counts[Test] != 100 || len(m.Items) != 700 || m.Seed != 7 || m.Version != ManifestVersion {
		t.Fatalf("manifest: counts %v, %d items, seed %d", m.Counts, len(m.Items), m.Seed)
	}
	back, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Config != m.Config || !slices.Equal(back.Items, m.Items) || !back.Created.Equal(m.Created) {
		t.Fatal("manifest read back differs")
	}
	for i, it := range m.Items {
		want := Item{ID: uint64(i), Split: Train, Class: fm.Train.Labels[i]}
		if i >= 600 {
			want = Item{ID: TestIDBase + uint64(i-600), Split: Test, Class: fm.Test.Labels[i-600]}
		}
		if it != want {
			t.Fatalf("item %d: %+v, want %+v", i, it, want)
		}
	}
}

// readPreparedShards reads every shard of dir, each of which must have a
// record per item of m and m's config hash.
func readPreparedShards(t *testing.T, dir string, m *Manifest) map[string]*Shard {
	t.Helper()
	shards := map[string]*Shard{}
	for _, mod := range Modalities() {
		s, err := ReadShard(ShardPath(dir, mod), mod)
		if err != nil {
			t.Fatal(err)
		}
		if s.Len() != 700 || s.Meta["config"] != m.Config {
			t.Fatalf("%s: %d records, config %q", mod, s.Len(), s.Meta["config"])
		}
		shards[mod] = s
	}
	return shards
}

// checkVisionShard checks that vis holds the very pixels.
func checkVisionShard(t *testing.T, vis *Shard, fm *FashionMNIST) {
	t.Helper()
	for _, c := range []struct {
		id   uint64
		want []uint8
	}{{0, fm.Train.Image(0)}, {599, fm.Train.Image(599)}, {TestIDBase, fm.Test.Image(0)}, {TestIDBase + 99, fm.Test.Image(99)}} {
		if rec, ok := vis.Record(c.id); !ok || !bytes.Equal(rec, c.want) {
			t.Errorf("vision record %d differs from Fashion-MNIST", c.id)
		}
	}
	if _, ok := vis.Record(600); ok {
		t.Error("vision has item 600, beyond the limit")
	}
}

// checkLanguageShard checks that lang holds each item's seeded caption, no
// unknown word.
func checkLanguageShard(t *testing.T, lang *Shard, m *Manifest) {
	t.Helper()
	vocab := NewVocab(strings.Split(lang.Meta["vocab"], "\n"))
	if !slices.Equal(vocab.Words(), CaptionVocab().Words()) || lang.Meta["max_tokens"] != strconv.Itoa(MaxTokens) || lang.RecordSize != 4*MaxTokens {
		t.Fatalf("language meta: %d words, max_tokens %s, record size %d", vocab.Len(), lang.Meta["max_tokens"], lang.RecordSize)
	}
	distinct := map[string]bool{}
	for _, it := range m.Items {
		rec, _ := lang.Record(it.ID)
		ids := make([]int32, MaxTokens)
		for k := range ids {
			ids[k] = int32(binary.LittleEndian.Uint32(rec[4*k:]))
		}
		got := vocab.Decode(ids)
		if want := Caption(int(it.Class), captionRand(7, it.ID)); got != want || slices.Contains(ids, UnkID) {
			t.Fatalf("item %d: caption %q (%v), want %q", it.ID, got, ids, want)
		}
		distinct[got] = true
	}
	if len(distinct) < 200 {
		t.Errorf("only %d distinct captions over 700 items", len(distinct))
	}
}

// checkAudioShard checks that aud gives items rows from their own split's
// pool, the same row only for the same class, and has tables of the right
// sizes.
func checkAudioShard(t *testing.T, aud *Shard, m *Manifest) {
	t.Helper()
	meta := func(k string) int {
		v, err := strconv.Atoi(aud.Meta[k])
		if err != nil {
			t.Fatalf("audio meta %s=%q", k, aud.Meta[k])
		}
		return v
	}
	f := meta("frames") * meta("mels")
	trainPool, testPool := meta("train_pool"), meta("test_pool")
	_ = meta("sample_rate") + meta("nfft") + meta("win") + meta("hop")
	if trainPool != 30 || testPool != 20 {
		t.Fatalf("pools of %d and %d utterances, want 30 and 20", trainPool, testPool)
	}
	if len(aud.Tables["features"]) != (trainPool+testPool)*f || len(aud.Tables["mean"]) != f || len(aud.Tables["std"]) != f {
		t.Fatalf("audio tables: %d features, %d means, %d stds for %d per utterance", len(aud.Tables["features"]), len(aud.Tables["mean"]), len(aud.Tables["std"]), f)
	}
	classOfRow := map[uint32]uint8{}
	usedRows := map[uint32]bool{}
	for _, it := range m.Items {
		rec, _ := aud.Record(it.ID)
		row := binary.LittleEndian.Uint32(rec)
		if it.Split == Train && row >= uint32(trainPool) || it.Split == Test && (row < uint32(trainPool) || row >= uint32(trainPool+testPool)) {
			t.Fatalf("%s item %d has utterance row %d (train pool %d, test pool %d)", it.Split, it.ID, row, trainPool, testPool)
		}
		if c, ok := classOfRow[row]; ok && c != it.Class {
			t.Fatalf("row %d is spoken for classes %d and %d", row, c, it.Class)
		}
		classOfRow[row] = it.Class
		usedRows[row] = true
	}
	// Row numbers must not give the class away (the pool comes grouped).
	var rowClasses []uint8
	for row := range uint32(trainPool) {
		if c, ok := classOfRow[row]; ok {
			rowClasses = append(rowClasses, c)
		}
	}
	if slices.IsSorted(rowClasses) {
		t.Errorf("train rows are grouped by class: %v", rowClasses)
	}
	if len(usedRows) < 45 {
		t.Errorf("items use only %d of the 50 utterances", len(usedRows))
	}
	feats, mean, std := aud.Tables["features"], aud.Tables["mean"], aud.Tables["std"]
	for j := range f {
		var s float64
		for r := range trainPool {
			s += (float64(feats[r*f+j]) - float64(mean[j])) / float64(std[j])
		}
		if math.Abs(s/float64(trainPool)) > 1e-3 || !(std[j] >= minStd) {
			t.Fatalf("feature %d: normalised train mean %v, std %v", j, s/float64(trainPool), std[j])
		}
	}
}

// checkUpToDate checks that Prepare of cfg, which m was prepared from in
// first, is skipped, quickly, leaving the files untouched. progress is
// cfg.Progress, reset.
func checkUpToDate(t *testing.T, cfg PrepareConfig, m *Manifest, progress *bytes.Buffer, first time.Duration) {
	t.Helper()
	before := preparedFiles(t, cfg.Dir)
	start := time.Now()
	again, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > first/2 || took > 5*time.Second {
		t.Errorf("up-to-date Prepare took %v (the build took %v)", took, first)
	} else {
		t.Logf("up-to-date Prepare took %v (the build took %v)", took, first)
	}
	if !again.Created.Equal(m.Created) || !strings.Contains(progress.String(), "already holds this dataset") {
		t.Errorf("up-to-date Prepare rebuilt: created %v, progress %q", again.Created, progress.String())
	}
	for name, st := range preparedFiles(t, cfg.Dir) {
		if !st.ModTime().Equal(before[name].ModTime()) || !os.SameFile(st, before[name]) {
			t.Errorf("up-to-date Prepare touched %s", name)
		}
	}
}

// checkDamagedShardRebuilt checks that a damaged shard of cfg.Dir is
// rebuilt without cfg.Force, to the bytes of the same dataset in ref.
func checkDamagedShardRebuilt(t *testing.T, cfg PrepareConfig, ref string) {
	t.Helper()
	path := ShardPath(cfg.Dir, Language)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 1
	os.WriteFile(path, b, 0o644)
	if _, err := Prepare(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	sameShards(t, cfg.Dir, ref, true)
}

// checkForceRebuilds checks that cfg.Force rebuilds cfg.Dir (new files) to
// the bytes of the same dataset in ref.
func checkForceRebuilds(t *testing.T, cfg PrepareConfig, ref string) {
	t.Helper()
	before := preparedFiles(t, cfg.Dir)
	cfg.Force = true
	if _, err := Prepare(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for name, st := range preparedFiles(t, cfg.Dir) {
		if os.SameFile(st, before[name]) {
			t.Errorf("forced Prepare left %s as it was", name)
		}
	}
	sameShards(t, cfg.Dir, ref, true)
}

// preparedFiles stats the manifest and shards of dir, by file name.
func preparedFiles(t *testing.T, dir string) map[string]os.FileInfo {
	t.Helper()
	out := map[string]os.FileInfo{}
	for _, name := range []string{"manifest.json", "vision.shard", "language.shard", "audio.shard"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = st
	}
	return out
}

// sameShards compares the language and audio shards of two dirs (vision
// depends on no seed).
func sameShards(t *testing.T, a, b string, want bool) {
	t.Helper()
	for _, mod := range []string{Vision, Language, Audio} {
		x, err := os.ReadFile(ShardPath(a, mod))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(ShardPath(b, mod))
		if err != nil {
			t.Fatal(err)
		}
		if same := bytes.Equal(x, y); same != want && (mod != Vision || !same) {
			t.Errorf("%s shards of %s and %s: identical %v, want %v", mod, a, b, same, want)
		}
	}
}

func TestPrepareRefusals(t *testing.T) {
	ctx := context.Background()
	_, err := Prepare(ctx, PrepareConfig{Dir: t.TempDir(), FashionMNIST: filepath.Join(t.TempDir(), "none")})
	if !errors.Is(err, ErrNoFashionMNIST) || !strings.Contains(err.Error(), "dataset-fashion-mnist") {
		t.Errorf("missing Fashion-MNIST: %v", err)
	}
	for _, cfg := range []PrepareConfig{{Limit: -1}, {AudioTrain: -3}, {Workers: -1}} {
		cfg.Dir = t.TempDir()
		if _, err := Prepare(ctx, cfg); err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	// Cancelled: nothing written.
	needEspeak(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	dir := t.TempDir()
	if _, err := Prepare(cctx, PrepareConfig{Dir: dir, Limit: 60, AudioTrain: 1, AudioTest: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Prepare: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("cancelled Prepare wrote %d files", len(ents))
	}
}

func TestReadManifestNotPrepared(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadManifest(dir)
	if !errors.Is(err, ErrNotPrepared) || !strings.Contains(err.Error(), "serket data prepare --dir "+dir) || !strings.HasPrefix(err.Error(), dir) {
		t.Fatalf("%v", err)
	}
	os.WriteFile(ManifestPath(dir), []byte(`{"version":1,"counts":{"train":2},"items":[{"id":0,"split":"train","class":1}]}`), 0o644)
	if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "counts say 2 train items, the list has 1") {
		t.Fatalf("inconsistent manifest: %v", err)
	}
}
