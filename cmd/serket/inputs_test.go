package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/modules/fmnist3"
)

// boundedRun runs serket with args under a 2 GiB address-space limit (so
// that a command reading without a bound dies of it rather than eat the
// machine) and a deadline; it returns the output, the exit error, the time
// taken and the peak resident memory.
func boundedRun(t *testing.T, args ...string) (string, error, time.Duration, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The test binary, fresh, runs serket and reports its peak memory: a
	// process's peak starts at what the process that started it had, and
	// this one's is hundreds of MiB by now.
	cmdline, _ := json.Marshal(append([]string{serketBin}, args...))
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), measureEnv+"="+string(cmdline))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("serket %s: still running after 30 s\n%s", strings.Join(args, " "), stderr.String())
	}
	out, last, _ := strings.Cut(stderr.String(), measuredTag)
	rss, perr := strconv.ParseInt(strings.TrimSpace(last), 10, 64)
	if perr != nil {
		t.Fatalf("no peak memory reported: %q", stderr.String())
	}
	return out, err, took, rss
}

// measureEnv has TestMain run the command line (JSON) it holds under a
// 2 GiB address-space limit, instead of the tests, and print its peak
// resident memory after measuredTag.
const (
	measureEnv  = "SERKET_TEST_MEASURE"
	measuredTag = "\nserket-test-peak-rss "
)

// measure runs the command line cmdline and returns its exit code.
func measure(cmdline string) int {
	var args []string
	if err := json.Unmarshal([]byte(cmdline), &args); err != nil || len(args) == 0 {
		fmt.Fprintln(os.Stderr, "measure:", err)
		return 2
	}
	cmd := exec.Command("sh", append([]string{"-c", `ulimit -v 2097152 && exec "$@"`, "sh"}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	err := cmd.Run()
	code := 0
	if e := (*exec.ExitError)(nil); errors.As(err, &e) {
		code = e.ExitCode()
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "measure:", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "%s%d\n", measuredTag, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss<<10)
	return code
}

// TestInputFilesAreBounded: infer and generate read the files a person
// names through a bound, what one inference request carries (32 MiB). An
// endless device, a FIFO nobody writes to, a sparse 4 GiB file, a file one
// byte over the limit and two files over it together are each refused at
// once, before anything connects or loads, with flat memory and an error
// that names the file and the limit.
func TestInputFilesAreBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "camera.png")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sized := func(name string, size int64, sparse bool) string {
		path := filepath.Join(dir, name)
		if sparse {
			f, err := os.Create(path)
			if err == nil {
				err = f.Truncate(size)
				f.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			return path
		}
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	huge := sized("huge.png", 4<<30, true)
	big := sized("big.png", 32<<20+1, false)
	photo, speech := sized("photo.png", 20<<20, false), sized("say.wav", 20<<20, false)
	for _, tt := range []struct {
		name string
		from []string
		want string
	}{
		{"/dev/zero", []string{"vision=@/dev/zero"}, "/dev/zero: not a regular file (a character device); give a file of at most 32 MiB"},
		{"a FIFO", []string{"vision=@" + fifo}, fifo + ": not a regular file (a FIFO)"},
		{"a sparse 4 GiB file", []string{"vision=@" + huge}, huge + ": file too large: 4096 MiB, the limit is 32 MiB"},
		{"one byte over", []string{"vision=@" + big}, big + ": file too large: 32.0 MiB (33554433 bytes), the limit is 32 MiB"},
		{"two files over together", []string{"vision=@" + photo, "audio=@" + speech},
			"the observations are 40 MiB together (audio: 20 MiB of audio/wav, vision: 20 MiB of image/png); one inference request carries at most 32 MiB"},
	} {
		for _, command := range [][]string{
			{"infer", "--to", "language", "--timeout", "2s"},
			{"generate", "--to", "language", "--checkpoint", filepath.Join(dir, "no-model"), "--out", filepath.Join(dir, "out")},
		} {
			t.Run(tt.name+"/"+command[0], func(t *testing.T) {
				args := command
				for _, f := range tt.from {
					args = append(args, "--from", f)
				}
				out, err, took, rss := boundedRun(t, args...)
				if err == nil || !strings.Contains(out, tt.want) {
					t.Fatalf("serket %s: %v, want a refusal containing %q\n%s", strings.Join(args, " "), err, tt.want, out)
				}
				// The limit is 32 MiB; refusing takes none of it, and no
				// time to speak of (5 s: a loaded machine).
				t.Logf("refused in %v with a peak of %d MiB", took, rss>>20)
				if rss > 150<<20 || took > 5*time.Second {
					t.Errorf("refusing took %v and %d MiB of memory", took, rss>>20)
				}
			})
		}
	}
}

// TestGenerateTakesAPhotoAndALongWAV: the inputs a person has at hand, a
// 3 MB photo and 10 s of 44.1 kHz stereo WAV, each over nats-server's
// default 1 MB max_payload, go through `generate --checkpoint`'s
// in-process pipeline and both modules use them.
func TestGenerateTakesAPhotoAndALongWAV(t *testing.T) {
	data := datasettest.Dir(t)
	m, err := fmnist3.Open(data, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "ckpt")
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(dir, "photo.png")
	if err := os.WriteFile(photo, noisePNG(t, 1800, 1700), 0o644); err != nil {
		t.Fatal(err)
	}
	speech := filepath.Join(dir, "say.wav")
	if err := os.WriteFile(speech, stereoWAV(10*44100, 44100), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{photo, speech} {
		if st, err := os.Stat(f); err != nil || st.Size() < 1_500_000 {
			t.Fatalf("%s: %v, %d bytes: want more than nats-server's default max payload", f, err, st.Size())
		}
	}
	out, err := serketOut(t, "generate", "--checkpoint", ckpt, "--data", data, "--hidden", "32", "--out", filepath.Join(dir, "out"),
		"--from", "vision="+photo, "--from", "audio="+speech, "--to", "language", "--n", "2")
	if err != nil || !strings.Contains(out, "from vision, audio → language") && !strings.Contains(out, "from audio, vision → language") {
		t.Fatalf("serket generate with a 3 MB photo and 10 s of WAV: %v\n%s", err, out)
	}
}

// noisePNG is a w×h grey PNG of noise, stored uncompressed: a photo-sized
// file (w×h bytes and a little).
func noisePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.Uint32())
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// stereoWAV is n frames of 16-bit stereo PCM at rate Hz: a 440 Hz tone
// on the left, 660 Hz on the right.
func stereoWAV(n, rate int) []byte {
	le := binary.LittleEndian
	b := []byte("RIFF")
	b = le.AppendUint32(b, uint32(36+4*n))
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, 16)
	b = le.AppendUint16(b, 1) // PCM
	b = le.AppendUint16(b, 2)
	b = le.AppendUint32(b, uint32(rate))
	b = le.AppendUint32(b, uint32(4*rate))
	b = le.AppendUint16(b, 4)
	b = le.AppendUint16(b, 16)
	b = append(b, "data"...)
	b = le.AppendUint32(b, uint32(4*n))
	for i := range n {
		x := float64(i) / float64(rate)
		b = le.AppendUint16(b, uint16(int16(8000*math.Sin(2*math.Pi*440*x))))
		b = le.AppendUint16(b, uint16(int16(8000*math.Sin(2*math.Pi*660*x))))
	}
	return b
}
