package bench

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Outcome is the fate of one request.
type Outcome uint8

const (
	// OK: answered, and the answer was this request's.
	OK Outcome = iota
	// Failed: answered with an error, or with an answer that is not this
	// request's (a crossed reply, a wrong result).
	Failed
	// Lost: no answer within the request's timeout.
	Lost
)

// Tally is the fate of every request of one phase. The zero value is empty
// and ready to use; it is not safe for concurrent use (give each client its
// own and Merge them).
type Tally struct {
	Sent       int            `json:"sent"`
	OK         int            `json:"ok"`
	Errors     int            `json:"errors"` // answered with an error, or with an answer that is not this request's
	Lost       int            `json:"lost"`   // no answer within the timeout
	ErrorKinds map[string]int `json:"error_kinds,omitempty"`
	LostKinds  map[string]int `json:"lost_kinds,omitempty"`

	lat []time.Duration
}

// Add counts one request sent, its outcome, the kind of failure or loss
// (ignored when ok) and, when ok, its latency d.
func (t *Tally) Add(o Outcome, kind string, d time.Duration) {
	t.Sent++
	switch o {
	case OK:
		t.OK++
		t.lat = append(t.lat, d)
	case Failed:
		t.Errors++
		t.ErrorKinds = inc(t.ErrorKinds, kind, 1)
	default:
		t.Lost++
		t.LostKinds = inc(t.LostKinds, kind, 1)
	}
}

// Merge adds u's counts and latencies to t.
func (t *Tally) Merge(u *Tally) {
	t.Sent += u.Sent
	t.OK += u.OK
	t.Errors += u.Errors
	t.Lost += u.Lost
	for k, n := range u.ErrorKinds {
		t.ErrorKinds = inc(t.ErrorKinds, k, n)
	}
	for k, n := range u.LostKinds {
		t.LostKinds = inc(t.LostKinds, k, n)
	}
	t.lat = append(t.lat, u.lat...)
}

func inc(m map[string]int, k string, n int) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[k] += n
	return m
}

// Latencies are the latencies of the ok requests, in the order they were
// added (sorted once Latency has been called).
func (t *Tally) Latencies() []time.Duration { return t.lat }

// Latency sums up the latencies of the ok requests.
func (t *Tally) Latency() Latency { return Summarise(t.lat) }

// Check is nil when every request sent is accounted for (sent = ok +
// errors + lost) and none was lost; otherwise its error names the phase,
// the counts and the kinds of loss. Errors are counted, not failures: a
// benchmark decides whether they fail it.
func (t *Tally) Check(phase string) error {
	var errs []error
	if t.Sent != t.OK+t.Errors+t.Lost {
		errs = append(errs, fmt.Errorf("%s: sent %d ≠ ok %d + errors %d + lost %d", phase, t.Sent, t.OK, t.Errors, t.Lost))
	}
	if t.Lost > 0 {
		errs = append(errs, fmt.Errorf("%s: %d of %d requests lost (%s)", phase, t.Lost, t.Sent, Kinds(t.LostKinds)))
	}
	return errors.Join(errs...)
}

// Kinds lists counts by kind, "3× timed out; 1× …", in the kinds' order.
func Kinds(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d× %s", m[k], k))
	}
	return strings.Join(parts, "; ")
}

// Latency sums up latencies: nearest-rank percentiles, the largest and the
// mean. In JSON each is in nanoseconds.
type Latency struct {
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarise sorts lat in place and sums it up; the zero Latency when it is
// empty.
func Summarise(lat []time.Duration) Latency {
	slices.Sort(lat)
	n := len(lat)
	if n == 0 {
		return Latency{}
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return Latency{N: n, P50: Rank(lat, 0.5), P90: Rank(lat, 0.9), P99: Rank(lat, 0.99), Max: lat[n-1], Mean: sum / time.Duration(n)}
}

// Rank is the nearest-rank q-quantile of sorted (0 < q ≤ 1): its element of
// rank ⌈q·n⌉, counting from 1. It panics when sorted is empty.
func Rank(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	return sorted[min(max(int(math.Ceil(q*float64(n)))-1, 0), n-1)]
}

// Ratio is a/b, or 0 when b is 0: how many times slower serket is than the
// raw baseline.
func Ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
