package launch

import (
	"testing"
	"time"
)

// TestBackoff is an internal test: the reset after a stable run needs runs
// of several seconds, too slow to show with real processes.
func TestBackoff(t *testing.T) {
	t.Parallel()
	type step struct {
		ran       time.Duration
		wantDelay time.Duration
		wantN     int
		wantOK    bool
	}
	const ms = time.Millisecond
	tests := []struct {
		name  string
		rp    RestartPolicy
		steps []step
	}{
		{
			name: "doubles up to the cap",
			rp:   RestartPolicy{Backoff: Duration(100 * ms), MaxBackoff: Duration(500 * ms)},
			steps: []step{
				{0, 100 * ms, 1, true}, {0, 200 * ms, 2, true}, {0, 400 * ms, 3, true},
				{0, 500 * ms, 4, true}, {0, 500 * ms, 5, true},
			},
		},
		{
			name: "a stable run resets delay and count",
			rp:   RestartPolicy{Backoff: Duration(100 * ms), MaxBackoff: Duration(time.Second)},
			steps: []step{
				{0, 100 * ms, 1, true}, {time.Second, 200 * ms, 2, true},
				{minStable, 100 * ms, 1, true}, {0, 200 * ms, 2, true},
			},
		},
		{
			name: "stable means ten backoffs when that is longer than minStable",
			rp:   RestartPolicy{Backoff: Duration(time.Second), MaxBackoff: Duration(time.Minute)},
			steps: []step{
				{0, time.Second, 1, true}, {minStable, 2 * time.Second, 2, true},
				{10 * time.Second, time.Second, 1, true},
			},
		},
		{
			name: "max restarts",
			rp:   RestartPolicy{Backoff: Duration(ms), MaxBackoff: Duration(ms), MaxRestarts: 2},
			steps: []step{
				{0, ms, 1, true}, {0, ms, 2, true}, {0, 0, 2, false},
			},
		},
		{
			name: "max restarts counts consecutive restarts only",
			rp:   RestartPolicy{Backoff: Duration(ms), MaxBackoff: Duration(ms), MaxRestarts: 1},
			steps: []step{
				{0, ms, 1, true}, {minStable, ms, 1, true}, {0, 0, 1, false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBackoff(tt.rp)
			for i, s := range tt.steps {
				d, n, ok := b.next(s.ran)
				if d != s.wantDelay || n != s.wantN || ok != s.wantOK {
					t.Errorf("step %d: next(%v) = %v, %d, %v; want %v, %d, %v", i, s.ran, d, n, ok, s.wantDelay, s.wantN, s.wantOK)
				}
			}
		})
	}
}
