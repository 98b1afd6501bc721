package speech

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// ErrNoEspeak is wrapped by the error [Synthesize] returns when the
// espeak-ng program is not on PATH.
var ErrNoEspeak = errors.New("speech: espeak-ng not found on PATH; install the Debian package espeak-ng (apt-get install espeak-ng)")

// Voice is one espeak-ng rendering setup.
type Voice struct {
	Name      string // espeak-ng voice and variant, -v: "en-us+f3"
	Rate      int    // speed in words per minute, -s; 0 means espeak-ng's default (175)
	Pitch     int    // base pitch 1..99, -p; 0 means espeak-ng's default (50)
	Amplitude int    // loudness 1..200, -a; 0 means espeak-ng's default (100)
}

// String returns the voice as espeak-ng arguments, for logs.
func (v Voice) String() string {
	return strings.Join(v.args(), " ")
}

func (v Voice) args() []string {
	a := []string{"-v", v.Name}
	if v.Rate > 0 {
		a = append(a, "-s", strconv.Itoa(v.Rate))
	}
	if v.Pitch > 0 {
		a = append(a, "-p", strconv.Itoa(v.Pitch))
	}
	if v.Amplitude > 0 {
		a = append(a, "-a", strconv.Itoa(v.Amplitude))
	}
	return a
}

// The voice sets. Base voices are espeak-ng's own English ones (gmw/, no
// mbrola); variants are files of espeak-ng-data/voices/!v, each checked to
// change the sound: espeak-ng silently ignores a variant it cannot find,
// and ignores every variant of "en-gb", so British English is "en" (the
// same voice file, gmw/en).
// The test set's variants never occur in training, and two of its base
// accents (Caribbean, Scottish) neither.
var (
	trainBases    = []string{"en-us", "en", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"}
	trainVariants = []string{"", "m1", "m2", "m3", "m5", "m7", "f1", "f2", "f3", "f5",
		"klatt", "klatt3", "Andy", "Annie", "Gene", "Lee", "Michael", "Storm",
		"aunty", "belinda", "boris", "david", "edward", "grandpa", "iven", "john",
		"linda", "max", "norbert", "paul", "quincy", "rob", "steph", "travis", "zac"}
	testBases    = []string{"en-us", "en", "en-029", "en-gb-scotland"}
	testVariants = []string{"m4", "m6", "f4", "croak", "klatt4", "Alicia", "anika", "Hugo", "grandma", "Jacky"}
	voiceRates   = []int{120, 145, 170, 195, 220}
	voicePitches = []int{20, 35, 50, 65, 80}
)

// Voices returns the train and test voice sets: every base voice + variant
// of the set, each at rates 120, 145, 170, 195 and 220 words/min and pitches
// 20, 35, 50, 65 and 80. The two sets share no base+variant combination;
// the test set's variants (+m4, +m6, +f4, +croak, …) and its Caribbean and
// Scottish accents are never used in training. The order is fixed.
func Voices() (train, test []Voice) {
	return voiceGrid(trainBases, trainVariants), voiceGrid(testBases, testVariants)
}

func voiceGrid(bases, variants []string) []Voice {
	var vs []Voice
	for _, b := range bases {
		for _, v := range variants {
			name := b
			if v != "" {
				name += "+" + v
			}
			for _, r := range voiceRates {
				for _, p := range voicePitches {
					vs = append(vs, Voice{Name: name, Rate: r, Pitch: p})
				}
			}
		}
	}
	return vs
}

// Synthesize speaks text with espeak-ng in voice v and returns the samples
// in [-1, 1] resampled to rate Hz (espeak-ng itself renders 22050 Hz). The
// text goes to espeak-ng on stdin, so it cannot be taken for options.
// Cancelling ctx kills the process. The output is deterministic for a
// given espeak-ng installation. Without espeak-ng the error wraps
// [ErrNoEspeak].
func Synthesize(ctx context.Context, text string, v Voice, rate int) ([]float32, error) {
	if rate < minRate || rate > maxRate {
		return nil, fmt.Errorf("speech: Synthesize: sample rate %d Hz outside [%d, %d]", rate, minRate, maxRate)
	}
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("speech: Synthesize: empty text")
	}
	if v.Name == "" || strings.HasPrefix(v.Name, "-") {
		return nil, fmt.Errorf("speech: Synthesize: bad voice name %q", v.Name)
	}
	path, err := exec.LookPath("espeak-ng")
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", ErrNoEspeak, err)
	}
	cmd := exec.CommandContext(ctx, path, append([]string{"--stdout", "--stdin"}, v.args()...)...)
	cmd.Stdin = strings.NewReader(text)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("speech: espeak-ng %s: %w", v, ctx.Err())
		}
		return nil, fmt.Errorf("speech: espeak-ng %s: %w: %s", v, err, strings.TrimSpace(stderr.String()))
	}
	x, from, err := ReadWAV(&out)
	if err != nil {
		return nil, fmt.Errorf("speech: espeak-ng %s gave bad output: %w", v, err)
	}
	if len(x) == 0 {
		return nil, fmt.Errorf("speech: espeak-ng %s gave no audio for %q: %s", v, text, strings.TrimSpace(stderr.String()))
	}
	return Resample(x, from, rate), nil
}
