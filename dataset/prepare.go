package dataset

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serket-go/serket/dataset/speech"
)

// PrepareConfig says where and how to build the dataset. Zero fields take
// the defaults noted.
type PrepareConfig struct {
	Dir          string // where to write; DefaultDir()
	FashionMNIST string // where the IDX files are; FashionMNISTDir
	Seed         uint64 // captions, utterances, the audio pool; 1 (0 means the default)
	// AudioTrain and AudioTest are the spoken utterances per class in the
	// train and test pools; 150 and 40. Test utterances use voices the train
	// pool never has, and items share the utterances of their class.
	AudioTrain, AudioTest int
	Workers               int // espeak-ng and feature workers; runtime.NumCPU()
	// Limit, if > 0, keeps only the first Limit train items and the first
	// max(1, Limit/6) test items, for tests and quick runs. It changes the
	// Config hash.
	Limit int
	// Force rebuilds even when Dir already holds this very dataset.
	Force bool
	// Progress gets a progress bar per phase if it is a terminal, else one
	// line per phase with its timing; nil is silent.
	Progress io.Writer
}

func (c *PrepareConfig) setDefaults() error {
	if c.Dir == "" {
		c.Dir = DefaultDir()
	}
	if c.FashionMNIST == "" {
		c.FashionMNIST = FashionMNISTDir
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.AudioTrain == 0 {
		c.AudioTrain = 150
	}
	if c.AudioTest == 0 {
		c.AudioTest = 40
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	switch {
	case c.AudioTrain < 0 || c.AudioTest < 0:
		return fmt.Errorf("dataset: prepare: %d train and %d test utterances per class: want positive numbers", c.AudioTrain, c.AudioTest)
	case c.Workers < 0:
		return fmt.Errorf("dataset: prepare: %d workers: want a positive number", c.Workers)
	case c.Limit < 0:
		return fmt.Errorf("dataset: prepare: limit %d: want 0 (everything) or a positive number", c.Limit)
	}
	return nil
}

// Prepare builds Fashion-MNIST-3 in cfg.Dir (see the package doc for the
// layout) from the Fashion-MNIST files and espeak-ng, and returns its
// manifest. The output is a function of the inputs and the config alone:
// the same seed gives byte-identical shards, whatever cfg.Workers is. If
// cfg.Dir already holds a dataset with the same Config hash whose shards
// read back valid, Prepare returns its manifest without touching it, unless
// cfg.Force.
//
// Everything is built in memory first and written last, shards before the
// manifest: an interrupted Prepare leaves no manifest, so it is never taken
// for a finished one.
func Prepare(ctx context.Context, cfg PrepareConfig) (*Manifest, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	sc := speech.DefaultConfig()
	prog := newProgress(cfg.Progress)

	prog.begin("reading Fashion-MNIST", 0)
	raw, err := readFashionMNISTFiles(cfg.FashionMNIST)
	if err != nil {
		return nil, err
	}
	hash := configHash(&cfg, raw, sc)
	if !cfg.Force {
		if m := upToDate(cfg.Dir, hash); m != nil {
			prog.end(fmt.Sprintf("%s already holds this dataset (config %.12s): nothing to do", cfg.Dir, hash))
			return m, nil
		}
	}
	fm, err := decodeImages(raw, cfg.Limit)
	if err != nil {
		return nil, err
	}
	prog.end(fmt.Sprintf("%d train and %d test images of %d×%d", fm.Train.N, fm.Test.N, fm.Train.Rows, fm.Train.Cols))

	m := newManifest(&cfg, hash, fm)
	ids := itemIDs(m.Items)
	meta := shardMeta(hash, cfg.Seed)
	vision := buildVision(fm, ids, meta)
	lang := buildLanguage(m, ids, cfg.Seed, prog, meta)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	audio, err := buildAudio(ctx, &cfg, m, sc, prog, meta)
	if err != nil {
		return nil, err
	}

	if err := writeDataset(ctx, cfg.Dir, m, []*Shard{vision, lang, audio}, prog); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeImages decodes the Fashion-MNIST files, keeping the first limit
// train and max(1, limit/6) test images if limit > 0, and checks that the
// items fit the id scheme and that both splits have one image size.
func decodeImages(raw *fmnistRaw, limit int) (*FashionMNIST, error) {
	limitTrain, limitTest := 0, 0
	if limit > 0 {
		limitTrain, limitTest = limit, max(1, limit/6)
	}
	fm, err := raw.decode(limitTrain, limitTest)
	if err != nil {
		return nil, err
	}
	if fm.Train.N > TestIDBase {
		return nil, fmt.Errorf("%s: %d train images, the id scheme has room for %d", raw.paths[0], fm.Train.N, TestIDBase)
	}
	if fm.Test.Rows != fm.Train.Rows || fm.Test.Cols != fm.Train.Cols {
		return nil, fmt.Errorf("%s: test images of %d×%d, train images of %d×%d", raw.paths[2], fm.Test.Rows, fm.Test.Cols, fm.Train.Rows, fm.Train.Cols)
	}
	return fm, nil
}

// newManifest is the manifest of the dataset cfg and fm make, without its
// creation time: the train items in order, then the test items.
func newManifest(cfg *PrepareConfig, hash string, fm *FashionMNIST) *Manifest {
	nTrain, nTest := fm.Train.N, fm.Test.N
	m := &Manifest{
		Version: ManifestVersion, Seed: cfg.Seed, Config: hash, Limit: cfg.Limit,
		AudioTrain: cfg.AudioTrain, AudioTest: cfg.AudioTest,
		Counts: map[string]int{Train: nTrain, Test: nTest},
		Items:  make([]Item, 0, nTrain+nTest),
	}
	for i := range nTrain {
		m.Items = append(m.Items, Item{ID: uint64(i), Split: Train, Class: fm.Train.Labels[i]})
	}
	for j := range nTest {
		m.Items = append(m.Items, Item{ID: TestIDBase + uint64(j), Split: Test, Class: fm.Test.Labels[j]})
	}
	return m
}

// itemIDs returns the ids of items, in their order.
func itemIDs(items []Item) []uint64 {
	ids := make([]uint64, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

// shardMeta returns a maker of shard metadata: the config hash and seed
// every shard carries, plus the key-value pairs it is given.
func shardMeta(hash string, seed uint64) func(kv ...string) map[string]string {
	return func(kv ...string) map[string]string {
		out := map[string]string{"config": hash, "seed": strconv.FormatUint(seed, 10)}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
}

// buildVision is the vision shard: the pixels.
func buildVision(fm *FashionMNIST, ids []uint64, meta func(...string) map[string]string) *Shard {
	px := fm.Train.Rows * fm.Train.Cols
	vision := &Shard{
		Modality: Vision, IDs: ids, RecordSize: px, Records: make([]byte, 0, len(ids)*px),
		Meta: meta("rows", strconv.Itoa(fm.Train.Rows), "cols", strconv.Itoa(fm.Train.Cols)),
	}
	vision.Records = append(vision.Records, fm.Train.Pixels[:fm.Train.N*px]...)
	vision.Records = append(vision.Records, fm.Test.Pixels[:fm.Test.N*px]...)
	return vision
}

// buildLanguage is the language shard: a seeded caption per item, encoded.
func buildLanguage(m *Manifest, ids []uint64, seed uint64, prog *progress, meta func(...string) map[string]string) *Shard {
	prog.begin("captions", 0)
	vocab := CaptionVocab()
	lang := &Shard{
		Modality: Language, IDs: ids, RecordSize: 4 * MaxTokens, Records: make([]byte, 4*MaxTokens*len(ids)),
		Meta: meta("vocab", strings.Join(vocab.Words(), "\n"), "max_tokens", strconv.Itoa(MaxTokens)),
	}
	var tok [MaxTokens]int32
	for i, it := range m.Items {
		text := Caption(int(it.Class), captionRand(seed, it.ID))
		if unk := vocab.Encode(tok[:], text); unk != 0 {
			panic(fmt.Sprintf("dataset: caption %q has %d words outside CaptionVocab", text, unk))
		}
		for k, t := range tok {
			binary.LittleEndian.PutUint32(lang.Records[4*(i*MaxTokens+k):], uint32(t))
		}
	}
	prog.end(fmt.Sprintf("%d captions over a vocabulary of %d words", len(ids), vocab.Len()-3))
	return lang
}

// writeDataset writes shards to dir, then m with its creation time set (see
// Prepare for why in this order).
func writeDataset(ctx context.Context, dir string, m *Manifest, shards []*Shard, prog *progress) error {
	prog.begin("writing", 0)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Remove(ManifestPath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	removeStaleTemps(dir)
	for _, s := range shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := WriteShard(ShardPath(dir, s.Modality), s); err != nil {
			return err
		}
	}
	m.Created = time.Now().UTC().Truncate(time.Second)
	if err := writeManifest(dir, m); err != nil {
		return err
	}
	prog.end(dir)
	return nil
}

// removeStaleTemps removes the temporary files of an earlier Prepare killed
// mid-write (old enough not to be a concurrent Prepare's, which writes for
// about a second).
func removeStaleTemps(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, ".*.tmp*"))
	for _, f := range stale {
		if st, err := os.Stat(f); err == nil && time.Since(st.ModTime()) > 10*time.Minute {
			os.Remove(f)
		}
	}
}

// captionRand is the caption generator of one item.
func captionRand(seed, id uint64) *rand.Rand {
	return rand.New(rand.NewPCG(hash3(seed, id, purposeCaption), id))
}

// buildAudio is the audio shard: a pool of utterances per class and split;
// each item points at one of its class and split.
func buildAudio(ctx context.Context, cfg *PrepareConfig, m *Manifest, sc speech.Config, prog *progress, meta func(...string) map[string]string) (*Shard, error) {
	total := NumClasses * (cfg.AudioTrain + cfg.AudioTest)
	prog.begin("audio", total)
	pool, err := speech.BuildPool(ctx, speech.PoolConfig{
		Words:        SpokenNames[:],
		PerWordTrain: cfg.AudioTrain, PerWordTest: cfg.AudioTest,
		Seed:     hash3(cfg.Seed, 0, purposePool),
		Workers:  cfg.Workers,
		Progress: prog.set,
		Config:   sc,
	})
	if err != nil {
		return nil, err // speech's errors say what to install
	}
	f := pool.Config.Size()
	nTrainPool, nTestPool := len(pool.TrainWord), len(pool.TestWord)
	if len(pool.Train) != nTrainPool*f || len(pool.Test) != nTestPool*f {
		return nil, fmt.Errorf("audio pool: %d and %d feature values for %d and %d utterances of %d", len(pool.Train), len(pool.Test), nTrainPool, nTestPool, f)
	}
	// The pool comes grouped by word, so a row number would give the class
	// away: the features table holds each split's utterances in a seeded
	// random order instead, and the audio module learns nothing from a
	// record but which utterance to read.
	rng := rand.New(rand.NewPCG(hash3(cfg.Seed, 0, purposeShuffle), 0))
	feats := make([]float32, (nTrainPool+nTestPool)*f)
	var byClass [2][NumClasses][]uint32 // [train, test][class] → rows of the features table
	for s, part := range []struct {
		x     []float32
		words []int
		base  int
	}{{pool.Train, pool.TrainWord, 0}, {pool.Test, pool.TestWord, nTrainPool}} {
		for row, u := range rng.Perm(len(part.words)) {
			copy(feats[(part.base+row)*f:(part.base+row+1)*f], part.x[u*f:(u+1)*f])
			byClass[s][part.words[u]] = append(byClass[s][part.words[u]], uint32(part.base+row))
		}
	}
	for s := range byClass {
		for c := range byClass[s] {
			slices.Sort(byClass[s][c])
		}
	}
	audio := &Shard{
		Modality: Audio, RecordSize: 4, Records: make([]byte, 4*len(m.Items)),
		Tables: map[string][]float32{},
		Meta: meta(
			"sample_rate", strconv.Itoa(pool.Config.SampleRate),
			"nfft", strconv.Itoa(pool.Config.NFFT),
			"win", strconv.Itoa(pool.Config.Win),
			"hop", strconv.Itoa(pool.Config.Hop),
			"mels", strconv.Itoa(pool.Config.Mels),
			"frames", strconv.Itoa(pool.Config.Frames),
			"floor", strconv.FormatFloat(float64(pool.Config.Floor), 'g', -1, 32),
			"train_pool", strconv.Itoa(nTrainPool),
			"test_pool", strconv.Itoa(nTestPool),
		),
	}
	for i, it := range m.Items {
		audio.IDs = append(audio.IDs, it.ID)
		s := 0
		if it.Split == Test {
			s = 1
		}
		rows := byClass[s][it.Class]
		if len(rows) == 0 {
			return nil, fmt.Errorf("audio pool: no %s utterance of %q", it.Split, SpokenNames[it.Class])
		}
		row := rows[hash3(cfg.Seed, it.ID, purposeUtterance)%uint64(len(rows))]
		binary.LittleEndian.PutUint32(audio.Records[4*i:], row)
	}
	audio.Tables["features"] = feats
	audio.Tables["mean"], audio.Tables["std"] = meanStd(pool.Train, f)
	prog.end(fmt.Sprintf("%d train and %d test utterances spoken by espeak-ng, %d×%d log-mel features", nTrainPool, nTestPool, pool.Config.Frames, pool.Config.Mels))
	return audio, nil
}

// minStd keeps a feature that never varies (say, a band at the floor in
// every utterance) from dividing by zero when normalised.
const minStd = 1e-3

// meanStd returns the mean and standard deviation of each of the f
// features over the rows of x (row-major, len(x)/f rows).
func meanStd(x []float32, f int) (mean, std []float32) {
	n := len(x) / f
	sum := make([]float64, f)
	for r := range n {
		for j, v := range x[r*f : (r+1)*f] {
			sum[j] += float64(v)
		}
	}
	mean, std = make([]float32, f), make([]float32, f)
	mu := make([]float64, f)
	for j := range mu {
		mu[j] = sum[j] / float64(max(n, 1))
		sum[j] = 0
	}
	for r := range n {
		for j, v := range x[r*f : (r+1)*f] {
			d := float64(v) - mu[j]
			sum[j] += d * d
		}
	}
	for j := range mu {
		mean[j] = float32(mu[j])
		std[j] = float32(max(math.Sqrt(sum[j]/float64(max(n, 1))), minStd))
	}
	return mean, std
}

// generatorVersion names the way Prepare turns its inputs into shards
// (hashes, assignment, order): change it with any change to that code that
// changes the output, so that datasets prepared before are rebuilt.
const generatorVersion = 1

// configHash is a hash of everything that determines the prepared data:
// the formats, the caption generator, the input files, the config, the
// feature settings and the espeak-ng version.
func configHash(cfg *PrepareConfig, raw *fmnistRaw, sc speech.Config) string {
	h := sha256.New()
	fmt.Fprintf(h, "serket fmnist3 generator %d manifest %d shard %d max_tokens %d\n", generatorVersion, ManifestVersion, ShardVersion, MaxTokens)
	fmt.Fprintf(h, "seed %d limit %d audio %d %d\n", cfg.Seed, cfg.Limit, cfg.AudioTrain, cfg.AudioTest)
	fmt.Fprintf(h, "speech %+v snr %v %v\n", sc, speech.DefaultSNRMin, speech.DefaultSNRMax)
	train, test := speech.Voices()
	fmt.Fprintf(h, "voices %v\n%v\n", train, test)
	for c := range NumClasses {
		fmt.Fprintf(h, "class %d %q %q:", c, ClassNames[c], SpokenNames[c])
		allCaptions(c, func(s string) { fmt.Fprintf(h, " %q", s) })
		fmt.Fprintln(h)
	}
	for i, d := range raw.data {
		sum := sha256.Sum256(d)
		fmt.Fprintf(h, "%s %x\n", fmnistFiles[i], sum)
	}
	fmt.Fprintf(h, "espeak-ng %s\n", espeakVersion())
	return hex.EncodeToString(h.Sum(nil))
}

// espeakVersion is espeak-ng's version line, or "" if it does not run.
func espeakVersion() string {
	out, err := exec.Command("espeak-ng", "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// upToDate returns the manifest of dir if it was prepared with config hash
// and every shard reads back valid and complete, else nil.
func upToDate(dir, hash string) *Manifest {
	m, err := ReadManifest(dir)
	if err != nil || m.Config != hash {
		return nil
	}
	for _, mod := range Modalities() {
		s, err := ReadShard(ShardPath(dir, mod), mod)
		if err != nil || s.Meta["config"] != hash || s.Len() != len(m.Items) {
			return nil
		}
	}
	return m
}
