// Package lograte logs a repeated event at most once per interval, with
// the number held back since, so that a flood of bad messages (a
// forger's, a broken peer's) costs a log line per interval, not one per
// message, while every one is still counted where it happened.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the kinds of event remembered: senders are named by
// whoever sends, so an attacker could invent a new one per message. Past
// it, the events of new keys share one key.
const maxKeys = 256

// otherKey is the key of events whose own key did not fit.
const otherKey = "\x00other"

// Limiter logs each key's events at most once per Every. The zero value
// is not usable; use New. It is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	last time.Time // when a line was last written
	held int       // events since then that were not written
}

// New returns a limiter that logs each key at most once per every.
func New(every time.Duration) *Limiter {
	return &Limiter{every: every, now: time.Now, keys: map[string]*entry{}}
}

// Log writes msg with args at level on log, unless a line of key was
// written less than the interval ago; then it only counts the event. A
// line written after some were held back says how many ("held_back").
// It reports whether it wrote.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, key, msg string, args ...any) bool {
	held, ok := l.admit(key)
	if !ok {
		return false
	}
	if held > 0 {
		args = append(args, "held_back", held)
	}
	log.Log(context.Background(), level, msg, args...)
	return true
}

// Warn is Log at slog.LevelWarn.
func (l *Limiter) Warn(log *slog.Logger, key, msg string, args ...any) bool {
	return l.Log(log, slog.LevelWarn, key, msg, args...)
}

// admit counts an event of key and says whether to write it, and how many
// of key's were held back before it.
func (l *Limiter) admit(key string) (held int, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil {
		if len(l.keys) >= maxKeys {
			key = otherKey
			e = l.keys[key]
		}
		if e == nil {
			e = &entry{}
			l.keys[key] = e
			e.last = now
			return 0, true
		}
	}
	if now.Sub(e.last) < l.every {
		e.held++
		return 0, false
	}
	held, e.held, e.last = e.held, 0, now
	return held, true
}
