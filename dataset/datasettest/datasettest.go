// Package datasettest prepares a small real Fashion-MNIST-3 dataset once per
// test process, for the tests of the modalities and of training.
package datasettest

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/serket-go/serket/dataset"
)

var (
	once sync.Once
	dir  string
	err  error
)

// Items is the number of train items of the small dataset (test items: Items/6).
const Items = 240

// Dir returns the directory of a small dataset prepared from the real
// Fashion-MNIST and espeak-ng (Items train items, a few utterances per
// class), made once per test binary in the OS temp dir. It fails t if the
// dataset cannot be prepared, saying what is missing.
func Dir(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if _, lerr := exec.LookPath("espeak-ng"); lerr != nil {
			err = lerr
			return
		}
		dir, err = os.MkdirTemp("", "serket-fmnist3-test-")
		if err != nil {
			return
		}
		_, err = dataset.Prepare(context.Background(), dataset.PrepareConfig{
			Dir: dir, Limit: Items, AudioTrain: 3, AudioTest: 2, Seed: 1,
		})
	})
	if err != nil {
		t.Fatalf("preparing the test dataset (needs the Debian packages dataset-fashion-mnist and espeak-ng): %v", err)
	}
	return dir
}
