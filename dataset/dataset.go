package dataset

import (
	"os"
	"path/filepath"

	"github.com/serket-go/serket/procenv"
)

// The built-in modalities of Fashion-MNIST-3. Each names a module and its
// shard file (see [ShardPath]).
const (
	Vision   = "vision"
	Language = "language"
	Audio    = "audio"
)

// Modalities returns the built-in modalities in their canonical order, the
// order [Present] expects when every module uses the default list.
func Modalities() []string { return []string{Vision, Language, Audio} }

// FashionMNISTDir is where Debian's dataset-fashion-mnist package installs
// the four IDX files.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// DefaultDir returns where a prepared dataset lives unless told otherwise:
// $SERKET_DATA, else data/fmnist3 (relative to the working directory).
func DefaultDir() string {
	if d := os.Getenv(procenv.EnvData); d != "" {
		return d
	}
	return filepath.FromSlash(procenv.DefaultData)
}

// NumClasses is the number of Fashion-MNIST classes.
const NumClasses = 10

// ClassNames are Fashion-MNIST's class names, indexed by label.
var ClassNames = [NumClasses]string{"t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"}

// SpokenNames are the words espeak-ng speaks for each class, indexed by
// label.
var SpokenNames = [NumClasses]string{"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"}

// The splits.
const (
	Train = "train"
	Test  = "test"
)

// TestIDBase is the id of the first test item: train item i has id i and
// test item j has id TestIDBase+j, whatever the size of the prepared
// dataset, so an id means the same Fashion-MNIST item in every preparation.
const TestIDBase = 60000

// Split returns the split of a sample id under the id scheme: [Train]
// below [TestIDBase], [Test] from it on. Modules use it to call [Present]
// without reading the manifest.
func Split(id uint64) string {
	if id < TestIDBase {
		return Train
	}
	return Test
}

// ShardPath is the file of modality's shard in a prepared dataset dir.
func ShardPath(dir, modality string) string {
	return filepath.Join(dir, modality+".shard")
}

// ManifestPath is the manifest file of a prepared dataset dir.
func ManifestPath(dir string) string {
	return filepath.Join(dir, "manifest.json")
}

// mix is SplitMix64's finaliser: a bijection of uint64 with good avalanche.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Purposes of the per-item hashes, so that each decision about an item draws
// independent bits from the same (seed, id).
const (
	purposePaired uint64 = iota + 1
	purposeSingle
	purposeCaption
	purposeUtterance
	purposePool
	purposeShuffle
)

// hash3 returns well-mixed bits for (seed, id, purpose).
func hash3(seed, id, purpose uint64) uint64 {
	h := mix(seed + purpose*0x9e3779b97f4a7c15)
	return mix(h ^ mix(id+0x632be59bd9b4e019))
}
