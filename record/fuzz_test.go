package record

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// canonical is the text ParseBound reads back to b.
func canonical(b Bound) string {
	switch b.kind {
	case seqBound:
		return strconv.FormatUint(b.seq, 10)
	case timeBound:
		return b.t.Format(time.RFC3339Nano)
	case offsetBound:
		return "+" + b.off.String()
	}
	return ""
}

// FuzzParseBound: ParseBound, which reads the --from and --to a person
// types for a replay, never panics. It either fails with an error quoting
// the bound, or gives a sequence ≥ 1, an offset ≥ 0 or a time, which its
// canonical text (the sequence, +offset, RFC 3339) parses back to; no bound
// comes only from blank text.
func FuzzParseBound(f *testing.F) {
	for _, s := range []string{
		"", "120", "90s", "+2m", "1m30s", "2026-05-01T14:03:00Z", "2026-05-01 14:03:00", "2026-05-01T14:03:00.123456789+02:00",
		" 7 ", "0", "-5s", "yesterday", "+", "18446744073709551616", "9223372036854775807ns", "2026-13-01T00:00:00Z", "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBound(s)
		if err != nil {
			if want := fmt.Sprintf("bound %q", strings.TrimSpace(s)); !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q does not start with %s", err, want)
			}
			return
		}
		switch b.kind {
		case noBound:
			if strings.TrimSpace(s) != "" {
				t.Fatalf("%q is no bound", s)
			}
			return
		case seqBound:
			if b.seq < 1 {
				t.Fatalf("%q: sequence %d", s, b.seq)
			}
		case offsetBound:
			if b.off < 0 {
				t.Fatalf("%q: offset %v", s, b.off)
			}
		case timeBound:
		default:
			t.Fatalf("%q: a bound of kind %d", s, b.kind)
		}
		c := canonical(b)
		b2, err := ParseBound(c)
		if err != nil {
			t.Fatalf("%q gives %v, whose text %q ParseBound refuses: %v", s, b, c, err)
		}
		if b2.kind != b.kind || b2.seq != b.seq || b2.off != b.off || !b2.t.Equal(b.t) {
			t.Fatalf("%q gives %v, whose text %q gives %v", s, b, c, b2)
		}
	})
}

// FuzzRenameSubject: renameSubject, which Replay runs on the subject of
// every stored message when it plays into another pipeline, never panics;
// a subject it moves keeps its version and its rest, gets the new pipeline,
// and moves back to where it was.
func FuzzRenameSubject(f *testing.F) {
	for _, s := range []string{
		"serket.v2.default.post.vision", "serket.v2.default.train.step", "serket.v2.robot.obs.post.audio", "serket.v2.a.b",
		"serket.v2.default.latent", "robot.camera", "serket.v2.default", "", "serket.v2..x", "....",
	} {
		f.Add(s, "replay")
	}
	f.Fuzz(func(t *testing.T, s, pipeline string) {
		out, err := renameSubject(s, pipeline)
		if err != nil {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("error %q does not name the subject", err)
			}
			return
		}
		toks := strings.SplitN(s, ".", 4)
		want := strings.Join([]string{toks[0], toks[1], pipeline, toks[3]}, ".")
		if out != want {
			t.Fatalf("renameSubject(%q, %q) = %q, want %q", s, pipeline, out, want)
		}
		if strings.Contains(pipeline, ".") {
			return // the pipeline is not one token: no way back
		}
		back, err := renameSubject(out, toks[2])
		if err != nil || back != s {
			t.Fatalf("moving %q back from %q gives %q, %v", s, out, back, err)
		}
	})
}
