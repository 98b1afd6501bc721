package lograte

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLimiter: of 20,000 events of one key within an interval one line is
// written; the next after the interval says how many were held back; keys
// are limited apart, and a flood of new keys cannot grow the map past
// maxKeys.
func TestLimiter(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	now := time.Unix(1000, 0)
	l := New(10 * time.Second)
	l.now = func() time.Time { return now }

	wrote := 0
	for range 20000 {
		if l.Warn(log, "step from forger", "refused") {
			wrote++
		}
	}
	if wrote != 1 || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("20000 events in an interval wrote %d lines:\n%s", wrote, out.String())
	}
	if !l.Warn(log, "latent from forger", "refused") {
		t.Error("another key was held back by the first's interval")
	}
	now = now.Add(10 * time.Second)
	out.Reset()
	if !l.Warn(log, "step from forger", "refused") || !strings.Contains(out.String(), "held_back=19999") {
		t.Errorf("after the interval: %q, want a line with held_back=19999", out.String())
	}

	for i := range 3 * maxKeys {
		l.Warn(log, fmt.Sprint("sender-", i), "refused")
	}
	if len(l.keys) > maxKeys+1 {
		t.Errorf("%d keys kept, want at most %d", len(l.keys), maxKeys+1)
	}
}
