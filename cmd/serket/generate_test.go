package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/dataset/speech"
	"github.com/serket-go/serket/modules/fmnist3"
)

// generate from a checkpoint directory: every output written, whole; bad
// requests fail with an error that names the problem and leave --out as it
// was.
func TestGenerateFromCheckpoint(t *testing.T) {
	data := datasettest.Dir(t)
	m, err := fmnist3.Open(data, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "ckpt")
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "gen")
	gen := func(args ...string) (string, error) {
		return serketOut(t, append([]string{"generate", "--checkpoint", ckpt, "--data", data, "--hidden", "32", "--out", out}, args...)...)
	}
	msg, err := gen("--from", "language=a pair of trousers", "--to", "vision,language,audio", "--n", "3")
	if err != nil {
		t.Fatalf("serket generate: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(filepath.Join(out, "vision.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil || img.Bounds().Dx() < 3*28 {
		t.Fatalf("vision.png: %v, %v", err, img.Bounds())
	}
	if b, err := os.ReadFile(filepath.Join(out, "language.txt")); err != nil || len(strings.Split(strings.TrimSpace(string(b)), "\n")) != 3 {
		t.Fatalf("language.txt %q (%v): want 3 captions", b, err)
	}
	for _, f := range []string{"audio/00.wav", "audio/02.wav"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if s, rate, err := speech.ReadWAV(bytes.NewReader(b)); err != nil || rate != 16000 || len(s) == 0 {
			t.Fatalf("%s: %d samples at %d Hz: %v", f, len(s), rate, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "audio.png")); err != nil {
		t.Fatal(err)
	}

	// Each refusal leaves the previous output intact.
	before, _ := os.ReadFile(filepath.Join(out, "language.txt"))
	notImage := filepath.Join(t.TempDir(), "shoe.png")
	os.WriteFile(notImage, []byte("not a png"), 0o644)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown module", []string{"--from", "smell=roses", "--to", "vision"}, "smell"},
		{"unknown target", []string{"--to", "vision,touch"}, "touch"},
		{"missing file", []string{"--from", "vision=/no/such/shoe.png", "--to", "language"}, "no such file"},
		{"not an image", []string{"--from", "vision=" + notImage, "--to", "language"}, "vision"},
		{"no known word", []string{"--from", "language=zzz qqq", "--to", "vision"}, "language"},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg, err := gen(append(c.args, "--n", "2")...)
			if err == nil || !strings.Contains(msg, c.want) {
				t.Fatalf("%v: %v\n%s", c.args, err, msg)
			}
			if after, _ := os.ReadFile(filepath.Join(out, "language.txt")); !bytes.Equal(before, after) {
				t.Fatalf("a failed generate changed the previous output")
			}
		})
	}
	// A checkpoint of another model shape is refused, naming the file.
	msg, err = serketOut(t, "generate", "--checkpoint", ckpt, "--data", data, "--out", out, "--to", "vision")
	if err == nil || !strings.Contains(msg, ".ckpt") {
		t.Fatalf("generating from a checkpoint of hidden size 32 as 512: %v\n%s", err, msg)
	}
}
